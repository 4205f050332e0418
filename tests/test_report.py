"""workbench.report: the one-page HTML report holds the metadata, every finding, the figures, plotly.js once."""

from __future__ import annotations

import re

import plotly.graph_objects as go
import pytest

from workbench.diagnostics import DiagnosticsReport, Finding
from workbench.embedded_metadata import read_metadata
from workbench.errors import Cancelled, ExportError
from workbench.figures import set_time_cursor
from workbench.jobs import CancelToken
from workbench.report import report_html, write_report

META = {"env_id": "workbench/CueMemory-v0", "seed": 7, "steps": 123, "num_envs": 3, "device": "cpu",
        "deterministic": True, "created": "2026-01-02T03:04:05+00:00",
        "checkpoint": {"path": "/runs/agent.pt", "sha256": "ab" * 32},
        "policy": {"hidden_size": 24, "python_based": False}}
FINDINGS = DiagnosticsReport([
    Finding("error", "Memory leaks across episodes", "At 4 resets the hidden state was not zero.", "Add InitTracker."),
    Finding("warning", "Short run", "Only 123 steps <b>bold</b>.", "Run more steps."),
    Finding("ok", "Replay matches the rollout", "Largest gap 1e-07."),
])


def figures():
    heat = set_time_cursor(go.Figure(go.Heatmap(z=[[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])), 1)
    return {"explorer · heatmap": heat, "rollout · line": go.Figure(go.Scatter(y=[4, 5, 6]))}


def test_report_holds_metadata_findings_and_figures(tmp_path):
    """Every metadata field, every finding's words (escaped), each figure once, in one offline page."""
    path = write_report(tmp_path / "r.html", META, FINDINGS, figures())
    text = path.read_text()
    for value in ("workbench/CueMemory-v0", ">7<", ">123<", ">3<", "/runs/agent.pt", "ab" * 32, "hidden_size"):
        assert value in text, value
    assert "1 error, 1 warning, 1 ok" in text
    for f in FINDINGS.findings:
        assert f.title in text and (f.fix in text)
    assert "At 4 resets the hidden state was not zero." in text
    assert "Only 123 steps &lt;b&gt;bold&lt;/b&gt;." in text  # the finding's text, never its markup
    assert text.index("Memory leaks") < text.index("Short run") < text.index("Replay matches")  # errors first
    assert text.count("Plotly.newPlot(") == 2 and "explorer · heatmap" in text and "rollout · line" in text
    assert read_metadata(path)["seed"] == 7 and read_metadata(path)["checkpoint"]["sha256"] == "ab" * 32


def test_plotly_js_inline_once_and_no_remote_script(tmp_path):
    """plotly.js is inlined exactly once; no <script src="http(s)://...">, no CDN: the page opens offline."""
    from plotly.offline import get_plotlyjs

    text = write_report(tmp_path / "r.html", META, FINDINGS, figures()).read_text()
    assert text.count(get_plotlyjs()) == 1
    assert not re.search(r"<script[^>]+src\s*=\s*['\"]?(https?:)?//", text, re.I)
    rest = text.replace(get_plotlyjs(), "")  # plotly.js itself names its topojson CDN (geo maps only)
    assert "cdn.plot.ly" not in rest and "cdn.jsdelivr" not in rest and "mathjax" not in rest.lower()


def test_cursor_left_out_and_caller_figure_unchanged():
    """The report shows the data, not the UI: the time cursor is not in the page; the caller's figure keeps it."""
    figs = figures()
    before = figs["explorer · heatmap"].to_dict()
    text = report_html(META, None, figs)
    assert '"name":"cursor"' not in text.replace(" ", "")
    assert figs["explorer · heatmap"].to_dict() == before
    assert "No diagnostics for this run" in text


def test_never_overwrites(tmp_path):
    """An existing file (a user's, or an earlier report) is refused and left as it was."""
    path = tmp_path / "r.html"
    path.write_text("a user's page")
    with pytest.raises(ExportError, match="exists; it is never overwritten"):
        write_report(path, META, FINDINGS, figures())
    assert path.read_text() == "a user's page"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # no temporary file left


def test_cancel_writes_nothing(tmp_path):
    token = CancelToken()
    token.cancel("test")
    with pytest.raises(Cancelled):
        write_report(tmp_path / "r.html", META, FINDINGS, figures(), cancel=token)
    assert list(tmp_path.iterdir()) == []
