"""A one-page HTML report of a run: what ran (metadata), what the checks found, and the figures.

The page opens offline: plotly.js is inlined once in its ``<head>`` (never a CDN), and every
figure is a ``<div>`` drawn by it. The run's metadata is also embedded as the same
``<script type="application/json" id="workbench-metadata">`` block an exported figure carries,
so :func:`workbench.embedded_metadata.read_metadata` reads it back. The file is written
atomically and never replaces an existing one (:func:`workbench.files.atomic_write` with
``overwrite=False``).

Examples:
    >>> import tempfile, plotly.graph_objects as go
    >>> from workbench.diagnostics import DiagnosticsReport, Finding
    >>> from workbench.embedded_metadata import read_metadata
    >>> checks = DiagnosticsReport([Finding("warning", "Short run", "Only 30 steps.", "Run more steps.")])
    >>> figs = {"norm": go.Figure(go.Scatter(y=[1, 3, 2]))}
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = write_report(f"{tmp.name}/run.html", {"env_id": "CartPole-v1", "seed": 3, "steps": 30}, checks, figs)
    >>> text = path.read_text()
    >>> "Short run" in text, "Run more steps." in text, read_metadata(path)["seed"]
    (True, True, 3)
    >>> write_report(path, {}, None, {})
    Traceback (most recent call last):
    ...
    workbench.errors.ExportError: report: '.../run.html' exists; it is never overwritten: choose another name
    >>> tmp.cleanup()
"""

from __future__ import annotations

import datetime as _dt
import html
import os
from pathlib import Path
from typing import Any, Mapping

import plotly.io as pio

from .diagnostics import DiagnosticsReport
from .embedded_metadata import html_metadata_script
from .errors import ExportError, OutputPathError
from .export import export_metadata, figure_size, prepare_folder
from .figures.marks import without_marks
from .files import atomic_write
from .jobs import CancelToken, Progress, check, report
from .provenance import origin_lines

__all__ = ["report_html", "write_report", "METADATA_ROWS"]

METADATA_ROWS = (
    ("env_id", "environment"), ("seed", "seed"), ("num_envs", "environments"), ("steps", "steps per env"),
    ("deterministic", "greedy actions"), ("device", "device"), ("created", "rolled out"),
)
"""the metadata fields the report's table shows first, with their labels (the rest follow under their keys)"""

