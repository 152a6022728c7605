"Concurrency: parallel runs on a fresh store, a serialised promotion gate, stale runs marked KILLED, concurrent SQLite writers."
import contextlib, json, os, signal, subprocess, sys, threading, time
from pathlib import Path
import numpy as np, pandas as pd, pytest, yaml
from conftest import BIN, ROOT, mlops, mlops_env, store_uri

# Same data and seed (so the same test rows), different model families: the scores differ and are comparable.
VARIANTS = [
    {'linear': {'strategy': 'grid', 'space': {'C': [0.0001]}}},
    {'linear': {'strategy': 'grid', 'space': {'C': [1.0]}}},
    {'random_forest': {'strategy': 'grid', 'space': {'n_estimators': [20], 'max_depth': [2]}}},
    {'hist_gradient_boosting': {'strategy': 'grid', 'space': {'max_iter': [20], 'max_leaf_nodes': [7]}}},
]
FAST_STEPS = 'ingest,tune,train'


def fast_params(folder: Path, stem: str, families: dict, **extra) -> Path:
    "A copy of params/smoke.yaml with a small search over `families` (2 folds), written to `folder/stem.yaml`."
    d = yaml.safe_load((ROOT/'params'/'smoke.yaml').read_text())
    d['models'] = {'cv_folds': 2, 'n_jobs': 1, 'families': families}
    d.update(extra)
    p = folder/f'{stem}.yaml'; p.write_text(yaml.safe_dump(d)); return p


def injected(nb: Path) -> str:
    "The source of the papermill `injected-parameters` cell of an executed notebook."
    cells = json.loads(nb.read_text())['cells']
    return next(''.join(c['source']) for c in cells if 'injected-parameters' in c.get('metadata', {}).get('tags', []))


