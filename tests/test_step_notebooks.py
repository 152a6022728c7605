"""Step notebooks in nbs/pipeline/ hold parameters, calls and displays only: their logic lives in library functions with tests."""
import ast
from pathlib import Path
import nbformat
import pytest
from conftest import ROOT

STEP_NBS = sorted((ROOT/'nbs'/'pipeline').glob('*.ipynb'))
DEFINES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def definitions(nb: nbformat.NotebookNode) -> list[str]:
    "Every function, lambda or class a notebook's code cells define, as 'cell N line L: kind name'."
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != 'code': continue
        # IPython magics and shell escapes are not Python; blank them so the line numbers stay right
        src = '\n'.join('' if l.lstrip().startswith(('%', '!')) else l for l in cell.source.splitlines())
        for node in ast.walk(ast.parse(src, filename=f'cell {i}')):
            if isinstance(node, DEFINES):
                found.append(f"cell {i} line {node.lineno}: {type(node).__name__} {getattr(node, 'name', '')}".rstrip())
    return found


def test_the_check_finds_definitions():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell('def not_code(): pass'),
                                         nbformat.v4.new_code_cell('%matplotlib inline\nx = 1'),
                                         nbformat.v4.new_code_cell('x = 1\ndef f(): pass\nclass C: pass\ng = lambda: 1')])
    assert definitions(nb) == ['cell 2 line 2: FunctionDef f', 'cell 2 line 3: ClassDef C', 'cell 2 line 4: Lambda']


def test_there_are_step_notebooks():
    assert [p.stem for p in STEP_NBS][:4] == ['10_ingest', '20_eda', '30_tune', '40_train']


@pytest.mark.parametrize('path', STEP_NBS, ids=lambda p: p.stem)
def test_step_notebook_defines_no_function_or_class(path: Path):
    found = definitions(nbformat.read(path, as_version=4))
    assert not found, f'{path.relative_to(ROOT)} defines {found}: move that logic into a library function with a test'
