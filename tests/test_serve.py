"REST serving: `mlops serve` (our FastAPI service under uvicorn) answered over real HTTP on loopback, and `mlops simulate` against it."
import inspect, json
import pandas as pd
import pytest
import requests
from conftest import ROOT, mlops
from servicekit import running_service
from mlops_lib.predict import predict_file, score_chunk
from mlops_lib.samples import make_sample

SMOKE = ROOT/'params/smoke.yaml'
FEATS = ['Gender', 'Age', 'AnnualSalary']
H9 = 'on_unexpected' in inspect.signature(score_chunk).parameters  # score_chunk flags expectation breaks instead of rejecting them


@pytest.fixture(scope='module')
def server(smoke_model):
    "`mlops serve` for the smoke champion with small limits (50 rows, 0.05 MB) and no prediction log."
    with running_service(smoke_model['outputs'], '--max-rows', 50, '--max-body-mb', 0.05, '--no-log') as (url, _):
        yield url


@pytest.fixture(scope='module')
def rows(tmp_path_factory):
    d = tmp_path_factory.mktemp('serve')
    df, _ = make_sample('car_purchase', rows=40, seed=21)
    df.to_csv(d/'rows.csv', index=False)
    return d, df


def _post(url, body, path='/invocations', **kw):
    return requests.post(f'{url}{path}', data=body if isinstance(body, (str, bytes)) else json.dumps(body), headers=kw.pop('headers', {'Content-Type': 'application/json'}), timeout=30, **kw)


def _forms(df):
    recs = json.loads(df[FEATS].to_json(orient='records'))
    return {'dataframe_split': {'dataframe_split': json.loads(df[FEATS].to_json(orient='split', index=False))},
            'dataframe_records': {'dataframe_records': recs}, 'instances': {'instances': recs},
            'inputs': {'inputs': {c: json.loads(df[c].to_json(orient='values')) for c in FEATS}}, 'inputs_records': {'inputs': recs}}


@pytest.mark.parametrize('form', ['dataframe_split', 'dataframe_records', 'instances', 'inputs', 'inputs_records', 'csv'])
def test_every_payload_form_matches_mlops_predict(server, rows, tmp_path, in_outputs, form):
    d, df = rows
    if form == 'csv': r = _post(server, df[FEATS].to_csv(index=False), headers={'Content-Type': 'text/csv'})
    else: r = _post(server, _forms(df)[form])
    assert r.status_code == 200, r.text
    s = predict_file(SMOKE, d/'rows.csv', tmp_path/'p.csv', progress=False)
    body = r.json()
    assert body['predictions'] == pd.read_csv(tmp_path/'p.csv').prediction.tolist() and s['rows_scored'] == 40
    assert body['model_version'] == r.headers['x-model-version'] == '1' and len(body['flags']) == 40


def test_predict_typed_rows(server, rows):
    _, df = rows
    r = _post(server, {'rows': json.loads(df[FEATS].head(3).to_json(orient='records'))}, '/predict')
    assert r.status_code == 200, r.text
    p = r.json()['predictions']
    assert len(p) == 3 and set(p[0]) >= {'prediction', 'probability', 'proba_0', 'proba_1', 'flags'} and abs(p[0]['proba_0'] + p[0]['proba_1'] - 1) < 1e-9
    assert r.headers['x-model-version'] == '1'


@pytest.mark.parametrize('path,body,field,why', [
    ('/invocations', {'dataframe_records': [{'Gender': 'Male', 'Age': 'thirty', 'AnnualSalary': 50000}]}, 'Age', 'not a number'),
    ('/invocations', {'dataframe_split': {'columns': ['Gender', 'Age'], 'data': [['Male', 30]]}}, 'AnnualSalary', 'required field missing'),
    ('/predict', {'rows': [{'Gender': 'Male', 'Age': 'thirty', 'AnnualSalary': 50000}]}, 'Age', 'valid number'),
    ('/predict', {'rows': [{'Gender': 'Male', 'Age': 30}]}, 'AnnualSalary', 'Field required'),
])
def test_contract_violation_is_422_naming_the_field(server, path, body, field, why):
    r = _post(server, body, path)
    assert r.status_code == 422, r.text
    errs = r.json()['errors']
    assert any(e['field'] == field and why in e['reason'] for e in errs), errs
    assert field in r.json()['message'] and 'Traceback' not in r.text


