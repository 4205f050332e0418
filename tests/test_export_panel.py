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


# ------------------------------------------------------------------ Export all, Report, download links


def _hrefs(panel) -> list[str]:
    import re

    return re.findall(r"<a href='([^']+)' download='([^']+)'", panel.links_html)


def test_export_all_writes_each_figure_in_each_format_never_overwriting(panel, source, tmp_path, monkeypatch):
    """Every figure of every source × every ticked format, in a new folder; a second click another folder;
    the links are relative to the notebook's folder (the kernel's cwd) and name each file."""
    panel.add_source("timing", source, from_rollout=False)
    panel.format_boxes["html"].value = True  # json (the fixture's) and html
    monkeypatch.chdir(tmp_path)
    first = panel.export_all()
    assert panel.last_error is None, panel.message
    names = sorted(p.name for p in first)
    assert names == sorted(f"{src}-{fig}.{fmt}" for src in ("explorer", "timing") for fig in ("heat", "line")
                           for fmt in ("html", "json"))
    assert len({p.parent for p in first}) == 1 and first[0].parent.parent == tmp_path
    assert read_metadata(first[0].parent / "timing-line.json")["panel"] == "timing"
    assert read_metadata(first[0].parent / "explorer-line.json")["seed"] == 3
    stamps = {p: p.stat().st_mtime_ns for p in first}
    second = panel.export_all()
    assert len(second) == len(first) and second[0].parent != first[0].parent  # a new folder
    assert {p: p.stat().st_mtime_ns for p in first} == stamps  # nothing of the first click rewritten
    hrefs = _hrefs(panel)
    assert [name for _, name in hrefs] == [p.name for p in second]
    assert [href for href, _ in hrefs] == [f"{second[0].parent.name}/{p.name}" for p in second]
    assert panel.written.outputs[0]["data"]["text/html"] == panel.links_html


def test_export_takes_a_free_name_instead_of_overwriting(panel, tmp_path):
    """The single Export never replaces a file: heat.json exists, so heat-1.json is written and said."""
    (tmp_path / "heat.json").write_text("a user's file")
    (path,) = panel.export()
    assert path.name == "heat-1.json" and (tmp_path / "heat.json").read_text() == "a user's file"
    assert "heat existed" in panel.message and "heat-1" in panel.message


def test_export_all_cancel_keeps_finished_files(panel, source, tmp_path, monkeypatch):
    """Cancel between figures: the figures written stay (and are linked), the rest is not written."""
    import widgets.export_panel as export_panel

    import threading

    real, calls, second = export_panel.export_figure, [], threading.Event()

    def second_waits(*args, cancel=None, **kwargs):
        calls.append(kwargs["name"])
        if len(calls) == 2:
            second.set()
            assert cancel.wait(30)
        return real(*args, cancel=cancel, **kwargs)

    monkeypatch.setattr(export_panel, "export_figure", second_waits)
    job = panel.start_all()
    assert second.wait(30)  # the first figure is written
    panel.cancel("test")
    panel.wait()
    assert job.state == "cancelled" and [p.name for p in panel.paths] == ["explorer-heat.json"]
    assert "kept 1 file(s)" in panel.message and [n for _, n in _hrefs(panel)] == ["explorer-heat.json"]
    assert [p.name for p in panel.paths[0].parent.iterdir()] == ["explorer-heat.json"]


def test_report_button_writes_the_run_report(panel, tmp_path):
    """Report: the run's metadata, diagnostics and the rollout-made figures in one new HTML file, linked."""
    from workbench.diagnostics import DiagnosticsReport, Finding

    panel.set_metadata(panel.metadata, diagnostics=DiagnosticsReport([Finding("warning", "Odd", "Looks odd.")]))
    first = panel.report()
    text = first.read_text()
    assert first.parent == tmp_path and first.name.startswith("report-cartpole-v1-")
    assert "Looks odd." in text and "/runs/policy.pt" in text and text.count("Plotly.newPlot(") == 2
    second = panel.report()
    assert second != first and first.read_text() == text  # never overwritten
    assert [n for _, n in _hrefs(panel)] == [second.name]


def test_no_run_no_report():
    """Without a rollout the Report button says what to do."""
    panel = ExportPanel()
    panel.report_button.click()
    panel.wait()
    assert "No run to report yet" in panel.message and panel.paths == []


def test_links_in_voila_and_outside_the_root(tmp_path, monkeypatch):
    """In a Voila kernel the links are the server's /voila/files/ URLs (a folder served: the root is above the
    notebook's folder); a file outside the root is named with its path, without a link."""
    from pathlib import Path

    from widgets.export_panel import download_links_html, server_root

    nb_dir = tmp_path / "course" / "week1"
    (nb_dir / "exports").mkdir(parents=True)
    inside, outside = nb_dir / "exports" / "a b.png", Path(tmp_path.parent / "elsewhere.png")
    inside.write_bytes(b"png")
    monkeypatch.chdir(nb_dir)
    monkeypatch.setenv("VOILA_SERVER_URL", "/base/")
    monkeypatch.setenv("SCRIPT_NAME", "/base/voila/render/course/week1/app.ipynb")
    assert server_root() == (tmp_path.resolve(), "/base/voila/files/")
    text = download_links_html([inside, outside])
    assert "href='/base/voila/files/course/week1/exports/a%20b.png' download='a b.png'" in text
    assert f"<code>{outside.resolve()}</code>" in text and "outside the folder this server shares" in text
    monkeypatch.setenv("SCRIPT_NAME", "/")  # one notebook served: its folder is the root
    assert server_root() == (nb_dir.resolve(), "/base/voila/files/")


def test_the_selected_range_band_is_a_mark_too(tmp_path):
    """The explorer's selected step range (rings in the PCA, a band image on the timeline) is left out of an
    export unless marks are ticked, as the cursor and the unit outlines are."""
    from widgets.explorer_panel import ExplorerPanel
    from workbench.figures.marks import without_marks
    from workbench.figures.timeline import range_band_image

    g = torch.Generator().manual_seed(0)
    is_init = torch.zeros(1, 60, 1, dtype=torch.bool)
    is_init[0, 0] = True
    from tensordict import TensorDict
    from workbench.keys import KEYS
    traj = TensorDict({KEYS.next_hidden: torch.tanh(torch.randn(1, 60, 1, 4, generator=g).cumsum(1) * 0.3),
                       KEYS.is_init: is_init}, [1, 60])
    explorer = ExplorerPanel(columns=100)
    explorer.set_trajectory(traj)
    explorer.time_range.value = (10, 20)
    pca = explorer.figures["hidden_pca"]
    assert [t.name for t in pca.data].count("band") == 1
    panel = ExportPanel(formats=("json",))
    panel.add_source("explorer", explorer)
    panel.folder.value = str(tmp_path)
    panel.figure.value = "explorer:hidden_pca"
    (path,) = panel.export()
    assert panel.last_error is None, panel.message
    assert "band" not in [t.get("name") for t in json.loads(path.read_text())["data"]]
    panel.include_marks.value, panel.name.value = True, "with-marks"
    (path,) = panel.export()
    assert "band" in [t.get("name") for t in json.loads(path.read_text())["data"]]
    timeline = go.Figure(go.Heatmap(z=[[0.0] * 30] * 2), layout=dict(images=[range_band_image(5, 9)]))
    assert without_marks(timeline).layout.images == () and len(without_marks(timeline, keep="band").layout.images) == 1
