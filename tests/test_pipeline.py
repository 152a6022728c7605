"The papermill pipeline end to end against real MLflow stores: tracking, registry, promotion gate, failures."
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest, yaml
import mlflow
from mlflow import MlflowClient
from conftest import BIN, ROOT, mlops, mlops_env, store_uri
from mlops_lib.procs import free_port

STEP_NBS = ['10_ingest', '20_eda', '30_tune', '40_train']


def client_for(uri: str) -> MlflowClient:
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri)


def write_params(tmp_path: Path, **changes) -> Path:
    "A copy of params/smoke.yaml with top-level keys replaced."
    p = yaml.safe_load((ROOT/'params/smoke.yaml').read_text())
    p.update(changes)
    out = tmp_path/'params.yaml'
    out.write_text(yaml.safe_dump(p))
    return out


def pipeline_runs(c: MlflowClient, name: str):
    exp = c.get_experiment_by_name(name)
    return c.search_runs([exp.experiment_id], "tags.`mlops.kind` = 'pipeline'", order_by=['start_time ASC'])


def test_end_to_end_run_tracks_everything(smoke_model):
    rd = smoke_model['run_dir']
    for nb in STEP_NBS: assert (rd/f'{nb}.ipynb').exists(), nb
    for f in ['train.parquet', 'test.parquet', 'schema.yaml', 'eda.html', 'tune.json', 'evaluation.html', 'summary.json']: assert (rd/f).exists(), f
    summary = json.loads((rd/'summary.json').read_text())
    assert [s['step'] for s in summary['steps']] == STEP_NBS
    assert 'promoted' in summary['steps'][-1]['decision']
    assert 'step' in smoke_model['stdout'] and 'champion decision' in smoke_model['stdout']   # the console summary table
    eda = (rd/'eda.html').read_text()
    assert '<script src=' not in eda and 'cdn.plot.ly/plotly' not in eda.split('<body')[0]

    c = client_for(smoke_model['uri'])
    parent = pipeline_runs(c, 'smoke')[0]
    assert parent.info.status == 'FINISHED'
    assert parent.data.tags['mlops.git_commit'] and parent.data.params['promotion.metric'] == 'roc_auc'
    assert [a.path for a in c.list_artifacts(parent.info.run_id, 'params')] == ['params/smoke.yaml']
    logged = Path(c.download_artifacts(parent.info.run_id, 'params/smoke.yaml', str(smoke_model['outputs']/'dl-params')))
    assert logged.read_text() == (ROOT/'params/smoke.yaml').read_text()   # the params file itself, not a copy of something else
    children = c.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(r.data.tags['mlops.step'] for r in children) == ['eda', 'ingest', 'train', 'tune']
    for r in children:
        assert r.info.status == 'FINISHED'
        assert [a.path for a in c.list_artifacts(r.info.run_id, 'notebook')], f"{r.data.tags['mlops.step']}: executed notebook not logged"
    tune = next(r for r in children if r.data.tags['mlops.step'] == 'tune')
    fams = c.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{tune.info.run_id}'")
    assert sorted(r.data.tags['mlops.family'] for r in fams) == ['hist_gradient_boosting', 'linear', 'random_forest']
    for r in fams: assert {'cv_roc_auc_mean', 'cv_roc_auc_std', 'fit_seconds', 'candidates'} <= set(r.data.metrics)
    ingest = next(r for r in children if r.data.tags['mlops.step'] == 'ingest')
    assert {d.dataset.name for d in ingest.inputs.dataset_inputs} == {'smoke-train', 'smoke-test'}

    mv = c.get_model_version_by_alias('smoke', 'champion')
    assert str(mv.version) == '1' and mv.tags['promotion.decision'] == 'promoted'
    train = next(r for r in children if r.data.tags['mlops.step'] == 'train')
    assert mv.run_id == train.info.run_id and train.data.metrics['test_roc_auc'] > 0.8
    info = mlflow.models.get_model_info(f'models:/smoke/{mv.version}')
    assert info.signature is not None and [i.name for i in info.signature.inputs.inputs] == ['Gender', 'Age', 'AnnualSalary']
    assert info.saved_input_example_info is not None


def test_same_params_same_metrics_and_champion_stays(smoke_model):
    mlops('run', '--params', 'params/smoke.yaml', '--quiet', '--run-name', 'smoke-2', '--force', outputs=smoke_model['outputs'])  # --force: not reused
    first, second = (json.loads((smoke_model['outputs']/'runs'/r/'summary.json').read_text())['steps'][-1] for r in ('smoke-1', 'smoke-2'))
    metrics = lambda s: {k: v for k, v in s.items() if k.startswith('test_')}
    assert metrics(first) == metrics(second) and metrics(first)
    c = client_for(smoke_model['uri'])
    assert str(c.get_model_version_by_alias('smoke', 'champion').version) == '1'
    v2 = c.get_model_version('smoke', second['version'])
    assert v2.tags['promotion.decision'] == 'rejected' and 'does not beat champion v1' in v2.tags['promotion.reason']


