"""Import hygiene: the core package never loads the UI libraries (checked in a fresh interpreter)."""
import subprocess
import sys

import pytest

UI_LIBRARIES = ("ipywidgets", "plotly")


@pytest.mark.parametrize("module", ["workbench", "workbench.cli"])
def test_import_does_not_load_ui_libraries(module, tmp_path):
    """``import workbench`` (and its CLI) leaves ipywidgets and plotly unloaded."""
    code = (
        "import importlib, sys\n"
        f"importlib.import_module({module!r})\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {UI_LIBRARIES!r}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"{module} loaded {result.stdout.strip()}"


def _help_argvs() -> list[list[str]]:
    from workbench.cli import _COMMANDS

    return [["--help"], *([name, "--help"] for name in _COMMANDS)]


@pytest.mark.parametrize("argv", _help_argvs(), ids=" ".join)
def test_cli_help_does_not_import_torch(argv, tmp_path):
    """``python -m workbench [COMMAND] --help`` builds its parser without importing torch, tensordict or torchrl."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "workbench", *argv], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage: python -m workbench" in result.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    heavy = sorted(m for m in imported if m.split(".")[0] in ("torch", "tensordict", "torchrl"))
    assert not heavy, f"python -m workbench {' '.join(argv)} imported {heavy[:5]}"


def test_provenance_import_does_not_load_torch(tmp_path):
    """``import workbench.provenance`` (what ``--version`` reads) leaves torch, tensordict and torchrl unloaded."""
    code = (
        "import sys, workbench.provenance\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tensordict', 'torchrl')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"workbench.provenance loaded {result.stdout.strip()[:200]}"


def test_version_does_not_import_torch(tmp_path):
    """``python -m workbench --version`` prints the version without importing torch."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "workbench", "--version"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("python -m workbench ")
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert not sorted(m for m in imported if m.split(".")[0] in ("torch", "tensordict", "torchrl"))
