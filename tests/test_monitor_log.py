"""Monitoring served traffic: `mlops monitor --from-log` on a prediction log written by PredictionLog with rows the real
smoke champion scored, labels joined by request id, the per-model drift gauges, and alerts POSTed to a real HTTP receiver."""
import json, threading, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import numpy as np, pandas as pd, pytest, yaml
import mlflow
from mlflow import MlflowClient
from conftest import ROOT, copy_store, mlops
from mlops_lib.procs import free_port
from mlops_lib.predlog import PredictionLog, read_log
from mlops_lib.samples import make_drifted, make_sample

TARGET = 'Purchased'


def served(lm, df: pd.DataFrame, when: pd.Timestamp, seed: int=0) -> tuple[pd.DataFrame, pd.DataFrame]:
    "Score `df` as the service does and return (log rows, labels by request id)."
    from mlops_lib.predict import score_chunk
    scored, _ = score_chunk(df.drop(columns=[TARGET]), lm)
    rng = np.random.default_rng(seed)
    ids = [uuid.uuid4().hex for _ in range(len(scored))]
    if '_flags' not in scored.columns:  # scoring without the schema's expectation flags: flag every 7th row as the service would
        scored['_flags'] = ['AnnualSalary:out_of_range' if i % 7 == 0 else 'Gender:missing' if i % 11 == 0 else '' for i in range(len(scored))]
    rows = scored.assign(request_id=ids, timestamp=when + pd.to_timedelta(np.arange(len(scored)), unit='ms'), model_version=lm.version,
                         latency_ms=rng.gamma(2, 3, len(scored)))
    return rows, pd.DataFrame({'request_id': ids, TARGET: df.loc[scored.index, TARGET].to_numpy()})


@pytest.fixture(scope='module')
def traffic(smoke_model, tmp_path_factory):
    "A fresh outputs folder whose prediction log holds 300 drifted rows from 2 h ago, then 300 fresh rows from now."
    from mlops_lib.tracking import load_model
    mlflow.set_tracking_uri(smoke_model['uri'])
    lm = load_model('smoke')
    out = tmp_path_factory.mktemp('served')
    now = pd.Timestamp.now(tz='UTC')
    old, old_labels = served(lm, make_drifted('car_purchase', rows=300, seed=21)[0], now - pd.Timedelta('2h'), 1)
    new, new_labels = served(lm, make_sample('car_purchase', rows=300, seed=22)[0], now - pd.Timedelta('1min'), 2)
    with PredictionLog(out/'serving'/'smoke', rotate_rows=128) as log:
        for i in range(0, len(old), 45): log.append(old.iloc[i:i + 45])
        log.flush()
        for i in range(0, len(new), 70): log.append(new.iloc[i:i + 70])
    pd.concat([old_labels, new_labels]).to_csv(out/'labels.csv', index=False)
    new_labels.head(100).to_csv(out/'labels_new.csv', index=False)
    pd.DataFrame({'request_id': ['nope-1', 'nope-2'], TARGET: [0, 1]}).to_csv(out/'labels_none.csv', index=False)
    mlflow.set_tracking_uri(None)
    return dict(outputs=out, uri=copy_store(smoke_model['outputs'], out), old=old, new=new)   # monitor runs write to a copy, not the session store


def monitor(traffic, *args, check=True, env=None):
    return mlops('monitor', '--params', 'params/smoke.yaml', '--tracking-uri', traffic['uri'], *args, outputs=traffic['outputs'], check=check, env=env)


def test_log_holds_every_row(traffic):
    log = read_log(traffic['outputs']/'serving'/'smoke')
    assert len(log) == len(traffic['old']) + len(traffic['new']) and log.request_id.is_unique
    assert {'request_id', 'timestamp', 'model_version', 'Age', 'prediction', 'probability', '_flags', 'latency_ms'} <= set(log.columns)


