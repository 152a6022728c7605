"""REST serving side by side, on car_purchase and on the 200-feature transactions model: raw in-process predict_proba of
one row, `mlflow models serve`, our service (`mlops serve`) and our service on ONNX Runtime (`--runtime onnx`).

    .venv/bin/python benchmarks/serve.py [--requests 300] [--seconds 5] [--soak 20000]

For each: one-row p50/p99 latency of sequential requests, throughput at concurrency 8 and 32 (servers with 2 workers),
start-up time to the first 200 on /ping, and memory (RSS of the server's process tree after the run). Everything runs in
a temporary outputs folder with its own MLflow store; the models are fitted directly with the library (a
hist-gradient-boosting pipeline, as the searches pick), because what is timed is the serving. With --soak N it also runs
the soak of tests/test_soak.py with N requests at concurrency 16 and prints its figures.
"""
import argparse, json, os, subprocess, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import numpy as np, pandas as pd
import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT/'tests'))


def train(outputs: Path, project: str, rows: int) -> Path:
    "Fit and register the project's model as champion in the tmp store; return a params file pointing at the tmp data."
    import mlflow
    from mlflow import MlflowClient
    from mlops_lib.models import build_pipeline
    from mlops_lib.samples import make_sample
    from mlops_lib.schema import infer_schema
    from mlops_lib.tracking import log_model, setup_tracking
    P = yaml.safe_load((ROOT/'params'/f'{project}.yaml').read_text())
    df, _ = make_sample(P['data']['sample'], rows=rows, seed=0)
    df = df.drop(columns=(P.get('features') or {}).get('drop', []))
    data = outputs/f'{project}.csv'; df.to_csv(data, index=False)
    P['data'] = {'path': str(data)}
    pf = outputs/f'{project}.yaml'; pf.write_text(yaml.safe_dump(P))
    setup_tracking(f"sqlite:///{outputs}/mlflow/mlflow.db", P['name'])
    S = infer_schema(df, P['target'], 'classification')
    model = build_pipeline('hist_gradient_boosting', S, 0, max_iter=100).fit(df[S.feature_names], df[P['target']])
    with mlflow.start_run(run_name=f'bench-{project}'):
        info = log_model(model, df[S.feature_names], S, P['name'])
    MlflowClient().set_registered_model_alias(P['name'], 'champion', info.registered_model_version)
    return pf


def tree_rss_mb(pid: int) -> float:
    "RSS of a process and its descendants in MB."
    out = subprocess.run(['ps', '-e', '-o', 'pid=,ppid=,rss='], capture_output=True, text=True).stdout.split()
    rows = [(int(a), int(b), int(c)) for a, b, c in zip(out[::3], out[1::3], out[2::3])]
    keep, grow = {pid}, True
    while grow:
        new = {p for p, pp, _ in rows if pp in keep} - keep
        grow, keep = bool(new), keep | new
    return sum(r for p, _, r in rows if p in keep) / 1024


def start(cmd, env, url, timeout=300):
    t0 = time.perf_counter()
    # stderr goes to a file: a pipe nobody reads fills up (64 KB of per-request log lines) and stalls the server
    p = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=tempfile.TemporaryFile(), start_new_session=True)
    from mlops_lib.procs import wait_until_ready
    wait_until_ready(url, timeout=timeout, proc=p)
    return p, time.perf_counter() - t0


def sequential(url, body, n):
    s, ms = requests.Session(), []
    for _ in range(20): s.post(f'{url}/invocations', data=body, headers={'Content-Type': 'application/json'})
    for _ in range(n):
        t = time.perf_counter(); r = s.post(f'{url}/invocations', data=body, headers={'Content-Type': 'application/json'}); ms.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, r.text[:300]
    return np.percentile(ms, 50), np.percentile(ms, 99)


def throughput(url, body, conc, seconds):
    stop, counts = time.perf_counter() + seconds, []
    def client():
        s, k = requests.Session(), 0
        while time.perf_counter() < stop:
            if s.post(f'{url}/invocations', data=body, headers={'Content-Type': 'application/json'}).status_code == 200: k += 1
        counts.append(k)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(conc) as ex: list(ex.map(lambda _: client(), range(conc)))
    return sum(counts) / (time.perf_counter() - t0)


def raw(lm, X1, n):
    for _ in range(20): lm.model.predict_proba(X1)
    ms = []
    for _ in range(n):
        t = time.perf_counter(); lm.model.predict_proba(X1); ms.append((time.perf_counter() - t) * 1000)
    return np.percentile(ms, 50), np.percentile(ms, 99)


