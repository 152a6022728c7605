"""Dask overhead on one machine: tuning on LocalCluster(2 workers x 1 thread) vs local n_jobs=2, and batch scoring of
`transactions` rows (200 features) on LocalCluster(2) vs the local chunked path, each as a ratio measured in this run;
then a projection to 4 and 16 workers, 100M rows and a 200-candidate search from the measured per-fit and
per-partition costs.

    .venv/bin/python benchmarks/scale.py [--rows 1000000] [--train-rows 5000] [--candidates 16] [--partition-rows 100000]

Everything happens in a temporary outputs folder (its own embedded MLflow store). Goal: the Dask path within 1.25x of
the local path on one machine (the overhead of the scheduler, the model broadcast and the output commit).
"""
import argparse, os, sys, tempfile, time
from pathlib import Path
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT/'benchmarks'))


def tuning(a, outputs: Path) -> dict:
    "One random search, local n_jobs=2 vs joblib's Dask backend on LocalCluster(2 x 1)."
    from distributed import Client
    from mlops_lib.dask_backend import _local_cluster
    from mlops_lib.params import params_from_dict
    from mlops_lib.models import tune_family
    from mlops_lib.samples import make_sample
    from mlops_lib.schema import infer_schema
    df, _ = make_sample('transactions', rows=a.train_rows, seed=3)
    df = df.drop(columns=['ID_code'])
    space = {'learning_rate': [0.05, 0.1, 0.2, 0.3], 'max_leaf_nodes': [7, 15, 31, 63], 'max_iter': [50, 100]}
    base = dict(name='scale_bench', task='classification', data={'sample': 'transactions'}, target='target', seed=1)
    models = dict(cv_folds=3, n_jobs=2, families={'hist_gradient_boosting': dict(strategy='random', n_iter=a.candidates, space=space)})
    P = params_from_dict({**base, 'models': models})
    S = infer_schema(df, 'target', 'classification')
    X, y = df[S.feature_names], df.target
    t = time.perf_counter(); local = tune_family(X, y, 'hist_gradient_boosting', S, P); t_local = time.perf_counter() - t
    t = time.perf_counter()
    cluster = _local_cluster(2)  # the cluster `backend: dask` starts without a scheduler address
    client = Client(cluster)
    t_start = time.perf_counter() - t
    try:
        os.environ['DASK_SCHEDULER_ADDRESS'] = cluster.scheduler_address
        Pd = params_from_dict({**base, 'models': {**models, 'backend': 'dask'}})
        # the first search on new workers pays their imports (scikit-learn, mlops_lib) and first unpickling: timed apart
        t = time.perf_counter(); dask = tune_family(X, y, 'hist_gradient_boosting', S, Pd); t_cold = time.perf_counter() - t
        t = time.perf_counter(); again = tune_family(X, y, 'hist_gradient_boosting', S, Pd); t_dask = time.perf_counter() - t
        assert again.cv_mean == dask.cv_mean
    finally:
        os.environ.pop('DASK_SCHEDULER_ADDRESS', None)
        from mlops_lib.dask_backend import close_clients
        close_clients(); client.close(); cluster.close()
    assert dask.best_params == local.best_params and dask.cv_mean == local.cv_mean, "Dask and local searches disagree"
    fits = local.n_candidates * P.models.cv_folds
    return dict(local=t_local, dask=t_dask, cold=t_cold, start=t_start, fits=fits)


