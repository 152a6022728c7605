"REST serving: `mlops serve` (MLflow's scoring server) answered over real HTTP on loopback, and `mlops simulate` against it."
import json, subprocess
import pandas as pd
import pytest
import requests
from conftest import BIN, ROOT, mlops, mlops_env
from mlops_lib.predict import predict_file
from mlops_lib.samples import make_sample
from mlops_lib.config import free_port
from mlops_lib.serve import stop_process, wait_until_ready

SMOKE = ROOT/'params/smoke.yaml'


@pytest.fixture(scope='module')
def server(smoke_model):
    "`mlops serve` for the smoke champion on a free loopback port; its process group is stopped at the end."
    port = free_port()
    env = mlops_env(smoke_model['outputs'])
    p = subprocess.Popen([str(BIN/'mlops'), 'serve', '--params', str(SMOKE), '--port', str(port)], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    url = f'http://127.0.0.1:{port}'
    try:
        wait_until_ready(url, timeout=180, proc=p)
        yield url
    finally:
        stop_process(p)


@pytest.fixture(scope='module')
def rows(tmp_path_factory):
    d = tmp_path_factory.mktemp('serve')
    df, _ = make_sample('car_purchase', rows=40, seed=21)
    df.to_csv(d/'rows.csv', index=False)
    return d, df


def _post(url, body):
    return requests.post(f'{url}/invocations', data=json.dumps(body), headers={'Content-Type': 'application/json'}, timeout=30)


def test_valid_request_matches_mlops_predict(server, rows, tmp_path, in_outputs):
    d, df = rows
    feats = ['Gender', 'Age', 'AnnualSalary']
    r = _post(server, {'dataframe_split': json.loads(df[feats].to_json(orient='split', index=False))})
    assert r.status_code == 200, r.text
    s = predict_file(SMOKE, d/'rows.csv', tmp_path/'p.csv', progress=False)
    assert r.json()['predictions'] == pd.read_csv(tmp_path/'p.csv').prediction.tolist() and s['rows_scored'] == 40


@pytest.mark.parametrize('data,expect', [
    ({'columns': ['Gender', 'Age'], 'data': [['Male', 30]]}, "missing inputs ['AnnualSalary']"),
    ({'columns': ['Gender', 'Age', 'AnnualSalary'], 'data': [['Male', 'thirty', 50000]]}, 'Failed to convert column Age'),
])
def test_invalid_request_is_400(server, data, expect):
    r = _post(server, {'dataframe_split': data})
    assert r.status_code == 400, r.text
    assert expect in r.json()['message']


def test_simulate(server, rows, tmp_path, smoke_model):
    "`mlops simulate` records predictions (equal to a direct request) and latency percentiles."
    d, df = rows
    out = tmp_path/'sim.csv'
    p = mlops('simulate', '--url', server, '--input', d/'rows.csv', '--rate', 50, '-n', 20, '--output', out, outputs=smoke_model['outputs'])
    assert '20 ok, 0 errors' in p.stdout and 'p99' in p.stdout, p.stdout
    res = pd.read_csv(out)
    assert len(res) == 20 and (res.status == 200).all() and (res.latency_ms > 0).all()
    direct = _post(server, {'dataframe_split': json.loads(df.head(20)[['Gender', 'Age', 'AnnualSalary']].to_json(orient='split', index=False))})
    assert res.prediction.tolist() == direct.json()['predictions']
    assert list(res.columns) == [*df.columns, 'prediction', 'status', 'latency_ms', 'timestamp', 'error']