_SKIP = {"versions", "platform", "checkpoint", "rollout", "exported", "env", "policy", "module", "figure", "panel"}
_SEVERITY = {"error": ("ERROR", "#b91c1c"), "warning": ("warning", "#b45309"), "ok": ("ok", "#15803d")}
_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:22px 0 6px;border-bottom:1px solid #ddd}
table{border-collapse:collapse}td,th{padding:2px 10px 2px 0;text-align:left;vertical-align:top}
th{color:#555;font-weight:normal}ul.findings{padding-left:0}ul.findings li{list-style:none;margin:4px 0}
.figure{margin:8px 0 18px}.origin{color:#666;font-size:12px}code{font-size:12px}
"""


def _value(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)):
        import json

        return f"<code>{html.escape(json.dumps(value, default=str))}</code>"
    return html.escape(str(value))


def _metadata_html(meta: Mapping[str, Any]) -> str:
    rows = [(label, meta[key]) for key, label in METADATA_ROWS if meta.get(key) is not None]
    shown = {key for key, _ in METADATA_ROWS}
    for key in ("policy", "module"):
        if isinstance(meta.get(key), Mapping):
            rows.append((key, meta[key]))
    rows += [(key, value) for key, value in meta.items() if key not in shown | _SKIP and value is not None]
    table = "".join(f"<tr><th>{html.escape(str(label))}</th><td>{_value(value)}</td></tr>" for label, value in rows)
    lines = "".join(f"<div>{html.escape(line)}</div>" for line in origin_lines(meta))
    return f"<table class='metadata'>{table}</table><div class='origin'>{lines}</div>"


def _findings_html(diagnostics: DiagnosticsReport | None) -> str:
    if diagnostics is None:
        return "<p>No diagnostics for this run (a cancelled rollout is not diagnosed).</p>"
    n_err, n_warn = len(diagnostics.errors), len(diagnostics.warnings)
    n_ok = len(diagnostics.findings) - n_err - n_warn
    head = (f"<p><b>{n_err} error{'s' if n_err != 1 else ''}, {n_warn} warning{'s' if n_warn != 1 else ''}, "
            f"{n_ok} ok</b></p>")
    order = sorted(diagnostics.findings, key=lambda f: ("error", "warning", "ok").index(f.severity))
    items = []
    for f in order:
        mark, color = _SEVERITY[f.severity]
        fix = f"<br><i>Fix:</i> {html.escape(f.fix)}" if f.fix else ""
        items.append(f"<li class='finding-{f.severity}'><span style='color:{color}'>[{mark}]</span> "
                     f"<b>{html.escape(f.title)}</b>: {html.escape(f.explanation)}{fix}</li>")
    return head + f"<ul class='findings'>{''.join(items)}</ul>"


def report_html(metadata: Mapping[str, Any] | None, diagnostics: DiagnosticsReport | None,
                figures: Mapping[str, Any], *, title: str | None = None, cancel: CancelToken | None = None,
                on_progress: Progress | None = None) -> str:
    """The report page as text: metadata, diagnostics findings, then each figure (cursor and selection left out).

    Args:
        metadata: the run's record (:func:`workbench.rollout.trajectory_metadata`), completed with the
            versions and origin (:func:`workbench.export.export_metadata`).
        diagnostics: the run's :class:`~workbench.diagnostics.DiagnosticsReport` (``None``: not diagnosed).
        figures: ``{name: plotly figure}``, drawn in this order.

    Keyword Args:
        title: the page's heading (default: "GRU Workbench run: <env>").
        cancel: checked before each figure; on cancel raises :class:`~workbench.errors.Cancelled`.
        on_progress: ``on_progress(figures drawn, figures)``.
    """
    from plotly.offline import get_plotlyjs

    meta = export_metadata(metadata)
    title = title or f"GRU Workbench run: {meta.get('env_id') or 'unknown environment'}"
    parts = []
    for i, (name, fig) in enumerate(figures.items()):
        check(cancel, "report", done=i, total=len(figures), unit="figures")
        fig = without_marks(fig)
        width, height = figure_size(fig)
        fig.update_layout(width=fig.layout.width or None, height=height)
        div = pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=f"figure-{i}",
                          default_width=f"{width}px" if fig.layout.width else "100%",
                          config={"displaylogo": False, "toImageButtonOptions": {"filename": name}})
        parts.append(f"<section class='figure'><h3>{html.escape(name)}</h3>{div}</section>")
        report(on_progress, i + 1, len(figures))
    figures_html = "".join(parts) or "<p>No figures.</p>"
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    version = html.escape(str(meta.get("versions", {}).get("workbench")))
    # "</script" cannot occur inside plotly.js (a browser would end the script there): checked, not assumed
    plotlyjs = get_plotlyjs()
    if "</script" in plotlyjs.lower():
        raise ExportError("report: the bundled plotly.js contains '</script'; it cannot be inlined")
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>{html.escape(title)}</title>\n"
        f"<meta name='generator' content='GRU Workbench {version}'>\n"
        f"<style>{_STYLE}</style>\n{html_metadata_script(meta)}\n"
        f"<script type='text/javascript'>{plotlyjs}</script>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1><div class='origin'>report written {html.escape(created)}</div>\n"
        f"<h2>Run</h2>{_metadata_html(meta)}\n"
        f"<h2>Diagnostics</h2>{_findings_html(diagnostics)}\n"
        f"<h2>Figures</h2>{figures_html}\n</body>\n</html>\n"
    )


def write_report(path: str | os.PathLike, metadata: Mapping[str, Any] | None, diagnostics: DiagnosticsReport | None,
                 figures: Mapping[str, Any], *, title: str | None = None, cancel: CancelToken | None = None,
                 on_progress: Progress | None = None) -> Path:
    """Writes :func:`report_html` to the new file ``path`` (its folder created if needed); returns ``path``.

    Raises:
        ExportError: ``path`` exists (it is never overwritten), or cannot be written (named).
        Cancelled: ``cancel`` was set; nothing is written.
    """
    path = Path(path).expanduser()
    if os.path.lexists(path):
        raise ExportError(f"report: {str(path)!r} exists; it is never overwritten: choose another name")
    prepare_folder(path.parent)
    page = report_html(metadata, diagnostics, figures, title=title, cancel=cancel, on_progress=on_progress)
    check(cancel, "report", done=len(figures), total=len(figures), unit="figures")
    try:
        return atomic_write(path, page.encode("utf-8"), what="report", overwrite=False)
    except FileExistsError:
        raise ExportError(f"report: {str(path)!r} exists; it is never overwritten: choose another name") from None
    except OutputPathError as error:
        raise ExportError(f"report: cannot write {str(path)!r}: {error.strerror or error}") from None

