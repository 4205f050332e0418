"""Save session → Open session in a real JupyterLab, driven by a headless Chromium (Playwright).

A first notebook shows the app: Build policy, Run rollout, move the time cursor and select units by
clicks, then *Save session…*. A second notebook (its own kernel: nothing shared but the file) shows a
fresh app: *Open session…* brings back the policy, the rollout and the explorer at the same cursor step
with the same units selected, in the page.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest

from browser_fixtures import SCREENSHOTS, browser_missing
from workbench.benchmark.ui import CELL_ERRORS, KERNEL_IDLE

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))]

APP = """from widgets import WorkbenchApp
from workbench.envs import EnvSpec
from workbench.policy import PolicySpec
app = WorkbenchApp({policy}, EnvSpec("CartPole-v1", hide_velocity=True, num_envs=2, max_steps=30),
                   steps=80, device="cpu", timing=dict(rounds=2, block_s=0.0005))
app"""
CURSOR_X = """() => { const gd = document.querySelector('.wb-view-timeline .js-plotly-plot');
  const s = gd && gd._fullLayout ? (gd._fullLayout.images || []).filter(s => s.name === 'cursor') : [];
  return s.length ? s[0].x : null; }"""


def _notebook(root, name: str, policy: str) -> str:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(APP.format(policy=policy))])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / name)
    return name


def _open_and_run(page, base, token, name) -> None:
    page.goto(f"{base}/doc/tree/{name}?token={token}")
    page.wait_for_selector(".jp-Notebook")
    page.wait_for_function(KERNEL_IDLE, timeout=120_000)
    ok = page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    assert ok is True, page.evaluate(CELL_ERRORS)
    page.locator(".wb-session").wait_for()


def _path_field(page):
    return page.locator(".wb-session .widget-inline-hbox", has=page.locator("label", has_text="session file")) \
        .locator("input").first


def test_save_session_then_open_it_in_a_fresh_notebook(lab_server, page, tmp_path):
    from playwright.sync_api import expect

    expect.set_options(timeout=120_000)  # a busy 2-core machine
    base, token, root = lab_server
    session_file = tmp_path / "lesson.zip"

    # 1. build + rollout by clicks; cursor 9 steps on; select units at a low threshold; save
    _open_and_run(page, base, token, _notebook(
        root, "session-save.ipynb", "PolicySpec(hidden_size=8, python_based=True, record_gates=True)"))
    page.locator(".wb-policy .widget-button", has_text="Build policy").click()
    rollout = page.locator(".wb-rollout")
    expect(rollout).to_contain_text("GRU 8 × 1")
    rollout.locator(".widget-button", has_text="Run rollout").click()
    expect(rollout).to_contain_text("2 env(s) × 80 steps")
    page.wait_for_function(f"() => ({CURSOR_X})() === 0")
    explorer = page.locator(".wb-explorer")
    handle = explorer.locator(".widget-hslider", has_text="time").locator(".noUi-handle").first
    handle.focus()
    for _ in range(9):
        handle.press("ArrowRight")
    page.wait_for_function(f"() => ({CURSOR_X})() === 9")
    expect(explorer).to_contain_text("step 9 ·")
    threshold = explorer.locator(".widget-hslider", has_text="threshold").locator(".noUi-handle").first
    threshold.focus()
    threshold.press("ArrowLeft")  # 0.15 → 0.10 → 0.05: a few units pass
    threshold.press("ArrowLeft")
    explorer.locator(".widget-button", has_text="Select units").click()
    expect(explorer).to_contain_text("unit(s) with |h| > 0.05 at every step 5–15 of env 0")
    picked = re.search(r"outlined over steps 5–15: (.*)\.", explorer.locator(".wb-msg-ok, .wb-msg-warning").filter(
        has_text="at every step").first.inner_text()).group(1).strip()
    field = _path_field(page)
    field.fill(str(session_file))
    field.press("Enter")
    bar = page.locator(".wb-session")
    bar.locator(".widget-button", has_text="Save session").click()
    expect(bar).to_contain_text("Saved session to")
    assert session_file.is_file()
    # saving again is refused until the overwrite tick
    bar.locator(".widget-button", has_text="Save session").click()
    expect(bar).to_contain_text("exists: nothing was saved")
    expect(bar.locator(".widget-checkbox", has_text="overwrite the existing file")).to_be_visible()
    assert page.evaluate(CELL_ERRORS) == []

    # 2. a fresh notebook and kernel: open the session; the explorer shows the same step and units
    _open_and_run(page, base, token, _notebook(root, "session-open.ipynb", "PolicySpec(hidden_size=4)"))
    assert page.evaluate(f"({CURSOR_X})()") is None  # nothing rolled out here
    field = _path_field(page)
    field.fill(str(session_file))
    field.press("Enter")
    bar = page.locator(".wb-session")
    bar.locator(".widget-button", has_text="Open session").click()
    expect(bar).to_contain_text("Opened")
    expect(bar).to_contain_text("view restored")
    page.wait_for_function(f"() => ({CURSOR_X})() === 9")
    explorer = page.locator(".wb-explorer")
    expect(explorer).to_contain_text("step 9 ·")
    expect(explorer).to_contain_text(f"at every step 5–15 of env 0, outlined over steps 5–15: {picked}")
    expect(page.locator(".wb-policy")).to_contain_text("GRU 8 × 1")
    expect(page.locator(".wb-rollout")).to_contain_text("Opened from the session")
    shots = SCREENSHOTS
    shots.mkdir(parents=True, exist_ok=True)
    top = page.locator(".wb-app").bounding_box()  # the bar and the panels it restored
    page.screenshot(path=shots / "session.png", clip=dict(x=top["x"], y=top["y"], width=top["width"], height=720))
    assert page.locator(".wb-msg-error").count() == 0, page.locator(".wb-msg-error").first.inner_text()
    assert page.evaluate(CELL_ERRORS) == []
    assert page.console_errors == [], page.console_errors
