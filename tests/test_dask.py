"Dask for tuning (joblib's Dask backend) and batch scoring (score_chunk per partition), on a real LocalCluster of worker processes."
import os, re
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, mlops

distributed = pytest.importorskip('distributed', reason="the dask extra is not installed (make scale-deps)")
from distributed import Client, get_task_stream
from mlops_lib import dask_backend
from mlops_lib.params import load_params
from mlops_lib.models import build_pipeline, tune_family
from mlops_lib.predict import predict_file
from mlops_lib.samples import make_sample
from mlops_lib.schema import infer_schema

SMOKE = ROOT/'params/smoke.yaml'


@pytest.fixture(scope='module')
def cluster():
    "A LocalCluster of 2 worker processes x 1 thread on loopback ports, closed even when a test fails."
    c = dask_backend._local_cluster(2)  # as `backend: dask` starts it (and without changing this process's environment)
    client = Client(c)
    yield client
    dask_backend.close_clients()  # the library's own clients of this scheduler, before it goes away
    client.close(); c.close()


@pytest.fixture
def dask_env(cluster, monkeypatch):
    "What `--dask-scheduler ADDR` sets for a command: the dask backend and the scheduler address."
    monkeypatch.setenv('MLOPS_BACKEND', 'dask'); monkeypatch.setenv('DASK_SCHEDULER_ADDRESS', cluster.scheduler.address)
    yield cluster.scheduler.address


def test_tuning_on_dask_equals_local(cluster, monkeypatch):
    df, _ = make_sample('car_purchase', rows=400, seed=7)
    P = load_params(SMOKE)
    schema = infer_schema(df, P.target, P.task)
    X, y = df[schema.feature_names], df[P.target]
    local = {f: tune_family(X, y, f, schema, P) for f in P.models.families}
    P_dask = load_params(SMOKE, overrides={'models': {**P.models.model_dump(exclude={'metric', 'backend'}), 'backend': 'dask'}})
    monkeypatch.setenv('DASK_SCHEDULER_ADDRESS', cluster.scheduler.address)
    with get_task_stream(cluster) as ts:
        dask = {f: tune_family(X, y, f, schema, P_dask) for f in P.models.families}
    assert len(ts.data) >= 10, "the CV fits did not run on the cluster"
    assert {t['worker'] for t in ts.data} == set(cluster.scheduler_info()['workers']), "both workers should have fitted candidates"
    kinds = {re.sub(r'^batch_of_(\w+?)_\d+_calls.*', r'\1', str(t['key'])) for t in ts.data}
    assert kinds == {'_fit_and_score'}, f"only the search's fits go to the cluster, not what a fit does inside: {kinds}"
    # the searches do not refit (the train step fits the chosen candidate): compare every candidate's fold scores, then fit
    # the chosen candidate on a worker and in this process and compare their probabilities
    scores = lambda r: r.cv_results.filter(regex=r'^(params|split\d+_test_score|mean_test_score|std_test_score|rank_test_score|iter|n_resources)$')
    fit_proba = lambda f, bp: build_pipeline(f, schema, P.seed, **bp).fit(X, y).predict_proba(X)
    for f in local:
        assert dask[f].best_params == local[f].best_params, f
        assert dask[f].cv_mean == local[f].cv_mean and dask[f].cv_std == local[f].cv_std, f
        assert dask[f].n_candidates == local[f].n_candidates >= 2, f
        pd.testing.assert_frame_equal(scores(dask[f]), scores(local[f]))
        on_worker = cluster.submit(fit_proba, f, dask[f].best_params, pure=False).result()
        np.testing.assert_array_equal(on_worker, fit_proba(f, local[f].best_params))


def test_local_cluster_without_address(monkeypatch):
    monkeypatch.delenv('DASK_SCHEDULER_ADDRESS', raising=False)
    monkeypatch.delenv('MALLOC_TRIM_THRESHOLD_', raising=False)
    before = os.environ.get('OMP_NUM_THREADS')
    c = dask_backend.dask_client(n_workers=1)
    try:
        assert c.scheduler.address.startswith('tcp://127.0.0.1:')
        assert len(c.scheduler_info()['workers']) == 1
        assert dask_backend.dask_client(n_workers=1) is c, "the LocalCluster is started once per process"
        env = c.run(lambda: dict(os.environ))
        worker_env = next(iter(env.values()))
        assert 'MALLOC_TRIM_THRESHOLD_' not in worker_env, "it turns off glibc's adaptive mmap threshold (tree fits 2x slower)"
        assert worker_env.get('OMP_NUM_THREADS') == '1', "one thread per worker, as Dask sets it"
        assert 'MALLOC_TRIM_THRESHOLD_' not in os.environ and os.environ.get('OMP_NUM_THREADS') == before, "this process's environment is unchanged"
    finally: dask_backend.close_clients()


