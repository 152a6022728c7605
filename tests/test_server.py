"""`mlops server` for a team: mlflow server on a real PostgreSQL cluster (Debian's server binaries) with artifacts in an
S3 bucket served by moto's S3 server, which stands in for S3 here. Every process is real; each fixture binds free
127.0.0.1 ports and stops what it started even when a test fails."""
import os, shutil, signal, subprocess, tempfile, threading, time, urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import pandas as pd
import pytest
from conftest import BIN, ROOT, mlops, mlops_env
from mlops_lib.procs import free_port

boto3 = pytest.importorskip('boto3', reason="the team extra is not installed (make scale-deps)")
pytest.importorskip('psycopg', reason="the team extra is not installed (make scale-deps)")
from mlops_lib import server

SMOKE = ROOT/'params/smoke.yaml'
BUCKET = 'mlops-team'
S3_ENV = dict(AWS_ACCESS_KEY_ID='stand-in', AWS_SECRET_ACCESS_KEY='stand-in', AWS_DEFAULT_REGION='us-east-1')


def _wait_http(url: str, proc: subprocess.Popen, timeout: float=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        assert proc.poll() is None, f"{proc.args} exited with {proc.returncode}"
        try: urllib.request.urlopen(url, timeout=3); return
        except urllib.error.HTTPError: return
        except OSError: time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def _stop(proc: subprocess.Popen):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try: proc.wait(60)
        except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL); proc.wait()


