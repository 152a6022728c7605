"""A corpus of bad input, one test each: CSV and Parquet batches for `mlops predict`, params files and options for
`mlops run`, the dashboard's form and upload. Each expects exit code 2 (or a FormError / a refused upload), a one-line
message naming the file, line, column or key, nothing written and nothing moved (the champion and the registry unchanged).

Only contract violations are used (missing columns, text in numeric columns, malformed files, bad keys and types), not
expectation breaks such as out-of-training-range values (those are scored and flagged).
"""
import contextlib, io, os
from pathlib import Path
import pandas as pd, pytest, yaml
from conftest import ROOT

SMOKE = yaml.safe_load((ROOT/'params'/'smoke.yaml').read_text())
GOOD = "Gender,Age,AnnualSalary\nMale,35,50000\nFemale,42,81000\nMale,28,42000\n"


@pytest.fixture(scope='module')
def env(smoke_model, tmp_path_factory):
    "The trained smoke store, a scratch folder, and what must not change."
    from mlflow import MlflowClient
    c = MlflowClient(smoke_model['uri'], smoke_model['uri'])
    return dict(**smoke_model, tmp=tmp_path_factory.mktemp('bad'), client=c)


def registry(env):
    c = env['client']
    return (str(c.get_model_version_by_alias('smoke', 'champion').version), len(c.search_model_versions("name='smoke'")))


def run_cli(env, monkeypatch, *args):
    "Run `mlops_lib.cli.main` in-process on the trained store; return (exit code, stderr lines)."
    from mlops_lib.cli import main
    monkeypatch.setenv('MLOPS_OUTPUTS', str(env['outputs']))
    monkeypatch.delenv('MLOPS_DEBUG', raising=False)
    monkeypatch.chdir(ROOT)
    with contextlib.redirect_stderr(io.StringIO()) as err, contextlib.redirect_stdout(io.StringIO()): rc = main([str(a) for a in args])
    return rc, err.getvalue().strip().splitlines()


def files_in(folder: Path) -> set:
    "Files and folders under `folder`, without SQLite's WAL/shared-memory files and lock files (they come and go with connections)."
    return {p for p in folder.rglob('*') if not p.name.endswith(('-wal', '-shm', '.lock'))}


def check_refused(env, monkeypatch, args, expect, folder):
    "Exit 2, one line containing every string in `expect`, no new file in `folder`, the registry unchanged."
    before, files = registry(env), files_in(folder)
    runs = set((env['outputs']/'runs').iterdir())
    rc, lines = run_cli(env, monkeypatch, *args)
    assert rc == 2, (rc, lines)
    assert len(lines) == 1, lines
    for e in expect: assert e in lines[0], (e, lines[0])
    assert 'Traceback' not in lines[0]
    assert files_in(folder) == files, files_in(folder) ^ files
    assert set((env['outputs']/'runs').iterdir()) == runs
    assert registry(env) == before


# ---- batches for `mlops predict` -----------------------------------------------------------------------------------

