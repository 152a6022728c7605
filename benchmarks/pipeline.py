"""Pipeline benchmark: per-step wall time of `mlops run` (papermill kernels) vs the same work done in-process.

    .venv/bin/python benchmarks/pipeline.py [--params params/car_purchase.yaml] [--repeat 1]

The in-process baseline executes the step notebooks' own code cells (nbs/pipeline/*.ipynb, nothing retyped) in this
process, one fresh namespace per step, with the parameters `mlops run` injects and the same parent and child runs, so
it does the same library calls and the same tracking work (runs, metrics, artifacts, model logging and registration).
Both runs use fresh temporary outputs folders (fresh embedded MLflow stores). The ratio is the notebook and kernel
overhead of the papermill pipeline; with --repeat N the figures are medians of N alternating runs.
"""
import argparse, contextlib, io, json, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def notebook_run(params: str, outputs: Path, fresh: bool=False) -> tuple[float, dict]:
    "Wall time of `mlops run` in a fresh process and its per-step seconds (from summary.json); `fresh`: a new kernel per step (the old way)."
    t0 = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent/'mlops'), 'run', '--params', params, '--quiet', '--run-name', 'bench'], cwd=ROOT, check=True,
                   env={**os.environ, 'MLOPS_OUTPUTS': str(outputs), **({'MLOPS_STEP_KERNEL': 'fresh'} if fresh else {})}, capture_output=True)
    total = time.perf_counter() - t0
    return total, {s['step']: s['seconds'] for s in json.loads((outputs/'runs'/'bench'/'summary.json').read_text())['steps']}


def step_code(nb_path: Path) -> str:
    "The code cells of a step notebook except its `parameters` cell."
    import nbformat
    nb = nbformat.read(nb_path, as_version=4)
    return '\n'.join(c.source for c in nb.cells if c.cell_type == 'code' and 'parameters' not in c.metadata.get('tags', []))


def in_process_run(params: str, outputs: Path) -> dict:
    "The step notebooks' code run in a fresh subprocess (so imports are paid once, as a user's Python session would); seconds per step."
    code = f"""
import json, os, sys, time
sys.path.insert(0, {str(ROOT/'benchmarks')!r})
from pipeline import _in_process
print(json.dumps(_in_process({params!r}, {str(outputs)!r})))
"""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env={**os.environ, 'MLOPS_OUTPUTS': str(outputs)}, capture_output=True, text=True)
    if p.returncode: raise SystemExit(f'in-process run failed:\n{p.stderr[-3000:]}')
    return {**json.loads(p.stdout.strip().splitlines()[-1]), 'total': time.perf_counter() - t0}


def _in_process(params: str, outputs: str) -> dict:
    t, t0 = {}, time.perf_counter()
    import mlflow
    from mlflow import MlflowClient
    from mlops_lib.params import load_params, tracking_uri
    from mlops_lib.pipeline import DEFAULT_STEPS, STEPS
    from mlops_lib.tracking import setup_tracking
    t['imports'] = time.perf_counter() - t0
    params_file = str((ROOT/params).resolve())
    P = load_params(params_file)
    uri = tracking_uri(P)
    exp = setup_tracking(uri, P.name)
    run_dir = Path(outputs)/'runs'/'inproc'; (run_dir/'steps').mkdir(parents=True)
    client = MlflowClient()
    pid = client.create_run(exp, run_name='inproc', tags={'mlops.kind': 'pipeline'}).info.run_id
    for step in DEFAULT_STEPS:
        t0 = time.perf_counter()
        child = client.create_run(exp, run_name=step, tags={'mlflow.parentRunId': pid, 'mlops.step': step}).info.run_id
        ns = dict(params_file=params_file, run_dir=str(run_dir), parent_run_id=pid, step_run_id=child, tracking_uri=uri, __name__='__main__')
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(step_code(ROOT/'nbs'/'pipeline'/f'{STEPS[step]}.ipynb'), STEPS[step], 'exec'), ns)
        while mlflow.active_run(): mlflow.end_run()
        t[STEPS[step]] = time.perf_counter() - t0
    client.set_terminated(pid, 'FINISHED')
    return t


def measure(params: str, repeat: int=1) -> dict:
    "Median figures of `repeat` alternating runs: {'papermill': {...}, 'fresh': {...} (a new kernel per step), 'inproc': {...}}."
    nb, fr, ip = [], [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2, tempfile.TemporaryDirectory() as d3:
            ip.append(in_process_run(params, Path(d2)))
            total, steps = notebook_run(params, Path(d1)); nb.append({**steps, 'total': total})
            total, steps = notebook_run(params, Path(d3), fresh=True); fr.append({**steps, 'total': total})
    med = lambda runs: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    return dict(papermill=med(nb), fresh=med(fr), inproc=med(ip))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--params', default='params/car_purchase.yaml')
    ap.add_argument('--repeat', type=int, default=1)
    a = ap.parse_args()
    m = measure(a.params, a.repeat)
    nb, fr, ip = m['papermill'], m['fresh'], m['inproc']
    print(f"\npipeline benchmark: {a.params} on {os.cpu_count()} cores (median of {a.repeat})\n")
    print(f"{'step':<12}{'warm kernel s':>14}{'new kernel s':>14}{'in-process s':>14}{'warm/inproc':>13}{'new/inproc':>12}")
    steps = [k for k in nb if k != 'total']
    for s in steps + ['total']:
        print(f"{s:<12}{nb[s]:>14.1f}{fr[s]:>14.1f}{ip.get(s, float('nan')):>14.1f}{nb[s] / ip.get(s, float('nan')):>13.2f}{fr[s] / ip.get(s, float('nan')):>12.2f}")
    print(f"{'(imports)':<12}{'':>28}{ip['imports']:>14.1f}")
    print(f"\nmlops run wall time {nb['total']:.1f} s with one warm kernel reused across steps, {fr['total']:.1f} s with a new kernel per step; "
          f"in-process (fresh Python, imports included) {ip['total']:.1f} s. Overhead: x{nb['total'] / ip['total']:.2f} (new kernel per step: x{fr['total'] / ip['total']:.2f}).")


if __name__ == '__main__':
    main()