def test_window_with_drift_writes_report_gauges_and_flags(traffic, tmp_path):
    r = monitor(traffic, '--from-log', '--since', '3h', '--out-dir', tmp_path/'rep')
    assert 'DATASET DRIFT' in r.stdout and 'prediction log (since 3h: 600 rows' in r.stdout, r.stdout
    s = json.loads((tmp_path/'rep'/'summary.json').read_text())
    logged = pd.concat([traffic['old'], traffic['new']])
    n_flagged = int((logged['_flags'] != '').sum())
    assert s['rows'] == 600 and s['flags']['flagged'] == n_flagged and s['flags']['share'] == pytest.approx(n_flagged / 600)
    if n_flagged: assert f"{n_flagged} of 600 rows flagged by the schema" in r.stdout and s['flags']['by_rule']['out_of_range'] > 0, r.stdout
    g = json.loads((traffic['outputs']/'monitor'/'smoke'/'latest.json').read_text())
    assert {'model', 'version', 'timestamp', 'dataset_drift', 'share_drifted', 'prediction_drift', 'features'} <= set(g)
    assert (g['model'], g['version'], g['dataset_drift']) == ('smoke', '1', True) and isinstance(g['prediction_drift'], bool)
    assert set(s['summary']['drifted_features']) <= set(g['features']) and g['features']['AnnualSalary']['drifted']
    assert all(set(f) == {'drifted', 'statistic', 'p_value', 'psi'} for f in g['features'].values())
    assert pd.Timestamp(g['timestamp']).tzinfo is not None
    assert 'Schema flags' in (tmp_path/'rep'/'drift.html').read_text()
    run = MlflowClient(traffic['uri']).get_run(s['run_id'])
    assert run.data.metrics['dataset_drift'] == 1.0 and run.data.metrics['flagged_share'] == pytest.approx(n_flagged / 600)
    assert 'flags_out_of_range' in run.data.metrics


def test_last_rows_are_fresh_and_labels_give_the_live_metric(traffic, tmp_path):
    r = monitor(traffic, '--from-log', '--last', '300', '--labels', traffic['outputs']/'labels.csv', '--out-dir', tmp_path/'rep')
    assert 'no dataset drift' in r.stdout and 'last 300: 300 rows' in r.stdout and 'live roc_auc' in r.stdout, r.stdout
    s = json.loads((tmp_path/'rep'/'summary.json').read_text())
    assert s['live_metric'] > 0.6 and s['target'] is not None and not s['metric_drop']
    r = monitor(traffic, '--from-log', '--since', '30m', '--labels', traffic['outputs']/'labels_new.csv', '--out-dir', tmp_path/'rep2')
    assert 'live roc_auc' in r.stdout, r.stdout


@pytest.mark.parametrize('args, msg', [
    (['--since', '2099-01-01'], 'no logged rows since 2099-01-01'),
    (['--since', 'yesterday'], "since: expected a duration like '30m', '24h', '7d'"),
    (['--labels', 'LABELS_NONE'], 'labels_none.csv: none of its 2 request ids is among the 600 rows'),
    (['--labels', 'PARAMS'], "smoke.yaml: not a CSV/Parquet"),
])
def test_window_and_label_errors_are_one_line(traffic, args, msg):
    args = [str(traffic['outputs']/'labels_none.csv') if a == 'LABELS_NONE' else str(ROOT/'params'/'smoke.yaml') if a == 'PARAMS' else a for a in args]
    r = monitor(traffic, '--from-log', *args, check=False)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and r.stderr.startswith('mlops monitor: error: '), r.stderr
    if 'not a CSV' not in msg: assert msg in r.stderr, r.stderr


def test_empty_log_is_a_one_line_error(traffic, tmp_path):
    r = mlops('monitor', '--params', 'params/smoke.yaml', '--tracking-uri', traffic['uri'], '--from-log', outputs=tmp_path, check=False)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'the prediction log is empty' in r.stderr and str(tmp_path/'serving'/'smoke') in r.stderr, r.stderr


class Receiver:
    "A real HTTP server on a free loopback port that records the JSON bodies POSTed to it."
    def __init__(self):
        self.bodies = []
        outer = self
        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                outer.bodies.append((self.path, json.loads(self.rfile.read(int(self.headers['Content-Length'])))))
                self.send_response(200); self.end_headers(); self.wfile.write(b'ok')
            def log_message(self, *a): pass
        self.server = ThreadingHTTPServer(('127.0.0.1', 0), H)
        self.url = f'http://127.0.0.1:{self.server.server_port}/hook'
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self): self.server.shutdown(); self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _params(tmp_path, **monitor_keys) -> str:
    p = yaml.safe_load((ROOT/'params/smoke.yaml').read_text())
    p['monitor'] = monitor_keys
    (tmp_path/'p.yaml').write_text(yaml.safe_dump(p))
    return str(tmp_path/'p.yaml')