@pytest.fixture(scope='module')
def batch(tmp_path_factory):
    "A car-purchase batch as one CSV, as a partitioned Parquet folder of 6 files, and a CSV with 2 invalid rows and 2 flagged ones."
    d = tmp_path_factory.mktemp('dask-batch')
    df, _ = make_sample('car_purchase', rows=1200, seed=11)
    df.to_csv(d/'clean.csv', index=False)
    (d/'parts').mkdir()
    n = -(-len(df) // 6)
    for i in range(6): df.iloc[i*n:(i+1)*n].to_parquet(d/'parts'/f'part-{i}.parquet', index=False)
    # contract violations (rejected): text in numeric columns; soft expectations (scored and flagged): an unknown category, an out-of-range value
    bad = df.astype({'Age': object, 'AnnualSalary': object})
    bad.loc[5, 'Age'], bad.loc[1199, 'AnnualSalary'] = 'forty', 'lots'
    bad.loc[700, 'Gender'], bad.loc[300, 'AnnualSalary'] = 'Robot', 9_999_999
    bad.to_csv(d/'bad.csv', index=False)
    return d


def _loads(client) -> dict: return client.run(lambda: __import__('mlops_lib.dask_backend').dask_backend.LOADS['count'])


def test_predict_on_dask_equals_local_and_loads_once_per_worker(smoke_model, batch, tmp_path, in_outputs, dask_env, cluster):
    before = _loads(cluster)
    os.environ.pop('MLOPS_BACKEND')
    local = predict_file(SMOKE, batch/'clean.csv', tmp_path/'local.parquet', progress=False)
    predict_file(SMOKE, batch/'clean.csv', tmp_path/'local.csv', progress=False)
    os.environ['MLOPS_BACKEND'] = 'dask'
    s = predict_file(SMOKE, batch/'parts', tmp_path/'dask_out', progress=False)
    assert s['backend'] == 'dask' and s['partitions'] >= 6 and s['rows_in'] == 1200
    parts = sorted((tmp_path/'dask_out').glob('part-*.parquet'))
    assert len(parts) == s['partitions'] and not list(tmp_path.glob('.dask_out*')), "a partitioned folder, no temp folder left"
    got, want = pd.read_parquet(tmp_path/'dask_out'), pd.read_parquet(tmp_path/'local.parquet')
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want, check_dtype=True)
    one = dask_backend.predict_file_dask(load_params(SMOKE), batch/'clean.csv', tmp_path/'one.csv', progress=False, blocksize=5_000)
    assert one['partitions'] >= 3
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path/'one.csv'), pd.read_csv(tmp_path/'local.csv'))   # CSV output as the local path writes it
    after = _loads(cluster)
    new = {w: after[w] - before.get(w, 0) for w in after}
    assert all(n <= 1 for n in new.values()), f"a worker loaded the model more than once: {new}"
    assert sum(new.values()) >= 1 and s['partitions'] + one['partitions'] > len(new)
    assert local['rows_scored'] == s['rows_scored'] == one['rows_scored'] and local['positive_rate'] == s['positive_rate']


