"""Shared fixtures: the browser-test fixtures (JupyterLab server, Chromium, page) live in browser_fixtures.py.

One torch (OpenMP) thread per process, set here before anything imports torch, so that it also
reaches the processes the tests start (notebook kernels, the CLI, env workers, JupyterLab's
kernels): on a busy 2-core machine the spinning intra-op threads of several processes slow each
other down many times over (notebook 6's test run, training cell: 16.7 s with two threads, 2.2 s
with one, next to two CPU hogs). A value set by the caller is kept.
"""

import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
if "torch" in sys.modules:  # imported before this file (by a plugin): set it there too
    sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

from browser_fixtures import browser, lab_server, page  # noqa: E402, F401
