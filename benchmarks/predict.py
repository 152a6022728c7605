"""Batch and REST scoring speed: `mlops predict` on 1,000,000 `transactions` rows vs raw `model.predict`, its peak memory,
and REST latency percentiles of `mlops simulate` against `mlops serve`.

    .venv/bin/python benchmarks/predict.py [--rows 1000000] [--format parquet|csv] [--requests 200] [--rate 50]

Everything happens in a temporary outputs folder (its own MLflow store); a quick hist-gradient-boosting model is trained
on 20,000 rows with the library functions, because what is timed is the scoring, not the training. The batch is scored
with --on-invalid quarantine: fresh rows of 200 Gaussian features fall outside the schema's widened training ranges
now and then (about 0.1% of the rows), and they go to the rejects file instead of failing the batch.
"""
import argparse, os, subprocess, sys, tempfile, time
from pathlib import Path
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def train_model(outputs: Path, params_file: Path, train: pd.DataFrame) -> str:
    "Fit and register a quick transactions model as the champion of its own store; return its version."
    import mlflow
    from mlflow import MlflowClient
    from mlops_lib.models import build_pipeline
    from mlops_lib.schema import infer_schema
    from mlops_lib.tracking import log_model, setup_tracking
    P = yaml.safe_load(params_file.read_text())
    setup_tracking(f"sqlite:///{outputs}/mlflow/mlflow.db", P['name'])
    X = train.drop(columns=['ID_code'])
    S = infer_schema(X, 'target', 'classification')
    model = build_pipeline('hist_gradient_boosting', S, 0, max_iter=100).fit(X[S.feature_names], X.target)
    with mlflow.start_run(run_name='benchmark-train'):
        info = log_model(model, X[S.feature_names], S, P['name'])
    MlflowClient().set_registered_model_alias(P['name'], 'champion', info.registered_model_version)
    return str(info.registered_model_version)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rows', type=int, default=1_000_000)
    ap.add_argument('--format', choices=['parquet', 'csv'], default='parquet', help='input and output file format')
    ap.add_argument('--chunk-size', type=int, default=None, help='rows per chunk (default: params predict.chunk_size = 100,000)')
    ap.add_argument('--requests', type=int, default=200)
    ap.add_argument('--rate', type=float, default=50.0)
    a = ap.parse_args()
    from mlops_lib.samples import make_sample
    from mlops_lib.procs import free_port, run_peak_rss, stop_process, wait_until_ready
    from mlops_lib.serve import latency_summary
    from mlops_lib.tracking import load_model

    with tempfile.TemporaryDirectory(prefix='bench-predict-') as d:
        d = Path(d); outputs = d/'outputs'
        os.environ['MLOPS_OUTPUTS'] = str(outputs); os.environ.pop('MLFLOW_TRACKING_URI', None)
        params = d/'transactions_bench.yaml'
        params.write_text(yaml.safe_dump(dict(name='transactions_bench', task='classification', data={'sample': 'transactions'}, target='target', features={'drop': ['ID_code']})))
        t = time.perf_counter(); df, _ = make_sample('transactions', rows=a.rows, seed=1)
        src = d/f'batch.{a.format}'
        df.to_parquet(src, index=False, row_group_size=100_000) if a.format == 'parquet' else df.to_csv(src, index=False)
        print(f"generated and wrote {a.rows:,} rows x {df.shape[1]} columns to {src.name} ({src.stat().st_size/1e6:,.0f} MB) in {time.perf_counter() - t:.1f} s", flush=True)
        version = train_model(outputs, params, make_sample('transactions', rows=20_000, seed=2)[0])
        lm = load_model('transactions_bench', uri=f"sqlite:///{outputs}/mlflow/mlflow.db")
        X = df[lm.schema.feature_names]
        t = time.perf_counter(); lm.model.predict(X); raw = time.perf_counter() - t
        t = time.perf_counter(); lm.model.predict_proba(X); raw_proba = time.perf_counter() - t
        del X
        print(f"raw model.predict: {raw:.1f} s; predict_proba: {raw_proba:.1f} s", flush=True)

        def score(src: Path) -> tuple:
            "Run `mlops predict` on `src`; return its output, peak memory in MB and wall time."
            cmd = [str(BIN/'mlops'), 'predict', '--params', str(params), '--input', str(src), '--output', str(d/f'pred.{a.format}'), '--quiet', '--on-invalid', 'quarantine']
            if a.chunk_size: cmd += ['--chunk-size', str(a.chunk_size)]
            # peak memory is the child's own high-water mark (VmHWM): getrusage(RUSAGE_CHILDREN) would report this process's
            # (which holds the 1M-row frame) because Linux carries the parent's mark over exec
            t = time.perf_counter(); p, peak_mb = run_peak_rss(cmd, cwd=ROOT); wall = time.perf_counter() - t
            if p.returncode: sys.exit(f"mlops predict failed:\n{p.stderr[-3000:]}")
            return p, peak_mb, wall
        small = d/f'small.{a.format}'
        df.head(a.rows//5).to_parquet(small, index=False, row_group_size=100_000) if a.format == 'parquet' else df.head(a.rows//5).to_csv(small, index=False)
        _, small_peak_mb, _ = score(small)
        p, peak_mb, wall = score(src)
        inner = float(p.stdout.split(' s (')[0].rsplit(' in ', 1)[1])
        print(p.stdout.strip(), flush=True)

        port = free_port(); url = f'http://127.0.0.1:{port}'
        srv = subprocess.Popen([str(BIN/'mlops'), 'serve', '--params', str(params), '--port', str(port)], cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            startup = wait_until_ready(url, timeout=300, proc=srv)
            df.head(a.requests).to_csv(d/'rows.csv', index=False)
            s = subprocess.run([str(BIN/'mlops'), 'simulate', '--url', url, '--input', str(d/'rows.csv'), '--rate', str(a.rate), '--output', str(d/'sim.csv')],
                               cwd=ROOT, capture_output=True, text=True)
            if s.returncode: sys.exit(f"mlops simulate failed:\n{s.stderr[-3000:]}")
        finally:
            stop_process(srv)
        sim = pd.read_csv(d/'sim.csv')
        lat = latency_summary(sim.latency_ms[sim.status == 200])

    n = a.rows
    rows = [('raw model.predict (in memory)', f'{raw:.1f} s', f'{n/raw:,.0f}', '1.0x'),
            ('raw model.predict_proba (in memory)', f'{raw_proba:.1f} s', f'{n/raw_proba:,.0f}', f'{raw_proba/raw:.1f}x'),
            (f'mlops predict, scoring ({a.format} -> {a.format})', f'{inner:.1f} s', f'{n/inner:,.0f}', f'{inner/raw:.1f}x'),
            ('mlops predict, whole command (wall)', f'{wall:.1f} s', f'{n/wall:,.0f}', f'{wall/raw:.1f}x')]
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    print(f"\n## mlops predict: {n:,} transactions rows, model v{version} (hist gradient boosting, 200 features)\n")
    print(f"{'':<{w[0]}}  {'time':>{w[1]}}  {'rows/s':>{w[2]}}  {'vs raw predict':>14}")
    for r in rows: print(f"{r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:>{w[2]}}  {r[3]:>14}")
    print(f"\npeak memory (VmHWM) of `mlops predict`: {peak_mb:,.0f} MB on {n:,} rows, {small_peak_mb:,.0f} MB on the first {n//5:,} rows"
          f" (ratio {peak_mb/small_peak_mb:.2f}; the {n:,}-row input takes {df.memory_usage().sum()/1e6:,.0f} MB in memory as float32)")
    print(f"\n## REST: `mlops simulate` against `mlops serve` ({len(sim)} one-row requests at {a.rate:g}/s; server ready in {startup:.1f} s)\n")
    print(f"ok {int((sim.status == 200).sum())}/{len(sim)}   p50 {lat['p50_ms']:.1f} ms   p90 {lat['p90_ms']:.1f} ms   p99 {lat['p99_ms']:.1f} ms   max {lat['max_ms']:.1f} ms")


if __name__ == '__main__':
    main()
