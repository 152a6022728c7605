"""Issue 14's table in one run: every row as a ratio measured now, on this machine, next to its goal.

    .venv/bin/python benchmarks/summary.py [--rows 200000] [--predict-rows 300000] [--skip dashboard,pipeline,predict,transactions]

Rows (each ratio is of two figures measured in this run):
- dashboard: a second visitor's page request -> interactive form in headless chromium, preheated kernels vs a kernel started
  per page (MLOPS_DASHBOARD_POOL=0); `mlops dashboard` start -> first form, same two set-ups (benchmarks/dashboard.py);
- pipeline: `mlops run` on car_purchase vs the step notebooks' code in-process, with the warm reused kernel and with a new
  kernel per step (benchmarks/pipeline.py);
- predict: `mlops predict` vs raw model.predict on the same rows (benchmarks/predict.py, its own table is printed);
- ingest and tune: `mlops run` on ROWS x 200 transactions (generated into a temporary folder, a params copy pointing at
  it): the 10_ingest step vs a bare pandas.read_csv of the same file, the whole run vs the goal of 150 s, test PR-AUC.
`make test` is not timed here (it is the whole suite; see the README).
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT/'benchmarks'))


def dashboard_rows(outputs: Path) -> list:
    import dashboard as d
    d.ensure_model('params/smoke.yaml', outputs)
    old = d.browser_figures('params/smoke.yaml', outputs, clicks=2, pool=0, visitors=3)
    new = d.browser_figures('params/smoke.yaml', outputs, clicks=2, visitors=3)
    return [('dashboard: second visitor, page request -> interactive form (chromium)', new['second'], old['second'], 'kernel per page', '<= 1.5 s'),
            ('dashboard: `mlops dashboard` start -> first interactive form', new['total'], old['total'], 'kernel per page', '<= 6 s')]


def pipeline_rows(params: str='params/car_purchase.yaml') -> list:
    import pipeline as p
    m = p.measure(params)
    return [('`mlops run` car_purchase vs the same work in-process (warm kernel)', m['papermill']['total'], m['inproc']['total'], 'in-process', '<= x1.5'),
            ('  the same with a new kernel per step (the old way)', m['fresh']['total'], m['inproc']['total'], 'in-process', '(was x3.08)')]


def transactions_rows(rows: int, tmp: Path) -> list:
    import pandas as pd, yaml
    csv = tmp/'transactions.csv'
    subprocess.run([str(BIN/'mlops'), 'data', '--name', 'transactions', '--rows', str(rows), '--out', str(csv)], cwd=ROOT, check=True, capture_output=True)
    P = yaml.safe_load((ROOT/'params'/'transactions.yaml').read_text()); P['data']['path'] = str(csv)
    (tmp/'transactions.yaml').write_text(yaml.safe_dump(P))
    t = time.perf_counter(); pd.read_csv(csv); t_read = time.perf_counter() - t
    env = {**os.environ, 'MLOPS_OUTPUTS': str(tmp/'out')}; env.pop('MLFLOW_TRACKING_URI', None)
    t = time.perf_counter()
    subprocess.run([str(BIN/'mlops'), 'run', '--params', str(tmp/'transactions.yaml'), '--quiet', '--run-name', 'tx'], cwd=ROOT, env=env, check=True, capture_output=True)
    total = time.perf_counter() - t
    steps = {s['step']: s for s in json.loads((tmp/'out'/'runs'/'tx'/'summary.json').read_text())['steps']}
    prauc = json.loads((tmp/'out'/'runs'/'tx'/'steps'/'train.json').read_text()).get('test_pr_auc', float('nan'))
    return [(f'ingest of {rows:,} x 200 CSV (10_ingest step) vs bare pandas.read_csv', steps['10_ingest']['seconds'], t_read, 'read_csv', '<= 10 s'),
            (f'`mlops run` on {rows:,} x 200 transactions, end to end (tune {steps["30_tune"]["seconds"]:.0f} s, test PR-AUC {prauc:.3f})', total, 150.0, 'goal 150 s', 'PR-AUC >= 0.490')]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rows', type=int, default=200_000)
    ap.add_argument('--predict-rows', type=int, default=300_000)
    ap.add_argument('--skip', default='')
    a = ap.parse_args()
    skip, rows = set(filter(None, a.skip.split(','))), []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        if 'dashboard' not in skip: rows += dashboard_rows(d/'dash')
        if 'pipeline' not in skip: rows += pipeline_rows()
        if 'transactions' not in skip: (d/'tx').mkdir(); rows += transactions_rows(a.rows, d/'tx')
        if 'predict' not in skip:
            p = subprocess.run([sys.executable, str(ROOT/'benchmarks'/'predict.py'), '--rows', str(a.predict_rows)], cwd=ROOT, capture_output=True, text=True)
            predict_out = p.stdout[-3000:] if p.returncode == 0 else f'predict benchmark failed:\n{p.stderr[-2000:]}'
    w = max(len(r[0]) for r in rows) if rows else 10
    print(f"\nissue 14 summary on {os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f})\n")
    print(f"{'path':<{w}}  {'now':>9}  {'baseline':>9}  {'ratio':>7}  baseline is / goal")
    for name, now, base, what, goal in rows: print(f"{name:<{w}}  {now:>8.2f}s  {base:>8.2f}s  {now / base:>6.2f}x  {what} / {goal}")
    if 'predict' not in skip: print(f"\n`mlops predict` vs raw model.predict (benchmarks/predict.py --rows {a.predict_rows}):\n{predict_out}")


if __name__ == '__main__':
    main()
