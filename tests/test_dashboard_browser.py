"""The dashboard in a real browser: `mlops dashboard` on a free loopback port, driven by Playwright with Debian's chromium.

Needs /usr/bin/chromium (`make browser`); Playwright never downloads a browser here. Screenshots go to
<session outputs>/screenshots/ and, when $MLOPS_SCREENSHOTS names a folder, are copied there too."""
import os, shutil, signal, subprocess, time, urllib.error, urllib.request
from pathlib import Path
import pytest
from playwright.sync_api import expect
from conftest import BIN, CHROMIUM, ROOT, copy_outputs, mlops_env
from mlops_lib.procs import free_port
from mlops_lib.schema import DataSchema

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason='needs Debian chromium at /usr/bin/chromium: run `make browser`')


def start_dashboard(outputs: Path, log: Path, params: str='params/smoke.yaml', timeout: float=90) -> tuple[subprocess.Popen, str]:
    "Start `mlops dashboard` in its own process group; return the process and the URL it printed."
    env = mlops_env(outputs)
    port = free_port()
    with open(log, 'w') as f:
        proc = subprocess.Popen([str(BIN/'mlops'), 'dashboard', '--params', params, '--port', str(port)], cwd=ROOT, env=env,
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if f'Dashboard: http://127.0.0.1:{port}/' in log.read_text(): return proc, f'http://127.0.0.1:{port}/'
        if proc.poll() is not None: break
        time.sleep(0.2)
    stop(proc)
    raise AssertionError(f'mlops dashboard did not print its URL:\n{log.read_text()[-3000:]}')


def stop(proc: subprocess.Popen):
    "Stop the dashboard and everything it started (Voila and its kernels)."
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try: proc.wait(15)
        except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL); proc.wait(5)
    try: os.killpg(proc.pid, signal.SIGKILL)   # kernels left behind, if any
    except ProcessLookupError: pass


@pytest.fixture(scope='module')
def dashboard(smoke_model, tmp_path_factory):
    proc, url = start_dashboard(smoke_model['outputs'], tmp_path_factory.mktemp('dash')/'voila.log')
    yield url
    stop(proc)


@pytest.fixture
def shot(outputs):
    "Save a full-page screenshot under <outputs>/screenshots (and $MLOPS_SCREENSHOTS)."
    d = outputs/'screenshots'; d.mkdir(exist_ok=True)
    def save(page, name: str) -> Path:
        p = d/f'{name}.png'
        page.screenshot(path=str(p), full_page=True)
        if os.environ.get('MLOPS_SCREENSHOTS'): Path(os.environ['MLOPS_SCREENSHOTS']).mkdir(parents=True, exist_ok=True); shutil.copy(p, os.environ['MLOPS_SCREENSHOTS'])
        return p
    return save


def test_predict_and_batch_in_browser(dashboard, browser, shot, smoke_model):
    S = DataSchema.from_yaml(smoke_model['run_dir']/'schema.yaml')
    page = browser.new_page(viewport={'width': 1200, 'height': 900})
    outside = []
    page.on('request', lambda r: outside.append(r.url) if not r.url.startswith((dashboard, 'data:', 'blob:')) else None)
    page.set_default_timeout(60_000)
    t0 = time.monotonic()
    page.goto(dashboard)
    page.wait_for_selector('.mlops-predict')
    print(f'form interactive after {time.monotonic() - t0:.1f} s')
    assert 'dashboard_from_env' not in page.content()   # the notebook's source is not in the page
    num = S.column(S.numeric[0])
    field = page.locator(f'.mlops-field-{num.name} input')
    field.fill(str(int(num.max) * 10 + 1))    # outside the expected range: a warning beside the field, Predict still works
    page.wait_for_selector(f'.mlops-field-{num.name} .mlops-warning :text("outside the expected range")')
    page.click('.mlops-predict')
    page.wait_for_selector('.mlops-result .mlops-flags')
    field.fill('lots')                         # not a number: the contract blocks Predict
    page.wait_for_selector(f'.mlops-field-{num.name} .mlops-error :text("not a number")')
    page.click('.mlops-predict')
    page.wait_for_selector('.mlops-result :text("Fix 1 field(s) first")')
    shot(page, '1_invalid_field')
    field.fill(str(int(num.median)))
    page.click('.mlops-predict')
    result = page.wait_for_selector(f'.mlops-result :text("Predicted {S.target.name}:")')
    assert 'probability' in result.inner_text()
    page.wait_for_selector('.mlops-dashboard .js-plotly-plot .main-svg')   # the chart rendered, offline
    shot(page, '2_prediction')

    page.click('.lm-TabBar-tab:has-text("Explain")')
    page.wait_for_selector('.mlops-explain .main-svg', state='visible')
    assert page.locator('.mlops-explain .js-plotly-plot').count() == 2   # importance and partial dependence
    shot(page, '3_explain')

    page.click('.lm-TabBar-tab:has-text("Batch")')
    rows = ['{},{}'.format(','.join(S.feature_names), S.target.name)]
    good = [str(c.categories[0]) if c.kind == 'categorical' else str(int(c.median)) for c in S.features]
    rows += [','.join(good) + ',0'] * 3
    rows.insert(2, ','.join(['oops' if c.name == num.name else v for c, v in zip(S.features, good)]) + ',1')
    with page.expect_file_chooser() as chooser: page.click('.mlops-upload')   # the widget makes its <input type=file> on click
    chooser.value.set_files(files=[{'name': 'new.csv', 'mimeType': 'text/csv', 'buffer': '\n'.join(rows).encode()}])
    page.wait_for_selector('.mlops-batch-msg :text("new.csv: scored 3 of 4 rows; 1 invalid row(s) left out")')
    # the panel sets the message last, but the browser renders each widget's update on its own: allow it a moment
    expect(page.locator('.mlops-batch-table table tbody tr')).to_have_count(3, timeout=10_000)
    errors = page.locator('.mlops-batch-errors table tbody tr')
    expect(errors).to_have_count(1, timeout=10_000)
    assert errors.count() == 1 and errors.first.locator('td').all_inner_texts() == ['3', num.name, 'oops', 'not a number']
    assert page.locator('a.mlops-download[download="new_scored.csv"]').count() == 1
    shot(page, '4_batch')

    page.click('.lm-TabBar-tab:has-text("Model")')
    page.wait_for_selector('.mlops-card :text("smoke version 1 (champion)")')
    shot(page, '5_model')
    assert outside == [], outside
    page.close()


