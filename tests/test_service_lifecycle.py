"The service's lifecycle with real processes: reload without dropped requests, the prediction log flushed on SIGTERM, model formats (skops, cloudpickle, ONNX)."
import json, os, signal, threading, time
from concurrent.futures import ThreadPoolExecutor
import numpy as np, pandas as pd
import pytest
import requests
from mlflow import MlflowClient
from conftest import ROOT, mlops
from servicekit import running_service
from mlops_lib.predlog import read_log

ROW = {'dataframe_records': [{'Gender': 'Male', 'Age': 41, 'AnnualSalary': 61000}]}


def _post(s, url, body=ROW):
    return s.post(f'{url}/invocations', data=json.dumps(body), headers={'Content-Type': 'application/json'}, timeout=30)


@pytest.fixture
def second_version(smoke_model):
    "Version 2 of 'smoke' (the same model registered again); the champion alias is put back on version 1 afterwards."
    import mlflow
    mlflow.set_tracking_uri(smoke_model['uri']); mlflow.set_registry_uri(smoke_model['uri'])  # the source models:/m-... resolves through them
    c = MlflowClient()
    mv1 = c.get_model_version('smoke', '1')
    mv2 = c.create_model_version('smoke', mv1.source, run_id=mv1.run_id)
    for _ in range(100):
        if c.get_model_version('smoke', mv2.version).status == 'READY': break
        time.sleep(0.1)
    yield c, str(mv2.version)   # the service answers versions as strings, as MLflow's registry names them
    c.set_registered_model_alias('smoke', 'champion', '1')


def test_reload_and_sighup_pick_up_the_new_champion_without_dropping_requests(smoke_model, second_version):
    c, v2 = second_version
    with running_service(smoke_model['outputs'], '--no-log') as (url, proc):
        stop, seen, bad = threading.Event(), [], []
        def hammer():
            s = requests.Session()
            while not stop.is_set():
                try: r = _post(s, url)
                except requests.RequestException as ex: bad.append(repr(ex)); continue
                if r.status_code != 200: bad.append(r.text)
                else: seen.append((r.headers['x-model-version'], r.json()['model_version']))
        ts = [threading.Thread(target=hammer) for _ in range(3)]
        for t in ts: t.start()
        try:
            time.sleep(0.5)
            c.set_registered_model_alias('smoke', 'champion', v2)
            r = requests.post(f'{url}/reload', timeout=120)
            assert r.status_code == 200 and r.json() == {'previous_version': '1', 'model_version': v2, 'changed': True}, r.text
            time.sleep(0.5)
            c.set_registered_model_alias('smoke', 'champion', '1')
            os.kill(proc.pid, signal.SIGHUP)
            t0 = time.time()
            while requests.get(f'{url}/version', timeout=10).json()['model_version'] != '1':
                assert time.time() - t0 < 120, 'SIGHUP did not reload'
                time.sleep(0.2)
            time.sleep(0.5)
        finally:
            stop.set()
            for t in ts: t.join()
        assert not bad, bad[:3]
        versions = [h for h, b in seen]
        assert all(h == b for h, b in seen) and versions[0] == '1' and v2 in versions and versions[-1] == '1', versions[:3]
        m = requests.get(f'{url}/metrics', timeout=10).text
        assert f'mlops_model_info{{model="smoke",runtime="sklearn",version="{v2}"}} 0.0' in m and 'mlops_model_info{model="smoke",runtime="sklearn",version="1"} 1.0' in m


def test_a_pinned_version_stays_and_reload_is_loopback_only_in_the_answer(smoke_model, second_version):
    c, v2 = second_version
    with running_service(smoke_model['outputs'], '--model-version', v2, '--no-log') as (url, _):
        assert requests.get(f'{url}/version', timeout=10).json()['model_version'] == v2
        r = requests.post(f'{url}/reload', timeout=60)
        assert r.status_code == 200 and r.json()['changed'] is False


