"""Pipeline benchmark: per-step wall time of `mlops run` (papermill kernels) vs the same work called in-process.

    .venv/bin/python benchmarks/pipeline.py [--params params/car_purchase.yaml]

Both runs use fresh temporary outputs folders (fresh embedded MLflow stores), so the in-process baseline does the same
tracking work (runs, metrics, artifacts, model logging and registration) as the notebooks. The ratio is the notebook
and kernel overhead of the papermill pipeline.
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def notebook_run(params: str, outputs: Path) -> tuple[float, list]:
    t0 = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent/'mlops'), 'run', '--params', params, '--quiet', '--run-name', 'bench'], cwd=ROOT, check=True,
                   env={**os.environ, 'MLOPS_OUTPUTS': str(outputs)}, capture_output=True)
    total = time.perf_counter() - t0
    return total, json.loads((outputs/'runs'/'bench'/'summary.json').read_text())['steps']


def in_process_run(params: str, outputs: Path) -> dict:
    "The same library calls the four step notebooks make, in this process, with the same MLflow logging."
    os.environ['MLOPS_OUTPUTS'] = str(outputs)
    t = {}
    t0 = time.perf_counter()
    import mlflow
    from mlflow import MlflowClient
    from mlops_lib.config import load_params, tracking_uri, write_table
    from mlops_lib.data import feature_columns, load_dataset, split_data
    from mlops_lib.eda import eda_figures, eda_metrics, html_report, write_report
    from mlops_lib.evaluate import evaluation_figures, importance_figure, permutation_importance_frame, score_model
    from mlops_lib.models import best_result, build_pipeline, tune_family
    from mlops_lib.schema import infer_schema, validate_frame
    from mlops_lib.tracking import champion_score, log_model, promotion_gate, record_decision, setup_tracking
    t['imports'] = time.perf_counter() - t0
    P = load_params(params)
    setup_tracking(tracking_uri(P), P.name)
    rd = outputs/'inproc'; rd.mkdir(parents=True)
    with mlflow.start_run(run_name='inproc'):
        t0 = time.perf_counter()
        with mlflow.start_run(nested=True, run_name='ingest'):
            df, source = load_dataset(P)
            train, test = split_data(df, P)
            S = infer_schema(train, P.target, P.task, feature_columns(df, P))
            assert validate_frame(df, S, require_target=True).ok
            for part, frame in [('train', train), ('test', test)]:
                write_table(frame, rd/f'{part}.parquet')
                mlflow.log_input(mlflow.data.from_pandas(frame, targets=P.target, name=part), context=part)
        t['10_ingest'] = time.perf_counter() - t0; t0 = time.perf_counter()
        with mlflow.start_run(nested=True, run_name='eda'):
            d = train[S.feature_names + [P.target]]
            m = eda_metrics(d, P.target, P.task); mlflow.log_metrics(m)
            write_report(html_report(eda_figures(d, P.target, P.task, S.numeric, S.categorical, seed=P.seed), 'eda', metrics=m), rd/'eda.html')
            mlflow.log_artifact(str(rd/'eda.html'))
        t['20_eda'] = time.perf_counter() - t0; t0 = time.perf_counter()
        X, y, Xt, yt = train[S.feature_names], train[P.target], test[S.feature_names], test[P.target]
        with mlflow.start_run(nested=True, run_name='tune'):
            res = []
            for fam in P.models.families:
                with mlflow.start_run(nested=True, run_name=fam):
                    r = tune_family(X, y, fam, S, P); res.append(r)
                    mlflow.log_metrics({'cv_mean': r.cv_mean, 'cv_std': r.cv_std})
            best = best_result(res)
        t['30_tune'] = time.perf_counter() - t0; t0 = time.perf_counter()
        with mlflow.start_run(nested=True, run_name='train') as run:
            model = build_pipeline(best.family, S, P.seed, P.models.n_jobs, **best.best_params).fit(X, y)
            metrics = score_model(model, Xt, yt, P.task); mlflow.log_metrics(metrics)
            figs = evaluation_figures(model, Xt, yt, P.task)
            imp = permutation_importance_frame(model, Xt, yt, P.task, P.promotion.metric, seed=P.seed, n_jobs=P.models.n_jobs)
            figs['imp'] = importance_figure(imp)
            write_report(html_report(figs, 'evaluation', metrics=metrics), rd/'evaluation.html'); mlflow.log_artifact(str(rd/'evaluation.html'))
            cv, cs = champion_score(P.name, Xt, yt, P.promotion.metric, P.task)
            write_table(train, rd/'reference.parquet'); mlflow.log_artifact(str(rd/'reference.parquet'), 'data')
            info = log_model(model, X, S, P.name, imp)
            record_decision(MlflowClient(), P.name, str(info.registered_model_version), promotion_gate(metrics, P, cs, cv), run.info.run_id)
        t['40_train'] = time.perf_counter() - t0
    return t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--params', default='params/car_purchase.yaml')
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
        t0 = time.perf_counter(); inproc = in_process_run(a.params, Path(d2)); inproc_total = time.perf_counter() - t0
        nb_total, steps = notebook_run(a.params, Path(d1))
    print(f"\npipeline benchmark: {a.params} on {os.cpu_count()} cores\n")
    print(f"{'step':<12}{'papermill s':>13}{'in-process s':>14}{'ratio':>8}")
    for s in steps:
        ip = inproc.get(s['step'], float('nan'))
        print(f"{s['step']:<12}{s['seconds']:>13.1f}{ip:>14.1f}{s['seconds'] / ip:>8.2f}")
    step_sum = sum(s['seconds'] for s in steps)
    print(f"{'(imports)':<12}{'':>13}{inproc['imports']:>14.1f}")
    print(f"{'total':<12}{nb_total:>13.1f}{inproc_total:>14.1f}{nb_total / inproc_total:>8.2f}")
    print(f"\nmlops run wall time {nb_total:.1f} s (steps {step_sum:.1f} s, CLI start-up and parent-run bookkeeping {nb_total - step_sum:.1f} s); "
          f"in-process {inproc_total:.1f} s including {inproc['imports']:.1f} s of imports. Notebook/kernel overhead: x{nb_total / inproc_total:.2f}.")


if __name__ == '__main__':
    main()
