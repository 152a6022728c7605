"""Bad REST bodies against the scoring service's contract (`mlops serve`, `POST /predict`).

`POST /predict` takes `{"rows": [...]}` typed by the model's schema (see `mlops_lib.service`); the fixture fails when a
valid body does not get 200. Expected: a contract violation
-> 422 naming the field; malformed JSON or a wrong content type -> 400; a body over the limit -> 413. Nothing is moved.
"""
import contextlib, json, os, signal, subprocess, time
import pytest
from conftest import BIN, ROOT, mlops_env

GOOD = [{'Gender': 'Male', 'Age': 35, 'AnnualSalary': 50000}, {'Gender': 'Female', 'Age': 42, 'AnnualSalary': 81000}]


def body(records): return json.dumps({'rows': records})


@pytest.fixture(scope='module')
def service(smoke_model):
    "`mlops serve` on the trained smoke store, on a free loopback port."
    import requests
    from mlops_lib.procs import free_port
    port = free_port()
    p = subprocess.Popen([str(BIN/'mlops'), 'serve', '--params', str(smoke_model['params']), '--port', str(port)], cwd=ROOT, env=mlops_env(smoke_model['outputs']),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f'http://127.0.0.1:{port}'
    try:
        for _ in range(360):
            assert p.poll() is None, f'mlops serve exited with {p.returncode}'
            with contextlib.suppress(Exception):
                if requests.get(f'{url}/ping', timeout=1).status_code == 200 or requests.get(f'{url}/health', timeout=1).status_code == 200: break
            time.sleep(0.5)
        else: pytest.fail('mlops serve did not answer /ping within 180 s')
        r = requests.post(f'{url}/predict', data=body(GOOD), headers={'Content-Type': 'application/json'}, timeout=30)
        assert r.status_code == 200, (r.status_code, r.text[:500])
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError): os.killpg(p.pid, signal.SIGTERM)
        try: p.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL); p.wait()


def _drop(col): return [{k: v for k, v in r.items() if k != col} for r in GOOD]
def _set(col, v): return [{**r, col: v} for r in GOOD]

CASES = {   # name: (raw body, content type, expected status, a string the answer must contain)
    'missing-age': (body(_drop('Age')), 'application/json', 422, 'Age'),
    'missing-salary': (body(_drop('AnnualSalary')), 'application/json', 422, 'AnnualSalary'),
    'missing-gender': (body(_drop('Gender')), 'application/json', 422, 'Gender'),
    'text-in-age': (body(_set('Age', 'old')), 'application/json', 422, 'Age'),
    'text-in-salary': (body(_set('AnnualSalary', 'lots')), 'application/json', 422, 'AnnualSalary'),
    'rows-not-a-list': (json.dumps({'rows': 'x'}), 'application/json', 422, 'rows'),
    'no-rows-key': (json.dumps({'dataframe_records': GOOD}), 'application/json', 422, 'rows'),
    'malformed-json': ('{"dataframe_records": [', 'application/json', 400, ''),
    'not-json-at-all': ('Gender,Age\nMale,30', 'application/json', 400, ''),
    'wrong-content-type': (body(GOOD), 'text/plain', 400, ''),
    'over-limit': (body(GOOD * 400_000), 'application/json', 413, ''),
}


@pytest.mark.parametrize('case', list(CASES))
def test_bad_rest_body(service, smoke_model, case):
    import requests
    from mlflow import MlflowClient
    raw, ctype, status, must = CASES[case]
    c = MlflowClient(smoke_model['uri'], smoke_model['uri'])
    before = c.get_model_version_by_alias('smoke', 'champion').version
    r = requests.post(f'{service}/predict', data=raw.encode(), headers={'Content-Type': ctype}, timeout=120)
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert must in r.text, r.text[:500]
    assert 'Traceback' not in r.text
    assert c.get_model_version_by_alias('smoke', 'champion').version == before
