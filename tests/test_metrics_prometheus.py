"`GET /metrics` scraped by a real Prometheus (Debian's package): the counters rise after traffic, the drift gauges come from the monitor's latest.json."
import json, shutil, subprocess, time
import pytest
import requests
from servicekit import running_service
from mlops_lib.config import free_port
from mlops_lib.serve import stop_process

PROMETHEUS = shutil.which('prometheus') or '/usr/bin/prometheus'


@pytest.fixture
def service(smoke_model, tmp_path):
    out = tmp_path/'outputs'
    (out/'monitor'/'smoke').mkdir(parents=True)
    (out/'monitor'/'smoke'/'latest.json').write_text(json.dumps({'model': 'smoke', 'version': '1', 'timestamp': '2026-12-01T00:00:00Z', 'dataset_drift': True,
        'share_drifted': 0.5, 'prediction_drift': False, 'features': {'Age': {'drifted': True, 'statistic': 0.4, 'p_value': 0.001, 'psi': 0.3}}}))
    with running_service(out, '--tracking-uri', smoke_model['uri'], '--workers', 2) as (url, _):
        yield url


@pytest.fixture
def prometheus(service, tmp_path):
    "Prometheus on a free loopback port scraping the service every second, with its own storage; stopped at the end."
    if not shutil.which('prometheus') and not shutil.os.path.exists(PROMETHEUS): pytest.fail('prometheus is not installed: run make prometheus')
    port, target = free_port(), service.removeprefix('http://')
    cfg = tmp_path/'prometheus.yml'
    cfg.write_text(f"global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: mlops\n    static_configs:\n      - targets: ['{target}']\n")
    p = subprocess.Popen([PROMETHEUS, f'--config.file={cfg}', f'--storage.tsdb.path={tmp_path/"tsdb"}', f'--web.listen-address=127.0.0.1:{port}'],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    url = f'http://127.0.0.1:{port}'
    try:
        t0 = time.time()
        while True:
            assert p.poll() is None, p.stdout.read()[-2000:]
            try:
                if requests.get(f'{url}/-/ready', timeout=2).status_code == 200: break
            except requests.RequestException: pass
            assert time.time() - t0 < 60, 'prometheus not ready after 60 s'
            time.sleep(0.3)
        yield url
    finally:
        stop_process(p)


def _query(prom, q):
    r = requests.get(f'{prom}/api/v1/query', params={'query': q}, timeout=10).json()
    assert r['status'] == 'success', r
    return {json.dumps(x['metric'], sort_keys=True): float(x['value'][1]) for x in r['data']['result']}


def _wait(prom, q, ok, timeout=60):
    t0 = time.time()
    while True:
        v = _query(prom, q)
        if ok(v): return v
        assert time.time() - t0 < timeout, f'{q}: {v}'
        time.sleep(0.5)


def test_prometheus_sees_the_counters_rise(service, prometheus):
    _wait(prometheus, 'up{job="mlops"}', lambda v: v and max(v.values()) == 1)
    before = sum(_query(prometheus, 'mlops_requests_total{route="/invocations"}').values())
    s = requests.Session()
    rows = [{'Gender': 'Male', 'Age': 30 + i % 30, 'AnnualSalary': 40000 + 500 * i} for i in range(60)]
    for i in range(0, 60, 2):
        assert s.post(f'{service}/invocations', json={'dataframe_records': rows[i:i + 2]}, timeout=30).status_code == 200
    assert s.post(f'{service}/invocations', json={'dataframe_records': [{'Gender': 'Male', 'Age': 'x', 'AnnualSalary': 1}]}, timeout=30).status_code == 422
    _wait(prometheus, 'sum(mlops_requests_total{route="/invocations",status="200"})', lambda v: v and sum(v.values()) >= before + 30)
    _wait(prometheus, 'sum(mlops_requests_total{route="/invocations",status="422"})', lambda v: v and sum(v.values()) >= 1)
    _wait(prometheus, 'sum(mlops_rows_scored_total)', lambda v: v and sum(v.values()) >= 60)
    _wait(prometheus, 'sum(mlops_predictions_total)', lambda v: v and sum(v.values()) >= 60)
    _wait(prometheus, 'sum(mlops_request_latency_seconds_count{route="/invocations"})', lambda v: v and sum(v.values()) >= 31)
    _wait(prometheus, 'mlops_model_info{version="1"}', lambda v: v and max(v.values()) == 1)
    _wait(prometheus, 'mlops_drift_feature_psi{feature="Age"}', lambda v: v and list(v.values()) == [0.3])
    _wait(prometheus, 'mlops_drift_dataset', lambda v: v and list(v.values()) == [1.0])
