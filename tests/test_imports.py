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
