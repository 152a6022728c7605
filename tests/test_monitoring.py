"Drift monitoring against a real champion: detection, false-alarm rate, reports, MLflow runs and the retrain loop."
import json
import pytest, yaml
import mlflow
from mlflow import MlflowClient
from conftest import ROOT, copy_store, mlops, store_uri
from mlops_lib.params import load_params
from mlops_lib.drift import drift_report
from mlops_lib.monitor import reference_data
from mlops_lib.samples import make_drifted, make_sample


@pytest.fixture(scope='module')
def batches(tmp_path_factory):
    d = tmp_path_factory.mktemp('batches')
    make_drifted('car_purchase', rows=400, seed=11)[0].to_csv(d/'drifted.csv', index=False)
    make_sample('car_purchase', rows=400, seed=12)[0].to_csv(d/'fresh.csv', index=False)
    make_sample('car_purchase', rows=400, seed=12)[0].drop(columns=['Age']).to_csv(d/'no_age.csv', index=False)
    far = make_sample('car_purchase', rows=400, seed=13)[0]
    far['AnnualSalary'] *= 20  # every salary beyond the training range: scored, and flagged out_of_range
    far.to_csv(d/'far.csv', index=False)
    return d


@pytest.fixture(scope='module')
def smoke_copy(smoke_model, tmp_path_factory):
    "The smoke champion in an outputs folder of this module (`copy_store`): the `mlops monitor` runs write there, not to the session store."
    out = tmp_path_factory.mktemp('monitor-out')
    return {**smoke_model, 'outputs': out, 'uri': copy_store(smoke_model['outputs'], out)}


def test_drifted_batch_is_detected(smoke_copy, batches):
    out = batches/'report-drifted'
    r = mlops('monitor', '--params', 'params/smoke.yaml', '--current', batches/'drifted.csv', '--out-dir', out, outputs=smoke_copy['outputs'])
    assert 'DATASET DRIFT' in r.stdout and 'AnnualSalary' in r.stdout and 'live roc_auc' in r.stdout, r.stdout
    s = json.loads((out/'summary.json').read_text())
    assert s['summary']['dataset_drift'] and s['prediction']['drifted']
    html = (out/'drift.html').read_text()
    assert html.count('* plotly.js v') == 1 and '<script src=' not in html
    latest = json.loads((smoke_copy['outputs']/'monitor'/'latest.json').read_text())
    assert latest['report_path'] == str(out/'drift.html')
    mlflow.set_tracking_uri(smoke_copy['uri'])
    run = MlflowClient().get_run(s['run_id'])
    assert run.data.tags['mlops.kind'] == 'monitor' and run.data.metrics['dataset_drift'] == 1.0 and 'psi_Age' in run.data.metrics


def test_fresh_batch_is_not_drift(smoke_copy, batches):
    r = mlops('monitor', '--params', 'params/smoke.yaml', '--current', batches/'fresh.csv', '--out-dir', batches/'report-fresh', outputs=smoke_copy['outputs'])
    assert 'no dataset drift' in r.stdout, r.stdout


def test_false_alarm_rate_over_20_seeds(smoke_model, in_outputs):
    "Fresh samples from the generator that made the training data: dataset drift in at most 2 of 20 (10%)."
    from mlops_lib.tracking import load_model
    P = load_params('params/smoke.yaml')
    lm = load_model('smoke')
    ref = reference_data(lm)
    alarms = [drift_report(ref, make_sample('car_purchase', rows=400, seed=1000 + s)[0], lm.schema.numeric, lm.schema.categorical, P.monitor)['summary']['dataset_drift'] for s in range(20)]
    assert sum(alarms) <= 2, f"{sum(alarms)} false alarms in 20"
    caught = [drift_report(ref, make_drifted('car_purchase', rows=400, seed=2000 + s)[0], lm.schema.numeric, lm.schema.categorical, P.monitor)['summary']['dataset_drift'] for s in range(20)]
    assert sum(caught) >= 18, f"drift caught in only {sum(caught)} of 20"


def test_missing_column_is_a_one_line_error(smoke_copy, batches):
    r = mlops('monitor', '--params', 'params/smoke.yaml', '--current', batches/'no_age.csv', outputs=smoke_copy['outputs'], check=False)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and "'Age'" in r.stderr and 'no_age.csv' in r.stderr, r.stderr


def test_batch_outside_the_training_range_is_scored_flagged_and_drifts(smoke_copy, batches):
    "Every salary far past what the model saw (an expectation, not the contract): all rows are scored and flagged, and the drift is reported."
    out = batches/'report-far'
    r = mlops('monitor', '--params', 'params/smoke.yaml', '--current', batches/'far.csv', '--out-dir', out, outputs=smoke_copy['outputs'])
    assert '400 of 400 rows flagged by the schema (out_of_range 400)' in r.stdout and 'prediction drift: yes' in r.stdout, r.stdout
    assert "passes the model's contract" not in r.stdout and 'fail the model' not in r.stdout, r.stdout
    s = json.loads((out/'summary.json').read_text())
    assert s['rows'] == 400 and s['rows_valid'] == 400 and s['prediction']['drifted'] and s['flags']['by_rule']['out_of_range'] == 400
    assert 'AnnualSalary' in s['summary']['drifted_features'] and (out/'drift.html').stat().st_size > 100_000


def test_text_in_a_numeric_column_is_a_one_line_error(smoke_copy, batches, tmp_path):
    from mlops_lib.samples import make_sample
    df = make_sample('car_purchase', rows=50, seed=14)[0].astype({'Age': object})
    df.loc[:9, 'Age'] = 'unknown'
    df.to_csv(tmp_path/'text.csv', index=False)
    r = mlops('monitor', '--params', 'params/smoke.yaml', '--current', tmp_path/'text.csv', outputs=smoke_copy['outputs'], check=False)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and "column 'Age' should be numeric but holds 'unknown' (10 such values)" in r.stderr, r.stderr


def test_retrain_loop_end_to_end(tmp_path):
    "Drift found with labels -> the pipeline retrains on data + batch; the new version goes through the gate."
    params = yaml.safe_load((ROOT/'params/smoke.yaml').read_text())
    params['monitor'] = {'retrain_on_drift': True}
    (tmp_path/'p.yaml').write_text(yaml.safe_dump(params))
    out = tmp_path/'out'
    mlops('run', '--params', tmp_path/'p.yaml', '--quiet', '--steps', 'ingest,tune,train', outputs=out)
    make_drifted('car_purchase', rows=400, seed=5)[0].to_csv(tmp_path/'drifted.csv', index=False)
    r = mlops('monitor', '--params', tmp_path/'p.yaml', '--current', tmp_path/'drifted.csv', '--out-dir', tmp_path/'rep', outputs=out)
    assert 'DATASET DRIFT' in r.stdout and 'retrain:' in r.stdout, r.stdout
    c = MlflowClient(store_uri(out))
    versions = c.search_model_versions("name='smoke'")
    assert len(versions) == 2
    v2 = c.get_model_version('smoke', '2')
    assert v2.tags['promotion.decision'] in ('promoted', 'rejected') and v2.tags['promotion.champion_version'] == '1'
    retrain_data = mlflow.artifacts.download_artifacts(run_id=v2.run_id, artifact_path='data/reference.parquet', tracking_uri=store_uri(out))
    import pandas as pd
    assert len(pd.read_parquet(retrain_data)) > 320      # trained on the base data plus the labelled batch
