"""Build the docs site from the notebooks, offline: one page per library notebook plus nbs/index.ipynb as the home page.

    .venv/bin/python tools/docs.py [--out _docs] [--execute all|none|NAME,NAME...]

Why not `nbdev_docs`: nbdev 2.4.14 renders through Quarto (`quarto render`, found with `shutil.which('quarto')`), and the
PyPI package `quarto-cli` is a source distribution whose build downloads the Quarto binary from GitHub, which cannot be
reached here (no Debian or npm package ships Quarto either). So this script does the two things `nbdev_docs` would:

- **executes** the notebooks (they are committed clean) with nbclient in the project's `mlops_lib` kernel, two at a time,
  skipping the cells `nbdev_test` skips (`#| notest`, `#| eval: false`); runs write to a temporary MLOPS_OUTPUTS;
- **renders** them with nbconvert's `basic` template inside one page shell: the stylesheet nbconvert ships, a sidebar with every
  page, a search box over a prebuilt index, and plotly figures drawn by a local copy of plotly.js (the package's own
  `plotly.min.js`). Nothing is fetched from the network: no CDN, no web fonts, no MathJax.

`#| hide` cells are left out and `#|` directive lines are removed from the code shown; links to `X.ipynb` become `X.html`.
A notebook that fails to execute fails the build with its name and the error.
"""
import argparse, html, json, os, re, shutil, sys, tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/'nbs'
KERNEL = 'mlops_lib'
PLOTLY_MIME = 'application/vnd.plotly.v1+json'
SKIP_FLAGS = ('notest', 'eval: false', 'eval:false')


def pages() -> list[Path]:
    "The notebooks of the site: the index first, then the library notebooks in their numbered order."
    return [NBS/'index.ipynb', *sorted(NBS.glob('[0-9]*.ipynb'))]


def directives(source: str) -> list[str]:
    "The `#|` directives of a cell, e.g. ['export', 'hide']."
    return [l[2:].strip() for l in source.splitlines() if l.startswith('#|')]


def execute(path: Path, outputs: Path) -> dict:
    "Run a notebook's testable code cells in the project's kernel; return the notebook with its outputs."
    import nbformat
    from nbclient import NotebookClient
    os.environ.update(MLOPS_OUTPUTS=str(outputs), PLOTLY_RENDERER='plotly_mimetype', MLOPS_DOCS='1')
    nb = nbformat.read(path, as_version=4)
    run = nbformat.v4.new_notebook(metadata=nb.metadata)
    run.cells = [c for c in nb.cells if c.cell_type == 'code' and not any(d in SKIP_FLAGS for d in directives(c.source))]
    try: NotebookClient(run, kernel_name=KERNEL, timeout=900, resources={'metadata': {'path': str(path.parent)}}).execute()
    except Exception as ex:
        raise RuntimeError(f'{path.relative_to(ROOT)} failed while building the docs: {str(ex).strip().splitlines()[-1]}') from None
    return nb   # the executed cells are the same objects, so `nb` has their outputs


def plotly_html(fig: dict) -> str:
    "A plotly figure's JSON as a div drawn by the page's plotly.js."
    import plotly.io as pio
    return pio.to_html(fig, include_plotlyjs=False, full_html=False, config={'responsive': True})


def prepare(nb):
    "Drop hidden cells and directive lines, draw plotly outputs as HTML; return the page title."
    keep = []
    for c in nb.cells:
        if c.cell_type == 'code':
            if 'hide' in directives(c.source) or 'default_exp' in c.source.split('\n', 1)[0]: continue
            c.source = '\n'.join(l for l in c.source.splitlines() if not l.startswith('#|')).strip('\n')
            for o in c.get('outputs', []):
                if PLOTLY_MIME in o.get('data', {}): o['data'] = {'text/html': plotly_html(o['data'][PLOTLY_MIME])}
        keep.append(c)
    h1 = next((c for c in keep if c.cell_type == 'markdown' and c.source.startswith('# ')), None)
    nb.cells = [h1, *(c for c in keep if c is not h1)] if h1 else keep   # the title first, above the imports cell
    first = next((c.source for c in nb.cells if c.cell_type == 'markdown'), '# untitled')
    return re.sub(r'^#\s*', '', first.strip().splitlines()[0])


def sections(nb) -> list[dict]:
    "Search entries: one per heading, with the text of the cells under it."
    out, cur = [], None
    for c in nb.cells:
        for line in c.source.splitlines() if c.cell_type == 'markdown' else []:
            if m := re.match(r'^(#{1,4})\s+(.*)', line):
                cur = {'heading': m[2].strip(), 'text': ''}
                out.append(cur)
        if cur is None: cur = {'heading': '', 'text': ''}; out.append(cur)
        cur['text'] += ' ' + c.source
    for s in out: s['text'] = re.sub(r'\s+', ' ', s['text']).strip()[:4000]
    return out


