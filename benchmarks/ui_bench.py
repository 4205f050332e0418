"""``python benchmarks/ui_bench.py [--quick] [--steps N] [--envs N] [--hidden N] [--json FILE] [--md FILE]``.

The UI benchmark lives in the package, :mod:`workbench.benchmark.ui` (so that
``python -m workbench bench --ui`` works from an installed wheel too); this script runs it from a
checkout. See benchmarks/README.md for what it measures and the results.
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # a checkout without pip install -e

    from workbench.benchmark.ui import main

    sys.exit(main())
