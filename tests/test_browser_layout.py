"""The policy builder's buttons keep their text in real JupyterLab + Chromium, with Lab's file browser open.

At 1280×800 the app's top row gives the policy builder about half of what the file browser leaves;
the buttons (Build policy, Record gates, Load, Save, Refresh) used to shrink to "…" there, and Load
read "Lo…" at 1600×1000. Measured, not guessed: every visible button of the panel has
``scrollWidth <= clientWidth`` (its text is not cut) at both sizes. Writes
``assets/screenshots/agents.png`` (the panel with a shipped agent chosen, 1280 wide, file browser open).
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from browser_fixtures import SCREENSHOTS, browser_missing
from workbench.benchmark.ui import CELL_ERRORS, KERNEL_IDLE

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))]

SHOTS = SCREENSHOTS
NOTEBOOK = "layout-agents.ipynb"
SIZES = [(1280, 800), (1600, 1000)]

CUT_BUTTONS = """() => Array.from(document.querySelectorAll('.wb-policy button.jupyter-button'))
  .filter(b => b.offsetParent !== null)  // the visible ones
  .map(b => ({text: b.innerText.trim(), scroll: b.scrollWidth, client: b.clientWidth}))"""
FILE_BROWSER_WIDTH = """() => { const fb = document.querySelector('.jp-SideBar + * .jp-FileBrowser, .jp-FileBrowser');
  return fb && fb.offsetParent !== null ? fb.getBoundingClientRect().width : 0; }"""
OVERFLOWING_FIELDS = """() => { const panel = document.querySelector('.wb-rollout').getBoundingClientRect();
  return Array.from(document.querySelectorAll('.wb-rollout .widget-inline-hbox'))
    .filter(e => e.offsetParent !== null && e.getBoundingClientRect().right > panel.right + 1)
    .map(e => e.innerText.trim().split('\\n')[0]); }"""
OPEN_FILE_BROWSER = """() => { const app = window.jupyterapp;  // the left area, on the file browser
  app.shell.activateById('filebrowser'); if (app.shell.leftCollapsed) app.shell.expandLeft(); }"""


def test_policy_buttons_and_rollout_fields_fit_with_the_file_browser_open(lab_server, page):
    from playwright.sync_api import expect

    expect.set_options(timeout=60_000)
    base, token, root = lab_server
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from widgets import WorkbenchApp\n"
        "from workbench.checkpoints import shipped_checkpoints\n"
        "app = WorkbenchApp(steps=20, device='cpu')\n"
        "app.policy_panel.agent.value = str(shipped_checkpoints()[-1].path)  # the cue agent: Record gates shows\n"
        "app")], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, root / NOTEBOOK)
    page.set_viewport_size({"width": SIZES[0][0], "height": SIZES[0][1]})
    page.goto(f"{base}/lab/tree/{NOTEBOOK}?reset&token={token}")  # /lab: the full shell, sidebars and all
    page.wait_for_selector(".jp-Notebook")
    page.wait_for_function(KERNEL_IDLE)
    page.evaluate(OPEN_FILE_BROWSER)
    try:
        page.wait_for_function(f"() => ({FILE_BROWSER_WIDTH})() > 150", timeout=20_000)
    except Exception:
        page.screenshot(path=str(root / "no-file-browser.png"))
        raise AssertionError("no file browser: " + str(page.evaluate(
            "() => Array.from(document.querySelectorAll('.jp-FileBrowser, #filebrowser'))"
            ".map(e => [e.id, e.className, e.getBoundingClientRect().width])")))
    assert page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')") is True
    policy = page.locator(".wb-policy")
    expect(policy).to_contain_text("gates not recorded: nn.GRU backend")
    expect(policy.locator(".widget-button", has_text="Record gates")).to_be_visible()
    assert page.evaluate(CELL_ERRORS) == []

    measured = {}
    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_function(f"() => ({FILE_BROWSER_WIDTH})() > 150")
        page.wait_for_function("(w) => document.querySelector('.wb-policy').getBoundingClientRect().right <= w", arg=width)
        buttons = page.evaluate(CUT_BUTTONS)
        measured[(width, height)] = buttons
        texts = {b["text"] for b in buttons}
        assert {"Build policy", "Record gates", "Load", "Save", "Refresh"} <= texts, buttons
        cut = [b for b in buttons if b["scroll"] > b["client"]]
        assert cut == [], f"at {width}×{height} with the file browser open ({page.evaluate(FILE_BROWSER_WIDTH):.0f} px), " \
                          f"these buttons' text is cut: {cut}"
        # the rollout panel beside it: every field inside the panel (two columns wrap into one when narrow)
        assert page.evaluate(OVERFLOWING_FIELDS) == [], f"at {width}×{height}, rollout fields past the panel's edge"
    print({size: [(b["text"], b["client"]) for b in buttons] for size, buttons in measured.items()})
    # the screenshot: 1280 wide with the file browser open, tall enough for the whole panel
    page.set_viewport_size({"width": 1280, "height": 1400})
    page.wait_for_function(f"() => ({FILE_BROWSER_WIDTH})() > 150")
    SHOTS.mkdir(parents=True, exist_ok=True)
    policy.screenshot(path=SHOTS / "agents.png")
    assert page.console_errors == [], page.console_errors
