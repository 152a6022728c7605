"""The two home-made helpers kept in `mlops_lib.eda` against the maintained functions they replace, timed in one run.

    .venv/bin/python benchmarks/library_replacements.py [--rows 20000] [--features 200] [--figures 20]

- `_abs_corr(X, y)` vs `X.corrwith(y).abs().fillna(0)` on Gaussian features with some missing values and a constant column
  (the size of the `transactions` sample); the two results are checked to agree.
- `_two_views(...)` vs `plotly.subplots.make_subplots(rows=1, cols=2)` with the same two traces and titles.
"""
import argparse, time
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from mlops_lib.eda import _LAYOUT, _abs_corr, _two_views


def best_of(f, repeat: int=3) -> float:
    "The fastest of `repeat` wall-clock timings of `f()`, in seconds."
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rows', type=int, default=20_000)
    ap.add_argument('--features', type=int, default=200)
    ap.add_argument('--figures', type=int, default=20)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(a.rows, a.features)), columns=[f'var_{i}' for i in range(a.features)])
    X.iloc[::7, 3] = np.nan
    X['var_5'] = 1.0
    y = pd.Series(rng.normal(size=a.rows))
    np.testing.assert_allclose(_abs_corr(X, y), X.corrwith(y).abs().fillna(0), atol=1e-12)

    def subplots():
        for _ in range(a.figures):
            f = make_subplots(rows=1, cols=2, subplot_titles=('a', 'b'), horizontal_spacing=0.1)
            f.add_trace(go.Bar(x=[1, 2], y=[1, 2]), row=1, col=1)
            f.add_trace(go.Box(y=[1, 2]), row=1, col=2)
            f.update_layout(_LAYOUT, title='t')

    def light():
        for _ in range(a.figures): _two_views(('a', 'b'), [(1, go.Bar(x=[1, 2], y=[1, 2])), (2, go.Box(y=[1, 2]))], 't')

    rows = [('abs correlation', f'{a.rows:,} x {a.features}', best_of(lambda: _abs_corr(X, y)),
             best_of(lambda: X.corrwith(y).abs().fillna(0))),
            ('two-panel figure', f'{a.figures} figures', best_of(light), best_of(subplots))]
    df = pd.DataFrame(rows, columns=['what', 'size', 'kept helper s', 'library s'])
    df['library / helper'] = df['library s'] / df['kept helper s']
    print(df.to_string(index=False, float_format='{:.3f}'.format))


if __name__ == '__main__': main()