@pytest.mark.skipif(not H9, reason="needs h9's score_chunk (on_unexpected, _flags); before it an out-of-range value is a contract violation")
@pytest.mark.parametrize('path', ['/invocations', '/predict'])
def test_expectation_break_is_scored_and_flagged(server, path):
    rows = [{'Gender': 'Male', 'Age': 500, 'AnnualSalary': 50000}, {'Gender': 'Robot', 'Age': 40, 'AnnualSalary': 50000}, {'Gender': 'Male', 'Age': 40, 'AnnualSalary': 50000}]
    r = _post(server, {'dataframe_records': rows} if path == '/invocations' else {'rows': rows}, path)
    assert r.status_code == 200, r.text
    b = r.json()
    flags = b['flags'] if path == '/invocations' else [p['flags'] for p in b['predictions']]
    assert 'Age:out_of_range' in flags[0] and 'Gender:unknown_category' in flags[1] and flags[2] == ''


@pytest.mark.parametrize('body,ctype,status,expect', [
    ('{"dataframe_split": ', 'application/json', 400, 'malformed JSON'),
    ('{"rows": [', 'application/json', 400, 'malformed JSON'),
    ('Gender=Male', 'application/x-www-form-urlencoded', 400, 'Content-Type must be application/json'),
    ('{"data": [[1]]}', 'application/json', 400, 'exactly one of the keys'),
    ('{"dataframe_split": {"columns": ["Age"], "data": [[1, 2]]}}', 'application/json', 400, 'has not one value per column'),
    (json.dumps({'dataframe_records': [{'Gender': 'Male', 'Age': 30, 'AnnualSalary': 1}] * 51}), 'application/json', 413, 'limit is 50 rows'),
    (json.dumps({'dataframe_records': [{'Gender': 'Male', 'Age': 30, 'AnnualSalary': 1, 'pad': 'x' * 60_000}]}), 'application/json', 413, 'over the limit of 0.05 MB'),
])
def test_bad_requests_are_4xx_and_the_server_keeps_serving(server, body, ctype, status, expect):
    path = '/predict' if body.startswith('{"rows"') else '/invocations'
    r = _post(server, body, path, headers={'Content-Type': ctype})
    assert r.status_code == status and expect in r.json()['message'], (r.status_code, r.text)
    assert requests.get(f'{server}/ping', timeout=10).status_code == 200


def test_version_docs_openapi_and_metrics(server):
    v = requests.get(f'{server}/version', timeout=10).json()
    assert v['model'] == 'smoke' and v['model_version'] == '1' and v['runtime'] == 'sklearn'
    assert requests.get(f'{server}/docs', timeout=10).status_code == 200
    props = requests.get(f'{server}/openapi.json', timeout=10).json()['components']['schemas']['SmokeRow']['properties']
    assert set(props) == set(FEATS) and props['Gender']['x-categories'] == ['Female', 'Male'] and 'expected range' in props['Age']['description']
    assert props['Age']['x-expected-min'] < props['Age']['x-expected-max']
    m = requests.get(f'{server}/metrics', timeout=10).text
    assert 'mlops_requests_total{route="/invocations",status="200"}' in m and 'mlops_model_info{model="smoke",runtime="sklearn",version="1"} 1.0' in m
    assert 'mlops_request_latency_seconds_bucket' in m and 'mlops_rows_scored_total{version="1"}' in m and 'mlops_predictions_total{class_=' in m


def test_simulate(server, rows, tmp_path, smoke_model):
    "`mlops simulate` records predictions (equal to a direct request), latency percentiles and throughput, with several clients."
    d, df = rows
    out = tmp_path/'sim.csv'
    p = mlops('simulate', '--url', server, '--input', d/'rows.csv', '--rate', 0, '--concurrency', 4, '-n', 20, '--output', out, outputs=smoke_model['outputs'])
    assert '20 ok, 0 errors' in p.stdout and 'p99' in p.stdout and 'throughput' in p.stdout, p.stdout
    res = pd.read_csv(out)
    assert len(res) == 20 and (res.status == 200).all() and (res.latency_ms > 0).all()
    direct = _post(server, {'dataframe_split': json.loads(df.head(20)[FEATS].to_json(orient='split', index=False))})
    assert res.prediction.tolist() == direct.json()['predictions']
    assert list(res.columns) == [*df.columns, 'prediction', 'status', 'latency_ms', 'timestamp', 'error']
    p = mlops('simulate', '--url', server, '--input', d/'rows.csv', '--rate', 0, '--concurrency', 2, '--duration', 1, '--output', tmp_path/'dur.csv', outputs=smoke_model['outputs'])
    n = int(p.stdout.split()[1])
    assert 'from 2 clients' in p.stdout and ' 0 errors' in p.stdout and len(pd.read_csv(tmp_path/'dur.csv')) == n >= 2, p.stdout