def test_four_parallel_runs_on_a_fresh_store(tmp_path):
    out = tmp_path/'out'
    files = [fast_params(tmp_path, f'v{i}', fam) for i, fam in enumerate(VARIANTS)]
    procs = [subprocess.Popen([str(BIN/'mlops'), 'run', '--params', str(f), '--quiet', '--steps', FAST_STEPS], cwd=ROOT, env=mlops_env(out),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for f in files]
    res = [p.communicate(timeout=1200) for p in procs]
    for p, (o, e) in zip(procs, res):
        assert p.returncode == 0, f"exit {p.returncode}\n{o[-2000:]}\n{e[-3000:]}"
        assert 'database is locked' not in o + e and 'Traceback' not in e
    dirs = sorted((out/'runs').iterdir())
    assert len(dirs) == 4, dirs
    summaries = [json.loads((d/'summary.json').read_text()) for d in dirs]
    assert len({s['parent_run_id'] for s in summaries}) == 4
    step_ids = [st['run_id'] for s in summaries for st in s['steps']]
    assert len(set(step_ids)) == len(step_ids) == 12
    from mlflow import MlflowClient
    c = MlflowClient(store_uri(out), store_uri(out))
    for d, s in zip(dirs, summaries):
        assert s['run_name'] == d.name
        for st in s['steps']:
            src = injected(d/f"{st['step']}.ipynb")
            rec = json.loads((d/'steps'/f"{st['step'].split('_', 1)[1]}.json").read_text())
            if st.get('cached_from'):
                # the same step with the same inputs finished first in a parallel run: this run links its notebook and
                # record (the step cache), and its own step run points at it
                assert st['cached_from'] in src and rec['run_id'] == st['cached_from'], (d, st['step'])
                assert c.get_run(st['run_id']).data.tags['cached_from'] == st['cached_from']
                continue
            assert s['parent_run_id'] in src and st['run_id'] in src and str(d) in src, (d, st['step'])
            assert rec['run_id'] == st['run_id']
    vs = c.search_model_versions("name='smoke'")
    assert len(vs) == 4
    parents = {s['parent_run_id'] for s in summaries}
    score = {}
    for v in vs:
        run = c.get_run(v.run_id)
        assert run.data.tags['mlflow.parentRunId'] in parents
        assert v.tags['promotion.decision'] in ('promoted', 'rejected')
        assert len(c.get_metric_history(v.run_id, 'promoted')) == 1   # one decision per version
        score[str(v.version)] = run.data.metrics['test_roc_auc']
    assert len({c.get_run(v.run_id).data.tags['mlflow.parentRunId'] for v in vs}) == 4
    passing = {k: s for k, s in score.items() if s >= 0.6}
    champ = str(c.get_model_version_by_alias('smoke', 'champion').version)
    assert score[champ] == max(passing.values()), (champ, score)
    assert c.get_model_version('smoke', champ).tags['promotion.decision'] == 'promoted'


# ---- the promotion gate under a race -------------------------------------------------------------------------------

def _candidates(uri: str):
    "Register a weak champion (v1), a better (v2) and a worse (v3) candidate of model 'race'; return (X, y, params, run ids)."
    import mlflow
    from mlops_lib.params import params_from_dict
    from mlops_lib.models import build_pipeline
    from mlops_lib.schema import infer_schema
    from mlops_lib.tracking import log_model, record_decision, promotion_gate, setup_tracking
    from mlops_lib.evaluate import score_model
    setup_tracking(uri, 'race')
    rng = np.random.default_rng(3)
    df = pd.DataFrame({'a': rng.normal(size=300), 'b': rng.normal(size=300)}); df['y'] = (df.a + 0.5 * df.b + rng.normal(0, .5, 300) > 0).astype(int)
    S, X, y = infer_schema(df, 'y', 'classification'), df[['a', 'b']], df.y
    P = params_from_dict(dict(name='race', task='classification', data={'sample': 'car_purchase'}, target='y'))
    out = []
    for labels in [(df.b > 0).astype(int), y, (df.a > 0).astype(int)]:   # weak, better, worse (b only, both, a only)
        m = build_pipeline('linear', S, 0).fit(X, labels)
        with mlflow.start_run() as run: v = str(log_model(m, X, S, 'race').registered_model_version)
        out.append((v, score_model(m, X, y, 'classification'), run.info.run_id))
    (v1, s1, r1), better, worse = out
    assert s1['roc_auc'] < worse[1]['roc_auc'] < better[1]['roc_auc']
    record_decision(mlflow.MlflowClient(), 'race', v1, promotion_gate(s1, P), r1)
    return X, y, P, better, worse


def _race(monkeypatch, uri, X, y, P, better, worse, settle=0.5):
    "The worse candidate reads the champion first and scores it slowly; the better one starts later and finishes first."
    from mlops_lib import tracking
    real = tracking._version_score
    def slow(name, version, *a):
        if threading.current_thread().name == 'worse': time.sleep(3)
        return real(name, version, *a)
    monkeypatch.setattr(tracking, '_version_score', slow)
    got, errors = {}, []
    def gate(which, cand):
        try: got[which] = tracking.gate_and_promote('race', cand[0], cand[1], P, cand[2], X, y, uri=uri, settle=settle)
        except Exception as ex: errors.append(ex)
    tw = threading.Thread(target=gate, args=('worse', worse), name='worse'); tw.start(); time.sleep(0.5)
    tb = threading.Thread(target=gate, args=('better', better), name='better'); tb.start()
    tw.join(900); tb.join(900)
    assert not errors, errors
    assert set(got) == {'worse', 'better'}, got
    from mlflow import MlflowClient
    return str(MlflowClient(uri, uri).get_model_version_by_alias('race', 'champion').version), got


def test_gate_is_serialised_on_the_embedded_store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    X, y, P, better, worse = _candidates(uri)
    champ, got = _race(monkeypatch, uri, X, y, P, better, worse)
    assert champ == better[0], got
    assert got['better'].promote and got['better'].champion_version in ('1', worse[0])
    # without the lock the same race lets the worse candidate win: the test can fail
    from mlops_lib import tracking
    from mlflow import MlflowClient
    MlflowClient(uri, uri).set_registered_model_alias('race', 'champion', '1')
    monkeypatch.setattr(tracking, 'file_lock', lambda *a, **k: contextlib.nullcontext())
    champ, got = _race(monkeypatch, uri, X, y, P, better, worse)
    assert champ == worse[0]


@pytest.fixture
def mlflow_server(tmp_path):
    "A real `mlflow server` on a free loopback port with a SQLite backend; stopped at the end."
    import requests
    from mlops_lib.procs import free_port
    port = free_port()
    p = subprocess.Popen([sys.executable, '-m', 'mlflow', 'server', '--backend-store-uri', f'sqlite:///{tmp_path}/srv.db', '--artifacts-destination', str(tmp_path/'art'),
                          '--serve-artifacts', '--host', '127.0.0.1', '--port', str(port), '--workers', '1'], cwd=tmp_path, env=mlops_env(tmp_path/'o'),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f'http://127.0.0.1:{port}'
    try:
        t0 = time.time()
        while time.time() - t0 < 600:   # a loaded machine can take minutes to import mlflow in the server's processes
            with contextlib.suppress(Exception):
                if requests.get(f'{url}/health', timeout=2).status_code == 200: break
            assert p.poll() is None, 'mlflow server exited'
            time.sleep(0.5)
        else: raise RuntimeError('mlflow server did not start in 600 s')
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError): os.killpg(p.pid, signal.SIGTERM)
        try: p.wait(20)
        except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL); p.wait()


def test_gate_compare_and_set_with_a_server(mlflow_server, tmp_path, monkeypatch):
    "Two machines (no shared file lock): the compare-and-set still leaves the better candidate champion."
    from mlops_lib import tracking
    monkeypatch.setenv('MLOPS_OUTPUTS', str(tmp_path/'o'))
    X, y, P, better, worse = _candidates(mlflow_server)
    monkeypatch.setattr(tracking, 'file_lock', lambda *a, **k: contextlib.nullcontext())   # other machines share no lock file
    champ, got = _race(monkeypatch, mlflow_server, X, y, P, better, worse)
    assert champ == better[0], got
    assert not got['worse'].promote and got['worse'].champion_version == better[0], got['worse']


