"""Fault injection: SIGKILL at random moments of `mlops run` and `mlops predict`, and a disk that fills while scoring.

One store is trained once (a weak champion), copied back before every trial; each trial kills the process group at a
random moment and then checks: no partial file at any final path, the champion unchanged unless the gate completed, the
store readable. The next run after all trials must succeed. MLOPS_FAULT_TRIALS (default 20) and MLOPS_FAULT_SEED tune it.
"""
import json, os, random, resource, shutil, signal, sqlite3, subprocess, time
from pathlib import Path
import pandas as pd, pytest, yaml
from conftest import BIN, ROOT, copy_outputs, mlops, mlops_env, store_uri
from test_reliability import fast_params

TRIALS = int(os.environ.get('MLOPS_FAULT_TRIALS', 20))
RNG = random.Random(int(os.environ.get('MLOPS_FAULT_SEED', 0)))
WEAK = {'random_forest': {'strategy': 'grid', 'space': {'n_estimators': [3], 'max_depth': [1]}}}
STRONG = {'hist_gradient_boosting': {'strategy': 'grid', 'space': {'max_iter': [30], 'max_leaf_nodes': [7]}}}
STEPS = 'ingest,tune,train'


@pytest.fixture(scope='module')
def store(tmp_path_factory):
    "A trained store (champion v1: a weak model), its pristine copy, the params of a better model, a batch and the run's duration."
    base = tmp_path_factory.mktemp('faults')
    out, weak, strong = base/'out', fast_params(base, 'weak', WEAK), fast_params(base, 'strong', STRONG)
    t0 = time.perf_counter()
    mlops('run', '--params', weak, '--quiet', '--steps', STEPS, '--run-name', 'base', outputs=out)
    secs = time.perf_counter() - t0
    from mlops_lib.samples import make_sample
    df, _ = make_sample('car_purchase', rows=60_000, seed=11)
    batch = base/'batch.csv'; df.drop(columns=['Purchased']).to_csv(batch, index=False)
    copy_outputs(out, base/'pristine')
    return dict(base=base, out=out, pristine=base/'pristine', weak=weak, strong=strong, batch=batch, run_seconds=secs, rows=len(df))


def restore(s):
    "Put the pristine outputs back. The store is restored in place: this process's MLflow clients keep their connections to it."
    for p in [*s['out'].iterdir(), *(s['out']/'mlflow').iterdir()]:
        if p.name == 'mlflow' or p.name.startswith('mlflow.db'): continue
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    copy_outputs(s['pristine'], s['out'])


def champion(out: Path):
    from mlflow import MlflowClient
    c = MlflowClient(store_uri(out), store_uri(out))
    v = c.get_model_version_by_alias('smoke', 'champion')
    return str(v.version), v.tags.get('promotion.decision')


def store_ok(out: Path):
    "The SQLite store passes its integrity check and MLflow can read runs and the registry."
    with sqlite3.connect(out/'mlflow'/'mlflow.db') as con: assert con.execute('PRAGMA integrity_check').fetchone()[0] == 'ok'
    from mlflow import MlflowClient
    c = MlflowClient(store_uri(out), store_uri(out))
    c.search_runs([c.get_experiment_by_name('smoke').experiment_id], max_results=1000)
    c.search_model_versions("name='smoke'")


def complete(p: Path):
    "Parse a file at a final path by its type; raise if it is truncated."
    s = p.suffix
    if s == '.parquet': pd.read_parquet(p)
    elif s in ('.json', '.ipynb'): json.loads(p.read_text())
    elif s == '.yaml': yaml.safe_load(p.read_text())
    elif s == '.csv': pd.read_csv(p)
    elif s == '.html': assert p.read_text().rstrip().endswith('</html>'), p


def final_files(folder: Path):
    "Files at final names (temporary names start with '.')."
    return [p for p in folder.rglob('*') if p.is_file() and not any(part.startswith('.') for part in p.relative_to(folder).parts)]