def test_sigterm_flushes_the_prediction_log(smoke_model, tmp_path):
    "1,000 requests, then SIGTERM: exactly 1,000 rows in the log, one per request id, with version, flags and latency."
    out = tmp_path/'outputs'
    with running_service(out, '--tracking-uri', smoke_model['uri']) as (url, proc):
        def send(i):
            s = requests.Session()
            return [_post(s, url, {'dataframe_records': [{'Gender': 'Female', 'Age': 20 + k % 40, 'AnnualSalary': 30000 + 10 * k}]}).status_code for k in range(i, 1000, 4)]
        with ThreadPoolExecutor(4) as ex: codes = sum(ex.map(send, range(4)), [])
        assert codes.count(200) == 1000
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after its graceful shutdown
    log = read_log(out/'serving'/'smoke')
    assert len(log) == 1000 and log.request_id.nunique() == 1000
    assert set(log.model_version) == {'1'} and (log.latency_ms > 0).all() and log['_flags'].notna().all()
    assert sorted(log.AnnualSalary.astype(int)) == sorted(30000 + 10 * k for k in range(1000))
    assert {'prediction', 'proba_0', 'proba_1', 'probability', 'timestamp'} <= set(log.columns)


def test_models_are_logged_with_skops_and_cloudpickle_ones_still_load(smoke_model, tmp_path, in_outputs):
    import mlflow, yaml
    from mlops_lib.tracking import _load_sklearn, load_model
    lm = load_model('smoke', uri=smoke_model['uri'])
    local = tmp_path/'m'
    mlflow.artifacts.download_artifacts(lm.uri, dst_path=str(local))
    conf = yaml.safe_load((local/'MLmodel').read_text())['flavors']['sklearn']
    assert conf['serialization_format'] == 'skops' and (local/conf['pickled_model']).exists()
    X = pd.DataFrame({'Gender': ['Male', 'Female'], 'Age': [30, 60], 'AnnualSalary': [40000.0, 120000.0]})
    mlflow.sklearn.save_model(lm.model, str(tmp_path/'cp'), serialization_format='cloudpickle')
    np.testing.assert_array_equal(_load_sklearn(tmp_path/'cp').predict_proba(X), lm.model.predict_proba(X))


def test_onnx_export_passes_the_equality_check_and_serves(smoke_model, tmp_path):
    "`mlops export --format onnx` writes a model whose probabilities are within 1e-5, or says in one line why not; `--runtime onnx` serves it."
    p = mlops('export', '--format', 'onnx', '--params', ROOT/'params/smoke.yaml', outputs=smoke_model['outputs'], check=False)
    if p.returncode != 0:
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and 'error:' in lines[0] and ('cannot convert' in lines[0] or 'differ' in lines[0]), p.stderr
        pytest.skip(f'champion does not convert: {lines[0]}')
    assert 'max abs diff' in p.stdout, p.stdout
    df = pd.DataFrame({'Gender': ['Male', 'Female', 'Male'], 'Age': [25, 45, 62], 'AnnualSalary': [30000.0, 80000.0, 140000.0]})
    body = {'dataframe_split': json.loads(df.to_json(orient='split', index=False))}
    with running_service(smoke_model['outputs'], '--runtime', 'onnx', '--no-log') as (url, _):
        assert requests.get(f'{url}/version', timeout=10).json()['runtime'] == 'onnx'
        on = requests.post(f'{url}/predict', json={'rows': df.to_dict('records')}, timeout=30).json()['predictions']
        assert _post(requests, url, body).status_code == 200
    with running_service(smoke_model['outputs'], '--no-log') as (url, _):
        sk = requests.post(f'{url}/predict', json={'rows': df.to_dict('records')}, timeout=30).json()['predictions']
    assert [a['prediction'] for a in on] == [b['prediction'] for b in sk]
    assert max(abs(a['proba_1'] - b['proba_1']) for a, b in zip(on, sk)) <= 1e-5
