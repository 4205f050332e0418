"""The README's code example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "the README should show the library in a python code block"
    for code in blocks:
        exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})