def _status(url: str) -> int:
    try: return urllib.request.urlopen(url, timeout=30).status
    except urllib.error.HTTPError as ex: return ex.code


def test_repository_is_not_served(dashboard):
    for path in ['settings.ini', 'params/smoke.yaml', 'dashboard.ipynb', '20_app.ipynb', 'voila/files/dashboard.ipynb',
                 'voila/files/20_app.ipynb', 'voila/files/../settings.ini', 'voila/files/%2e%2e/settings.ini', 'voila/tree',
                 'voila/tree/pipeline', 'voila/render/20_app.ipynb', 'voila/api/contents', 'api/contents/dashboard.ipynb',
                 'voila/static/../../../../settings.ini', 'api/kernelspecs', 'voila/files/pipeline/10_ingest.ipynb']:
        assert _status(dashboard + path) in (403, 404), path


def test_no_model_page(browser, shot, tmp_path):
    proc, url = start_dashboard(tmp_path, tmp_path/'voila.log')
    try:
        page = browser.new_page()
        page.goto(url, timeout=90_000)
        page.wait_for_selector(":text(\"No registered model 'smoke' yet. Train one with: mlops run --params params/smoke.yaml\")", timeout=90_000)
        assert page.locator('.jp-OutputArea-output pre').count() == 0   # no traceback
        shot(page, '0_no_model')
        page.close()
    finally: stop(proc)


@pytest.fixture
def promotable(smoke_model, tmp_path):
    "A copy of the session store (so the session's champion stays put) with a second version of 'smoke' to promote."
    out = tmp_path/'outputs'
    copy_outputs(smoke_model['outputs'], out, 'mlflow')   # the store by sqlite's backup API: a file copy drops this process's locks on it
    return out


def test_preheated_page_shows_the_champion_promoted_while_running(promotable, browser, tmp_path):
    "Pages come from preheated kernels, and a page opened after a promotion shows the new champion."
    import mlflow
    log = tmp_path/'voila.log'
    proc, url = start_dashboard(promotable, log)
    try:
        def open_page(version: str) -> float:
            page = browser.new_page(); page.set_default_timeout(90_000)
            t0 = time.monotonic()
            page.goto(url)
            page.wait_for_selector('.mlops-predict')
            took = time.monotonic() - t0
            head = page.locator('.mlops-dashboard h2').first.inner_text()
            page.close()
            assert f'version {version} (champion)' in head, head
            return took
        t0 = time.monotonic()   # a page requested while Voila is still filling its pool gets a kernel of its own
        while 'Kernel pool of dashboard.ipynb is filled' not in log.read_text():
            assert time.monotonic() - t0 < 180 and proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
        print(f'first page {open_page("1"):.1f} s')
        mlflow.set_tracking_uri(f"sqlite:///{promotable}/mlflow/mlflow.db")   # the registry resolves the new version's source through it
        client = mlflow.MlflowClient()
        v1 = client.get_model_version('smoke', '1')
        v2 = client.create_model_version('smoke', v1.source, v1.run_id)
        client.set_registered_model_alias('smoke', 'champion', v2.version)   # promoted while the dashboard runs
        time.sleep(3)   # let the pool refill: the refilled kernel was heated before the promotion too
        print(f'page after the promotion {open_page(v2.version):.1f} s')
        assert log.read_text().count('Using pre-heated kernel') >= 2, log.read_text()[-3000:]
    finally:
        stop(proc)