def shell(title: str, body: str, nav: list[tuple[str, str]], current: str) -> str:
    "The page around a rendered notebook."
    plotly = '<script src="plotly.min.js"></script>' if 'plotly-graph-div' in body else ''   # 4.8 MB: only where a figure is
    links = '\n'.join(f'<li><a href="{h}"{" class=current" if h == current else ""}>{html.escape(t)}</a></li>' for h, t in nav)
    return f'''<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} – mlops_lib</title>
<link rel="stylesheet" href="notebook.css"><link rel="stylesheet" href="site.css">
{plotly}<script src="search_index.js"></script><script src="search.js" defer></script>
</head><body>
<nav id="sidebar"><a class="brand" href="index.html">mlops_lib</a>
<input id="search" type="search" placeholder="Search the docs" autocomplete="off" aria-label="Search the docs">
<ul id="search-results"></ul>
<ul class="pages">
{links}
</ul></nav>
<main id="content"><div id="notebook"><div id="notebook-container">
{body}
</div></div></main></body></html>
'''


SITE_CSS = '''body { margin: 0; display: flex; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
#sidebar { width: 15rem; flex: none; padding: 1rem; border-right: 1px solid #ddd; height: 100vh; position: sticky; top: 0;
  overflow-y: auto; box-sizing: border-box; font-size: 0.9rem; }
#sidebar .brand { font-weight: bold; font-size: 1.2rem; display: block; margin-bottom: 0.8rem; }
#sidebar ul { list-style: none; padding: 0; }
#sidebar li { margin: 0.2rem 0; }
#sidebar a { text-decoration: none; color: #1a5fb4; }
#sidebar a.current { font-weight: bold; }
#search { width: 100%; box-sizing: border-box; padding: 0.3rem; }
#search-results li { border-bottom: 1px solid #eee; padding: 0.2rem 0; }
#search-results small { color: #666; display: block; }
#content { flex: 1; min-width: 0; padding: 1rem 2rem; max-width: 75rem; }
.prompt { display: none; }
#notebook, #notebook-container { padding: 0; width: auto; box-shadow: none; }
'''

SEARCH_JS = '''// Search over window.SEARCH_INDEX (built by tools/docs.py): every word typed must occur in a section.
(function () {
  const box = document.getElementById('search'), list = document.getElementById('search-results');
  function show() {
    const words = box.value.toLowerCase().split(/\\s+/).filter(w => w.length > 1);
    list.innerHTML = '';
    if (!words.length) return;
    const hits = window.SEARCH_INDEX.filter(s => words.every(w => s.haystack.includes(w))).slice(0, 20);
    for (const s of hits) {
      const li = document.createElement('li'), a = document.createElement('a'), small = document.createElement('small');
      a.href = s.page + (s.anchor ? '#' + s.anchor : ''); a.textContent = s.heading || s.title;
      small.textContent = s.title; li.append(a, small); list.append(li);
    }
    if (!hits.length) { const li = document.createElement('li'); li.className = 'none'; li.textContent = 'No results'; list.append(li); }
  }
  for (const s of window.SEARCH_INDEX) s.haystack = (s.title + ' ' + s.heading + ' ' + s.text).toLowerCase();
  box.addEventListener('input', show);
})();
'''


def notebook_css() -> str:
    "The stylesheet nbconvert's classic template inlines (the one its `basic` body is styled by), without its icon fonts."
    import nbformat
    from nbconvert import HTMLExporter
    page, _ = HTMLExporter(template_name='classic').from_notebook_node(nbformat.v4.new_notebook())
    css = '\n'.join(re.findall(r'<style[^>]*>(.*?)</style>', page, flags=re.S))
    css = re.sub(r'@font-face\s*{[^}]*}', '', css)   # bootstrap's glyphicons and font-awesome, which the pages do not use
    assert not re.search(r'url\((?!\s*["\']?data:)|@import', css), 'the notebook stylesheet loads a file'
    return css


def render(nb) -> str:
    "A prepared notebook as HTML (nbconvert's `basic` template: the body only, no scripts)."
    from nbconvert import HTMLExporter
    nb.metadata['language_info'] = {'name': 'python'}
    body, _ = HTMLExporter(template_name='basic', exclude_input_prompt=True, exclude_output_prompt=True).from_notebook_node(nb)
    return re.sub(r'href="((?!https?:)[^"#]+)\.ipynb(#[^"]*)?"', lambda m: f'href="{m[1]}.html{m[2] or ""}"', body)


def anchor(heading: str) -> str:
    "The id nbconvert gives a heading."
    return re.sub(r'\s', '-', heading.strip())


