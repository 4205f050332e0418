"""Background jobs in a real JupyterLab (headless Chromium, Playwright): Cancel, Kernel → Interrupt, no widget errors.

Each test opens ``notebooks/05-workbench-app.ipynb``, runs every cell, then drives the app by clicks:

- three rollouts in a row leave no "Error displaying widget" / "model not found" behind and exactly one
  progress area under the rollout panel (the old tqdm bars, displayed into an Output and closed, left one
  such error per run);
- Cancel of a long rollout: the panel says it was cancelled and what it kept, Run is enabled again, the
  explorer holds the kept steps, and a new rollout runs;
- Kernel → Interrupt during a long rollout does the same;
- Cancel of a long timing grid keeps the cases measured.

The seconds from the click to the panel's "cancelled" message are printed (``-s`` shows them); they are
not asserted (a loaded 2-core machine). Slow (30–90 s each): run them one at a time.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from browser_fixtures import browser_missing
from test_browser import CELL_ERRORS, KERNEL_IDLE, _set

pytestmark = [pytest.mark.browser, pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))]

NOTEBOOK = "05-workbench-app.ipynb"
WIDGET_ERRORS = ("Error displaying widget", "model not found")
KERNEL_EVAL = """async (code) => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const future = kernel.requestExecute({code, silent: false, store_history: false});
  let text = '';
  future.onIOPub = (msg) => { if (msg.header.msg_type === 'stream') text += msg.content.text;
                              if (msg.header.msg_type === 'error') text += msg.content.ename + ': ' + msg.content.evalue; };
  await future.done;
  return text; }"""


def _open_and_run_all(page, lab_server):
    from playwright.sync_api import expect

    expect.set_options(timeout=90_000)
    base, token, root = lab_server
    page.goto(f"{base}/doc/tree/{NOTEBOOK}?token={token}")
    page.wait_for_selector(".jp-Notebook")
    page.wait_for_function(KERNEL_IDLE)
    ok = page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    assert ok is True, page.evaluate(CELL_ERRORS)
    page.wait_for_function(KERNEL_IDLE)
    return page.locator(".wb-rollout")


def _kernel(page, code: str):
    """Runs ``code`` in the notebook's kernel (idle) and returns the JSON it prints."""
    out = page.evaluate(KERNEL_EVAL, f"import json as _json\nprint(_json.dumps({code}))")
    try:
        return json.loads(out)
    except ValueError:
        raise AssertionError(f"the kernel answered {out!r} to {code!r}") from None


def _widget_errors(page) -> list[str]:
    found = []
    for needle in WIDGET_ERRORS:
        found += page.locator(".jp-Notebook", has_text=needle).all_inner_texts()[:1]
    return [t[t.find(WIDGET_ERRORS[0]) - 20: t.find(WIDGET_ERRORS[0]) + 80] if WIDGET_ERRORS[0] in t else "model not found"
            for t in found]


def _start_long_rollout(page, rollout, steps: int = 100_000):
    """Sets a long rollout, clicks Run and waits until its progress line counts steps."""
    from playwright.sync_api import expect

    _set(rollout, "steps per env", str(steps))
    run = rollout.locator(".widget-button", has_text="Run rollout")
    run.click()
    job = rollout.locator(".wb-job")
    expect(job).to_be_visible()
    expect(job).to_contain_text(re.compile(rf"[1-9][\d,]* / {steps:,} steps · "))  # this run counts steps
    expect(run).to_be_disabled()
    return run, job


def _wait_cancelled(page, panel, pattern: str) -> tuple[float, str]:
    """Seconds until the panel's message matches ``pattern``, and the message."""
    from playwright.sync_api import expect

    started = time.perf_counter()
    message = panel.locator(".wb-msg-warning", has_text=re.compile(pattern))
    expect(message).to_be_visible()
    return time.perf_counter() - started, message.inner_text()


LATENCY = ("(lambda j: [round(j.ended_at - j.cancelled_at, 3), round(j.closed_at - j.ended_at, 3)])"
           "(app.{panel}_panel.job)")
"""seconds from the cancel to the end of the work, and from there to the end of the panel's update"""


def _kept_steps(message: str) -> int:
    found = re.search(r"the ([\d,]+) steps? done (?:are|is) kept", message)
    assert found, message
    return int(found.group(1).replace(",", ""))


