"The dashboard's widgets (mlops_lib.app) driven programmatically against the smoke models trained by the real pipeline."
import base64, json, time
import numpy as np, pandas as pd, pytest
from mlops_lib.app import Dashboard, dashboard_from_env, form_row, score_batch_csv
from mlops_lib.params import load_params


@pytest.fixture
def clf_dash(smoke_model, in_outputs, monkeypatch) -> Dashboard:
    monkeypatch.setenv('MLFLOW_TRACKING_URI', smoke_model['uri'])
    return dashboard_from_env(str(smoke_model['params']))


@pytest.fixture
def reg_dash(regression_model, in_outputs, monkeypatch) -> Dashboard:
    monkeypatch.setenv('MLFLOW_TRACKING_URI', regression_model['uri'])
    return dashboard_from_env(str(regression_model['params']))


def _batch(model: dict, n: int=6) -> pd.DataFrame:
    "Rows of the model's own test split (features and target) as a user would upload them."
    return pd.read_parquet(model['run_dir']/'test.parquet').head(n)


def test_classification_form(clf_dash):
    d, S = clf_dash, clf_dash.lm.schema
    assert isinstance(d, Dashboard) and d.lm.version == '1' and 'champion' in d.lm.aliases
    f = d.predict.form
    assert set(f.fields) == set(S.feature_names)
    for c in S.categorical: assert [v for _, v in f.fields[c].options] == S.column(c).categories
    num = S.column(S.numeric[0])
    f.set(**{num.name: str(int(num.max) * 10 + 1)})       # out of the expected range: a warning, and Predict still works (it used to be blocked)
    d.predict.predict_button.click()
    assert f.errors[num.name].value == '' and 'outside the expected range' in f.warnings[num.name].value
    assert d.predict.last is not None and d.predict.last[1]['flags'] == [f'{num.name}:out_of_range'] and 'mlops-flags' in d.predict.result.value
    f.set(**{num.name: ''})                                # empty: a warning, the model fills it in (it used to be 'required')
    assert f.errors[num.name].value == '' and 'empty' in f.warnings[num.name].value
    f.set(**{num.name: 'lots'})                            # not a number: the contract blocks Predict
    d.predict.predict_button.click()
    assert 'not a number' in f.errors[num.name].value and 'Fix 1 field(s) first' in d.predict.result.value
    f.set(**{num.name: str(int(num.median))})
    assert f.errors[num.name].value == '' and f.warnings[num.name].value == ''
    d.predict.predict_button.click()
    assert 'mlops-flags' not in d.predict.result.value
    values, res = d.predict.last
    X = form_row(values, S)
    assert res['prediction'] == d.lm.model.predict(X)[0]
    assert res['probability'] == pytest.approx(d.lm.model.predict_proba(X).max())
    assert f"Predicted {S.target.name}: <b>{res['prediction']}</b>" in d.predict.result.value
    bars = d.predict.chart.outputs[0]['data']['application/vnd.plotly.v1+json']['data'][0]
    assert bars['type'] == 'bar' and sorted(bars['y']) == sorted(map(str, d.lm.model.classes_))
    assert d.explain.pd_chart.outputs and d.explain.importance.outputs  # the Explain tab follows the prediction


def test_prediction_is_fast(clf_dash):
    d = clf_dash
    d.predict.predict_button.click()
    t = []
    for _ in range(10):
        s = time.perf_counter(); d.predict.predict_button.click(); t.append(time.perf_counter() - s)
    assert np.median(t) < 0.5, t   # includes the partial-dependence refresh and both figures


def test_model_card_and_monitoring(clf_dash, in_outputs, tmp_path, monkeypatch):
    d = clf_dash
    assert 'smoke version 1 (champion)' in d.card.value and 'roc_auc' in d.card.value and d.lm.run_id in d.card.value
    from mlflow import MlflowClient   # every registered version, newest first (other test files may have added some)
    registered = sorted((str(v.version) for v in MlflowClient().search_model_versions("name='smoke'")), key=int, reverse=True)
    assert [v for _, v in d.version.options] == registered and registered[-1] == '1'
    assert [d.tabs.get_title(i) for i in range(5)] == ['Predict', 'Batch', 'Explain', 'Model', 'Monitoring']
    monkeypatch.setenv('MLOPS_OUTPUTS', str(tmp_path))  # the session outputs may hold test_monitoring's report
    assert 'No drift report yet' in Dashboard(d.lm, d.params).monitor.value
    (tmp_path/'monitor').mkdir()
    (tmp_path/'monitor'/'latest.json').write_text(json.dumps({'created': 'now', 'report_path': 'r.html', 'summary': dict(
        share_drifted=0.5, n_drifted=1, n_features=2, dataset_drift=True, drifted_features=['Age'])}))
    assert 'Dataset drift detected: 1 of 2 features drifted' in Dashboard(d.lm, d.params).monitor.value


