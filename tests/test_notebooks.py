"""Every notebook runs top to bottom without an error, in a kernel of this very Python.

Notebooks that do real work take their budgets (steps, envs, frames, episodes, rounds...) from the
cell tagged ``parameters``; the tests rewrite the values named in :data:`SMALL` in that cell (the
same code path, smaller numbers) and run the rewritten copy. The files keep their full values;
``WORKBENCH_FULL_NOTEBOOKS=1`` runs them with those (slow: notebook 6 trains for minutes).
"""
from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))

SMALL: dict[str, dict[str, object]] = {
    "04-backends.ipynb": dict(batch=4, steps=16, hidden=8, reset_rates=(0.0, 0.2), rounds=2, block_s=0.001),
    "05-workbench-app.ipynb": dict(steps=60, timing=dict(steps=(8, 16), reset_rate=(0.0, 0.2), rounds=2)),
    "06-what-the-memory-learned.ipynb": dict(steps=200, episode_steps=50, eval_episodes=2, train_frames=3 * 576,
                                             final_episodes=40),
    "07-how-much-memory.ipynb": dict(quick=dict(delay=(2, 4), hidden_size=(2, 8), seeds=1, frames=576),
                                     eval_episodes=8, workers=2),
}
"""Per notebook, the test budgets written over its parameters cell, small enough for a busy 2-core
machine and large enough for the notebook's own checks (notebook 6's probe still reaches R² >= 0.9 on
its 16 envs × 200 steps cut into 50-step episodes; its training run keeps 3 batches, a curve; notebook 7's
sweep is 2 delays × 2 hidden sizes × 1 seed of one 576-frame batch each, on a local Ray, two at a time)."""

FULL = os.environ.get("WORKBENCH_FULL_NOTEBOOKS", "") == "1"
"""run the notebooks with their shipped budgets instead of :data:`SMALL`"""


def budgets(name: str) -> dict[str, object]:
    """The overrides the tests write into notebook ``name`` (none under ``WORKBENCH_FULL_NOTEBOOKS=1``)."""
    return {} if FULL else dict(SMALL.get(name, {}))


HEAVY = ("04-backends.ipynb", "05-workbench-app.ipynb", "06-what-the-memory-learned.ipynb",
         "07-how-much-memory.ipynb")
"""Notebooks that time, roll out or train: their budgets must all be in the parameters cell."""


def parameters_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The one code cell tagged ``parameters``."""
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"expected one code cell tagged 'parameters'; got {len(cells)}"
    return cells[0]


def _literal(node: ast.expr) -> object:
    """``ast.literal_eval``, plus ``dict(key=<literal>, ...)``; raises ``ValueError`` on anything else."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        if any(k.arg is None for k in node.keywords):
            raise ValueError("dict(**...) is not a literal")
        return {k.arg: _literal(k.value) for k in node.keywords}
    return ast.literal_eval(node)


def parameters(nb: nbformat.NotebookNode) -> dict[str, object]:
    """The literal values the parameters cell assigns (``name = <literal>`` lines; other calls are skipped)."""
    values = {}
    for node in ast.parse(parameters_cell(nb).source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = _literal(node.value)
            except ValueError:
                pass
    return values


def set_parameters(nb: nbformat.NotebookNode, **values: object) -> nbformat.NotebookNode:
    """Rewrites the right-hand side of each ``name = ...`` in the parameters cell to ``repr(value)``.

    Comments and every other line stay as they are; a name the cell does not assign raises
    (an override must not silently miss its target). Returns ``nb``, changed in place.
    """
    if not values:
        return nb
    cell = parameters_cell(nb)
    lines = cell.source.splitlines(keepends=True)
    spans = {}
    for node in ast.parse(cell.source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            spans[node.targets[0].id] = node.value
    missing = sorted(set(values) - set(spans))
    if missing:
        raise KeyError(f"the parameters cell assigns {sorted(spans)}; no {missing}")
    # replace from the last to the first, so earlier offsets stay valid
    for name in sorted(values, key=lambda n: (spans[n].lineno, spans[n].col_offset), reverse=True):
        v = spans[name]
        first, last = v.lineno - 1, v.end_lineno - 1
        start = len("".join(lines[:first]).encode()) + v.col_offset
        end = len("".join(lines[:last]).encode()) + v.end_col_offset
        source = "".join(lines).encode()
        source = source[:start] + repr(values[name]).encode() + source[end:]
        lines = source.decode().splitlines(keepends=True)
    cell.source = "".join(lines)
    return nb


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


def test_set_parameters_rewrites_values_only():
    """Only the named right-hand sides change (multi-line ones too); comments and other lines stay; a
    name the cell does not assign is refused."""
    source = ('a = 1  # one, = 2\nb = dict(x=1,\n         y=2)  # two\nc = "a # b"\nd = Thing(4)\n')
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source, metadata={"tags": ["parameters"]})])
    set_parameters(nb, a=10, b=(1, 2), c="x")
    assert nb.cells[0].source == 'a = 10  # one, = 2\nb = (1, 2)  # two\nc = \'x\'\nd = Thing(4)\n'
    assert parameters(nb) == {"a": 10, "b": (1, 2), "c": "x"}
    with pytest.raises(KeyError, match=r"no \['e'\]"):
        set_parameters(nb, e=1)


@pytest.mark.parametrize("name", HEAVY)
def test_heavy_notebooks_take_their_budgets_from_the_parameters_cell(name):
    """Each test override names a literal of the parameters cell, and shrinks it (the file keeps the
    full value); no other code cell assigns a budget of its own."""
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    shipped = parameters(nb)
    for key, small in SMALL[name].items():
        assert key in shipped, f"{name}: {key!r} is not a literal of the parameters cell"
        assert small != shipped[key], f"{name}: the override of {key!r} is the shipped value"
    small_nb = set_parameters(nbformat.read(NOTEBOOK_DIR / name, as_version=4), **SMALL[name])
    assert parameters(small_nb) == {**shipped, **SMALL[name]}
    assigned = {t.id for c in nb.cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])
                for node in ast.walk(ast.parse(c.source)) if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    assert not assigned & set(shipped), f"{name}: cells re-assign parameters {sorted(assigned & set(shipped))}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_without_errors(path: Path):
    """Execute with nbclient (300 s a cell), from the notebooks folder, with the test budgets of
    :data:`SMALL`; no error outputs."""
    nb = set_parameters(nbformat.read(path, as_version=4), **budgets(path.name))
    nb = execute(nb, path.parent)
    assert error_outputs(nb) == []
    generators = [c.source for c in nb.cells if c.cell_type == "code"
                  for o in c.get("outputs", []) if "torch._C.Generator" in str(o.get("data", o.get("text", "")))]
    assert generators == [], "a cell prints a torch.Generator (end it with an assignment, not torch.manual_seed)"
