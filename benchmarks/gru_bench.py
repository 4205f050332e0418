"""``python benchmarks/gru_bench.py [--quick] [--json FILE] [--device cuda] [--sections ...]``.

The benchmark suite lives in the package, :mod:`workbench.benchmark` (so that
``python -m workbench bench`` works from an installed wheel too); this script runs it from a
checkout. See benchmarks/README.md for the method and the results.
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # a checkout without pip install -e

    from workbench.benchmark.runner import main

    sys.exit(main())