def test_batch_upload(clf_dash, smoke_model):
    d, S = clf_dash, clf_dash.lm.schema
    df = _batch(smoke_model).astype(object)
    num, cat = S.numeric[0], (S.categorical or S.numeric)[-1]
    df.loc[df.index[1], num] = 'lots'
    df.loc[df.index[3], cat] = 'Nonsense'
    msg = d.batch.upload(df.to_csv(index=False).encode(), 'new.csv')
    # the text is rejected (contract); the unknown category is scored and flagged (it used to be rejected too)
    assert msg.startswith('new.csv: scored 5 of 6 rows; 1 invalid row(s) left out (listed below); ') and 'flagged' in msg, msg
    assert d.batch.rejects[['line', 'column']].values.tolist() == [[3, num]]
    assert d.batch.rejects.reason.iloc[0] == 'not a number'
    assert len(d.batch.scored) == 5 and {'prediction', 'probability', '_flags'} <= set(d.batch.scored.columns)
    assert f'{cat}:unknown_category' in d.batch.scored['_flags'].iloc[2] and f'{cat}:unknown_category' in d.batch.table.value
    csv = base64.b64decode(d.batch.download.value.split('base64,')[1].split('"')[0]).decode()
    assert pd.read_csv(pd.io.common.StringIO(csv)).shape[0] == 5 and 'new_scored.csv' in d.batch.download.value
    assert '<td>lots</td>' in d.batch.errors.value
    assert 'the limit is 0.0001 MB' in score_batch_csv(d.lm, df.to_csv().encode(), max_mb=0.0001)[2]
    assert 'missing column(s)' in d.batch.upload(df.drop(columns=num).to_csv(index=False).encode(), 'x.csv') and d.batch.table.value == ''


def test_regression_dashboard(reg_dash, regression_model):
    d, S = reg_dash, reg_dash.lm.schema
    assert d.lm.name == 'smoke_regression' and 'rmse' in d.lm.metrics
    d.predict.predict_button.click()
    values, res = d.predict.last
    assert res['prediction'] == pytest.approx(d.lm.model.predict(form_row(values, S))[0])
    assert res['high'] - res['low'] == pytest.approx(2 * d.lm.metrics['rmse'])
    assert '&plusmn;' in d.predict.result.value
    assert d.predict.chart.outputs[0]['data']['application/vnd.plotly.v1+json']['data'][0]['type'] == 'indicator'
    d.explain.feature.value = S.numeric[-1]
    assert len(d.explain.pd_chart.outputs[0]['data']['application/vnd.plotly.v1+json']['data'][0]['x']) >= 2
    assert 'upload.csv: scored 6 of 6 rows' in d.batch.upload(_batch(regression_model).to_csv(index=False).encode())


def test_no_model_says_how_to_train(tmp_path, monkeypatch):
    monkeypatch.setenv('MLOPS_OUTPUTS', str(tmp_path))
    monkeypatch.setenv('MLFLOW_TRACKING_URI', f'sqlite:///{tmp_path}/mlflow/mlflow.db')
    d = dashboard_from_env('params/smoke.yaml')
    assert d.lm is None and "No registered model 'smoke' yet. Train one with: mlops run --params params/smoke.yaml" in d.header.value


def test_every_params_file_builds_a_form():
    "No per-dataset code: every params file's data gives a usable form (the 200-feature one shows its top fields)."
    from mlops_lib.app import PredictionForm
    from mlops_lib.schema import infer_schema
    from mlops_lib.samples import SAMPLES, make_sample
    for p in sorted(__import__('pathlib').Path('params').glob('*.yaml')):
        P = load_params(p)
        name = P.data.sample
        if name not in SAMPLES: continue
        df, _ = make_sample(name, rows=200, seed=0)   # attrition needs the examples extra, which `make setup` installs
        df = df.drop(columns=[c for c in P.features.drop if c in df.columns])
        S = infer_schema(df, P.target, P.task)
        f = PredictionForm(S)
        assert len(f.fields) == min(12, len(S.features)) and len(f.values()) == len(S.features) and f.check() == {}, p
