"""Marks that follow the user on a built figure: the time cursor, the PCA cursor, unit outlines, time zoom.

Panels call these instead of looking up trace names or editing shapes. Each
mark has a name (a ``"cursor"`` shape or trace, ``"selection"`` shapes), so a
second call moves or replaces it rather than adding another. Every function
changes the figure in place and returns it, except :func:`without_marks`, which
returns a copy without them (what an export shows: the data, not the UI).

Examples:
    >>> fig = go.Figure(go.Heatmap(z=[[0.0, 1.0, 2.0]]))
    >>> [s.x0 for s in set_time_cursor(set_time_cursor(fig, 1), 2).layout.shapes if s.name == "cursor"]
    [2]
"""

from __future__ import annotations

import copy
from typing import Sequence

import plotly.graph_objects as go

from ._style import CURSOR_LINE, SELECTION_LINE, _env_trace_name

__all__ = ["MARKS", "set_time_cursor", "set_pca_cursor", "outline_units", "zoom_time", "without_marks"]

MARKS = ("cursor", "selection", "band")
"""the names of the marks that follow the user (shapes, traces or layout images): the time/PCA cursor, the unit
outlines, the selected step range (a band on the timeline, ringed points in the PCA)"""


def set_time_cursor(fig: go.Figure, step: int) -> go.Figure:
    """Puts the time cursor (a vertical line named ``"cursor"``, on every panel) at ``step``.

    Examples:
        >>> from plotly.subplots import make_subplots
        >>> fig = make_subplots(rows=1, cols=2)
        >>> fig = fig.add_trace(go.Scatter(y=[0, 1]), row=1, col=1).add_trace(go.Scatter(y=[1, 0]), row=1, col=2)
        >>> fig = set_time_cursor(fig, 3)
        >>> [(s.xref, s.x0) for s in fig.layout.shapes]
        [('x', 3), ('x2', 3)]
    """
    if not any(s.name == "cursor" for s in fig.layout.shapes):
        fig.add_vline(x=step, line=CURSOR_LINE, name="cursor", layer="above", row="all", col="all")
    fig.update_shapes(dict(x0=step, x1=step), selector=dict(name="cursor"))
    return fig


def set_pca_cursor(fig: go.Figure, env: int, step: int) -> go.Figure:
    """Marks step ``step`` of env ``env``'s path on a :func:`~workbench.figures.pca_figure` (2D or 3D).

    The mark is a trace named ``"cursor"``: an open ring in 2D, a dot in 3D.

    Examples:
        >>> import torch
        >>> from workbench.figures import pca_figure
        >>> fig = pca_figure(torch.randn(1, 6, 3, generator=torch.Generator().manual_seed(0)))
        >>> cursor = set_pca_cursor(fig, env=0, step=4).data[-1]
        >>> cursor.name, bool(cursor.x[0] == fig.data[0].x[4])
        ('cursor', True)
    """
    path = next(fig.select_traces(selector=dict(name=_env_trace_name(env))), None)
    if path is None:
        raise ValueError(f"set_pca_cursor: the figure has no path for env {env}; draw it with pca_figure(env={env}).")
    three_d = path.type == "scatter3d"
    point = dict(x=[path.x[step]], y=[path.y[step]])
    if three_d:
        point["z"] = [path.z[step]]
    cursor = next(fig.select_traces(selector=dict(name="cursor")), None)
    if cursor is not None:
        cursor.update(**point)
    elif three_d:
        fig.add_trace(go.Scatter3d(**point, mode="markers", name="cursor",
                                   marker=dict(size=8, color=CURSOR_LINE["color"]), hoverinfo="skip"))
    else:
        marker = dict(size=16, color="rgba(0,0,0,0)", line=dict(color=CURSOR_LINE["color"], width=3))
        fig.add_trace(go.Scatter(**point, mode="markers", name="cursor", marker=marker, hoverinfo="skip"))
    return fig


def outline_units(fig: go.Figure, units: Sequence[int], start: int | None = None, stop: int | None = None) -> go.Figure:
    """Outlines ``units`` over steps ``start..stop`` (inclusive) on a heatmap, replacing earlier outlines.

    With no range (``start=None``) the outlines are only removed.

    Examples:
        >>> fig = outline_units(go.Figure(go.Heatmap(z=[[0.0] * 5] * 3)), [0, 2], 1, 3)
        >>> [(s.x0, s.x1, s.y0) for s in fig.layout.shapes]
        [(0.5, 3.5, -0.5), (0.5, 3.5, 1.5)]
        >>> len(outline_units(fig, []).layout.shapes)
        0
    """
    fig.layout.shapes = [s for s in fig.layout.shapes if s.name != "selection"]
    if start is None:
        return fig
    stop = start if stop is None else stop
    for u in units:
        fig.add_shape(type="rect", name="selection", x0=start - 0.5, x1=stop + 0.5, y0=u - 0.5, y1=u + 0.5,
                      line=SELECTION_LINE, fillcolor="rgba(0,0,0,0)", layer="above")
    return fig


def zoom_time(fig: go.Figure, span: tuple[int, int] | None) -> go.Figure:
    """Zooms every time axis on steps ``span = (first, last)``; ``None`` shows every step again.

    Examples:
        >>> fig = zoom_time(go.Figure(go.Scatter(x=list(range(10)), y=[0] * 10)), (2, 5))
        >>> fig.layout.xaxis.range
        (1.5, 5.5)
        >>> zoom_time(fig, None).layout.xaxis.autorange
        True
    """
    if span is None:
        fig.update_xaxes(autorange=True, range=None)
    else:
        fig.update_xaxes(autorange=False, range=[span[0] - 0.5, span[1] + 0.5])
    return fig


def without_marks(fig, keep: Sequence[str] = ()) -> go.Figure:
    """A copy of ``fig`` without the shapes, traces, annotations and layout images named in :data:`MARKS` (except
    ``keep``).

    ``fig`` itself (a ``go.Figure``, a ``FigureWidget`` or a figure dict) is not changed.

    Args:
        fig: a figure with marks from :func:`set_time_cursor`, :func:`set_pca_cursor`, :func:`outline_units`.
        keep: names from :data:`MARKS` to leave in, e.g. ``("cursor",)``.

    Examples:
        >>> fig = outline_units(set_time_cursor(go.Figure(go.Heatmap(z=[[0.0] * 5] * 3)), 2), [1], 0, 3)
        >>> [s.name for s in without_marks(fig).layout.shapes], len(fig.layout.shapes)
        ([], 2)
        >>> [s.name for s in without_marks(fig, keep=("cursor",)).layout.shapes]
        ['cursor']
    """
    keep = (keep,) if isinstance(keep, str) else tuple(keep)
    unknown = [k for k in keep if k not in MARKS]
    if unknown:
        raise ValueError(f"without_marks: 'keep' must be some of {list(MARKS)}; got {unknown!r}.")
    drop = set(MARKS) - set(keep)
    spec = fig.to_dict() if hasattr(fig, "to_dict") else copy.deepcopy(dict(fig))  # to_dict copies
    spec["data"] = [t for t in spec.get("data") or () if t.get("name") not in drop]
    layout = spec.setdefault("layout", {})
    for key in ("shapes", "annotations", "images"):
        if key in layout:
            layout[key] = [item for item in layout[key] if item.get("name") not in drop]
    return go.Figure(spec)