@pytest.fixture(scope='module')
def s3():
    "moto's S3 server (the stand-in for S3) on a free loopback port, with an empty bucket."
    port = free_port()
    proc = subprocess.Popen([str(BIN/'moto_server'), '-H', '127.0.0.1', '-p', str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f'http://127.0.0.1:{port}'
        _wait_http(url, proc)
        client = boto3.client('s3', endpoint_url=url, **{k.lower(): v for k, v in S3_ENV.items() if k != 'AWS_DEFAULT_REGION'}, region_name='us-east-1')
        client.create_bucket(Bucket=BUCKET)
        yield dict(url=url, client=client, env={**S3_ENV, 'MLFLOW_S3_ENDPOINT_URL': url})
    finally: _stop(proc)


def _data_dir() -> Path:
    "A data folder the postgres user can enter when we are root (pytest's tmp folders are private to root)."
    d = Path(tempfile.mkdtemp(prefix='mlops-srv-', dir='/tmp')); d.chmod(0o755)
    return d


def _start_server(data_dir: Path, outputs: Path, env: dict, *args) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([str(BIN/'mlops'), 'server', '--data-dir', str(data_dir), '--port', str(port), *args], cwd=ROOT, env=mlops_env(outputs, **env),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    said = []
    for line in proc.stdout:  # MLflow's migration log lines come first; the URI line once the server answers /health
        said.append(line)
        if f'MLflow tracking server on http://127.0.0.1:{port}' in line: break
    else: raise AssertionError(f"mlops server exited with {proc.wait()}: {''.join(said)[-3000:]}")
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep draining its output
    return proc, f'http://127.0.0.1:{port}'


@pytest.fixture(scope='module')
def team(s3, tmp_path_factory):
    "`mlops server` on a fresh PostgreSQL cluster with artifacts in s3://mlops-team/artifacts; stopped (and the cluster with it) at the end."
    d, outputs = _data_dir(), tmp_path_factory.mktemp('server-outputs')
    proc = None
    try:
        proc, url = _start_server(d, outputs, s3['env'], '--artifacts-destination', f's3://{BUCKET}/artifacts')
        yield dict(url=url, data_dir=d, proc=proc, s3=s3)
    finally:
        if proc is not None: _stop(proc)
        server.stop_cluster(d)
        shutil.rmtree(d, ignore_errors=True)


def _client(url):
    from mlflow import MlflowClient
    return MlflowClient(tracking_uri=url, registry_uri=url)


def test_server_runs_on_postgres(team):
    pg = server.running_cluster(team['data_dir'])
    assert pg is not None and (pg.socket/f'.s.PGSQL.{pg.port}').exists()
    tables = pg.psql("SELECT count(*) FROM information_schema.tables WHERE table_name IN ('runs', 'registered_models', 'alembic_version')", db='mlflow')
    assert tables == '3', "MLflow's tables (and its migration version) are in PostgreSQL"


@pytest.fixture(scope='module')
def trained(team, tmp_path_factory):
    """Two smoke runs by `mlops run --tracking-uri` against the server, from one teammate's outputs folder (the second with --force: it
    would reuse every step of the first and register nothing)."""
    a = tmp_path_factory.mktemp('alice')
    runs = [mlops('run', '--params', SMOKE, '--quiet', '--run-name', f'team-{i}', '--tracking-uri', team['url'], *force, outputs=a) for i, force in ((1, ()), (2, ('--force',)))]
    return dict(outputs=a, stdout=[r.stdout for r in runs])


def test_run_gate_and_aliases_against_the_server(team, trained):
    c = _client(team['url'])
    vs = sorted(c.search_model_versions("name='smoke'"), key=lambda v: int(v.version))
    assert [v.version for v in vs[:2]] == ['1', '2']
    assert vs[0].tags['promotion.decision'] == 'promoted' and vs[1].tags.get('promotion.decision') in ('promoted', 'rejected')
    champ = c.get_model_version_by_alias('smoke', 'champion').version
    assert champ == ('2' if vs[1].tags['promotion.decision'] == 'promoted' else '1')


def test_reports_reach_the_artifact_store(team, trained, tmp_path):
    "A teammate elsewhere (another outputs folder, no access to alice's disk) lists the step notebooks and reports through the server."
    import mlflow
    c = _client(team['url'])
    exp = c.get_experiment_by_name('smoke')
    assert exp.artifact_location.startswith('mlflow-artifacts:'), "artifacts are proxied by the server"
    parent = c.search_runs([exp.experiment_id], "tags.`mlops.kind` = 'pipeline' and attributes.run_name = 'team-1'")[0]
    children = c.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    names = {r.info.run_name: r.info.run_id for r in children}
    assert {'ingest', 'eda', 'tune', 'train'} <= set(names)
    for step, nb in [('ingest', '10_ingest'), ('eda', '20_eda'), ('tune', '30_tune'), ('train', '40_train')]:
        assert f'notebook/{nb}.ipynb' in [f.path for f in c.list_artifacts(names[step], 'notebook')], step
    assert 'eda.html' in [f.path for f in c.list_artifacts(names['eda'])]
    assert 'evaluation.html' in [f.path for f in c.list_artifacts(names['train'])]
    got = Path(mlflow.artifacts.download_artifacts(run_id=names['eda'], artifact_path='eda.html', dst_path=str(tmp_path), tracking_uri=team['url']))
    assert got.read_text().lstrip().lower().startswith('<!doctype html') or '<html' in got.read_text()[:2000].lower()
    keys = [o['Key'] for o in team['s3']['client'].list_objects_v2(Bucket=BUCKET, Prefix='artifacts/')['Contents']]
    assert any(k.endswith('/artifacts/notebook/20_eda.ipynb') for k in keys), "the files are in the S3 bucket"
    assert any(k.endswith('/artifacts/eda.html') for k in keys)


def test_status_predict_monitor_from_another_folder(team, trained, tmp_path):
    b = tmp_path/'bob'
    s = mlops('status', '--params', SMOKE, '--tracking-uri', team['url'], outputs=b)
    assert 'champion: version' in s.stdout and team['url'] in s.stdout
    from mlops_lib.samples import make_drifted, make_sample
    df, _ = make_sample('car_purchase', rows=300, seed=5); df.to_csv(tmp_path/'batch.csv', index=False)
    p = mlops('predict', '--params', SMOKE, '--input', tmp_path/'batch.csv', '--output', tmp_path/'preds.csv', '--quiet', '--tracking-uri', team['url'], outputs=b)
    assert 'scored 300 of 300 rows' in p.stdout
    assert len(pd.read_csv(tmp_path/'preds.csv')) == 300
    dr, _ = make_drifted('car_purchase', rows=300, seed=5); dr.to_csv(tmp_path/'drifted.csv', index=False)
    m = mlops('monitor', '--params', SMOKE, '--current', tmp_path/'drifted.csv', '--tracking-uri', team['url'], '--out-dir', tmp_path/'mon', outputs=b)
    assert 'drift' in m.stdout.lower()
    c = _client(team['url'])
    exp = c.get_experiment_by_name('smoke')
    kinds = [r.data.tags.get('mlops.kind') for r in c.search_runs([exp.experiment_id], max_results=200)]
    assert 'predict' in kinds


def test_dashboard_loads_the_champion_from_the_server(team, trained, monkeypatch, tmp_path):
    from mlops_lib.app import Dashboard, dashboard_from_env
    monkeypatch.setenv('MLOPS_OUTPUTS', str(tmp_path)); monkeypatch.setenv('MLFLOW_TRACKING_URI', team['url'])
    dash = dashboard_from_env(str(SMOKE))
    assert isinstance(dash, Dashboard), getattr(dash, 'value', dash)
    champ = _client(team['url']).get_model_version_by_alias('smoke', 'champion').version
    assert dash.lm is not None and dash.lm.version == champ


def test_serve_against_the_server(team, trained, tmp_path):
    "`mlops serve --tracking-uri <server>` from a folder with no local store: it loads the champion through the server and scores like `mlops predict`."
    import json
    from servicekit import running_service
    from mlops_lib.samples import make_sample
    df, _ = make_sample('car_purchase', rows=20, seed=9)
    X = df.drop(columns=['Purchased'])
    champ = _client(team['url']).get_model_version_by_alias('smoke', 'champion').version
    with running_service(tmp_path/'carol', '--tracking-uri', team['url'], '--no-log', **team['s3']['env']) as (url, _):
        version = json.loads(urllib.request.urlopen(f'{url}/version', timeout=30).read())
        assert str(version.get('model_version')) == champ, version
        body = json.dumps({'dataframe_split': json.loads(X.to_json(orient='split', index=False))}).encode()
        req = urllib.request.Request(f'{url}/invocations', body, {'Content-Type': 'application/json'})
        served = json.loads(urllib.request.urlopen(req, timeout=60).read())['predictions']
    X.to_csv(tmp_path/'batch.csv', index=False)
    mlops('predict', '--params', SMOKE, '--input', tmp_path/'batch.csv', '--output', tmp_path/'preds.csv', '--quiet', '--tracking-uri', team['url'], outputs=tmp_path/'dave', env=team['s3']['env'])
    assert served == pd.read_csv(tmp_path/'preds.csv').prediction.tolist()
    assert not (tmp_path/'carol'/'mlflow'/'mlflow.db').exists(), "the service used the server, not an embedded store"


def test_four_parallel_pipelines_are_all_recorded(team, trained, tmp_path):
    "4 `mlops run` at once against the PostgreSQL-backed server: every run is recorded and the champion alias points at a promoted version (test_reliability checks the gate's compare-and-set on a server)."
    c = _client(team['url'])
    before = len(c.search_model_versions("name='smoke'"))
    procs = [subprocess.Popen([str(BIN/'mlops'), 'run', '--params', str(SMOKE), '--quiet', '--run-name', f'par-{i}', '--tracking-uri', team['url']], cwd=ROOT,
                              env=mlops_env(tmp_path/f'o{i}'), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(4)]
    try: outs = [p.communicate(timeout=1800)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None: p.kill()
    assert [p.returncode for p in procs] == [0] * 4, '\n'.join(o[-2000:] for o in outs)
    exp = c.get_experiment_by_name('smoke')
    runs = c.search_runs([exp.experiment_id], "tags.`mlops.kind` = 'pipeline' and attributes.run_name LIKE 'par-%'")
    assert sorted(r.info.run_name for r in runs) == [f'par-{i}' for i in range(4)] and {r.info.status for r in runs} == {'FINISHED'}
    for r in runs:
        kids = c.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{r.info.run_id}'")
        assert {'ingest', 'eda', 'tune', 'train'} <= {k.info.run_name for k in kids}
    vs = c.search_model_versions("name='smoke'")
    assert len(vs) == before + 4, "every run registered its version"
    champ = c.get_model_version_by_alias('smoke', 'champion')
    assert champ.tags['promotion.decision'] == 'promoted'


def test_a_second_server_shares_and_a_restart_reuses_the_data(team, trained, s3, tmp_path):
    "Started at once on the same data folder, a second `mlops server` joins the running cluster; after both stop, a new start finds the runs."
    d = team['data_dir']
    port_before = server.running_cluster(d).port
    p2, url2 = _start_server(d, tmp_path, s3['env'], '--artifacts-destination', f's3://{BUCKET}/artifacts')
    try:
        assert server.running_cluster(d).port == port_before, "the second server joined the cluster"
        assert _client(url2).get_registered_model('smoke').name == 'smoke'
    finally: _stop(p2)
    assert server.running_cluster(d) is not None, "the first server still uses the cluster: the second must not stop it"
    assert _client(team['url']).get_registered_model('smoke')


def test_restart_reuses_the_data_and_concurrent_first_starts(tmp_path):
    "Two servers started at the same moment on a new folder: one initdb, one migration; a later start reuses the data (SQLite-free: PostgreSQL)."
    d = _data_dir()
    procs = []
    try:
        with ThreadPoolExecutor(2) as ex: procs = list(ex.map(lambda i: _start_server(d, tmp_path/f'o{i}', {}), range(2)))
        c = _client(procs[0][1])
        exp = c.create_experiment('shared')
        assert _client(procs[1][1]).get_experiment(exp).name == 'shared'
        for p, _ in procs: _stop(p)
        assert server.running_cluster(d) is None, "the last server out stopped PostgreSQL"
        p, url = _start_server(d, tmp_path/'o3', {}); procs = [(p, url)]
        assert _client(url).get_experiment_by_name('shared').experiment_id == exp
    finally:
        for p, _ in procs: _stop(p)
        server.stop_cluster(d); shutil.rmtree(d, ignore_errors=True)


def test_sqlite_backend_and_user_errors(tmp_path):
    p, url = _start_server(tmp_path/'sq', tmp_path, {}, '--backend', 'sqlite')
    try:
        c = _client(url); c.create_experiment('x')
        assert (tmp_path/'sq'/'mlflow.db').exists()
    finally: _stop(p)
    bad = mlops('server', '--backend-store-uri', 'postgresql://nobody@/nodb?host=/nonexistent', '--data-dir', tmp_path/'e', outputs=tmp_path, check=False, timeout=300)
    assert bad.returncode != 0 and 'Traceback' not in bad.stderr
