"""Dashboard latency: Voila start to the first interactive form and click-to-result (measured in headless chromium), and the
in-process cost of the app's predict path against a raw `model.predict` on the same single row.

Usage: .venv/bin/python benchmarks/dashboard.py [--params params/smoke.yaml] [--outputs DIR] [--clicks 20]
The model comes from DIR's store (default: $MLOPS_OUTPUTS, else /tmp/mlops_bench_dashboard); when it has no champion yet,
`mlops run --params ... --quiet` trains one first (about a minute, not counted). Needs /usr/bin/chromium (`make browser`)."""
import argparse, os, signal, statistics, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking',
                 '--disable-component-update', '--no-first-run', '--disable-sync']


def ensure_model(params: str, outputs: Path) -> None:
    "Train the params' model into `outputs` unless it has a champion already."
    env = {**os.environ, 'MLOPS_OUTPUTS': str(outputs)}; env.pop('MLFLOW_TRACKING_URI', None)
    outputs.mkdir(parents=True, exist_ok=True)
    probe = ("import sys; from mlops_lib.params import load_params, tracking_uri; from mlops_lib.tracking import load_model, setup_tracking, NoModelError\n"
             f"P = load_params({params!r}); setup_tracking(tracking_uri(P))\ntry: load_model(P.name)\nexcept NoModelError: sys.exit(3)")
    r = subprocess.run([sys.executable, '-c', probe], cwd=ROOT, env=env, capture_output=True, text=True)
    if r.returncode not in (0, 3): raise SystemExit(f'the model probe failed:\n{r.stderr[-2000:]}')
    if r.returncode == 3:
        print(f'training {params} into {outputs} (not timed) ...', flush=True)
        subprocess.run([str(BIN/'mlops'), 'run', '--params', params, '--quiet'], cwd=ROOT, env=env, check=True, capture_output=True)


def browser_figures(params: str, outputs: Path, clicks: int, pool: int|None=None, visitors: int=3, settle: float=15) -> dict:
    """Start `mlops dashboard` (`pool` preheated kernels; 0: a kernel started per page, the old way), open it in chromium, time the form's
    arrival for the first visitor, `clicks` Predict round trips, then `visitors` more visitors `settle` s apart (each a new page)."""
    from playwright.sync_api import sync_playwright
    from mlops_lib.procs import free_port
    env = {**os.environ, 'MLOPS_OUTPUTS': str(outputs)}; env.pop('MLFLOW_TRACKING_URI', None)
    if pool is not None: env['MLOPS_DASHBOARD_POOL'] = str(pool)
    port, log = free_port(), outputs/'bench_voila.log'
    t0 = time.perf_counter()
    with open(log, 'w') as f:
        proc = subprocess.Popen([str(BIN/'mlops'), 'dashboard', '--params', params, '--port', str(port)], cwd=ROOT, env=env,
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while f'http://127.0.0.1:{port}/' not in log.read_text():
            if proc.poll() is not None or time.perf_counter() - t0 > 120: raise SystemExit(f'dashboard did not start:\n{log.read_text()[-2000:]}')
            time.sleep(0.05)
        t_listen = time.perf_counter()
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path='/usr/bin/chromium', headless=True, args=CHROMIUM_ARGS)
            page = b.new_page()
            t_req = time.perf_counter()
            page.goto(f'http://127.0.0.1:{port}/', timeout=180_000)
            page.wait_for_selector('.mlops-predict', timeout=180_000)
            t_form = time.perf_counter()
            page.click('.mlops-predict'); page.wait_for_selector('.mlops-result [data-seq="1"]')   # warm-up
            lat = []
            for i in range(2, clicks + 2):
                s = time.perf_counter()
                page.click('.mlops-predict')
                page.wait_for_selector(f'.mlops-result [data-seq="{i}"]', timeout=30_000)
                lat.append(time.perf_counter() - s)
            page.close()
            later = []
            for _ in range(visitors):   # a visitor of a running dashboard: page request -> interactive form
                time.sleep(settle)
                page = b.new_page()
                s = time.perf_counter()
                page.goto(f'http://127.0.0.1:{port}/', timeout=180_000)
                page.wait_for_selector('.mlops-predict', timeout=180_000)
                later.append(time.perf_counter() - s)
                page.close()
            b.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try: proc.wait(15)
        except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL)
    return dict(listen=t_listen - t0, page=t_form - t_req, total=t_form - t0, click=statistics.median(lat), click_max=max(lat),
                second=statistics.median(later), second_max=max(later))


