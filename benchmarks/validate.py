"""Schema validation speed: `validate_frame` (vectorised contract + expectations) vs the pandera check it replaced.

    .venv/bin/python benchmarks/validate.py [--rows 100000] [--repeat 3]

A schema is inferred from 20,000 `transactions` rows (200 float features); a fresh chunk of `--rows` rows is validated.
The baseline is the previous hot path, measured in the same run: coerce every column with `pd.to_numeric`, then
`to_pandera(schema).validate(X, lazy=True)` (range and nullability checks with pandera). Also timed: a chunk where 1% of
the rows break an expectation (flags built) and a CSV chunk read with and without the structure check (`open_csv`).
"""
import argparse, sys, tempfile, time
from pathlib import Path
import numpy as np, pandas as pd
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mlops_lib.data import open_csv
from mlops_lib.samples import make_sample
from mlops_lib.schema import infer_schema, to_pandera, validate_frame


def best(f, repeat: int) -> float:
    ts = []
    for _ in range(repeat):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return min(ts)


def pandera_baseline(chunk: pd.DataFrame, S):
    import pandera.pandas as pa
    X = pd.DataFrame({c: pd.to_numeric(chunk[c], errors='coerce').astype('float64') for c in S.feature_names}, index=chunk.index)
    try: to_pandera(S).validate(X, lazy=True)
    except pa.errors.SchemaErrors: pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rows', type=int, default=100_000); ap.add_argument('--repeat', type=int, default=3)
    a = ap.parse_args()
    df, _ = make_sample('transactions', rows=20_000 + a.rows, seed=1)
    df = df.astype({c: 'float64' for c in df.columns if c.startswith('var_')})   # as read from a CSV
    train, chunk = df.iloc[:20_000], df.iloc[20_000:].reset_index(drop=True)
    feats = [c for c in df.columns if c.startswith('var_')]
    S = infer_schema(train, 'target', 'classification', feats)
    flagged = chunk.copy()
    idx = np.random.default_rng(0).choice(len(chunk), len(chunk) // 100, replace=False)
    flagged.loc[idx, 'var_0'] = 1e6
    rows = [('pandera (previous hot path)', best(lambda: pandera_baseline(chunk, S), a.repeat)),
            ('validate_frame', best(lambda: validate_frame(chunk, S), a.repeat)),
            ('validate_frame, 1% rows flagged', best(lambda: validate_frame(flagged, S), a.repeat))]
    with tempfile.TemporaryDirectory() as d:
        p = Path(d)/'chunk.csv'; chunk.to_csv(p, index=False)
        def plain():
            with open(p, 'rb') as fh: pd.read_csv(fh)
        def checked():
            with open_csv(p) as fh: pd.read_csv(fh)
        rows += [('read_csv (file handle)', best(plain, a.repeat)), ('read_csv via open_csv (structure checked)', best(checked, a.repeat))]
    base, csv_base = rows[0][1], rows[3][1]
    print(f"{a.rows:,} rows x {len(feats)} features (best of {a.repeat})\n")
    print(f"{'what':45s} {'seconds':>8s} {'ratio':>7s}")
    for i, (name, t) in enumerate(rows):
        print(f"{name:45s} {t:8.3f} {t / (base if i < 3 else csv_base):7.2f}")


if __name__ == '__main__':
    main()
