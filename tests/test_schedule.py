"Scheduled operation: the cron/systemd command under a lock, and a Prefect deployment on a real local Prefect server."
import os, signal, subprocess, sys, time
from pathlib import Path
import pytest, requests, yaml
from mlflow import MlflowClient
from conftest import BIN, ROOT, mlops, mlops_env, store_uri
from mlops_lib.procs import free_port


LIGHT = dict(name='sched', task='classification', data=dict(sample='car_purchase', rows=300), target='Purchased', seed=3,
             models=dict(cv_folds=2, families=dict(linear=dict(strategy='grid', space=dict(C=[1.0])))), promotion=dict(thresholds=dict(roc_auc=0.6)))
PARAMS = None


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    "An outputs folder where a light project (one family, one candidate) was trained once, so scheduled runs reuse every step."
    global PARAMS
    out = tmp_path_factory.mktemp('sched-out')
    PARAMS = str(out/'sched.yaml')
    Path(PARAMS).write_text(yaml.safe_dump(LIGHT))
    mlops('run', '--params', PARAMS, '--quiet', '--run-name', 'first', outputs=out, timeout=1500)
    return out


def scheduled_pipeline_runs(out: Path):
    c = MlflowClient(store_uri(out))
    exp = c.get_experiment_by_name('sched')
    return c, [r for r in c.search_runs([exp.experiment_id], "tags.`mlops.kind` = 'pipeline'") if 'mlops.scheduled' in r.data.tags]


