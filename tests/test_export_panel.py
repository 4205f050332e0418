"""widgets.export_panel: marks left out unless ticked, width/height/scale checked, origin, cancel (headless)."""

from __future__ import annotations

import json

import plotly.graph_objects as go
import pytest
import torch

from widgets._panel import Panel
from widgets.export_panel import ExportPanel
from workbench.embedded_metadata import read_metadata
from workbench.figures import hidden_heatmap, outline_units, set_time_cursor

CHECKPOINT = {"path": "/runs/policy.pt", "sha256": "5" * 64}


def marks(path) -> list[str]:
    fig = json.loads(path.read_text())
    return [s.get("name") for s in fig["layout"].get("shapes", []) if s.get("name") in ("cursor", "selection")]


@pytest.fixture
def source():
    heat = hidden_heatmap(torch.tanh(torch.randn(1, 10, 1, 3, generator=torch.Generator().manual_seed(0))))
    heat = outline_units(set_time_cursor(heat, 4), [1], 2, 6)
    panel = Panel()
    panel.show_figure("heat", heat)
    panel.show_figure("line", go.Figure(go.Scatter(y=[1, 3, 2]), layout=dict(width=420, height=260)))
    return panel


@pytest.fixture
def panel(source, tmp_path):
    panel = ExportPanel(formats=("json",))
    panel.add_source("explorer", source)
    panel.set_metadata({"env_id": "CartPole-v1", "seed": 3, "steps": 10, "num_envs": 1, "checkpoint": CHECKPOINT})
    panel.folder.value = str(tmp_path)
    return panel


def test_defaults_follow_the_chosen_figure(panel):
    """Width/height show the chosen figure's own size (else 1000 × 600), scale 2, marks off, footer on."""
    assert panel.figure.value == "explorer:heat"
    assert (panel.width.value, panel.height.value, panel.scale.value) == (1000, 600, 2.0)
    assert panel.include_marks.value is False and panel.footer.value is True
    panel.figure.value = "explorer:line"
    assert (panel.width.value, panel.height.value) == (420, 260)
    panel.width.value = 640  # the user's size stays when the choice changes
    panel.figure.value = "explorer:heat"
    assert (panel.width.value, panel.height.value) == (640, 260)


def test_marks_left_out_unless_ticked(panel, source):
    """The exported heatmap has no cursor or selection by default; ticked, it has both; the panel's figure keeps them."""
    before = source.figures["heat"].to_json()
    (path,) = panel.export()
    assert panel.last_error is None, panel.message
    assert marks(path) == []
    panel.include_marks.value, panel.name.value = True, "with-marks"
    (path,) = panel.export()
    assert marks(path) == ["cursor", "selection"]
    assert source.figures["heat"].to_json() == before


def test_size_goes_into_the_file(panel):
    panel.width.value, panel.height.value = 700, 300
    (path,) = panel.export()
    layout = json.loads(path.read_text())["layout"]
    assert (layout["width"], layout["height"]) == (700, 300)


@pytest.mark.parametrize("field, value, match", [
    ("width", 0, "width must be a whole number of CSS pixels in [10, 8000]; got 0."),
    ("height", 20000, "height must be a whole number of CSS pixels in [10, 8000]; got 20000."),
    ("scale", -1.0, "scale (the PNG's pixel density) must be a number in [0.1, 8.0]; got -1.0."),
])
def test_bad_size_is_named_and_the_panel_keeps_working(panel, tmp_path, field, value, match):
    good = getattr(panel, field).value
    getattr(panel, field).value = value
    panel.export_button.click()
    panel.wait()  # the button starts a background job
    assert panel.message == f"ConfigError: {match}" and panel.paths == [] and not panel.export_button.disabled
    assert list(tmp_path.iterdir()) == []
    getattr(panel, field).value = good
    panel.export_button.click()
    panel.wait()  # the button starts a background job
    assert panel.last_error is None and [p.name for p in panel.paths] == ["heat.json"]


def test_file_names_the_checkpoint_and_rollout(panel):
    (path,) = panel.export()
    meta = read_metadata(path)
    assert meta["checkpoint"] == CHECKPOINT and meta["panel"] == "explorer"
    assert (meta["rollout"]["env_id"], meta["rollout"]["seed"], meta["rollout"]["steps"]) == ("CartPole-v1", 3, 10)


def test_cancel_writes_nothing_and_says_so(panel, tmp_path, monkeypatch):
    """The export runs as a job: Cancel before the first format writes nothing, says so, and frees the panel."""
    import widgets.export_panel as export_panel

    real = export_panel.export_figure

    def held(*args, cancel=None, **kwargs):  # waits for the Cancel, then exports (which then stops)
        assert cancel.wait(30)
        return real(*args, cancel=cancel, **kwargs)

    monkeypatch.setattr(export_panel, "export_figure", held)
    job = panel.start()
    assert panel.running and panel.export_button.disabled
    panel.cancel("test")
    panel.wait()
    assert job.state == "cancelled" and panel.paths == []
    assert panel.message.startswith("Export cancelled") and "nothing was written" in panel.message
    assert list(tmp_path.iterdir()) == [] and not panel.export_button.disabled
    monkeypatch.setattr(export_panel, "export_figure", real)
    assert [p.name for p in panel.export()] == ["heat.json"]
    assert (panel.job.done, panel.job.total) == (1, 1) and panel.message == "Wrote 1 file(s)."


def test_figures_not_from_the_rollout_do_not_carry_its_metadata(panel, source, tmp_path):
    """A timing chart's file names its panel, not the rollout's checkpoint, env or seed."""
    panel.add_source("timing", source, from_rollout=False)
    panel.figure.value = "timing:line"
    (path,) = panel.export()
    meta = read_metadata(path)
    assert meta["panel"] == "timing" and "seed" not in meta and meta.get("env_id") is None
    assert meta["checkpoint"] != CHECKPOINT