def bench_project(outputs, project, rows, a):
    from mlops_lib.procs import free_port, stop_process
    from mlops_lib.serve import server_command
    from mlops_lib.tracking import load_model
    pf = train(outputs, project, rows)
    P = yaml.safe_load(pf.read_text())
    uri = f"sqlite:///{outputs}/mlflow/mlflow.db"
    env = {**{k: v for k, v in os.environ.items() if k != 'MLFLOW_TRACKING_URI'}, 'MLOPS_OUTPUTS': str(outputs)}
    t0 = time.perf_counter(); lm = load_model(P['name'], uri=uri); load_s = time.perf_counter() - t0
    df = pd.read_csv(P['data']['path'])
    X1 = df[lm.schema.feature_names].head(1)
    body = json.dumps({'dataframe_split': json.loads(X1.to_json(orient='split', index=False))})
    res = []
    p50, p99 = raw(lm, X1, a.requests)
    res.append(dict(project=project, server='raw predict_proba', p50_ms=p50, p99_ms=p99, rps_c8=np.nan, rps_c32=np.nan, startup_s=load_s, rss_mb=np.nan))
    onnx_note = ''
    ex = subprocess.run([str(BIN/'mlops'), 'export', '--format', 'onnx', '--params', str(pf), '--tracking-uri', uri], env=env, cwd=ROOT, capture_output=True, text=True)
    if ex.returncode: onnx_note = ex.stderr.strip().splitlines()[-1] if ex.stderr.strip() else 'export failed'
    variants = [('mlflow models serve', None), ('mlops serve', ['--runtime', 'sklearn']), *([('mlops serve --runtime onnx', ['--runtime', 'onnx'])] if not onnx_note else [])]
    for name, extra in variants:
        port = free_port(); url = f'http://127.0.0.1:{port}'
        if extra is None:
            cmd, menv, _ = server_command(pf, port=port, uri=uri); cmd += ['-w', '2']; menv = {**env, **{k: v for k, v in menv.items() if k == 'PATH'}, 'MLFLOW_TRACKING_URI': uri}
        else: cmd, menv = [str(BIN/'mlops'), 'serve', '--params', str(pf), '--tracking-uri', uri, '--port', str(port), '--workers', '2', '--no-log', *extra], env
        p, up = start(cmd, menv, url)
        try:
            p50, p99 = sequential(url, body, a.requests)
            c8, c32 = throughput(url, body, 8, a.seconds), throughput(url, body, 32, a.seconds)
            res.append(dict(project=project, server=name, p50_ms=p50, p99_ms=p99, rps_c8=c8, rps_c32=c32, startup_s=up, rss_mb=tree_rss_mb(p.pid)))
        finally: stop_process(p)
    return res, onnx_note


def formats(outputs, project):
    "Load time, one-row latency and memory of one model in each format: cloudpickle, skops, ONNX."
    import cloudpickle, skops.io as sio
    from mlops_lib.tracking import load_model
    from mlops_lib.service import to_onnx_bytes
    P = yaml.safe_load((outputs/f'{project}.yaml').read_text())
    lm = load_model(P['name'], uri=f"sqlite:///{outputs}/mlflow/mlflow.db")
    X1 = pd.read_csv(P['data']['path'])[lm.schema.feature_names].head(1)
    d = outputs/'formats'; d.mkdir(exist_ok=True)
    (d/'m.pkl').write_bytes(cloudpickle.dumps(lm.model)); sio.dump(lm.model, d/'m.skops')
    try: (d/'m.onnx').write_bytes(to_onnx_bytes(lm.model, lm.schema))
    except Exception: pass
    code = {'cloudpickle': "import cloudpickle; m = cloudpickle.loads(open('{d}/m.pkl','rb').read())",
            'skops': "import skops.io as sio; from mlops_lib.tracking import SKOPS_TRUSTED_TYPES; m = sio.load('{d}/m.skops', trusted=SKOPS_TRUSTED_TYPES)",
            'onnx': "from mlops_lib.service import OnnxPredictor; from mlops_lib.tracking import load_model; import mlops_lib.schema as S; m = OnnxPredictor(open('{d}/m.onnx','rb').read(), S.DataSchema.from_yaml('{d}/schema.yaml'), {classes})"}
    lm.schema.to_yaml(d/'schema.yaml')
    out = []
    for fmt, c in code.items():
        f = d/('m.onnx' if fmt == 'onnx' else 'm.pkl' if fmt == 'cloudpickle' else 'm.skops')
        if not f.exists(): continue
        X1.to_csv(d/'x1.csv', index=False)
        # memory from /proc/self/status: ru_maxrss would carry the benchmark's own high-water mark over exec
        prog = ("import time, re, pandas as pd, numpy as np\nkb = lambda k: int(re.search(k + r':\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
                "r0 = kb('VmRSS')\nt = time.perf_counter()\n" + c.format(d=d, classes=lm.classes) +
                f"\nload = time.perf_counter() - t\nX = pd.read_csv('{d}/x1.csv')\nfor _ in range(20): m.predict_proba(X)\nms = []\nfor _ in range(300):\n    t = time.perf_counter(); m.predict_proba(X); ms.append((time.perf_counter() - t) * 1000)\n"
                "print(load, np.percentile(ms, 50), (kb('VmRSS') - r0) / 1024, kb('VmHWM') / 1024)")
        r = subprocess.run([sys.executable, '-c', prog], capture_output=True, text=True, cwd=ROOT)
        if r.returncode: out.append(dict(project=project, format=fmt, note=r.stderr.strip().splitlines()[-1][:120])); continue
        load, p50, dmem, mem = map(float, r.stdout.split())
        out.append(dict(project=project, format=fmt, file_kb=f.stat().st_size / 1024, load_s=load, one_row_p50_ms=p50, load_mem_mb=dmem, peak_rss_mb=mem))
    return out


