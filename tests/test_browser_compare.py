"""The comparison view in a real JupyterLab, driven by a headless Chromium (Playwright).

A notebook written into the server's root builds an untrained GRU 64 for ``workbench/CartPoleNoVel-v1``
in the app and rolls it out (the "current rollout"); in the page the compare panel rolls the shipped
trained agent (``assets/agents/cartpole_novel.pt``) out on the same seeds, by clicks. Then the
one time cursor is moved with the slider's keys and by a click on a figure: every figure's cursor mark
(a layout image named ``"cursor"``, read from plotly's layout in the page) must sit at the same step.
Writes ``assets/screenshots/compare.png`` (1280 wide).
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
NOTEBOOK = "compare-browser-test.ipynb"
STEPS = 150
VIEWS = ("a", "b", "diff")
PLOT = "(view) => document.querySelector(`.wb-compare .wb-view-${view} .js-plotly-plot`)"
CURSORS = f"""() => ['a', 'b', 'diff'].map(v => {{ const gd = ({PLOT})(v);
  const s = gd && gd._fullLayout ? (gd._fullLayout.images || []).filter(s => s.name === 'cursor') : [];
  return s.length ? s[0].x : null; }})"""
DRAWN = f"""() => ['a', 'b', 'diff'].every(v => {{ const gd = ({PLOT})(v);
  return !!gd && !!gd._fullData && gd._fullData.some(t => t.type === 'heatmap'); }})"""
ZMAX = f"""(v) => {{ const gd = ({PLOT})(v); const t = gd._fullData.find(t => t.type === 'heatmap');
  return [t.zmin, t.zmax]; }}"""
STATE = f"""() => ['a', 'b', 'diff'].map(v => {{ const gd = ({PLOT})(v), box = document.querySelector(`.wb-compare .wb-view-${{v}}`);
  return [v, !!box, box && box.firstChild ? box.firstChild.className : null, gd && gd._fullData ? gd._fullData.map(t => t.type) : null]; }})"""
CLICK_AT = f"""([view, step]) => {{ const gd = ({PLOT})(view); const fl = gd._fullLayout;
  const xa = fl.xaxis, ya = fl.yaxis, box = gd.getBoundingClientRect();
  return [box.left + xa._offset + xa.l2p(step), box.top + ya._offset + ya._length / 2]; }}"""

CELLS = [
    "from workbench.envs import EnvSpec\nfrom workbench.policy import PolicySpec\nfrom widgets.app import WorkbenchApp",
    # an untrained GRU 64 with the trained agent's architecture, on its environment
    f"app = WorkbenchApp(PolicySpec(hidden_size=64, head_cells=(64,)),\n"
    f"                   EnvSpec('workbench/CartPoleNoVel-v1', num_envs=2), steps={STEPS}, device='cpu')\n"
    f"app.build(); app.run()\napp.compare_panel",
]


def _set(panel, label: str, value: str) -> None:
    """Types ``value`` into the text control labelled ``label`` inside ``panel`` and commits it."""
    box = panel.locator(".widget-inline-hbox", has=panel.page.locator("label", has_text=label)).first
    field = box.locator("input")
    field.fill(value)
    field.press("Enter")


def _same_step(page, step: int) -> str:
    return f"() => JSON.stringify(({CURSORS})()) === JSON.stringify([{step}, {step}, {step}])"


def test_compare_checkpoint_run_with_a_linked_cursor(lab_server, page):
    from playwright.sync_api import expect

    expect.set_options(timeout=120_000)  # two rollouts and three figures on a busy 2-core box
    base, token, root = lab_server
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / NOTEBOOK)
    page.set_viewport_size({"width": 1280, "height": 2400})
    page.set_default_timeout(120_000)
    page.on("console", lambda m: page.console_errors.append(f"{m.type}: {m.text}") if m.type in ("warning", "log") else None)
    page.goto(f"{base}/doc/tree/{NOTEBOOK}?token={token}")
    page.wait_for_selector(".jp-Notebook")
    page.wait_for_function(KERNEL_IDLE)
    ok = page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    assert ok is True, page.evaluate(CELL_ERRORS)
    assert page.evaluate(CELL_ERRORS) == []

    # run B: the trained agent rolled out on A's (the current rollout's) seeds, by clicks
    panel = page.locator(".wb-compare")
    expect(panel).to_be_visible()
    source_b = panel.locator(".wb-compare-source-b")
    _set(source_b, "path", "../assets/agents/cartpole_novel.pt")
    panel.locator(".widget-button", has_text="Compare").click()
    expect(panel).to_contain_text("Compared A: GRU 64 (nn.GRU)")
    expect(panel).to_contain_text("cartpole_novel.pt")
    try:  # plotly.js is evaluated in the page on first use: slow under load
        page.wait_for_function(DRAWN, timeout=240_000)
    except Exception as err:
        raise AssertionError(f"the compare figures were not drawn: {page.evaluate(STATE)}; console errors: "
                             f"{page.console_errors}") from err
    expect(panel.locator(".wb-compare-table")).to_contain_text("64")
    # one colour scale for both runs
    assert page.evaluate(f"({ZMAX})('a')") == page.evaluate(f"({ZMAX})('b')")
    page.wait_for_function(_same_step(page, 0))

    # the slider moves every figure's cursor mark
    handle = panel.locator(".widget-hslider", has_text="time").locator(".noUi-handle").first
    handle.focus()
    for _ in range(5):
        handle.press("ArrowRight")
    page.wait_for_function(_same_step(page, 5))
    expect(panel).to_contain_text("step 5 ·")

    # a click on run B's heatmap moves the one cursor, on every figure, and the slider
    x, y = page.evaluate(f"({CLICK_AT})", ["b", 60])
    page.mouse.move(x, y)
    page.mouse.click(x, y)
    page.wait_for_function(f"() => {{ const c = ({CURSORS})(); return c[0] !== 5 && c[0] === c[1] && c[1] === c[2]; }}")
    step = page.evaluate(CURSORS)[0]
    assert abs(step - 60) <= 2, step
    expect(panel).to_contain_text(f"step {step} ·")
    # and a click on the difference figure too
    x, y = page.evaluate(f"({CLICK_AT})", ["diff", 100])
    page.mouse.move(x, y)
    page.mouse.click(x, y)
    page.wait_for_function(f"() => {{ const c = ({CURSORS})(); return c[0] !== {step} && c[0] === c[1] && c[1] === c[2]; }}")
    assert abs(page.evaluate(CURSORS)[0] - 100) <= 2

    SHOTS.mkdir(parents=True, exist_ok=True)
    panel.scroll_into_view_if_needed()
    box = panel.bounding_box()
    page.screenshot(path=SHOTS / "compare.png", full_page=True,
                    clip={"x": 0, "y": box["y"] + page.evaluate("window.scrollY"), "width": 1280, "height": box["height"]})
    assert page.locator(".wb-compare .wb-msg-error").count() == 0
    assert page.evaluate(CELL_ERRORS) == []
    assert page.console_errors == [], page.console_errors
