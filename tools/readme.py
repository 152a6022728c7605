"""Write README.md from nbs/index.ipynb (the `readme_nb` of settings.ini), or with --check fail when README.md differs.

    .venv/bin/python tools/readme.py [--check]

`nbdev_readme` would do this through Quarto, which cannot be installed here (see tools/docs.py), so nbconvert's
Markdown exporter renders the notebook: markdown cells as they are, code cells as ```python blocks, their outputs as
text blocks (a table in its text form). Links to sibling notebooks (`(09_eda.ipynb)`) become `(nbs/09_eda.ipynb)`
so they work from the repository root.
"""
import re, sys
from configparser import ConfigParser
from pathlib import Path
import nbformat
from nbconvert import MarkdownExporter

ROOT = Path(__file__).resolve().parent.parent


def readme_text(root: Path=ROOT) -> str:
    "The README generated from the settings' `readme_nb`."
    cfg = ConfigParser(delimiters=['='])
    cfg.read(root/'settings.ini', encoding='utf-8')
    nbs = cfg['DEFAULT']['nbs_path']
    nb = nbformat.read(root/nbs/cfg['DEFAULT']['readme_nb'], as_version=4)
    nb.metadata['language_info'] = {'name': 'python'}   # code blocks as ```python (a clean notebook has no language_info)
    for c in nb.cells:   # a table's text form reads better in Markdown than its HTML (whose <style> a code host shows as text)
        for o in c.get('outputs', []):
            if 'text/plain' in o.get('data', {}): o['data'].pop('text/html', None)
    md, _ = MarkdownExporter(exclude_input_prompt=True, exclude_output_prompt=True).from_notebook_node(nb)
    md = re.sub(r'\]\(((?!https?:|#|/)[^)\s]+\.ipynb)\)', lambda m: f']({nbs}/{m[1]})', md)
    return re.sub(r'\n{3,}', '\n\n', md).strip() + '\n'


def main(argv: list[str]) -> int:
    text, path = readme_text(), ROOT/'README.md'
    if '--check' in argv:
        if path.read_text(encoding='utf-8') == text: print('readme: README.md is what nbs/index.ipynb generates'); return 0
        print('readme: README.md is not what nbs/index.ipynb generates; edit nbs/index.ipynb and run `make readme`', file=sys.stderr)
        return 1
    path.write_text(text, encoding='utf-8')
    return 0


if __name__ == '__main__': sys.exit(main(sys.argv[1:]))