def soak_figures(outputs, n):
    from test_soak import soak
    from servicekit import rss_mb, running_service
    from mlops_lib.predlog import read_log
    out = outputs/'soak'
    with running_service(out, '--tracking-uri', f"sqlite:///{outputs}/mlflow/mlflow.db", params=str(outputs/'car_purchase.yaml')) as (url, proc):
        soak(url, 300, seed=1, prefix='warm'); rss0 = rss_mb(proc.pid)
        t0 = time.perf_counter(); codes, good, n_good = soak(url, n); secs = time.perf_counter() - t0
        rss1 = rss_mb(proc.pid)
        proc.send_signal(15); proc.wait(60)
    log = read_log(out/'serving'/'car_purchase')
    ids = set(log.request_id[log.request_id.str.startswith('soak-')])
    return dict(requests=n, concurrency=16, seconds=secs, rps=n / secs, status=codes, n_5xx=sum(v for k, v in codes.items() if k >= 500 or k == 0),
                rss_warm_mb=rss0, rss_after_mb=rss1, rss_ratio=rss1 / rss0, good=n_good, good_logged=len(ids & set(good)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--requests', type=int, default=300, help='sequential one-row requests per server')
    ap.add_argument('--seconds', type=float, default=5.0, help='seconds of each throughput run')
    ap.add_argument('--soak', type=int, default=0, help='also run the soak with this many requests (e.g. 20000)')
    ap.add_argument('--projects', default='car_purchase,transactions')
    a = ap.parse_args()
    rows = {'car_purchase': 1000, 'transactions': 20000}
    with tempfile.TemporaryDirectory() as d:
        outputs = Path(d); os.environ['MLOPS_OUTPUTS'] = str(outputs); os.environ.pop('MLFLOW_TRACKING_URI', None)
        res, notes, fmts = [], {}, []
        for project in a.projects.split(','):
            r, note = bench_project(outputs, project, rows[project], a)
            res += r; notes[project] = note
            fmts += formats(outputs, project)
        t = pd.DataFrame(res)
        for project, g in t.groupby('project', sort=False):
            raw50 = g.p50_ms.iloc[0]; ml = g[g.server == 'mlflow models serve']
            t.loc[g.index, 'p50_vs_raw'] = g.p50_ms / raw50
            t.loc[g.index, 'p50_minus_raw_ms'] = g.p50_ms - raw50
            if len(ml): t.loc[g.index, 'p50_vs_mlflow'] = g.p50_ms / ml.p50_ms.iloc[0]
            t.loc[g.index, 'c32_vs_2cores_over_raw'] = g.rps_c32 / (2000 / raw50)
        pd.set_option('display.width', 250); pd.set_option('display.max_columns', 30)
        print('\nOne-row latency (sequential), throughput (2 workers), start-up and memory:\n')
        print(t.to_markdown(index=False, floatfmt='.2f') if _has_tabulate() else t.round(2).to_string(index=False))
        for p, n in notes.items():
            if n: print(f"{p}: no ONNX: {n}")
        print('\nModel formats (one process each):\n')
        f = pd.DataFrame(fmts)
        print(f.to_markdown(index=False, floatfmt='.3g') if _has_tabulate() else f.round(3).to_string(index=False))
        if a.soak:
            s = soak_figures(outputs, a.soak)
            print(f"\nsoak: {s['requests']} requests at concurrency 16 in {s['seconds']:.0f} s ({s['rps']:.0f}/s), statuses {s['status']}, 5xx {s['n_5xx']}; "
                  f"RSS {s['rss_warm_mb']:.0f} MB after warm-up -> {s['rss_after_mb']:.0f} MB after ({s['rss_ratio']:.2f}x); good rows logged {s['good_logged']} of {s['good']}")


def _has_tabulate():
    try: import tabulate; return True
    except ImportError: return False


if __name__ == '__main__':
    main()