def test_drift_alert_reaches_a_real_receiver(traffic, receiver, tmp_path):
    r = mlops('monitor', '--params', _params(tmp_path, alert_url=receiver.url), '--tracking-uri', traffic['uri'], '--from-log', '--since', '3h',
              '--out-dir', tmp_path/'rep', outputs=traffic['outputs'])
    assert 'alert (drift) sent' in r.stdout and r.stderr == '', (r.stdout, r.stderr)
    assert len(receiver.bodies) == 1
    path, b = receiver.bodies[0]
    assert path == '/hook' and b['event'] == 'drift' and (b['model'], b['version']) == ('smoke', '1')
    assert 'AnnualSalary' in b['drifted_features'] and b['dataset_drift'] is True
    assert b['decision'] == 'no retrain (monitor.retrain_on_drift is off)' and b['report'] == str(tmp_path/'rep'/'drift.html')
    assert b['report_uri'].startswith('file://') and (tmp_path/'rep'/'drift.html').is_file() and b['run_id']


def test_no_alert_without_drift(traffic, receiver, tmp_path):
    r = mlops('monitor', '--params', _params(tmp_path, alert_url=receiver.url), '--tracking-uri', traffic['uri'], '--from-log', '--last', '300',
              '--out-dir', tmp_path/'rep', outputs=traffic['outputs'])
    assert 'no dataset drift' in r.stdout and 'alert (' not in r.stdout and receiver.bodies == [], r.stdout


@pytest.mark.parametrize('kind', ['closed port', 'timeout'])
def test_dead_receiver_is_one_warning_line(traffic, tmp_path, kind):
    import socket
    hang = socket.socket(); hang.bind(('127.0.0.1', 0)); hang.listen(1)  # accepts the connection, never answers
    try:
        url = f'http://127.0.0.1:{free_port()}/hook' if kind == 'closed port' else f'http://127.0.0.1:{hang.getsockname()[1]}/hook'
        r = mlops('monitor', '--params', _params(tmp_path, alert_url=url, alert_timeout=1.0), '--tracking-uri', traffic['uri'], '--from-log', '--since', '3h',
                  '--out-dir', tmp_path/'rep', outputs=traffic['outputs'])
    finally: hang.close()
    assert r.returncode == 0 and 'DATASET DRIFT' in r.stdout and 'alert (drift) NOT delivered' in r.stdout, r.stdout
    assert r.stderr.count('\n') == 1 and r.stderr.startswith(f'warning: alert to {url} not delivered'), r.stderr
    assert json.loads((tmp_path/'rep'/'summary.json').read_text())['alerts'][0]['delivered'] is False


def test_retrain_result_follows_the_drift_alert(receiver, tmp_path):
    "Own model (the retrain registers version 2): drift in the labelled log -> a drift alert, the retrain, then its result."
    p = _params(tmp_path, alert_url=receiver.url, retrain_on_drift=True)
    out = tmp_path/'out'
    mlops('run', '--params', p, '--quiet', '--steps', 'ingest,tune,train', outputs=out, timeout=2400)
    from mlops_lib.tracking import load_model
    mlflow.set_tracking_uri(f'sqlite:///{out}/mlflow/mlflow.db')
    lm = load_model('smoke')
    mlflow.set_tracking_uri(None)
    rows, labels = served(lm, make_drifted('car_purchase', rows=400, seed=5)[0], pd.Timestamp.now(tz='UTC') - pd.Timedelta('5min'))
    with PredictionLog(out/'serving'/'smoke') as log: log.append(rows)
    labels.to_csv(tmp_path/'labels.csv', index=False)
    r = mlops('monitor', '--params', p, '--from-log', '--labels', tmp_path/'labels.csv', '--out-dir', tmp_path/'rep', outputs=out, timeout=2400)
    assert 'DATASET DRIFT' in r.stdout and 'retrain:' in r.stdout and 'alert (retrain) sent' in r.stdout, r.stdout
    assert [b['event'] for _, b in receiver.bodies] == ['drift', 'retrain']
    first, second = receiver.bodies[0][1], receiver.bodies[1][1]
    assert first['decision'] == 'retrain' and 'retrain' not in first
    assert second['retrain'] in ('promoted', 'rejected') and second['retrain_version'] == '2' and second['model'] == 'smoke'
    assert MlflowClient(f'sqlite:///{out}/mlflow/mlflow.db').get_model_version('smoke', '2').tags['promotion.decision'] == second['retrain']