def build(out: Path, execute_names: set[str]|None) -> list[Path]:
    "Build the site into `out`; `execute_names` None executes every notebook. Return the pages written."
    import nbformat, plotly
    nbs = pages()
    todo = [p for p in nbs if execute_names is None or p.stem in execute_names]
    with tempfile.TemporaryDirectory(prefix='mlops-docs-') as tmp, ProcessPoolExecutor(2) as pool:
        futures = {p: pool.submit(execute, p, Path(tmp)/p.stem) for p in todo}
        executed = {p: f.result() for p, f in futures.items()}
        notebooks = {p: executed.get(p) or nbformat.read(p, as_version=4) for p in nbs}
        titles = {p: prepare(nb) for p, nb in notebooks.items()}
        bodies = dict(zip(nbs, pool.map(render, notebooks.values())))
    out.mkdir(parents=True, exist_ok=True)
    nav = [(f'{p.stem}.html', 'Home' if p.stem == 'index' else titles[p]) for p in nbs]
    index, written = [], []
    for p, nb in notebooks.items():
        page = out/f'{p.stem}.html'
        page.write_text(shell(titles[p], bodies[p], nav, page.name), encoding='utf-8')
        written.append(page)
        index += [dict(page=page.name, title=titles[p], anchor=anchor(s['heading']) if s['heading'] else '', **s) for s in sections(nb)]
    (out/'search_index.js').write_text('window.SEARCH_INDEX = ' + json.dumps(index) + ';\n', encoding='utf-8')
    (out/'search.js').write_text(SEARCH_JS, encoding='utf-8')
    (out/'site.css').write_text(SITE_CSS, encoding='utf-8')
    (out/'notebook.css').write_text(notebook_css(), encoding='utf-8')
    shutil.copy(Path(plotly.__file__).parent/'package_data'/'plotly.min.js', out/'plotly.min.js')
    return written


MAX_TEXT_LINES, MAX_OUTPUT_BYTES = 30, 400_000


def small(output: dict) -> dict|None:
    "An output fit to keep in a committed notebook: long text cut to its first lines, a figure over the size limit dropped."
    data = output.get('data', {})
    if len(json.dumps(output)) > MAX_OUTPUT_BYTES: return None
    if output.get('name') == 'stderr' or 'application/vnd.jupyter.widget-view+json' in data: return None   # warnings, progress bars
    if output.get('output_type') == 'stream':
        lines = output['text'].splitlines(True)
        if len(lines) > MAX_TEXT_LINES: output['text'] = ''.join(lines[:MAX_TEXT_LINES]) + f'... ({len(lines) - MAX_TEXT_LINES} more lines)\n'
    return output


def write_outputs(names: set[str]|None) -> list[Path]:
    "Execute the library notebooks and keep their (small) outputs in nbs/, so a reader on a code host sees them."
    import nbformat
    todo = [p for p in pages() if names is None or p.stem in names]
    with tempfile.TemporaryDirectory(prefix='mlops-outputs-') as tmp, ProcessPoolExecutor(2) as pool:
        executed = {p: f.result() for p, f in {p: pool.submit(execute, p, Path(tmp)/p.stem) for p in todo}.items()}
    for p, run in executed.items():
        nb = nbformat.read(p, as_version=4)
        outs = {c.id: c.get('outputs', []) for c in run.cells if c.cell_type == 'code'}
        for c in nb.cells:
            if c.cell_type == 'code':
                c.outputs = [nbformat.from_dict(o) for o in (small(dict(o)) for o in outs.get(c.id, [])) if o is not None]
                for o in c.outputs:
                    if 'execution_count' in o: o['execution_count'] = None
        nbformat.write(nb, p)
    return list(executed)


def main(argv: list[str]|None=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default=str(ROOT/'_docs'), help='folder to write the site to (default: _docs)')
    ap.add_argument('--execute', default='all', help="'all', 'none' or comma-separated notebook names (e.g. index,09_eda)")
    ap.add_argument('--write-outputs', action='store_true', help='execute the notebooks named by --execute and keep their outputs in nbs/')
    a = ap.parse_args(argv)
    names = None if a.execute == 'all' else set() if a.execute == 'none' else set(a.execute.split(','))
    if a.write_outputs:
        try: done = write_outputs(names)
        except RuntimeError as ex: print(f'docs: error: {ex}', file=sys.stderr); return 1
        print(f'docs: outputs of {len(done)} notebooks kept in nbs/ (run nbdev_clean next)')
        return 0
    try: written = build(Path(a.out), names)
    except RuntimeError as ex: print(f'docs: error: {ex}', file=sys.stderr); return 1
    print(f'docs: {len(written)} pages in {a.out} (open {Path(a.out)/"index.html"})')
    return 0


if __name__ == '__main__': sys.exit(main())
