"""Every notebook runs top to bottom without an error, in a kernel of this very Python."""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def execute(nb: nbformat.NotebookNode, cwd: Path) -> nbformat.NotebookNode:
    """Run ``nb`` in place in a ``python3`` kernel started from ``cwd``; raises on a cell error."""
    NotebookClient(nb, timeout=300, startup_timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def error_outputs(nb: nbformat.NotebookNode) -> list[str]:
    """Error outputs of code cells that are not tagged ``raises-exception``."""
    return [f"{o.ename}: {o.evalue}"
            for c in nb.cells if c.cell_type == "code"
            and "raises-exception" not in c.metadata.get("tags", [])
            for o in c.get("outputs", []) if o.output_type == "error"]


def test_there_are_notebooks():
    """The glob below is not silently empty."""
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOK_DIR}"


def test_kernel_runs_this_python(tmp_path):
    """The ``python3`` kernel is the interpreter running the tests (the project's venv)."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys; print(sys.prefix)")])
    execute(nb, tmp_path)
    assert nb.cells[0].outputs[0].text.strip() == sys.prefix


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_without_errors(path: Path):
    """Execute with nbclient (300 s a cell), from the notebooks folder; no error outputs."""
    nb = execute(nbformat.read(path, as_version=4), path.parent)
    assert error_outputs(nb) == []
