"The `mlops` command: help, sample data, the MLflow UI, and one-line errors."
import os, signal, subprocess, time
import pandas as pd
import pytest, requests
from conftest import BIN, ROOT, mlops, mlops_env
from mlops_lib.procs import free_port

SUBCOMMANDS = ['data', 'run', 'status', 'ui', 'predict', 'dashboard', 'serve', 'simulate', 'monitor', 'schedule']


def test_help_lists_every_subcommand(tmp_path):
    out = mlops('--help', outputs=tmp_path).stdout
    for c in SUBCOMMANDS: assert c in out
    for c in SUBCOMMANDS:
        h = mlops(c, '--help', outputs=tmp_path).stdout
        assert h.startswith(f'usage: mlops {c}') and '--' in h


def test_data_writes_one_sample(tmp_path):
    r = mlops('data', '--name', 'car_purchase', '--rows', '50', '--seed', '3', '--out', tmp_path/'cp.csv', outputs=tmp_path)
    df = pd.read_csv(tmp_path/'cp.csv')
    assert df.shape == (50, 4) and 'wrote' in r.stdout
    mlops('data', '--name', 'car_purchase', '--rows', '50', '--seed', '3', '--out', tmp_path/'cp2.csv', outputs=tmp_path)
    assert (tmp_path/'cp.csv').read_text() == (tmp_path/'cp2.csv').read_text()


def test_data_all_and_missing_only(tmp_path):
    r = mlops('data', '--all', '--out-dir', tmp_path, outputs=tmp_path)
    names = sorted(p.name for p in tmp_path.glob('*.csv'))
    assert names == ['attrition.csv', 'car_purchase.csv', 'customer_experience.csv', 'restaurant_orders.csv', 'transactions.csv']
    assert pd.read_csv(tmp_path/'transactions.csv').shape == (20_000, 202)
    before = (tmp_path/'car_purchase.csv').stat().st_mtime_ns
    r = mlops('data', '--all', '--out-dir', tmp_path, '--missing-only', outputs=tmp_path)
    assert (tmp_path/'car_purchase.csv').stat().st_mtime_ns == before and 'wrote' not in r.stdout


def test_data_drifted_batch(tmp_path):
    mlops('data', '--name', 'car_purchase', '--drifted', '--rows', '300', '--out', tmp_path/'d.csv', outputs=tmp_path)
    assert pd.read_csv(tmp_path/'d.csv').Age.mean() > 45


@pytest.mark.parametrize('args, message', [
    (['data', '--name', 'nope'], "unknown sample 'nope': expected one of car_purchase"),
    (['status', '--params', 'params/missing.yaml'], 'params/missing.yaml: params file not found'),
    (['run', '--params', 'params/smoke.yaml', '--steps', 'ingest,deploy'], "unknown step 'deploy' in --steps"),
])
def test_user_errors_are_one_line(tmp_path, args, message):
    r = mlops(*args, outputs=tmp_path, check=False)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and message in r.stderr and 'Traceback' not in r.stderr, r.stderr


def test_ui_serves_the_store(tmp_path):
    port = free_port()
    p = subprocess.Popen([str(BIN/'mlops'), 'ui', '--port', str(port)], cwd=ROOT, env=mlops_env(tmp_path),
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        assert f'http://127.0.0.1:{port}' in p.stdout.readline()
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                if requests.get(f'http://127.0.0.1:{port}/health', timeout=2).ok: break
            except requests.RequestException: time.sleep(0.5)
        assert requests.get(f'http://127.0.0.1:{port}/', timeout=5).status_code == 200
        r = requests.get(f'http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search', params={'max_results': 5}, timeout=30)
        assert r.ok and [e['name'] for e in r.json()['experiments']] == ['Default']
        assert (tmp_path/'mlflow'/'mlflow.db').exists(), 'the UI must serve the embedded store under MLOPS_OUTPUTS'
    finally:
        os.killpg(p.pid, signal.SIGTERM); p.wait(timeout=30)