def test_gated_out_model_does_not_move_the_alias(smoke_model, tmp_path):
    p = write_params(tmp_path, promotion={'metric': 'roc_auc', 'thresholds': {'roc_auc': 0.999}, 'margin': 0.0})
    out = mlops('run', '--params', p, '--quiet', '--steps', 'train', '--resume', 'smoke-1', '--run-name', 'smoke-1', outputs=smoke_model['outputs'])
    assert 'roc_auc' in out.stdout and 'below the minimum 0.999' in out.stdout
    c = client_for(smoke_model['uri'])
    assert str(c.get_model_version_by_alias('smoke', 'champion').version) == '1'
    newest = max(c.search_model_versions("name='smoke'"), key=lambda v: int(v.version))
    assert newest.tags['promotion.decision'] == 'rejected' and 'below the minimum' in newest.tags['promotion.reason']


def test_failing_step_exits_with_one_line_and_keeps_champion(smoke_model, tmp_path):
    from mlops_lib.samples import make_sample
    df, _ = make_sample('car_purchase', rows=200, seed=3)
    bad = tmp_path/'no_target.csv'
    df.drop(columns='Purchased').to_csv(bad, index=False)
    p = write_params(tmp_path, data={'path': str(bad)})
    r = mlops('run', '--params', p, '--quiet', '--run-name', 'broken', outputs=smoke_model['outputs'], check=False)
    assert r.returncode != 0
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith('mlops run: error: step 10_ingest failed: DataError: ') and "target column 'Purchased' not found" in line and line.endswith('broken/10_ingest.ipynb'), r.stderr
    assert 'Traceback' not in r.stderr
    nb = smoke_model['outputs']/'runs'/'broken'/'10_ingest.ipynb'
    assert "target column 'Purchased' not found" in nb.read_text()      # the executed notebook keeps the error
    c = client_for(smoke_model['uri'])
    broken = [r for r in pipeline_runs(c, 'smoke') if r.data.tags['mlflow.runName'] == 'broken'][0]
    assert broken.info.status == 'FAILED'
    child = c.search_runs([broken.info.experiment_id], f"tags.mlflow.parentRunId = '{broken.info.run_id}'")[0]
    assert child.info.status == 'FAILED' and c.list_artifacts(child.info.run_id, 'notebook')
    assert str(c.get_model_version_by_alias('smoke', 'champion').version) == '1'


@pytest.mark.parametrize('change, message', [
    ({'colour': 'red'}, "unknown key 'colour'"),
    ({'split': {'test_size': 2}}, "key 'split.test_size': input should be less than 1, got 2"),
    ({'models': {'families': {'linear': {'space': {'alpha': [1.0]}}}}}, "key 'models.families.linear.space.alpha': not a parameter of LogisticRegression"),
])
def test_bad_params_are_one_line_errors(tmp_path, change, message):
    p = write_params(tmp_path, **change)
    r = mlops('run', '--params', p, outputs=tmp_path/'out', check=False)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and message in r.stderr, r.stderr
    assert not (tmp_path/'out'/'runs').exists()


def test_status_reports_champion(smoke_model):
    s = json.loads(mlops('status', '--params', 'params/smoke.yaml', '--json', outputs=smoke_model['outputs']).stdout)
    assert s['champion']['version'] == '1' and s['champion']['metrics']['roc_auc'] > 0.8
    newest_first = pipeline_runs(client_for(smoke_model['uri']), 'smoke')[::-1][:5]   # `status` lists the last 5 runs
    assert newest_first and [(r['run_id'], r['status']) for r in s['runs']] == [(r.info.run_id, r.info.status) for r in newest_first]


