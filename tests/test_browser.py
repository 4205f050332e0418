"""The Workbench app in a real JupyterLab, driven by a headless Chromium (Playwright).

Opens ``notebooks/05-workbench-app.ipynb``, runs every cell, then clicks through the app as a
person would: build a policy (hidden size 12), run a rollout (120 steps), move the time cursor,
select units, export the heatmap (the timing chart comes from the notebook's run). Checks that the plotly figures rendered with the new data, that
the exported file is on disk, and writes screenshots to ``assets/screenshots/``.

Then runs ``notebooks/06-what-the-memory-learned.ipynb`` the same way, with the small test budgets of
``test_notebooks.SMALL`` written over its parameters cell (the same code path, a short training run;
``WORKBENCH_FULL_NOTEBOOKS=1`` keeps the shipped budgets and refreshes its screenshot): every figure
drawn, and the live training curve redrawn in place (one figure holding every batch at the end).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest

from browser_fixtures import SCREENSHOTS, browser_missing
from test_notebooks import budgets, parameters, set_parameters
from workbench.benchmark.ui import CELL_ERRORS, KERNEL_IDLE  # the page probes, written once (the UI benchmark's)

pytestmark = [pytest.mark.browser, pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))]

NOTEBOOK = "05-workbench-app.ipynb"
SHOTS = SCREENSHOTS
"""where the screenshots go (the README shows them); WORKBENCH_SCREENSHOTS overrides"""
PLOT = "(view) => document.querySelector(`.wb-view-${view} .js-plotly-plot`)"
HEATMAP_SHAPE = f"""([units, steps]) => {{ const gd = ({PLOT})('timeline');  // the explorer's live timeline
  const trace = gd && gd._fullData ? gd._fullData[0] : null;  // decoded arrays (data holds base64 specs)
  return !!trace && trace.type === 'heatmap' && trace.z.length === units && trace.z[0].length === steps; }}"""
TRACES = f"""(view) => {{ const gd = ({PLOT})(view); return gd && gd.data ? gd.data.length : -1; }}"""
CURSOR_X = f"""(view) => {{ const gd = ({PLOT})(view);  // the timeline's cursor: a layout image named "cursor"
  const s = gd && gd._fullLayout ? (gd._fullLayout.images || []).filter(s => s.name === 'cursor') : [];
  return s.length ? s[0].x : null; }}"""
PCA_RING = f"""(view) => {{ const gd = ({PLOT})(view);  // the 2D PCA's cursor: a ring image named "cursor"
  const s = gd && gd._fullLayout ? (gd._fullLayout.images || []).filter(s => s.name === 'cursor') : [];
  return s.length ? [s[0].x, s[0].y] : null; }}"""


def _set(panel, label: str, value: str) -> None:
    """Types ``value`` into the text control labelled ``label`` inside ``panel`` and commits it."""
    box = panel.locator(".widget-inline-hbox", has=panel.page.locator("label", has_text=label)).first
    field = box.locator("input")
    field.fill(value)
    field.press("Enter")


def test_app_build_rollout_explore_export(lab_server, page):
    """Run-all, then build → rollout → cursor → unit selection → export, all by clicks in Lab."""
    from playwright.sync_api import expect

    expect.set_options(timeout=60_000)  # a rollout on a busy 2-core CI box takes seconds
    base, token, root = lab_server
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(f"{base}/doc/tree/{NOTEBOOK}?token={token}")  # /doc: single-document mode
    page.wait_for_selector(".jp-Notebook")
    page.wait_for_function(KERNEL_IDLE)
    ok = page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    assert ok is True, page.evaluate(CELL_ERRORS)
    assert page.evaluate(CELL_ERRORS) == []

    # the notebook built and rolled out from code: 16 units × 150 steps are drawn
    app = page.locator(".wb-app")
    expect(app).to_be_visible()
    page.wait_for_function(HEATMAP_SHAPE, arg=[16, 150])

    # build: hidden size 12, by clicks
    policy = page.locator(".wb-policy")
    _set(policy, "hidden size", "12")
    policy.locator(".widget-button", has_text="Build policy").click()
    expect(policy).to_contain_text("GRU 12 × 1 layer(s)")

    # rollout: an invalid length is explained in the panel (from the kernel), then 120 steps
    rollout = page.locator(".wb-rollout")
    expect(rollout).to_contain_text("GRU 12 × 1")
    run = rollout.locator(".widget-button", has_text="Run rollout")
    _set(rollout, "steps per env", "0")
    run.click()
    expect(rollout.locator(".wb-msg-error")).to_contain_text("'steps' must be an int >= 1; got 0")
    expect(run).to_be_enabled()
    _set(rollout, "steps per env", "120")
    run.click()
    expect(rollout).to_contain_text("2 env(s) × 120 steps")
    expect(rollout).to_contain_text("Replay matches the rollout")
    expect(rollout).to_contain_text("All checks passed")
    page.wait_for_function(HEATMAP_SHAPE, arg=[12, 120])
    page.wait_for_function(f"() => ({TRACES})('timeline') === 10")  # heatmap, norm, gates r/z/n, a reset line each
    for view in ("pca", "replay-divergence"):
        page.wait_for_function(f"() => ({TRACES})('{view}') > 0")
    page.locator(".wb-top").screenshot(path=SHOTS / "app-rollout.png")

    # explore: move the time cursor with the keyboard; the timeline's cursor and the PCA's ring follow
    explorer = page.locator(".wb-explorer")
    before = page.evaluate(f"({CURSOR_X})('timeline')")
    ring = page.evaluate(f"({PCA_RING})('pca')")
    handle = explorer.locator(".widget-hslider", has_text="time").locator(".noUi-handle").first
    handle.focus()
    for _ in range(5):
        handle.press("ArrowRight")
    page.wait_for_function(f"(b) => ({CURSOR_X})('timeline') === b + 5", arg=before)
    page.wait_for_function(f"(r) => JSON.stringify(({PCA_RING})('pca')) !== JSON.stringify(r)", arg=ring)
    expect(explorer).to_contain_text(f"step {before + 5}")
    # Play runs in the page: the marks advance step by step; on Pause the kernel has the step shown
    ring = page.evaluate(f"({PCA_RING})('pca')")
    explorer.locator(".widget-toggle-button", has_text="Play").click()
    page.wait_for_function(f"(b) => ({CURSOR_X})('timeline') >= b + 10", arg=before + 5)
    page.wait_for_function(f"(r) => JSON.stringify(({PCA_RING})('pca')) !== JSON.stringify(r)", arg=ring)
    explorer.locator(".widget-toggle-button", has_text="Pause").click()
    expect(explorer.locator(".widget-toggle-button", has_text="Play")).to_be_visible()
    page.wait_for_function(f"""() => {{ const x = ({CURSOR_X})('timeline');
      return document.querySelector('.wb-explorer').innerText.includes(`step ${{x}} ·`); }}""")
    explorer.locator(".widget-button", has_text="Select units").click()
    expect(explorer).to_contain_text(re.compile(r"(unit\(s\)|No unit) with \|h\| > 0\.15 at every step 5–15 of env 0"))
    page.wait_for_function(f"() => ({TRACES})('units-aligned') >= 0")
    explorer.screenshot(path=SHOTS / "app-explorer.png")

    # export the heatmap into exports/ next to the notebook
    export = page.locator(".wb-export")
    export.locator("select").first.select_option(label="explorer · hidden_heatmap")
    _set(export, "name", "browser-heatmap")
    export.locator(".widget-button", has_text=re.compile(r"^\s*Export\s*$")).click()  # not "Export all"
    expect(export).to_contain_text("Wrote 1 file(s).")
    written = root / "exports" / "browser-heatmap.html"
    expect(export.locator(".wb-written a[download]")).to_have_attribute("download", written.name)  # a link
    assert written.is_file() and written.stat().st_size > 100_000
    export.screenshot(path=SHOTS / "app-export.png")

    # the notebook ran the small timing grid: chart and table are there
    page.wait_for_function(f"() => ({TRACES})('timing') > 0")
    expect(page.locator(".wb-timing .wb-timing-table")).to_contain_text("workbench:fused")
    page.locator(".wb-timing").screenshot(path=SHOTS / "app-timing.png")

    assert page.locator(".jupyter-widgets", has_text="javascript error").count() == 0
    assert page.locator(".wb-msg-error").count() == 0, page.locator(".wb-msg-error").first.inner_text()
    assert page.evaluate(CELL_ERRORS) == []
    assert page.console_errors == [], page.console_errors


PLOTS_BY_TITLE = """() => Array.from(document.querySelectorAll('.jp-Notebook .js-plotly-plot')).map(gd => ({
  title: gd.layout && gd.layout.title ? gd.layout.title.text : '',
  points: gd._fullData ? gd._fullData.reduce((n, t) => n + (t.x ? t.x.length : 0), 0) : 0 }))"""


def test_notebook_6_runs_in_lab_with_its_live_curve(lab_server, page, tmp_path):
    """Notebook 6 run-all in Lab, with the test budgets in its parameters cell: no cell error, every
    figure drawn, the live training curve redrawn in place into one figure that ends with every batch's
    point."""
    from workbench.train import DEFAULTS

    base, token, root = lab_server
    name = "06-what-the-memory-learned.ipynb"
    small = budgets(name)
    nb = set_parameters(nbformat.read(root / name, as_version=4), **small)
    nbformat.write(nb, root / name)
    values = parameters(nb)
    batches = values["train_frames"] // DEFAULTS["workbench/CueMemory-v0"]["frames_per_batch"]
    assert batches >= 2, values  # a curve, not a point
    page.goto(f"{base}/doc/tree/{name}?token={token}")
    page.wait_for_selector(".jp-Notebook")
    page.wait_for_function(KERNEL_IDLE)
    ok = page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    assert ok is True, page.evaluate(CELL_ERRORS)
    # run-all queues the cells; the last one prints the freshly trained agent's score
    page.locator(".jp-OutputArea-output", has_text=f"of {values['final_episodes']} episodes").wait_for(timeout=240_000)
    assert page.evaluate(CELL_ERRORS) == []
    page.wait_for_function(f"() => ({PLOTS_BY_TITLE})().length >= 6")
    plots = page.evaluate(PLOTS_BY_TITLE)
    titles = [p["title"] for p in plots]
    curves = [p for p in plots if "training return" in p["title"]]
    assert len(curves) == 1, titles  # updated in place, not one figure per batch
    assert curves[0]["points"] >= 2 * batches, curves  # a marker and a line point per batch
    for needle in ("hidden units over time", "hidden velocities", "paths by cue", "along the corridor",
                   "without is_init"):
        assert any(needle in t for t in titles), (needle, titles)
    # the README's picture is the full run's curve: a run on test budgets keeps its shot to itself
    shots = tmp_path if small else SHOTS
    page.locator(".jp-Cell", has=page.locator(".js-plotly-plot", has_text="training return")).last.screenshot(
        path=shots / "notebook6-training-curve.png")
    # the live curve ended as a static figure: the saved notebook holds the curve and no widget view (which a
    # reopened notebook would show as "model not found")
    assert page.evaluate("window.jupyterapp.commands.execute('docmanager:save')") is not False
    saved = nbformat.read(root / name, as_version=4)
    outputs = [o for c in saved.cells if c.cell_type == "code" for o in c.outputs]
    assert [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})] == []
    assert len([o for o in outputs if "training return" in str(o.get("data", {}).get(
        "application/vnd.plotly.v1+json", {}).get("layout", {}).get("title", ""))]) == 1
    assert page.console_errors == [], page.console_errors


TIMELINE_POINT = f"""([step, unit]) => {{ const gd = ({PLOT})('timeline');  // page pixels of (step, unit) on the heatmap
  gd.scrollIntoView({{block: 'center'}});
  const fl = gd._fullLayout, xa = fl.xaxis, ya = fl.yaxis, r = gd.getBoundingClientRect();
  return [r.left + xa._offset + xa.d2p(step), r.top + ya._offset + ya.d2p(unit)]; }}"""
OUTLINED = f"""(unit) => {{ const gd = ({PLOT})('timeline');  // is the unit outlined on the heatmap?
  return (gd.layout.shapes || []).some(s => s.name === 'selection' && Math.abs(s.y0 - (unit - 0.5)) < 1e-6); }}"""


@pytest.mark.slow
def test_explorer_click_brush_and_pick_units(lab_server, page):
    """LSTMVis-style, by mouse in real Lab: a click on the heatmap moves the cursor (slider and words), a drag in
    "select steps" mode sets the step range exactly, a shift-click on a heatmap row selects (or drops) that unit."""
    from playwright.sync_api import expect

    expect.set_options(timeout=60_000)
    base, token, _ = lab_server
    page.goto(f"{base}/doc/tree/{NOTEBOOK}?token={token}")
    page.wait_for_selector(".jp-Notebook")
    page.wait_for_function(KERNEL_IDLE)
    ok = page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    assert ok is True, page.evaluate(CELL_ERRORS)
    page.wait_for_function(HEATMAP_SHAPE, arg=[16, 150], timeout=240_000)  # 2 envs × 150 steps, 16 units
    explorer = page.locator(".wb-explorer")
    readout = explorer.locator(".widget-hslider", has_text="time").locator(".widget-readout")

    # a click on the heatmap: the kernel moves the slider, rewrites the words, the page moves the mark
    x, y = page.evaluate(f"({TIMELINE_POINT})", [57, 8])
    page.mouse.click(x, y)
    expect(readout).to_have_text("57")
    expect(explorer).to_contain_text("step 57 ·")
    page.wait_for_function(f"() => ({CURSOR_X})('timeline') === 57")

    # brush steps 20–30 in "select steps" mode: the range (typed boxes, from the kernel) is exactly that
    explorer.locator(".widget-toggle-button", has_text="select steps").click()
    page.wait_for_function(f"() => ({PLOT})('timeline')._fullLayout.dragmode === 'select'")
    (x0, y0), (x1, _) = page.evaluate(f"({TIMELINE_POINT})", [19.7, 8]), page.evaluate(f"({TIMELINE_POINT})", [30.3, 8])
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, y0 + 5, steps=4)
    page.mouse.move(x1, y0 + 5, steps=4)
    page.mouse.up()
    first = explorer.locator(".widget-inline-hbox", has=page.get_by_text("from", exact=True)).locator("input")
    last = explorer.locator(".widget-inline-hbox", has=page.get_by_text("to", exact=True)).locator("input")
    expect(first).to_have_value("20")
    expect(last).to_have_value("30")
    expect(explorer).to_contain_text("at every step 20–30 of env 0")  # and the units above threshold over it
    expect(readout).to_have_text("57")  # a brush is not a click

    # a shift-click on unit 4's row: selected if it was not, dropped if it was (outline and words follow)
    was = page.evaluate(f"({OUTLINED})(4)")
    x, y = page.evaluate(f"({TIMELINE_POINT})", [100, 4])
    page.keyboard.down("Shift")
    page.mouse.click(x, y)
    page.keyboard.up("Shift")
    expect(explorer).to_contain_text(f"Unit 4 {'dropped' if was else 'added'}")
    page.wait_for_function(f"() => ({OUTLINED})(4) === {'false' if was else 'true'}")
    expect(readout).to_have_text("57")  # a pick is not a cursor move
    if was:  # show it selected in the screenshot
        page.keyboard.down("Shift")
        page.mouse.click(x, y)
        page.keyboard.up("Shift")
        page.wait_for_function(f"() => ({OUTLINED})(4) === true")
    page.wait_for_function(f"() => ({TRACES})('units-aligned') >= 0")
    explorer.screenshot(path=SHOTS / "explorer-select.png")
    assert page.locator(".wb-msg-error").count() == 0, page.locator(".wb-msg-error").first.inner_text()
    assert page.evaluate(CELL_ERRORS) == []
    assert page.console_errors == [], page.console_errors
