"`GET /metrics` scraped by a real Prometheus (Debian's package): the counters rise after traffic, the drift gauges come from the monitor's latest.json."
import ctypes, json, os, shutil, socket, subprocess, time
import pytest
import requests
from servicekit import running_service
from mlops_lib.procs import free_port, stop_process

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
                         stdout=open(tmp_path/'prometheus.log', 'w'), stderr=subprocess.STDOUT, text=True, start_new_session=True)
    url = f'http://127.0.0.1:{port}'   # its log goes to a file: an unread pipe fills and blocks it
    try:
        t0 = time.time()
        while True:
            assert p.poll() is None, (tmp_path/'prometheus.log').read_text()[-2000:]
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


def _tree(pid: int) -> list[int]:
    "A process and its descendants, from /proc."
    kids = {}
    for d in os.listdir('/proc'):
        if d.isdigit():
            try: kids.setdefault(int(open(f'/proc/{d}/stat').read().rsplit(')', 1)[1].split()[1]), []).append(int(d))
            except OSError: pass
    out, todo = [], [pid]
    while todo: p = todo.pop(); out.append(p); todo += kids.get(p, [])
    return out


def _server_side_nodelay(pids: list[int], port: int, client_port: int) -> int:
    "TCP_NODELAY of the server's end of the connection loopback:client_port -> loopback:port, read through pidfd_getfd."
    inodes = {f[9] for f in (l.split() for l in open('/proc/net/tcp').read().splitlines()[1:])
              if int(f[1].split(':')[1], 16) == port and int(f[2].split(':')[1], 16) == client_port}
    libc = ctypes.CDLL(None, use_errno=True)
    for pid in pids:
        for fd in os.listdir(f'/proc/{pid}/fd'):
            try: target = os.readlink(f'/proc/{pid}/fd/{fd}')
            except OSError: continue
            if target.removeprefix('socket:[').removesuffix(']') in inodes:
                pidfd = os.pidfd_open(pid)
                try: dup = libc.syscall(438, pidfd, int(fd), 0)  # pidfd_getfd(2)
                finally: os.close(pidfd)
                assert dup >= 0, f"pidfd_getfd failed: errno {ctypes.get_errno()}"
                with socket.socket(fileno=dup) as s: return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    raise AssertionError(f"no process of {pids} holds the server end of the connection from port {client_port}")


def test_two_workers_answer_without_the_nagle_stall(smoke_model, tmp_path):
    "With --workers 2 uvicorn binds the shared socket itself (proto 0), so asyncio does not set TCP_NODELAY on connections and each "
    "response waited ~40 ms for the client's delayed ACK. `mlops serve` sets it on the listening socket; the accepted connection has it."
    with running_service(tmp_path/'outputs', '--tracking-uri', smoke_model['uri'], '--workers', 2, '--no-log') as (url, proc):
        port = int(url.rsplit(':', 1)[1])
        with socket.create_connection(('127.0.0.1', port)) as c:
            c.sendall(b'GET /ping HTTP/1.1\r\nHost: x\r\n\r\n')
            assert c.recv(4096).startswith(b'HTTP/1.1 200')
            assert _server_side_nodelay(_tree(proc.pid), port, c.getsockname()[1]) == 1