def test_sigterm_marks_runs_killed(tmp_path):
    env = mlops_env(tmp_path)
    p = subprocess.Popen([str(BIN/'mlops'), 'run', '--params', 'params/smoke.yaml', '--quiet', '--run-name', 'killed'], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 120
    for line in p.stdout:   # wait until the first step is under way
        if '[ingest] running' in line or time.time() > deadline: break
    time.sleep(3)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=60) == 130
    c = client_for(store_uri(tmp_path))
    run = pipeline_runs(c, 'smoke')[0]
    assert run.info.status == 'KILLED'
    assert {r.info.status for r in c.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")} == {'KILLED'}


@pytest.fixture
def mlflow_server(tmp_path):
    "A real `mlflow server` process (SQLite backend, proxied artifacts) on a free loopback port."
    port = free_port()
    proc = subprocess.Popen([sys.executable, '-m', 'mlflow', 'server', '--backend-store-uri', f'sqlite:///{tmp_path}/server.db', '--serve-artifacts',
                             '--artifacts-destination', str(tmp_path/'server-artifacts'), '--host', '127.0.0.1', '--port', str(port), '--workers', '1'],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    import requests
    url = f'http://127.0.0.1:{port}'
    try:
        for _ in range(240):
            if proc.poll() is not None: raise RuntimeError(f'mlflow server exited with {proc.returncode}')
            try:
                if requests.get(f'{url}/health', timeout=2).ok: break
            except requests.RequestException: pass
            time.sleep(0.5)
        else: raise RuntimeError('mlflow server did not start in time')
        yield url
    finally:   # also when start-up failed: never leave the server (and its job consumers) running
        os.killpg(proc.pid, signal.SIGTERM)
        try: proc.wait(timeout=30)
        except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL); proc.wait()


def test_pipeline_against_a_real_mlflow_server(mlflow_server, tmp_path):
    mlops('run', '--params', 'params/smoke.yaml', '--quiet', '--run-name', 'remote', '--tracking-uri', mlflow_server, outputs=tmp_path/'out')
    assert not (tmp_path/'out'/'mlflow').exists(), 'the embedded store must not be used when a server is given'
    c = client_for(mlflow_server)
    mv = c.get_model_version_by_alias('smoke', 'champion')
    run = pipeline_runs(c, 'smoke')[0]
    assert run.info.status == 'FINISHED' and run.info.artifact_uri.startswith('mlflow-artifacts:')
    local = mlflow.artifacts.download_artifacts('models:/smoke@champion', dst_path=str(tmp_path/'dl'))
    assert (Path(local)/'MLmodel').exists() and list(Path(local).rglob('schema.yaml'))
    s = json.loads(mlops('status', '--params', 'params/smoke.yaml', '--json', '--tracking-uri', mlflow_server, outputs=tmp_path/'out').stdout)
    assert s['champion']['version'] == str(mv.version)
    assert list((tmp_path/'server-artifacts').rglob('40_train.ipynb')), 'artifacts went through the server to its destination'


def test_step_notebooks_run_as_is_with_their_defaults(tmp_path, monkeypatch):
    "Run by hand (no injected parameters, cwd = the notebook's folder), ingest and eda work on the default project."
    import papermill as pm
    monkeypatch.setenv('MLOPS_OUTPUTS', str(tmp_path))
    for nb in ['10_ingest', '20_eda']:
        pm.execute_notebook(ROOT/'nbs/pipeline'/f'{nb}.ipynb', tmp_path/f'{nb}.ipynb', kernel_name='mlops_lib', progress_bar=False, cwd=str(ROOT/'nbs/pipeline'))
    rd = tmp_path/'runs'/'interactive-car_purchase'
    assert (rd/'train.parquet').exists() and (rd/'eda.html').exists()


def test_car_purchase_champion_is_near_bayes_optimal(tmp_path, monkeypatch):
    "The default project: the champion's test ROC AUC is within 0.02 of the generator's Bayes-optimal AUC on the same test rows."
    from sklearn.metrics import roc_auc_score
    from mlops_lib.params import load_params
    from mlops_lib.data import load_dataset, split_data
    from mlops_lib.samples import make_sample
    p = yaml.safe_load((ROOT/'params/car_purchase.yaml').read_text())
    p['data']['path'] = str(tmp_path/'car_purchase.csv')        # generated from the sample (seed 42) into the test's folder
    (tmp_path/'car.yaml').write_text(yaml.safe_dump(p))
    # n_jobs 2: the search starts joblib workers in the kernel. They must not hold the output pipe open once `mlops run`
    # has exited (they idle 300 s before they exit; the run takes well under a minute alone), hence the timeout.
    mlops('run', '--params', tmp_path/'car.yaml', '--quiet', '--run-name', 'car', outputs=tmp_path/'out', timeout=240)
    train_step = json.loads((tmp_path/'out/runs/car/summary.json').read_text())['steps'][-1]
    assert 'promoted' in train_step['decision']
    P = load_params(tmp_path/'car.yaml')
    df, _ = load_dataset(P)
    _, test = split_data(df, P)
    _, truth = make_sample('car_purchase', rows=P.data.rows, seed=P.seed)
    bayes = roc_auc_score(test[P.target], truth.loc[test.index])
    assert abs(train_step['test_roc_auc'] - bayes) <= 0.02, (train_step['test_roc_auc'], bayes)