def _csv(text): return lambda p: p.write_text(text)
def _bytes(b): return lambda p: p.write_bytes(b)
def _parquet(df): return lambda p: df.to_parquet(p, index=False)
def _truncated_parquet(p):
    pd.read_csv(io.StringIO(GOOD)).to_parquet(p, index=False); b = p.read_bytes(); p.write_bytes(b[:len(b) // 2])

GOOD_DF = pd.read_csv(io.StringIO(GOOD))
BATCHES = {   # name: (file name, writer, strings the message must contain, extra args)
    'csv-missing-age': ('b.csv', _csv("Gender,AnnualSalary\nMale,50000\n"), ['b.csv', 'Age'], []),
    'csv-missing-salary': ('b.csv', _csv("Gender,Age\nMale,35\n"), ['b.csv', 'AnnualSalary'], []),
    'csv-missing-gender': ('b.csv', _csv("Age,AnnualSalary\n35,50000\n"), ['b.csv', 'Gender'], []),
    'csv-only-other-columns': ('b.csv', _csv("x,y\n1,2\n"), ['b.csv', 'missing column'], []),
    'csv-misspelt-column': ('b.csv', _csv("Gender,age,AnnualSalary\nMale,35,50000\n"), ['b.csv', 'Age'], []),
    'csv-text-in-age': ('b.csv', _csv(GOOD + "Male,old,50000\n"), ['b.csv', 'Age'], []),
    'csv-text-in-salary': ('b.csv', _csv(GOOD + "Male,30,lots\n"), ['b.csv', 'AnnualSalary'], []),
    'csv-text-in-both': ('b.csv', _csv(GOOD + "Male,x,y\n"), ['b.csv', 'Age'], []),
    'csv-empty-file': ('b.csv', _csv(""), ['b.csv', 'empty'], []),
    'csv-header-only': ('b.csv', _csv("Gender,Age,AnnualSalary\n"), ['b.csv', 'no data rows'], []),
    'csv-ragged-row': ('b.csv', _csv(GOOD + "Male,30,40000,extra,more\n"), ['b.csv'], []),
    'csv-unclosed-quote': ('b.csv', _csv('Gender,Age,AnnualSalary\n"Male,30,40000\nFemale,31,41000\n'), ['b.csv'], []),
    'csv-binary-garbage': ('b.csv', _bytes(b'\x00\xff\xfe\x89PNG\r\n\x1a\n' * 50), ['b.csv'], []),
    'csv-latin1-bytes': ('b.csv', _bytes("Gender,Age,AnnualSalary\nM\xe4le,30,40000\n".encode('latin-1')), ['b.csv'], []),
    'csv-not-found': (None, None, ['nope.csv', 'not found'], []),
    'csv-wrong-suffix': ('b.xlsx', _csv(GOOD), ['b.xlsx', "'.xlsx'"], []),
    'csv-is-a-directory': ('dir.csv', lambda p: p.mkdir(), ['dir.csv'], []),
    'parquet-missing-age': ('b.parquet', _parquet(GOOD_DF.drop(columns=['Age'])), ['b.parquet', 'Age'], []),
    'parquet-missing-all': ('b.parquet', _parquet(pd.DataFrame({'x': [1]})), ['b.parquet', 'missing column'], []),
    'parquet-text-in-age': ('b.parquet', _parquet(GOOD_DF.astype({'Age': str}).assign(Age=['35', 'old', '28'])), ['b.parquet', 'Age'], []),
    'parquet-text-in-salary': ('b.parquet', _parquet(GOOD_DF.astype({'AnnualSalary': str}).assign(AnnualSalary=['1', 'x', '2'])), ['b.parquet', 'AnnualSalary'], []),
    'parquet-garbage': ('b.parquet', _bytes(b'not a parquet file at all' * 20), ['b.parquet', 'PARQUET'], []),
    'parquet-truncated': ('b.parquet', _truncated_parquet, ['b.parquet'], []),
    'parquet-empty-file': ('b.parquet', _bytes(b''), ['b.parquet', 'empty'], []),
    'parquet-zero-rows': ('b.parquet', _parquet(GOOD_DF.iloc[:0]), ['b.parquet', 'no data rows'], []),
    'parquet-csv-content': ('b.parquet', _csv(GOOD), ['b.parquet'], []),
    'output-bad-suffix': ('b.csv', _csv(GOOD), ['out.json', "'.json'"], ['--output', 'out.json']),
    'output-is-input': ('b.csv', _csv(GOOD), ['b.csv', 'must not overwrite the input'], ['--output', 'b.csv']),
    'chunk-size-zero': ('b.csv', _csv(GOOD), ['--chunk-size', 'got 0'], ['--chunk-size', '0']),
    'chunk-size-negative': ('b.csv', _csv(GOOD), ['--chunk-size', 'got -5'], ['--chunk-size', '-5']),
    'model-version-missing': ('b.csv', _csv(GOOD), ["'smoke'", 'version 999'], ['--model-version', '999']),
    'alias-missing': ('b.csv', _csv(GOOD), ["'smoke'", "alias 'nope'"], ['--alias', 'nope']),
    'params-missing': ('b.csv', _csv(GOOD), ['nope.yaml', 'not found'], ['--params', 'params/nope.yaml']),
}


@pytest.mark.parametrize('case', list(BATCHES))
def test_bad_batch(env, monkeypatch, case):
    fname, write, expect, extra = BATCHES[case]
    folder = env['tmp']/case; folder.mkdir()
    src = folder/(fname or 'nope.csv')
    if write: write(src)
    out = folder/'out.csv'
    opts = {'--params': env['params'], '--output': out}
    for k, v in zip(extra[::2], extra[1::2]): opts[k] = folder/v if k == '--output' else v
    args = ['predict', '--input', src, '--quiet'] + [x for kv in opts.items() for x in kv]
    check_refused(env, monkeypatch, args, expect, folder)


# ---- params files and options for `mlops run` ----------------------------------------------------------------------

def _with(**changes):
    d = yaml.safe_load(yaml.safe_dump(SMOKE))
    for k, v in changes.items():
        *path, last = k.split('__'); t = d
        for p in path: t = t.setdefault(p, {})
        if v is _DROP: t.pop(last, None)
        else: t[last] = v
    return yaml.safe_dump(d)

_DROP = object()
PARAMS = {   # name: (YAML text, strings the message must contain)
    'unknown-top-key': (_with(colour='red'), ["unknown key 'colour'"]),
    'unknown-nested-key': (_with(models__folds=3), ["unknown key 'models.folds'"]),
    'unknown-family': (_with(models__families={'xgboost': {}}), ['models.families.xgboost']),
    'seed-not-int': (_with(seed='abc'), ["'seed'"]),
    'task-invalid': (_with(task='clustering'), ["'task'"]),
    'name-missing': (_with(name=_DROP), ["missing required key 'name'"]),
    'target-missing': (_with(target=_DROP), ["missing required key 'target'"]),
    'data-missing': (_with(data=_DROP), ["missing required key 'data'"]),
    'data-no-source': (_with(data={'rows': 100}), ["'data'", 'path']),
    'data-rows-negative': (_with(data__rows=-5), ["'data.rows'"]),
    'name-with-space': (_with(name='my project'), ["'name'"]),
    'metric-wrong-task': (_with(promotion__metric='rmse'), ["'promotion.metric'", 'rmse']),
    'threshold-unknown-metric': (_with(promotion__thresholds={'auc': 0.7}), ["'promotion.thresholds.auc'"]),
    'threshold-not-number': (_with(promotion__thresholds={'roc_auc': 'high'}), ['promotion.thresholds.roc_auc']),
    'margin-negative': (_with(promotion__margin=-0.1), ["'promotion.margin'"]),
    'test-size-above-one': (_with(split__test_size=1.5), ["'split.test_size'"]),
    'cv-folds-one': (_with(models__cv_folds=1), ["'models.cv_folds'"]),
    'strategy-unknown': (_with(models__families={'linear': {'strategy': 'bayes'}}), ['models.families.linear.strategy']),
    'space-not-a-parameter': (_with(models__families={'linear': {'strategy': 'grid', 'space': {'depth': [1]}}}), ["'models.families.linear.space.depth'"]),
    'space-empty-list': (_with(models__families={'linear': {'strategy': 'grid', 'space': {'C': []}}}), ["'models.families.linear.space.C'"]),
    'space-not-a-list': (_with(models__families={'linear': {'space': {'C': 1.0}}}), ['models.families.linear.space.C']),
    'on-invalid-unknown': (_with(predict__on_invalid='ignore'), ["'predict.on_invalid'"]),
    'chunk-size-zero': (_with(predict__chunk_size=0), ["'predict.chunk_size'"]),
    'monitor-share-above-one': (_with(monitor__share=2), ["'monitor.share'"]),
    'range-margin-negative': (_with(features__range_margin=-1), ["'features.range_margin'"]),
    'stratify-not-bool': (_with(split__stratify='maybe'), ["'split.stratify'"]),
    'yaml-bad-indent': ("name: smoke\ntask: classification\n  target: x\n", ['line 3']),
    'yaml-unclosed-bracket': ("name: smoke\nmodels: [\n", ['not valid YAML']),
    'yaml-a-list': ("- name\n- task\n", ['expected a YAML mapping']),
    'yaml-empty': ("", ["missing required key 'name'"]),
    'yaml-tab-indent': ("name: smoke\ndata:\n\tsample: car_purchase\n", ['not valid YAML']),
}


@pytest.mark.parametrize('case', list(PARAMS))
def test_bad_params_file(env, monkeypatch, case):
    text, expect = PARAMS[case]
    folder = env['tmp']/f'params-{case}'; folder.mkdir()
    f = folder/'p.yaml'; f.write_text(text)
    check_refused(env, monkeypatch, ['run', '--params', f, '--quiet'], ['p.yaml', *expect], folder)


OPTIONS = {
    'params-not-found': (['run', '--params', 'params/nope.yaml'], ['params/nope.yaml', 'not found']),
    'unknown-step': (['run', '--params', 'params/smoke.yaml', '--steps', 'ingest,deploy'], ["unknown step 'deploy'", '--steps']),
    'resume-missing': (['run', '--params', 'params/smoke.yaml', '--resume', 'nope'], ['--resume nope', 'no run folder']),
    'run-name-exists': (['run', '--params', 'params/smoke.yaml', '--run-name', 'smoke-1'], ['--run-name smoke-1', 'exists already']),
    'data-unknown-sample': (['data', '--name', 'nope'], ["unknown sample 'nope'"]),
    'status-params-missing': (['status', '--params', 'params/nope.yaml'], ['params/nope.yaml']),
}


@pytest.mark.parametrize('case', list(OPTIONS))
def test_bad_option(env, monkeypatch, case):
    args, expect = OPTIONS[case]
    folder = env['tmp']/f'opt-{case}'; folder.mkdir()
    check_refused(env, monkeypatch, args, expect, env['outputs']/'mlflow')


# ---- the dashboard: form and upload --------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def lm(env):
    import mlflow
    from mlops_lib.tracking import load_model
    mlflow.set_tracking_uri(env['uri'])
    try: yield load_model('smoke', uri=env['uri'])
    finally: os.environ.pop('MLFLOW_TRACKING_URI', None)


FORMS = {   # values: the field the error must name
    'age-text': ({'Age': 'old'}, 'Age'),
    'salary-text': ({'AnnualSalary': 'lots'}, 'AnnualSalary'),
    'age-infinite': ({'Age': 'inf'}, 'Age'),
    'salary-nan-text': ({'AnnualSalary': 'NaN'}, 'AnnualSalary'),
    'two-fields': ({'Age': 'x', 'AnnualSalary': 'y'}, 'AnnualSalary'),
}


@pytest.mark.parametrize('case', list(FORMS))
def test_bad_form(lm, case):
    from mlops_lib.app import FormError, predict_one
    from mlops_lib.errors import UserError
    values, field = FORMS[case]
    with pytest.raises(FormError) as ei: predict_one(lm, values)
    assert isinstance(ei.value, UserError)
    msg = str(ei.value)
    assert len(msg.splitlines()) == 1 and field in ei.value.errors and f'{field}:' in msg, msg


SOFT_FORMS = {   # values: (the field warned about, the warning, the flag the scored row carries or None)
    'age-not-whole': ({'Age': '30.5'}, 'Age', 'whole numbers', None),
    'age-blank': ({'Age': '  '}, 'Age', 'empty', 'Age:missing'),
    'gender-blank': ({'Gender': ''}, 'Gender', 'empty', 'Gender:missing'),
}


@pytest.mark.parametrize('case', list(SOFT_FORMS))
def test_soft_form_value_warns_and_still_predicts(lm, case):
    "Issue 9: only the contract blocks Predict; a blank field or a fraction in a whole-number field is a warning beside the field."
    from mlops_lib.app import check_form, default_value, form_notes, predict_one
    values, field, warning, flag = SOFT_FORMS[case]
    full = {**{c.name: default_value(c) for c in lm.schema.features}, **values}
    assert check_form(full, lm.schema) == {}
    notes = form_notes(full, lm.schema)
    assert list(notes) == [field] and warning in notes[field], notes
    res = predict_one(lm, values)
    assert res['prediction'] in (0, 1) and 0 <= res['probability'] <= 1
    assert res['flags'] == ([flag] if flag else []), res['flags']


UPLOADS = {   # name: (bytes, strings the message must contain)
    'missing-column': (b"Gender,Age\nMale,30\n", ['up.csv', 'AnnualSalary']),
    'not-utf8': ("Gender,Age,AnnualSalary\nM\xe4le,30,40000\n".encode('latin-1'), ['up.csv', 'UTF-8']),
    'empty': (b"", ['up.csv']),
    'binary': (b'\x00\x01\x02\xff' * 100, ['up.csv']),
    'over-limit': (GOOD.encode() * 30_000, ['up.csv', 'limit is 1 MB']),
    'no-feature-columns': (b"a,b\n1,2\n", ['up.csv', 'missing column']),
}


@pytest.mark.parametrize('case', list(UPLOADS))
def test_bad_upload_is_refused(lm, case):
    from mlops_lib.app import score_batch_csv
    data, expect = UPLOADS[case]
    scored, rejects, msg = score_batch_csv(lm, data, max_mb=1, source='up.csv')
    assert scored is None and rejects is None, msg
    assert len(msg.splitlines()) == 1 and all(e in msg for e in expect), msg


@pytest.mark.parametrize('column', ['Age', 'AnnualSalary'])
def test_upload_text_in_a_numeric_column_names_line_and_column(lm, column):
    from mlops_lib.app import score_batch_csv
    df = pd.read_csv(io.StringIO(GOOD)).astype(str); df.loc[1, column] = 'oops'
    scored, rejects, msg = score_batch_csv(lm, df.to_csv(index=False).encode(), source='up.csv')
    assert len(scored) == 2 and 'up.csv' in msg and '1 invalid row' in msg, msg
    assert rejects[['line', 'column', 'value']].values.tolist() == [[3, column, 'oops']]
