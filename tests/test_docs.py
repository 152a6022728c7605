"""The docs site in a real browser: every module page renders, a plotly figure draws, the search finds pages.

The site is the one `make docs` built in _docs/ when it is newer than every notebook and tools/docs.py; otherwise it is
built into a temporary folder from the committed notebooks and their outputs (`make nb-outputs` keeps them; `nbdev_test`
is what proves the notebooks run), as a reader of the repository sees them. It is served by `python -m http.server` on a free loopback port and
opened in Debian's chromium with Playwright; no request may leave that server.
"""
import os, re, subprocess, sys, time, urllib.request
from pathlib import Path
import nbformat
import pytest
from conftest import CHROMIUM, ROOT
from mlops_lib.procs import free_port

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason='needs Debian chromium at /usr/bin/chromium: run `make browser`')
sys.path.insert(0, str(ROOT/'tools'))
import docs  # noqa: E402


def title_of(nb_path: Path) -> str:
    "A notebook's H1."
    first = next(c.source for c in nbformat.read(nb_path, as_version=4).cells if c.cell_type == 'markdown')
    return first.splitlines()[0].lstrip('# ').strip()


def fresh(site: Path) -> bool:
    "Whether `site` holds a build newer than every notebook and the builder."
    if not (site/'index.html').exists(): return False
    built = min(p.stat().st_mtime for p in site.glob('*.html'))
    return all(p.stat().st_mtime < built for p in [*docs.pages(), ROOT/'tools'/'docs.py'])


@pytest.fixture(scope='module')
def site(tmp_path_factory) -> Path:
    if fresh(ROOT/'_docs'): return ROOT/'_docs'
    out = tmp_path_factory.mktemp('docs')/'site'
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'docs.py'), '--out', str(out), '--execute', 'none'],
                       cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.fixture(scope='module')
def server(site):
    port = free_port()
    proc = subprocess.Popen([sys.executable, '-m', 'http.server', str(port), '--bind', '127.0.0.1', '--directory', str(site)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f'http://127.0.0.1:{port}/'
    try:
        for _ in range(100):
            try: urllib.request.urlopen(url + 'index.html', timeout=1); break
            except OSError: time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def page(browser, server):
    pg = browser.new_page(viewport={'width': 1280, 'height': 900})
    pg.set_default_timeout(180_000)   # generous: parsing plotly.js took 79 s on a 2-core machine at load 31
    pg.outside, pg.errors = [], []
    pg.on('request', lambda r: pg.outside.append(r.url) if not r.url.startswith((server, 'data:', 'blob:')) else None)
    pg.on('pageerror', lambda e: pg.errors.append(str(e)))
    pg.on('response', lambda r: pg.errors.append(f'{r.status} {r.url}') if r.status >= 400 else None)
    yield pg
    pg.close()


def test_every_page_renders(page, server):
    for nb in docs.pages():
        page.goto(f'{server}{nb.stem}.html')
        title = title_of(nb)
        assert page.title() == f'{title} – mlops_lib', nb.name
        assert page.locator('#content h1').first.inner_text().strip().rstrip('¶') == title, nb.name
        assert page.locator('#content .cell').count() > 3, nb.name
        assert page.locator('.output_error').count() == 0, f'{nb.name} shows an error output'
        assert page.locator(f'#sidebar a[href="{nb.stem}.html"].current').count() == 1, nb.name
    assert not page.errors and not page.outside, (page.errors, page.outside)


def test_index_links_every_module_page(page, server):
    page.goto(server + 'index.html')
    linked = set(page.eval_on_selector_all('#content a[href$=".html"]', 'as => as.map(a => a.getAttribute("href"))'))
    assert {f'{p.stem}.html' for p in docs.pages()[1:]} <= linked
    assert page.locator('#content .output_area').count() >= 1   # the executed example
    assert 'rows; features:' in page.locator('#content').inner_text()
    page.goto(server + page.get_attribute('#content a[href="09_eda.html"]', 'href'))
    assert page.title() == 'eda – mlops_lib'


def test_plotly_figure_draws(page, server):
    page.goto(server + '09_eda.html')
    fig = page.locator('#content .js-plotly-plot .main-svg').first
    fig.wait_for(state='visible')
    assert fig.bounding_box()['width'] > 300
    assert page.locator('#content .js-plotly-plot .bars, #content .js-plotly-plot .trace').count() > 0
    assert not page.errors and not page.outside, (page.errors, page.outside)


def test_search_finds_pages(page, server):
    page.goto(server + 'index.html')
    page.fill('#search', 'holiday')
    hits = page.locator('#search-results li a')
    hits.first.wait_for()
    assert 'samples.html' in ' '.join(hits.evaluate_all('as => as.map(a => a.href)'))   # 05_samples.html
    page.fill('#search', 'zzqq-no-such-word')
    page.locator('#search-results li.none').wait_for()
    page.fill('#search', 'promotion gate')
    page.locator('#search-results li a').first.click()
    page.wait_for_load_state()
    assert re.search(r'/\w+\.html', page.url) and 'promotion gate' in page.locator('#content').inner_text().lower()
