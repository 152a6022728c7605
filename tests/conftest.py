"Shared fixtures: a session outputs folder with an embedded MLflow store, and models trained there by the real pipeline."
import os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
os.environ.pop('MLFLOW_TRACKING_URI', None)   # a developer's own store must not leak into the tests


def mlops_env(outputs, **extra) -> dict:
    "The environment for a process of ours: MLOPS_OUTPUTS set, no inherited MLFLOW_TRACKING_URI (mlflow.set_tracking_uri exports it)."
    e = {k: v for k, v in os.environ.items() if k != 'MLFLOW_TRACKING_URI'}
    return {**e, 'MLOPS_OUTPUTS': str(outputs), **extra}


@pytest.fixture(autouse=True)
def _no_tracking_uri_leak():
    "A test that called mlflow.set_tracking_uri must not point the next test's subprocesses at its store."
    os.environ.pop('MLFLOW_TRACKING_URI', None)
    yield
    os.environ.pop('MLFLOW_TRACKING_URI', None)


def mlops(*args, outputs, check=True, timeout=900, env=None, **kw) -> subprocess.CompletedProcess:
    "Run the `mlops` console script with MLOPS_OUTPUTS pointing at `outputs`; return the completed process."
    p = subprocess.run([str(BIN/'mlops'), *map(str, args)], cwd=ROOT, env=mlops_env(outputs, **(env or {})), capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0: raise AssertionError(f"mlops {' '.join(map(str, args))} exited {p.returncode}\nstdout:\n{p.stdout[-4000:]}\nstderr:\n{p.stderr[-4000:]}")
    return p


def store_uri(outputs: Path) -> str: return f"sqlite:///{outputs}/mlflow/mlflow.db"


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
