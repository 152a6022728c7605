"The dashboard's Monitoring tab on served traffic: a prediction log written by PredictionLog with rows the real smoke champion scored."
import pytest
from mlops_lib.app import Dashboard, dashboard_from_env
from mlops_lib.predlog import PredictionLog
from mlops_lib.samples import make_drifted, make_sample


@pytest.fixture
def dash(smoke_model, in_outputs, monkeypatch, tmp_path) -> Dashboard:
    monkeypatch.setenv('MLFLOW_TRACKING_URI', smoke_model['uri'])
    d = dashboard_from_env(str(smoke_model['params']))
    monkeypatch.setenv('MLOPS_OUTPUTS', str(tmp_path))  # the log and reports of this test only
    return d


def _log(lm, folder, df, latency, flags_every=10):
    from mlops_lib.predict import score_chunk
    scored, _ = score_chunk(df.drop(columns=['Purchased']), lm)
    if '_flags' not in scored.columns: scored['_flags'] = ['Age:out_of_range' if i % flags_every == 0 else '' for i in range(len(scored))]
    with PredictionLog(folder, rotate_rows=50, model_version=lm.version) as log:
        for i in range(0, len(scored), 20): log.append(scored.iloc[i:i + 20].assign(latency_ms=latency))
    return scored


def test_monitoring_tab_shows_the_live_service(dash, tmp_path):
    d0 = Dashboard(dash.lm, dash.params)
    assert 'No served traffic logged yet' in d0.live.html.value and str(tmp_path/'serving'/'smoke') in d0.live.html.value
    assert d0.tabs.get_title(4) == 'Monitoring' and d0.live.widget in d0.tabs.children[4].children and d0.monitor in d0.tabs.children[4].children
    scored = _log(dash.lm, tmp_path/'serving'/'smoke', make_sample('car_purchase', rows=300, seed=31)[0], 4.0)
    d = Dashboard(dash.lm, dash.params)
    h = d.live.html.value
    n_flagged = int((scored['_flags'] != '').sum())
    for part in (f'Live service: {len(scored):,} requests in the last 1h', 'p50 4 ms', 'p99 4 ms', f'{n_flagged / len(scored):.1%} of rows',
                 f'v1: {len(scored):,} rows', 'no dataset drift', 'prediction drift: no', 'mlops-live-drift'):
        assert part in h, (part, h)
    _log(dash.lm, tmp_path/'serving'/'smoke', make_drifted('car_purchase', rows=600, seed=32)[0], 9.0)
    d.live.refresh_button.click()
    h = d.live.html.value
    assert 'DATASET DRIFT' in h and 'AnnualSalary' in h and 'p99 9 ms' in h, h


def test_monitoring_tab_prefers_the_models_own_report(dash, tmp_path):
    import json
    (tmp_path/'monitor'/'smoke').mkdir(parents=True)
    (tmp_path/'monitor'/'latest.json').write_text(json.dumps({'created': 'then', 'summary': dict(n_drifted=2, n_features=3, dataset_drift=True, share_drifted=2/3)}))
    assert 'Dataset drift detected: 2 of 3' in Dashboard(dash.lm, dash.params).monitor.value
    (tmp_path/'monitor'/'smoke'/'latest.json').write_text(json.dumps({'created': 'now', 'flags': {'rows': 10, 'flagged': 1, 'share': 0.1},
                                                                       'summary': dict(n_drifted=0, n_features=3, dataset_drift=False, share_drifted=0.0)}))
    v = Dashboard(dash.lm, dash.params).monitor.value
    assert 'No dataset drift: 0 of 3' in v and '1 of 10 rows flagged by the schema' in v, v