def scoring(a, d: Path) -> dict:
    "Scoring `rows` transactions rows: the local chunked path vs LocalCluster(2) partitions, same model, same function."
    from predict import train_model as train  # benchmarks/predict.py: a quick transactions champion
    from distributed import Client
    from mlops_lib.dask_backend import _local_cluster
    from mlops_lib.predict import predict_file
    from mlops_lib.samples import make_sample
    outputs = d/'outputs'
    params = d/'transactions_scale.yaml'
    params.write_text(yaml.safe_dump(dict(name='transactions_scale', task='classification', data={'sample': 'transactions'}, target='target', features={'drop': ['ID_code']})))
    train(outputs, params, make_sample('transactions', rows=20_000, seed=2)[0])
    df, _ = make_sample('transactions', rows=a.rows, seed=1)
    parts = d/'batch'; parts.mkdir()
    for i, s in enumerate(range(0, a.rows, a.partition_rows)): df.iloc[s:s + a.partition_rows].to_parquet(parts/f'part-{i:04d}.parquet', index=False)
    one = d/'batch.parquet'; df.to_parquet(one, index=False, row_group_size=a.partition_rows)
    del df
    t = time.perf_counter(); predict_file(params, one, d/'local.parquet', on_invalid='quarantine', chunk_size=a.partition_rows, progress=False); t_local = time.perf_counter() - t
    cluster = _local_cluster(2)
    client = Client(cluster)
    try:
        os.environ.update(MLOPS_BACKEND='dask', DASK_SCHEDULER_ADDRESS=cluster.scheduler_address)
        # the first batch loads the model on each worker (once per worker process, then kept): timed apart
        t = time.perf_counter(); predict_file(params, parts, d/'dask_cold', on_invalid='quarantine', progress=False); t_cold = time.perf_counter() - t
        t = time.perf_counter(); s = predict_file(params, parts, d/'dask_out', on_invalid='quarantine', progress=False); t_dask = time.perf_counter() - t
    finally:
        for k in ('MLOPS_BACKEND', 'DASK_SCHEDULER_ADDRESS'): os.environ.pop(k, None)
        from mlops_lib.dask_backend import close_clients
        close_clients(); client.close(); cluster.close()
    n_parts = s['partitions']
    # the driver's share of the commit: one footer read per scored part, then a rename of the folder
    import pyarrow.parquet as pq
    t = time.perf_counter(); sum(pq.ParquetFile(p).metadata.num_rows for p in sorted((d/'dask_out').glob('*.parquet')))
    t_footers = time.perf_counter() - t
    return dict(local=t_local, dask=t_dask, cold=t_cold, partitions=n_parts, footer=t_footers/n_parts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rows', type=int, default=1_000_000)
    ap.add_argument('--partition-rows', type=int, default=100_000)
    ap.add_argument('--train-rows', type=int, default=5_000)
    ap.add_argument('--candidates', type=int, default=16)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix='bench-scale-') as d:
        d = Path(d); os.environ['MLOPS_OUTPUTS'] = str(d/'outputs'); os.environ.pop('MLFLOW_TRACKING_URI', None)
        tu = tuning(a, d/'outputs'); print(f"tuning: local {tu['local']:.1f} s, dask {tu['dask']:.1f} s", flush=True)
        sc = scoring(a, d); print(f"scoring: local {sc['local']:.1f} s, dask {sc['dask']:.1f} s", flush=True)
    print(f"\n## Dask on one machine (LocalCluster 2 workers x 1 thread; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)\n")
    print(f"{'':<48}{'local':>9}{'dask':>9}{'dask/local':>12}{'first on new workers':>22}")
    print(f"{f'tuning: {a.candidates} candidates x 3 folds, {a.train_rows:,} rows':<48}{tu['local']:>8.1f}s{tu['dask']:>8.1f}s{tu['dask']/tu['local']:>11.2f}x{tu['cold']:>20.1f}s")
    scoring_row = f"scoring: {a.rows:,} rows x 200, {sc['partitions']} partitions"
    print(f"{scoring_row:<48}{sc['local']:>8.1f}s{sc['dask']:>8.1f}s{sc['dask']/sc['local']:>11.2f}x{sc['cold']:>20.1f}s")
    print(f"\nLocalCluster(2) start-up: {tu['start']:.1f} s; the first search on its new workers took {tu['cold']:.1f} s "
          f"(their imports), the first batch {sc['cold']:.1f} s (each worker loads the model once)")
    workers = 2
    per_fit = tu['dask'] * workers / tu['fits']  # worker-seconds per CV fit on Dask, its overhead included
    per_part = sc['dask'] * workers / sc['partitions']  # worker-seconds per partition, read + check + score + write
    load = max(sc['cold'] - sc['dask'], 0)  # the first batch's extra: each worker loads the model once
    print(f"\nmeasured on Dask: {per_fit:.2f} worker-s per CV fit, {per_part:.2f} worker-s per {a.partition_rows:,}-row "
          f"partition, {load:.1f} s model load per worker (first batch - second), {sc['footer']*1000:.1f} ms of "
          "driver commit per partition")
    print("\n## Projection (the measured per-task costs split over more workers of the same speed)\n")
    for w in (4, 16):
        fits = 200 * 3
        t_search = np.ceil(fits / w) * per_fit
        parts = 100_000_000 // a.partition_rows
        t_score = load + np.ceil(parts / w) * per_part + parts * sc['footer']
        print(f"{w:>2} workers: 200-candidate search ({fits} fits) ~{t_search/60:.1f} min; 100M rows ({parts} partitions) "
              f"~{t_score/60:.1f} min")

if __name__ == '__main__':
    main()