def test_printed_cron_command_run_twice_at_once_runs_once(trained):
    line = mlops('schedule', '--params', PARAMS, '--print', 'cron', outputs=trained).stdout.strip()
    assert line.startswith('0 3 * * 1 ') and '--once' in line and f'MLOPS_OUTPUTS={trained}' in line
    cmd = line.split(' ', 5)[5]   # the command after the five cron fields
    env = mlops_env(trained)
    procs = [subprocess.Popen(['bash', '-c', cmd], env=env, start_new_session=True) for _ in range(2)]
    try: codes = [p.wait(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None: os.killpg(p.pid, signal.SIGKILL)
    assert codes == [0, 0]
    log = (trained/'schedule'/'cron.log').read_text()
    assert log.count('skipped: a scheduled run of sched is still running') == 1, log
    c, runs = scheduled_pipeline_runs(trained)
    assert len(runs) == 1 and runs[0].info.status == 'FINISHED', log
    assert len(c.search_model_versions("name='sched'")) == 1, 'the unchanged scheduled run registered a version'
    s = mlops('schedule', '--params', PARAMS, '--print', 'systemd', outputs=trained).stdout
    assert '[Timer]' in s and 'OnCalendar=Mon *-*-* 03:00:00' in s and 'ExecStart=' in s and '--once' in s


def _stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try: proc.wait(timeout=30)
        except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL); proc.wait()


@pytest.fixture
def prefect_server(tmp_path):
    "`prefect server start` on a free loopback port with its own PREFECT_HOME and SQLite database, offline."
    pytest.importorskip('prefect')
    port = free_port()
    env = {**os.environ, 'PREFECT_HOME': str(tmp_path/'prefect'), 'PREFECT_SERVER_ANALYTICS_ENABLED': 'false', 'PREFECT_UI_ENABLED': 'false',
           'PREFECT_API_DATABASE_CONNECTION_URL': f"sqlite+aiosqlite:///{tmp_path/'prefect.db'}", 'PREFECT_API_URL': f'http://127.0.0.1:{port}/api',
           'DO_NOT_TRACK': '1', 'PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY': 'false'}
    env.pop('MLFLOW_TRACKING_URI', None)
    log = open(tmp_path/'server.log', 'w')
    proc = subprocess.Popen([str(BIN/'prefect'), 'server', 'start', '--host', '127.0.0.1', '--port', str(port)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 180
        while True:
            if proc.poll() is not None: raise RuntimeError(f"prefect server exited {proc.returncode}: {(tmp_path/'server.log').read_text()[-2000:]}")
            try:
                if requests.get(f'http://127.0.0.1:{port}/api/health', timeout=2).ok: break
            except requests.RequestException: pass
            if time.time() > deadline: raise RuntimeError('prefect server did not start in 180 s')
            time.sleep(1)
        yield dict(api=f'http://127.0.0.1:{port}/api', env=env)
    finally:
        _stop(proc); log.close()


def flow_runs(api: str) -> list[dict]:
    return requests.post(f'{api}/flow_runs/filter', json={}, timeout=10).json()


def test_prefect_deployment_runs_on_its_schedule(prefect_server, trained, tmp_path):
    incoming = tmp_path/'incoming'; incoming.mkdir()
    mlops('data', '--name', 'car_purchase', '--rows', '200', '--seed', '11', '--out', incoming/'batch1.csv', outputs=trained)
    env = {**mlops_env(trained), **{k: v for k, v in prefect_server['env'].items() if k.startswith(('PREFECT', 'DO_NOT'))}}
    log = open(tmp_path/'serve.log', 'w')
    serve = subprocess.Popen([str(BIN/'mlops'), 'schedule', '--params', PARAMS, '--cron', '* * * * *', '--monitor', str(incoming/'*.csv')],
                             cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, done = time.time() + 420, None
        while not done:
            if serve.poll() is not None: raise AssertionError(f"mlops schedule exited {serve.returncode}: {(tmp_path/'serve.log').read_text()[-3000:]}")
            for fr in flow_runs(prefect_server['api']):
                st = (fr.get('state') or {}).get('type')
                if st in ('FAILED', 'CRASHED'): raise AssertionError(f"flow run {st}: {fr['state'].get('message')}\n{(tmp_path/'serve.log').read_text()[-3000:]}")
                if st == 'COMPLETED': done = fr
            if time.time() > deadline: raise AssertionError(f"no completed flow run in 420 s: {(tmp_path/'serve.log').read_text()[-3000:]}")
            time.sleep(3)
    finally:
        _stop(serve); log.close()
    assert done['deployment_id']
    c = MlflowClient(store_uri(trained))
    exp = c.get_experiment_by_name('sched')
    tagged = c.search_runs([exp.experiment_id], f"tags.`prefect.flow_run_id` = '{done['id']}'")
    kinds = {r.data.tags.get('mlops.kind') for r in tagged}
    assert 'pipeline' in kinds and 'monitor' in kinds, kinds           # the pipeline and the monitoring run carry the flow-run id
    arts = requests.post(f"{prefect_server['api']}/artifacts/filter", json={'artifacts': {'flow_run_id': {'any_': [done['id']]}}}, timeout=10).json()
    pipeline = next(r for r in tagged if r.data.tags.get('mlops.kind') == 'pipeline')
    assert any(a['key'] == 'mlflow-runs' and pipeline.info.run_id in a['data'] for a in arts), arts   # the flow run links to the MLflow run
    assert (trained/'schedule'/'sched-batches.json').exists() and str(incoming/'batch1.csv') in (trained/'schedule'/'sched-batches.json').read_text()


def test_failed_step_fails_the_flow_run_with_its_one_line_error(prefect_server, trained, tmp_path):
    p = dict(LIGHT)
    p['data'] = {'path': str(tmp_path/'missing.csv')}
    (tmp_path/'p.yaml').write_text(yaml.safe_dump(p))
    env = {**mlops_env(trained), **{k: v for k, v in prefect_server['env'].items() if k.startswith(('PREFECT', 'DO_NOT'))}}
    r = subprocess.run([sys.executable, '-c', f"from mlops_lib.orchestrate import mlops_schedule; mlops_schedule({str(tmp_path/'p.yaml')!r})"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode != 0
    failed = [fr for fr in flow_runs(prefect_server['api']) if (fr.get('state') or {}).get('type') == 'FAILED']
    assert failed, r.stderr[-2000:]
    msg = failed[0]['state']['message']
    assert 'step 10_ingest failed' in msg and 'missing.csv' in msg, msg
