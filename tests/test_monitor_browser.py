"""The Monitoring tab in a real browser: `mlops dashboard` (Voila) over a prediction log written by PredictionLog with rows
the smoke champion scored; Playwright with Debian's chromium (`make browser`)."""
import os, subprocess, time
import pytest
import mlflow
from conftest import BIN, CHROMIUM, ROOT, mlops_env
from mlops_lib.procs import free_port
from mlops_lib.predlog import PredictionLog
from mlops_lib.samples import make_drifted
from test_dashboard_browser import stop

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason='needs Debian chromium at /usr/bin/chromium: run `make browser`')


@pytest.fixture(scope='module')
def served_dashboard(smoke_model, tmp_path_factory):
    "A dashboard whose outputs folder holds a prediction log of 400 drifted rows (the model store is the session's)."
    from mlops_lib.predict import score_chunk
    from mlops_lib.tracking import load_model
    out = tmp_path_factory.mktemp('served-dash')
    mlflow.set_tracking_uri(smoke_model['uri'])
    lm = load_model('smoke')
    mlflow.set_tracking_uri(None)
    scored, _ = score_chunk(make_drifted('car_purchase', rows=400, seed=41)[0].drop(columns=['Purchased']), lm)
    if '_flags' not in scored.columns: scored['_flags'] = ['Age:out_of_range' if i % 8 == 0 else '' for i in range(len(scored))]
    with PredictionLog(out/'serving'/'smoke', model_version=lm.version) as log: log.append(scored.assign(latency_ms=7.0))
    port, logf = free_port(), out/'voila.log'
    with open(logf, 'w') as f:
        proc = subprocess.Popen([str(BIN/'mlops'), 'dashboard', '--params', 'params/smoke.yaml', '--port', str(port), '--tracking-uri', smoke_model['uri']],
                                cwd=ROOT, env=mlops_env(out), stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        end = time.monotonic() + 120
        while f'Dashboard: http://127.0.0.1:{port}/' not in logf.read_text():
            assert proc.poll() is None and time.monotonic() < end, logf.read_text()[-3000:]
            time.sleep(0.2)
        yield dict(url=f'http://127.0.0.1:{port}/', rows=len(scored), flagged=int((scored['_flags'] != '').sum()))
    finally: stop(proc)


def test_monitoring_tab_in_browser(served_dashboard, browser, tmp_path):
    page = browser.new_page(viewport={'width': 1280, 'height': 1000})
    try:
        page.goto(served_dashboard['url'], timeout=180_000)
        page.click('.lm-TabBar-tab:has-text("Monitoring")', timeout=180_000)
        live = page.locator('.mlops-live')
        live.wait_for(timeout=60_000)
        text = live.inner_text()
        n = served_dashboard['rows']
        for part in (f'Live service: {n:,} requests in the last 1h', 'p50 7 ms', f"{served_dashboard['flagged'] / n:.1%} of rows", 'DATASET DRIFT', 'AnnualSalary'):
            assert part in text, (part, text)
        page.locator('.mlops-live-refresh').click()
        page.wait_for_timeout(500)
        assert 'Live service:' in page.locator('.mlops-live').inner_text()
        page.screenshot(path=str(tmp_path/'monitoring.png'), full_page=True)
    finally: page.close()