def test_three_rollouts_leave_no_widget_error(lab_server, page):
    """Three small rollouts in a row by clicks: no widget error anywhere, one progress area, hidden."""
    from playwright.sync_api import expect

    rollout = _open_and_run_all(page, lab_server)
    run = rollout.locator(".widget-button", has_text="Run rollout")
    for steps in (300, 1000, 301):  # the old bug showed after 300 and 2000 steps, not after 30
        _set(rollout, "steps per env", str(steps))
        run.click()
        expect(rollout).to_contain_text(f"Rollout done: 2 env(s) × {steps:,} steps")
        expect(run).to_be_enabled()
    page.wait_for_function(KERNEL_IDLE)
    assert _widget_errors(page) == []
    assert rollout.locator(".wb-job").count() == 1
    expect(rollout.locator(".wb-job")).to_be_hidden()
    assert _kernel(page, "int(app.explorer_panel.trajectory.batch_size[1])") == 301
    assert page.evaluate(CELL_ERRORS) == []
    assert page.locator(".wb-msg-error").count() == 0, page.locator(".wb-msg-error").first.inner_text()


def test_cancel_a_running_rollout(lab_server, page):
    """Cancel during a 100,000-step rollout: cancelled, partial kept and in the explorer, app usable."""
    from playwright.sync_api import expect

    rollout = _open_and_run_all(page, lab_server)
    run, job = _start_long_rollout(page, rollout)
    job.locator(".widget-button", has_text="Cancel").click()
    seconds, message = _wait_cancelled(page, rollout, r"Rollout cancelled \(Cancel button\) after")
    print(f"\nCancel click -> 'Rollout cancelled' shown: {seconds:.2f} s ({message})")
    kept = _kept_steps(message)
    assert 0 < kept < 100_000
    page.wait_for_function(KERNEL_IDLE)
    print("kernel side: cancel -> work ended, work ended -> panel updated (s):",
          _kernel(page, LATENCY.format(panel="rollout")))
    expect(run).to_be_enabled()
    expect(job).to_be_hidden()
    expect(rollout).to_contain_text("Diagnostics skipped")
    page.wait_for_function(KERNEL_IDLE)
    assert _kernel(page, "[int(app.explorer_panel.trajectory.batch_size[1]), app.rollout_panel.result.cancelled]") \
        == [kept, True]
    # the app is usable: a short rollout runs to the end
    _set(rollout, "steps per env", "40")
    run.click()
    expect(rollout).to_contain_text("Rollout done: 2 env(s) × 40 steps")
    assert _widget_errors(page) == []
    assert page.evaluate(CELL_ERRORS) == []


def test_kernel_interrupt_cancels_a_running_rollout(lab_server, page):
    """Kernel → Interrupt (the notebook's interrupt command) during a rollout started by a click."""
    from playwright.sync_api import expect

    rollout = _open_and_run_all(page, lab_server)
    run, job = _start_long_rollout(page, rollout)
    page.evaluate("window.jupyterapp.commands.execute('kernelmenu:interrupt')")
    seconds, message = _wait_cancelled(page, rollout, r"Rollout cancelled \(Kernel interrupt\) after")
    print(f"\nKernel -> Interrupt -> 'Rollout cancelled' shown: {seconds:.2f} s ({message})")
    kept = _kept_steps(message)
    page.wait_for_function(KERNEL_IDLE)
    print("kernel side: interrupt -> work ended, work ended -> panel updated (s):",
          _kernel(page, LATENCY.format(panel="rollout")))
    expect(run).to_be_enabled()
    page.wait_for_function(KERNEL_IDLE)
    assert _kernel(page, "int(app.explorer_panel.trajectory.batch_size[1])") == kept
    assert _widget_errors(page) == []
    assert page.evaluate(CELL_ERRORS) == []


def test_cancel_a_running_timing_grid(lab_server, page):
    """Cancel during a long timing grid: the cases measured are kept and drawn; Run timing is enabled."""
    from playwright.sync_api import expect

    _open_and_run_all(page, lab_server)
    timing = page.locator(".wb-timing")
    _set(timing, "T (steps)", "16, 32, 64, 128, 256, 512, 1024")
    _set(timing, "rounds", "200")
    run = timing.locator(".widget-button", has_text="Run timing")
    run.click()
    job = timing.locator(".wb-job")
    expect(job).to_be_visible()
    expect(job).to_contain_text(re.compile(r"[1-9]\d* / 14 cases · "))  # this grid measured a case
    job.locator(".widget-button", has_text="Cancel").click()
    seconds, message = _wait_cancelled(page, timing, r"Timing cancelled \(Cancel button\) after")
    print(f"\nCancel click -> 'Timing cancelled' shown: {seconds:.2f} s ({message})")
    expect(run).to_be_enabled()
    expect(job).to_be_hidden()
    assert "measurements done are kept and drawn" in message
    page.wait_for_function(KERNEL_IDLE)
    print("kernel side: cancel -> work ended, work ended -> panel updated (s):",
          _kernel(page, LATENCY.format(panel="timing")))
    cases = _kernel(page, "len({(r['steps'], r['reset_rate']) for r in app.timing_panel.records})")
    assert 1 <= cases < 14
    assert _widget_errors(page) == []
