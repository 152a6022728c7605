"Shared fixtures: a session outputs folder with an embedded MLflow store, and models trained there by the real pipeline."
import contextlib, os, shutil, sqlite3, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
URI_VARS = ('MLFLOW_TRACKING_URI', 'MLFLOW_REGISTRY_URI')   # mlflow.set_tracking_uri/set_registry_uri export them
CHROMIUM = '/usr/bin/chromium'   # Debian's package (`make browser`)
CHROMIUM_ARGS = ['--no-sandbox', '--headless', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--no-first-run']
for _v in URI_VARS: os.environ.pop(_v, None)   # a developer's own store must not leak into the tests
# One OpenMP thread per process (inherited by every `mlops` process and kernel a test starts). The suite runs three test
# workers (TEST_WORKERS) on two cores, and many tests start several processes at once; each fitting HistGradientBoosting with one
# OpenMP thread per core oversubscribes the machine, and libgomp's spin-waiting then makes a fit many times slower:
# two `mlops run` of hotel_rates side by side took 102 s with one thread each, and were still in `30_tune` after
# 10 minutes (50% system time) with the default (one run alone: 94 s vs 92 s). Results do not depend on it.
os.environ.setdefault('OMP_NUM_THREADS', '1')


def mlops_env(outputs, **extra) -> dict:
    "The environment for a process of ours: MLOPS_OUTPUTS set, no inherited MLFLOW_TRACKING_URI/MLFLOW_REGISTRY_URI (mlflow.set_*_uri export them)."
    e = {k: v for k, v in os.environ.items() if k not in URI_VARS}
    return {**e, 'MLOPS_OUTPUTS': str(outputs), **extra}


@pytest.fixture(autouse=True)
def _no_tracking_uri_leak():
    "A test that called mlflow.set_tracking_uri/set_registry_uri must not point the next test (or its subprocesses) at its store."
    import mlflow
    for v in URI_VARS: os.environ.pop(v, None)
    yield
    for v in URI_VARS: os.environ.pop(v, None)
    mlflow.tracking._model_registry.utils._registry_uri = None   # set_registry_uri also keeps it in a module global


def mlops(*args, outputs, check=True, timeout=900, env=None, **kw) -> subprocess.CompletedProcess:
    "Run the `mlops` console script with MLOPS_OUTPUTS pointing at `outputs`; return the completed process."
    p = subprocess.run([str(BIN/'mlops'), *map(str, args)], cwd=ROOT, env=mlops_env(outputs, **(env or {})), capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0: raise AssertionError(f"mlops {' '.join(map(str, args))} exited {p.returncode}\nstdout:\n{p.stdout[-4000:]}\nstderr:\n{p.stderr[-4000:]}")
    return p


def store_uri(outputs: Path) -> str: return f"sqlite:///{outputs}/mlflow/mlflow.db"


def copy_store(src: Path, dst: Path) -> str:
    """A consistent copy (sqlite backup API) of the embedded store of outputs folder `src` into outputs folder `dst`; its URI.
    Never copy a live store as files: reading mlflow.db through another descriptor and closing it drops every POSIX lock
    this process holds on it, so the next process to close the store believes it is the last one, checkpoints and deletes
    the WAL under this process's connections: committed writes are lost and the file ends up malformed
    (https://sqlite.org/howtocorrupt.html, section 2.2). A shutil.copytree of the session store did that to test_serve."""
    (dst/'mlflow').mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(src/'mlflow'/'mlflow.db')) as a, contextlib.closing(sqlite3.connect(dst/'mlflow'/'mlflow.db')) as b:
        a.backup(b)
        b.execute('PRAGMA wal_checkpoint(TRUNCATE)')   # the copy's pages into the database file, not a WAL as big as the store
    return store_uri(dst)


def copy_outputs(src: Path, dst: Path, sub: str='.') -> str:
    "Copy folder `sub` of outputs folder `src` (default: all of it) over `dst`, its store by `copy_store`, never as a file; the copy's URI."
    shutil.copytree(src/sub, dst/sub, ignore=shutil.ignore_patterns('mlflow.db*'), dirs_exist_ok=True)
    return copy_store(src, dst)


@pytest.fixture(scope='session')
def outputs(tmp_path_factory) -> Path:
    "The session's outputs folder: runs, reports and the embedded MLflow store of the trained smoke models."
    return tmp_path_factory.mktemp('outputs')


def _train(outputs: Path, params: str, run_name: str) -> dict:
    p = mlops('run', '--params', params, '--quiet', '--run-name', run_name, outputs=outputs)
    return dict(outputs=outputs, uri=store_uri(outputs), run_dir=outputs/'runs'/run_name, stdout=p.stdout, params=ROOT/params)


@pytest.fixture(scope='session')
def smoke_model(outputs) -> dict:
    "The classification smoke project trained once by `mlops run` (champion = version 1 of model 'smoke')."
    return {**_train(outputs, 'params/smoke.yaml', 'smoke-1'), 'name': 'smoke'}


@pytest.fixture(scope='session')
def regression_model(outputs) -> dict:
    "The regression smoke project trained once by `mlops run` (champion = version 1 of 'smoke_regression')."
    return {**_train(outputs, 'params/smoke_regression.yaml', 'smoke-regression-1'), 'name': 'smoke_regression'}


@pytest.fixture
def in_outputs(monkeypatch, outputs):
    "Point the in-process library (config paths and MLflow) at the session outputs folder."
    import mlflow
    monkeypatch.setenv('MLOPS_OUTPUTS', str(outputs))
    mlflow.set_tracking_uri(store_uri(outputs))
    yield outputs


# Quarantine: tests that failed, or were not run, when the second wave's branches were integrated. They are listed in
# tests/QUARANTINE (one node id or test file a line, with the reason) and left out of `make test` so that the rest of the
# suite guards main; `make test-quarantine` runs exactly them. Every entry is an open defect named in the issue notes:
# remove a line when its test passes.
QUARANTINE = ROOT/'tests'/'QUARANTINE'


def _quarantined() -> set[str]:
    if not QUARANTINE.exists(): return set()
    return {l.split('#')[0].strip() for l in QUARANTINE.read_text().splitlines() if l.split('#')[0].strip()}


def pytest_collection_modifyitems(config, items):
    q = _quarantined()
    hit = lambda it: it.nodeid in q or it.nodeid.split('::')[0] in q or it.nodeid.split('[')[0] in q
    if os.environ.get('MLOPS_QUARANTINE_ONLY'):
        items[:] = [it for it in items if hit(it)]
        return
    drop = [it for it in items if hit(it)]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [it for it in items if not hit(it)]
        config._mlops_quarantined = len(drop)


def pytest_terminal_summary(terminalreporter, config):
    n = getattr(config, '_mlops_quarantined', 0)
    if n: terminalreporter.write_line(f"QUARANTINED: {n} tests left out (tests/QUARANTINE lists them with the reason; `make test-quarantine` runs them)", yellow=True)


@pytest.fixture(scope='module')
def browser():
    "Debian's chromium, headless, launched by Playwright once per test module (Playwright never downloads a browser here)."
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()
