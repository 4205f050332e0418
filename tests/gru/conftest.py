"""Fixtures and reporting for the GRUModule differential / integration tests.

``helpers.py`` is loaded by file path under the unique module name
``gru_test_helpers`` so that it cannot clash with another ``helpers`` module
elsewhere in the test tree (tests import it with ``import gru_test_helpers as H``).

The largest absolute difference against torchrl seen per dtype is printed in the
terminal summary and, when the environment variable ``WORKBENCH_DIFF_REPORT`` is set,
written as JSON to that path (merged across pytest-xdist workers).
"""
from __future__ import annotations

import importlib.util
import os
import sys
import uuid

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
_NAME = "gru_test_helpers"
if _NAME not in sys.modules:
    _spec = importlib.util.spec_from_file_location(_NAME, os.path.join(_HERE, "helpers.py"))
    _mod = importlib.util.module_from_spec(_spec)
    sys.modules[_NAME] = _mod
    _spec.loader.exec_module(_mod)
H = sys.modules[_NAME]

_RUN_ID = uuid.uuid4().hex

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Under pytest-xdist every worker would otherwise start one intra-op thread per
    # core; on a small machine the spinning threads slow these tiny-tensor tests ~5x.
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def diff_recorder():
    """Session-wide recorder of the largest |ours - torchrl| per dtype."""
    return H.RECORDER


def _run_id(config):
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and "testrunuid" in workerinput:
        return workerinput["testrunuid"]
    return _RUN_ID


def pytest_sessionfinish(session, exitstatus):
    if not H.RECORDER.data:
        return
    path = H.report_path()
    if path:
        H.write_report(path, _run_id(session.config))
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        import json

        workeroutput["workbench_gru_diffs"] = json.dumps(H.RECORDER.data)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    import json

    data = getattr(node, "workeroutput", {}).get("workbench_gru_diffs")
    if data:
        H.RECORDER.merge(json.loads(data))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not H.RECORDER.data:
        return
    terminalreporter.section("GRUModule vs torchrl: largest differences")
    for line in H.RECORDER.summary_lines():
        terminalreporter.write_line(line)
    path = H.report_path()
    if path:
        H.write_report(path, _run_id(config))
        terminalreporter.write_line(f"written to {path}")