# ---- stale runs -----------------------------------------------------------------------------------------------------

def kernels_of(pid: int) -> list[int]:
    "The live processes started with JPY_PARENT_PID=pid (the kernels jupyter_client launched for that process)."
    found = []
    for d in Path('/proc').iterdir():
        if not d.name.isdigit(): continue
        try:
            if f'JPY_PARENT_PID={pid}'.encode() in (d/'environ').read_bytes().split(b'\0') and (d/'stat').read_text().rsplit(')', 1)[1].split()[0] != 'Z':
                found.append(int(d.name))
        except OSError: pass
    return found


def test_sigkill_leaves_runs_that_status_marks_killed(tmp_path):
    out = tmp_path/'out'
    f = fast_params(tmp_path, 'k', VARIANTS[1])
    p = subprocess.Popen([str(BIN/'mlops'), 'run', '--params', str(f), '--quiet', '--steps', FAST_STEPS, '--run-name', 'k'], cwd=ROOT, env=mlops_env(out),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        t0 = time.time()
        while not list((out/'runs'/'k').glob('10_ingest.ipynb')) and time.time() - t0 < 300: time.sleep(0.2)
        time.sleep(2)
    finally:
        os.killpg(p.pid, signal.SIGKILL); p.wait()
    # the step kernel runs in a session of its own (jupyter_client) and exits within about a second of its parent (ipykernel's
    # parent poller); until then it may still finish its step run. Look at the runs once nothing of the pipeline runs.
    t0 = time.time()
    while kernels_of(p.pid) and time.time() - t0 < 60: time.sleep(0.2)
    assert not kernels_of(p.pid), 'the step kernel outlived the killed mlops run by a minute'
    from mlflow import MlflowClient
    c = MlflowClient(store_uri(out))
    eid = c.get_experiment_by_name('smoke').experiment_id
    running = c.search_runs([eid], "attributes.status = 'RUNNING'")
    assert running and all(r.data.tags.get('mlops.pid') == str(p.pid) for r in running if 'mlops.pid' in r.data.tags)
    s = json.loads(mlops('status', '--params', f, '--json', outputs=out).stdout)
    assert sorted(s['marked_killed']) == sorted(r.info.run_id for r in running)
    for r in running:
        r = c.get_run(r.info.run_id)
        why = r.data.tags['mlops.killed_reason']
        assert r.info.status == 'KILLED' and ('is gone' in why or 'was killed' in why), why
    assert json.loads(mlops('status', '--params', f, '--json', outputs=out).stdout)['marked_killed'] == []
    # --run-name of an existing folder is an error, unless resumed
    r = mlops('run', '--params', f, '--quiet', '--run-name', 'k', outputs=out, check=False)
    assert r.returncode == 2 and 'the run folder' in r.stderr and '--resume k' in r.stderr, r.stderr


# ---- concurrent writers on SQLite ---------------------------------------------------------------------------------

WRITER = r'''
import sys, mlflow
from mlflow import MlflowClient
from mlops_lib.tracking import setup_tracking
uri, n = sys.argv[1], int(sys.argv[2])
eid = setup_tracking(uri, 'writers'); c = MlflowClient()
for i in range(n):
    r = c.create_run(eid).info.run_id
    c.log_metric(r, 'm', i); c.set_tag(r, 't', str(i)); c.log_param(r, 'p', i); c.set_terminated(r)
print('ok')
'''


def test_four_concurrent_writers_on_a_fresh_sqlite_store(tmp_path):
    uri = f'sqlite:///{tmp_path}/new/mlflow.db'
    procs = [subprocess.Popen([sys.executable, '-c', WRITER, uri, '25'], env=mlops_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    res = [p.communicate(timeout=600) for p in procs]
    for p, (o, e) in zip(procs, res):
        assert p.returncode == 0 and o.strip() == 'ok', e[-3000:]
        assert 'database is locked' not in e
    from mlflow import MlflowClient
    c = MlflowClient(uri)
    assert len(c.search_runs([c.get_experiment_by_name('writers').experiment_id], max_results=1000)) == 100


def test_warm_step_kernel_creates_a_new_store_only_under_its_lock(tmp_path):
    "The kernel `mlops run` starts ahead opens the store while the run sets it up: it must wait for the store's lock, as the run does."
    import sqlite3
    from mlops_lib.pipeline import warm_code
    from mlops_lib.procs import file_lock
    db = tmp_path/'new'/'mlflow.db'
    uri = f'sqlite:///{db}'
    def tables():
        if not db.exists(): return set()
        with contextlib.closing(sqlite3.connect(db)) as con:
            return {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
    with file_lock(db.parent/'.store.lock'):  # the run's own process, creating the store
        p = subprocess.Popen([sys.executable, '-c', warm_code(uri, modules=())], env=mlops_env(tmp_path), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        time.sleep(8)   # the warm code's imports and store set-up take ~3 s here
        assert p.poll() is None and 'experiments' not in tables(), "the warm kernel created the store's tables without the lock"
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
    assert {'experiments', 'registered_models'} <= tables()