def kill_at(cmd, out, delay):
    p = subprocess.Popen([str(BIN/'mlops'), *map(str, cmd)], cwd=ROOT, env=mlops_env(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try: rc = p.wait(delay)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL); rc = None
    p.wait(); p.stderr.close()
    return rc


PLAN = [('run' if i % 5 in (0, 2) else 'predict', i) for i in range(TRIALS)]   # 2 of every 5 trials kill a run
LAST = {k: max(i for kk, i in PLAN if kk == k) for k, _ in PLAN}


@pytest.mark.parametrize('kind,trial', PLAN, ids=[f'{k}-{i}' for k, i in PLAN])
def test_sigkill_at_a_random_moment(store, kind, trial):
    restore(store)
    out = store['out']
    before = champion(out)
    if kind == 'run':
        delay = RNG.uniform(1, store['run_seconds'] * 1.2)
        rc = kill_at(['run', '--params', store['strong'], '--quiet', '--steps', STEPS, '--run-name', f't{trial}'], out, delay)
        for f in final_files(out/'runs'/f't{trial}') if (out/'runs'/f't{trial}').exists() else []: complete(f)
        now = champion(out)
        assert now == before or now[1] == 'promoted', (delay, before, now)   # the alias only moves with the decision recorded
        if rc == 0: assert now != before   # a finished run of the better model was promoted
    else:
        delay = RNG.uniform(0.5, 12)
        target = store['base']/f'pred{trial}.csv'
        rc = kill_at(['predict', '--params', store['weak'], '--input', store['batch'], '--output', target, '--chunk-size', 5000, '--quiet'], out, delay)
        if target.exists():
            got = pd.read_csv(target)
            assert len(got) == store['rows'] and 'prediction' in got.columns, (delay, len(got))
        assert rc in (None, 0), rc
        assert champion(out) == before
        target.unlink(missing_ok=True)
    store_ok(out)
    if trial == LAST[kind]:   # the last trial of each kind: the next commands clean up and succeed
        s = json.loads(mlops('status', '--params', store['weak'], '--json', outputs=out).stdout)
        from mlflow import MlflowClient
        c = MlflowClient(store_uri(out))
        left = c.search_runs([c.get_experiment_by_name('smoke').experiment_id], "attributes.status = 'RUNNING'")
        assert not [r for r in left if 'mlops.pid' in r.data.tags], 'a killed pipeline run is still RUNNING after mlops status'
        if kind == 'run':
            mlops('run', '--params', store['strong'], '--quiet', '--steps', STEPS, '--run-name', f'after{trial}', outputs=out)
            assert champion(out)[1] == 'promoted'


def _fsize_limit(nbytes):
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit raises EFBIG instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return limit


@pytest.mark.parametrize('suffix', ['.csv', '.parquet'])
def test_disk_full_while_scoring(store, suffix):
    restore(store)
    out = store['out']
    biggest = max(p.stat().st_size for p in out.rglob('*') if p.is_file())
    limit = biggest + 256_000    # the store and the model files fit; the scored output (tens of MB as CSV, several as Parquet) does not
    target, big = store['base']/f'full{suffix}', store['base']/f'big-{limit}.csv'
    if not big.exists():   # the batch repeated until even its Parquet form is over twice the limit: the scored output (more columns) cannot fit
        import io
        batch, reps = pd.read_csv(store['batch']), 2
        while len(pq := pd.concat([batch] * reps, ignore_index=True).to_parquet()) <= 2 * limit: reps *= 2
        pd.read_parquet(io.BytesIO(pq)).to_csv(big, index=False)
    p = subprocess.run([str(BIN/'mlops'), 'predict', '--params', str(store['weak']), '--input', str(big), '--output', str(target), '--chunk-size', '5000', '--quiet'],
                       cwd=ROOT, env=mlops_env(out), capture_output=True, text=True, timeout=600, preexec_fn=_fsize_limit(limit))
    assert p.returncode == 2, p.stderr[-3000:]
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and str(target) in lines[0] and 'nothing was written' in lines[0], p.stderr[-2000:]
    assert not [f for f in target.parent.iterdir() if f.name.startswith(target.name) or f.name.startswith(f'.{target.name}')]
    store_ok(out)