def in_process_figures(params: str, outputs: Path, reps: int=200) -> dict:
    "Median seconds of predict_one, of the whole Predict click (form check, figures, partial dependence) and of raw model.predict."
    os.environ['MLOPS_OUTPUTS'] = str(outputs); os.environ.pop('MLFLOW_TRACKING_URI', None)
    fresh = lambda mods: float(subprocess.run([sys.executable, '-c', f'import time; t = time.perf_counter(); import {mods}; print(time.perf_counter() - t)'],
                                              cwd=ROOT, capture_output=True, text=True, check=True).stdout)
    t_cli, t_import = fresh('mlops_lib.app'), fresh('mlops_lib.app, mlops_lib.tracking, sklearn.pipeline')
    from mlops_lib.app import Dashboard, form_row, predict_one
    from mlops_lib.params import load_params, tracking_uri
    from mlops_lib.tracking import load_model, setup_tracking
    P = load_params(params); setup_tracking(tracking_uri(P))
    t = time.perf_counter(); lm = load_model(P.name); t_load = time.perf_counter() - t
    d = Dashboard(lm, P, params)
    values = d.predict.form.values()
    X = form_row(values, lm.schema)
    raw = (lambda: lm.model.predict_proba(X)) if lm.schema.task == 'classification' else (lambda: lm.model.predict(X))
    def med(fn):
        fn(); ts = []
        for _ in range(reps): s = time.perf_counter(); fn(); ts.append(time.perf_counter() - s)
        return statistics.median(ts)
    return dict(cli=t_cli, imports=t_import, load=t_load, raw=med(raw), app=med(lambda: predict_one(lm, values)), click=med(d.predict.predict))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--params', default='params/smoke.yaml')
    ap.add_argument('--outputs', default=os.environ.get('MLOPS_OUTPUTS') or '/tmp/mlops_bench_dashboard')
    ap.add_argument('--clicks', type=int, default=20)
    ap.add_argument('--visitors', type=int, default=3)
    a = ap.parse_args(argv)
    outputs = Path(a.outputs).resolve(); outputs.mkdir(parents=True, exist_ok=True)
    ensure_model(a.params, outputs)
    old = browser_figures(a.params, outputs, a.clicks, pool=0, visitors=a.visitors)   # a kernel started per page view (the old way)
    b = browser_figures(a.params, outputs, a.clicks, visitors=a.visitors)               # preheated kernels (voila/voila.py)
    m = in_process_figures(a.params, outputs)
    rows = [(f'second visitor: page request -> interactive form, median of {a.visitors} (max), preheated', f"{b['second']:.2f} s ({b['second_max']:.2f} s)"),
            (f'second visitor, a kernel started per page (MLOPS_DASHBOARD_POOL=0)', f"{old['second']:.2f} s ({old['second_max']:.2f} s)"),
            ('ratio second visitor preheated / kernel per page', f"{b['second'] / old['second']:.2f}x"),
            ('Voila start -> first interactive form, kernel per page', f"{old['total']:.2f} s"),
            ('ratio start -> first form preheated / kernel per page', f"{b['total'] / old['total']:.2f}x"),('Voila start -> URL printed (server listening)', f"{b['listen']:.2f} s"),
            ('page request -> first interactive form (chromium)', f"{b['page']:.2f} s"),
            ('Voila start -> first interactive form', f"{b['total']:.2f} s"),
            (f'click Predict -> result shown, median of {a.clicks} (max)', f"{b['click']*1e3:.0f} ms ({b['click_max']*1e3:.0f} ms)"),
            ('fresh process: import mlops_lib.app (what `mlops dashboard` pays)', f"{m['cli']:.2f} s"),
            ('fresh process: import app + tracking + sklearn (what the kernel pays)', f"{m['imports']:.2f} s"),
            ('in-process: load_model (registry -> sklearn pipeline)', f"{m['load']:.2f} s"),
            ('in-process: raw model.predict[_proba], one row', f"{m['raw']*1e3:.2f} ms"),
            ('in-process: app predict_one (check + row + predict)', f"{m['app']*1e3:.2f} ms"),
            ('ratio app predict_one / raw predict', f"{m['app']/m['raw']:.2f}x"),
            ('in-process: whole Predict click (+ figures, partial dependence)', f"{m['click']*1e3:.2f} ms")]
    w = max(len(k) for k, _ in rows)
    print(f"dashboard benchmark ({a.params}, {outputs})")
    for k, v in rows: print(f'  {k:<{w}}  {v:>16}')


if __name__ == '__main__':
    main()