def test_quarantine_and_fail_on_dask_like_local(smoke_model, batch, tmp_path, in_outputs, dask_env):
    P = load_params(SMOKE)
    os.environ.pop('MLOPS_BACKEND')
    local = predict_file(SMOKE, batch/'bad.csv', tmp_path/'local.csv', on_invalid='quarantine', progress=False)
    d = dask_backend.predict_file_dask(P, batch/'bad.csv', tmp_path/'dask.csv', on_invalid='quarantine', progress=False, blocksize=5_000)
    assert d['partitions'] >= 3
    # contract violations (rows 5 and 1199) are rejected; broken soft expectations (rows 300 and 700) are scored and flagged
    counts = ['rows_in', 'rows_scored', 'rows_rejected', 'rows_flagged', *(k for k in local if k.startswith('flagged_')), 'positive_rate']
    assert {k: d[k] for k in counts} == {k: local[k] for k in counts}
    assert (local['rows_in'], local['rows_scored'], local['rows_rejected'], local['rows_flagged']) == (1200, 1198, 2, 2)
    assert local['flagged_unknown_category'] == local['flagged_out_of_range'] == 1
    # the same invalid-rows part of the message; the flags part lists the same (column, rule) pairs, in the order the
    # chunks/partitions met them, with an example value as the chunk's own CSV type inference parsed it
    invalid = lambda m: re.search(r'; (2 invalid rows) -> \S+ (\(.*?\)); 2 rows flagged', m).groups()
    assert invalid(d['message']) == invalid(local['message']), d['message']
    for m in (d['message'], local['message']):
        assert "2 rows flagged in _flags (" in m and "Gender: 1 row(s) unknown_category (e.g. 'Robot')" in m and 'AnnualSalary: 1 row(s) out_of_range (e.g. ' in m, m
    got, want = pd.read_csv(tmp_path/'dask.csv'), pd.read_csv(tmp_path/'local.csv')
    pd.testing.assert_frame_equal(got, want)
    flagged = want[want['_flags'].notna()]
    assert list(flagged.index) == [299, 699] and list(flagged['_flags']) == ['AnnualSalary:out_of_range', 'Gender:unknown_category']
    assert (flagged.AnnualSalary.iloc[0], flagged.Gender.iloc[1]) == (9_999_999, 'Robot') and flagged.prediction.notna().all()
    rl, rd = pd.read_csv(tmp_path/'local.rejects.csv'), pd.read_csv(tmp_path/'dask.rejects.csv')
    pd.testing.assert_frame_equal(rd, rl)
    assert list(rd._row) == [5, 1199] and list(rd._reason) == ["Age: not a number ('forty')", "AnnualSalary: not a number ('lots')"]
    # on_unexpected='reject' (given to predict_file, which hands over to the Dask path) rejects the flagged rows too
    os.environ['MLOPS_BACKEND'] = 'dask'
    r = predict_file(SMOKE, batch/'bad.csv', tmp_path/'strict.csv', on_invalid='quarantine', on_unexpected='reject', progress=False)
    os.environ.pop('MLOPS_BACKEND')
    assert r['backend'] == 'dask' and r['on_unexpected'] == 'reject' and (r['rows_rejected'], r['rows_flagged']) == (4, 0)
    assert sorted(pd.read_csv(tmp_path/'strict.rejects.csv')._row) == [5, 300, 700, 1199]
    from mlops_lib.schema import SchemaError
    with pytest.raises(SchemaError) as lf: predict_file(SMOKE, batch/'bad.csv', tmp_path/'local_fail.parquet', progress=False)
    with pytest.raises(SchemaError) as df_:
        dask_backend.predict_file_dask(P, batch/'bad.csv', tmp_path/'fail.parquet', progress=False, blocksize=5_000)
    assert str(df_.value) == str(lf.value) and str(lf.value).startswith('bad.csv: 2 of 1200 rows invalid: '), str(df_.value)
    assert not list(tmp_path.glob('*fail*')) and not list(tmp_path.glob('.*')), "fail mode writes nothing"


def test_cli_predict_with_dask_scheduler(smoke_model, batch, tmp_path, cluster):
    p = mlops('predict', '--params', SMOKE, '--input', batch/'parts', '--output', tmp_path/'out', '--quiet',
              '--dask-scheduler', cluster.scheduler.address, outputs=smoke_model['outputs'])
    assert 'on Dask (6 partitions' in p.stdout, p.stdout
    assert len(pd.read_parquet(tmp_path/'out')) == 1200
    bad = mlops('predict', '--params', SMOKE, '--input', tmp_path/'nothing-*.parquet', '--output', tmp_path/'o2', '--dask-scheduler', cluster.scheduler.address,
                outputs=smoke_model['outputs'], check=False)
    assert bad.returncode == 2 and 'no input files' in bad.stderr and 'Traceback' not in bad.stderr
