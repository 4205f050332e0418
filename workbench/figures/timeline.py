"""Linked views of one env's hidden states at screen resolution: the timeline and the PCA scatter.

The explorer draws one *timeline* (rows sharing the time axis: hidden-state heatmap, norm
envelope ``‖h‖₂``, gate heatmaps r/z/n) and one *PCA* scatter, from a :class:`Window`: the
data of a window of steps binned by :mod:`workbench.decimate` (every step when the window fits
the columns). Resets are one line trace per row (``"resets"``, ``None``-separated, at most one
per column), never thousands of shapes. The marks a panel moves are named as in :mod:`.marks`:
the time cursor is one shape ``"cursor"`` spanning every row, the 2D PCA cursor a ``"cursor"``
circle shape (a ``"cursor"`` trace in 3D), unit outlines ``"selection"`` shapes.

:func:`timeline_traces` / :func:`pca_traces` give the traces' data in figure order, so a live
figure can be updated with exactly what changed (:class:`widgets.plotly_view.PlotlyView` sends them
as typed arrays). In the live view the cursors are layout images (:func:`time_cursor_image`,
:func:`point_cursor_image`), which the browser moves without redrawing any data.

Examples:
    >>> h = torch.tanh(torch.randn(30, 4, generator=torch.Generator().manual_seed(0)))
    >>> win = window(h, resets=[0, 12], start=0, stop=30, columns=10)
    >>> win.bins.width, win.hidden.shape, win.norm_x.shape[0] <= 20
    (3, (4, 10), True)
    >>> fig = timeline_figure(win, cursor=5)
    >>> [d.name for d in fig.data], [s.name for s in fig.layout.shapes]
    (['hidden', 'resets', 'norm', 'resets'], ['cursor'])
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from .. import decimate
from ..hidden import GATE_NAMES
from ._style import CURSOR_LINE, PALETTE, RESET_LINE, SELECTION_LINE, TEMPLATE, _np

__all__ = ["Window", "window", "timeline_figure", "timeline_traces", "PCAView", "pca_view", "pca_scatter_figure",
           "pca_traces", "pca_cursor", "time_cursor_image", "point_cursor_image", "range_band_image", "rewindow",
           "ROWS", "BAND_COLOR"]

ROWS = ("hidden", "norm", "gates")
RESET_MARK_COLUMNS = 4
"""a window with more resets than ``columns / RESET_MARK_COLUMNS`` draws one per that many columns"""
"""the rows a timeline can hold, top to bottom"""
BAND_COLOR = "#ff9900"
"""the selected step range: a translucent band on the timeline, ringed points in the PCA"""
_GATE_TITLES = {"r": "r (reset gate)", "z": "z (update gate)", "n": "n (candidate)"}
_ROW_PX = {"hidden": 260, "norm": 130, "gate": 150}


@dataclass
class Window:
    """One env's data over steps ``[start, stop)``, binned per column (see :func:`window`)."""

    bins: decimate.Bins
    how: str
    x: np.ndarray
    """``[count]`` column centres (steps)"""
    hidden: np.ndarray
    """``[H, count]`` binned hidden state (unit-major, as a heatmap's ``z``)"""
    norm_x: np.ndarray
    norm_y: np.ndarray
    """the min/max envelope of ``‖h‖₂`` (every step when exact)"""
    gates: np.ndarray | None
    """``[3, H, count]`` binned gates r, z, n, or ``None``"""
    resets: np.ndarray
    """reset steps in the window (> 0): every one when they are sparse; otherwise at most one per
    :data:`RESET_MARK_COLUMNS` columns (a dense overview of thousands of resets costs the browser more
    than it shows; zoomed in, every reset is drawn)"""
    zmax: float
    """colour range of the hidden heatmap (±zmax), fixed for the whole env so zooming keeps colours"""
    norm_range: tuple[float, float]
    label: str = ""
    """what the figures say about the data (env, layer)"""

    @property
    def start(self) -> int:
        return self.bins.start

    @property
    def stop(self) -> int:
        return self.bins.stop

    def describe(self) -> str:
        """How the window is drawn, e.g. ``"steps 0–99999, 67 steps per column (max |value|)"``."""
        span = f"steps {self.start}–{self.stop - 1}"
        if self.bins.exact:
            return f"{span}, every step"
        how = "max |value|" if self.how == "maxabs" else "mean"
        return f"{span}, {self.bins.width} steps per column ({how}; ‖h‖ min/max)"


def window(hidden, *, resets: Sequence[int] | np.ndarray | torch.Tensor = (), start: int = 0,
           stop: int | None = None, columns: int = decimate.COLUMNS, how: str = "maxabs", norm=None,
           gates=None, zmax: float | None = None, norm_range: tuple[float, float] | None = None,
           label: str = "") -> Window:
    """Bins one env's ``hidden [T, H]`` (and ``norm [T]``, ``gates [T, 3, H]``) over ``[start, stop)``.

    ``norm`` defaults to ``‖h‖₂`` of the window; ``zmax`` and ``norm_range`` (colour and y ranges)
    default to the window's, pass the whole series' so a zoom keeps them.

    Examples:
        >>> w = window(torch.ones(8, 2), resets=[0, 3, 6], start=2, stop=8)
        >>> w.bins.exact, w.x.tolist(), w.resets.tolist(), w.norm_y.shape
        (True, [2.0, 3.0, 4.0, 5.0, 6.0, 7.0], [3, 6], (6,))
    """
    h = hidden
    t = h.shape[0]
    stop = t if stop is None else stop
    x, z = decimate.heat(h, start, stop, columns=columns, how=how)
    if norm is None:
        seg = torch.as_tensor(_np(h[start:stop]) if not isinstance(h, torch.Tensor) else h[start:stop])
        norm_w = _np(seg.double().norm(dim=-1))
        nx, ny = decimate.envelope(norm_w, 0, stop - start, columns=columns)
        nx = nx + start
    else:
        nx, ny = decimate.envelope(norm, start, stop, columns=columns)
    g = None
    if gates is not None:
        _, gz = decimate.heat(gates, start, stop, columns=columns, how=how)  # [count, 3, H]
        g = np.ascontiguousarray(np.transpose(gz, (1, 2, 0)))
    r = np.asarray(_np(torch.as_tensor(resets)) if isinstance(resets, torch.Tensor) else resets, dtype=np.int64)
    r = r[(r > 0) & (r >= start) & (r < stop)]
    if r.size > columns // RESET_MARK_COLUMNS:
        r = decimate.thin_marks(r, start, stop, columns=max(1, columns // RESET_MARK_COLUMNS))
    if zmax is None:
        zmax = max(1.0, float(np.nanmax(np.abs(z)))) if z.size else 1.0
    if norm_range is None:
        norm_range = (0.0, float(np.nanmax(ny)) * 1.05 if ny.size else 1.0)
    return Window(bins=decimate.bins(start, stop, columns=columns), how=how, x=x,
                  hidden=np.ascontiguousarray(z.T), norm_x=nx, norm_y=ny, gates=g, resets=r, zmax=float(zmax),
                  norm_range=(float(norm_range[0]), float(norm_range[1]) or 1.0), label=label)


def _reset_line(steps: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """x, y of vertical lines at ``steps - 0.5`` from ``lo`` to ``hi``, NaN-separated (one trace)."""
    n = steps.shape[0]
    x = np.repeat(steps.astype(np.float64) - 0.5, 3)
    y = np.tile(np.array([lo, hi, np.nan]), n)
    x[2::3] = np.nan
    return x, y


def _rows(win: Window, rows: Sequence[str]) -> list[str]:
    """The rows actually drawn: ``"hidden"``, ``"norm"``, ``"gate r"``, ``"gate z"``, ``"gate n"``."""
    bad = [r for r in rows if r not in ROWS]
    if bad:
        raise ValueError(f"rows: expected names among {ROWS}; got {list(rows)!r}.")
    out: list[str] = []
    for r in rows:
        if r == "gates":
            out += [f"gate {g}" for g in GATE_NAMES] if win.gates is not None else []
        else:
            out.append(r)
    return out


def timeline_traces(win: Window, rows: Sequence[str] = ROWS) -> list[dict[str, Any]]:
    """The data of each trace of :func:`timeline_figure` in figure order (``x``/``y``/``z`` only):
    what changes when the window, env or layer does.

    Examples:
        >>> w = window(torch.zeros(5, 2), resets=[3])
        >>> [sorted(t) for t in timeline_traces(w, rows=("hidden",))]
        [['x', 'z'], ['x', 'y']]
    """
    out: list[dict[str, Any]] = []
    n_units = win.hidden.shape[0]
    for row in _rows(win, rows):
        if row == "hidden":
            out.append(dict(x=win.x, z=win.hidden))
            lo, hi = -0.5, n_units - 0.5
        elif row == "norm":
            out.append(dict(x=win.norm_x, y=win.norm_y))
            lo, hi = win.norm_range
        else:
            out.append(dict(x=win.x, z=win.gates[GATE_NAMES.index(row[-1])]))
            lo, hi = -0.5, n_units - 0.5
        rx, ry = _reset_line(win.resets, lo, hi)
        out.append(dict(x=rx, y=ry))
    return out


def timeline_figure(win: Window, *, rows: Sequence[str] = ROWS, cursor: int | None = None,
                    selection: tuple[Sequence[int], int, int] | None = None, title: str | None = None,
                    height: int | None = None, width: int | None = None, template: str = TEMPLATE) -> go.Figure:
    """The rows of ``win`` stacked on one time axis, resets as one line per row, the cursor on all rows.

    Keyword Args:
        rows: which of ``"hidden"``, ``"norm"``, ``"gates"`` to draw (gates only when the window has them).
        cursor: the step of the time cursor (a shape named ``"cursor"``), or ``None``.
        selection: ``(units, first, last)`` outlined on the hidden heatmap (shapes ``"selection"``).

    Examples:
        >>> w = window(torch.zeros(6, 3), gates=torch.rand(6, 3, 3), resets=[2])
        >>> fig = timeline_figure(w, cursor=2, selection=([1], 0, 3))
        >>> [d.name for d in fig.data][::2], len(fig.data)
        (['hidden', 'norm', 'gate r', 'gate z', 'gate n'], 10)
        >>> [(s.name, s.x0) for s in fig.layout.shapes]
        [('cursor', 2), ('selection', -0.5)]
    """
    names = _rows(win, rows)
    if not names:
        raise ValueError(f"rows: nothing to draw for {list(rows)!r} (this window has no gates).")
    px = [_ROW_PX["gate" if n.startswith("gate") else n] for n in names]
    titles = [_row_title(n) for n in names]
    fig = make_subplots(rows=len(names), cols=1, shared_xaxes=True, vertical_spacing=min(0.06, 0.3 / len(names)),
                        row_heights=[p / sum(px) for p in px], subplot_titles=titles)
    data = timeline_traces(win, rows)
    for i, name in enumerate(names, start=1):
        main, resets = data[2 * i - 2], data[2 * i - 1]
        if name == "norm":
            # SVG, not WebGL: at most two points per column, and a WebGL layer in this stacked figure made
            # every zoom redraw it after plotly's relayout (~0.1-0.2 s more before the kernel heard of it)
            fig.add_trace(go.Scatter(**main, mode="lines", name="norm", line=dict(color=PALETTE[0], width=1),
                                       hovertemplate=_hover(name, win)), row=i, col=1)
        else:
            gate = name.startswith("gate")
            g = name[-1]
            axis = dict(coloraxis="coloraxis" if g in "rz" else "coloraxis2") if gate else dict(
                colorscale="RdBu_r", zmin=-win.zmax, zmax=win.zmax, zmid=0, colorbar=_colorbar(fig, i, "h"))
            fig.add_trace(go.Heatmap(**main, y=np.arange(main["z"].shape[0]), name=name, **axis,
                                     hovertemplate=_hover(name, win)), row=i, col=1)
        fig.add_trace(go.Scatter(**resets, mode="lines", name="resets", line=RESET_LINE, hoverinfo="skip",
                                 showlegend=False, connectgaps=False), row=i, col=1)
        fig.update_yaxes(title_text=_row_axis(name), row=i, col=1)
        if name == "norm":
            fig.update_yaxes(range=list(win.norm_range), row=i, col=1)
        elif name != "norm":
            fig.update_yaxes(range=[-0.5, main["z"].shape[0] - 0.5], row=i, col=1)
    fig.update_xaxes(title_text="step", row=len(names), col=1)
    fig.update_xaxes(range=[win.start - 0.5, win.stop - 0.5], autorange=False)
    layout: dict[str, Any] = {}
    gate_rows = [i for i, n in enumerate(names, start=1) if n.startswith("gate")]
    if gate_rows:
        layout["coloraxis"] = dict(colorscale="Viridis", cmin=0, cmax=1,
                                   colorbar=_colorbar(fig, gate_rows[:2], "r, z"))
        layout["coloraxis2"] = dict(colorscale="RdBu_r", cmin=-1, cmax=1, cmid=0,
                                    colorbar=_colorbar(fig, gate_rows[2:], "n"))
    fig.update_layout(title=dict(text=_title(win, title), font=dict(size=13)),
                      height=height or sum(px) + 110, width=width, template=template, showlegend=False,
                      margin=dict(t=60, b=40, l=60, r=80), hovermode="closest", hoverdistance=-1, **layout)
    # hoverdistance -1: a click anywhere in a row (the norm's too, away from its line) reports a point
    if cursor is not None:
        fig.add_shape(**time_cursor_shape(cursor))
    if selection is not None and "hidden" in names:
        for s in selection_shapes(*selection):
            fig.add_shape(**s)
    return fig


def rewindow(spec: dict[str, Any], win: Window, *, rows: Sequence[str] = ROWS,
             x_range: Sequence[float] | None = None, title: str | None = None,
             pack: Callable[[np.ndarray], Any] = lambda a: a) -> dict[str, Any]:
    """The JSON ``spec`` of a :func:`timeline_figure` (same env, rows and marks) made to show ``win`` instead:
    new trace data, hover texts, title, norm range and x range (``x_range``, default the window); the
    layout, marks and images are kept. What a zoom changes, without building the figure again (plotly's
    validation of a stacked figure costs ~0.1–0.3 s; this, milliseconds). ``pack`` encodes each array
    (e.g. as a plotly.js typed array).

    Examples:
        >>> w = window(torch.zeros(50, 2), resets=[10, 30])
        >>> spec = timeline_figure(w, cursor=3).to_plotly_json()
        >>> out = rewindow(spec, window(torch.ones(50, 2), resets=[10, 30], start=20, stop=30))
        >>> out["data"][0]["x"].tolist(), out["layout"]["xaxis"]["range"], list(spec["layout"]["xaxis"]["range"])
        ([20.0, 21.0, 22.0, 23.0, 24.0, 25.0, 26.0, 27.0, 28.0, 29.0], [19.5, 29.5], [-0.5, 49.5])
    """
    names = _rows(win, rows)
    traces = timeline_traces(win, rows)
    if len(spec.get("data", ())) != len(traces):
        raise ValueError(f"spec: expected the {len(traces)} traces of a timeline with rows {names}; "
                         f"got {len(spec.get('data', ()))}.")
    data = []
    for i, (old, new) in enumerate(zip(spec["data"], traces)):
        trace = dict(old, **{k: pack(np.asarray(v)) for k, v in new.items()})
        if i % 2 == 0:
            trace["hovertemplate"] = _hover(names[i // 2], win)
        data.append(trace)
    layout = dict(spec.get("layout", {}))
    rng = [float(v) for v in (x_range if x_range is not None else (win.start - 0.5, win.stop - 0.5))]
    for key in [k for k in layout if k.startswith("xaxis")]:
        layout[key] = dict(layout[key], range=rng, autorange=False)
    if "norm" in names:
        key = "yaxis" + ("" if names.index("norm") == 0 else str(names.index("norm") + 1))
        layout[key] = dict(layout.get(key, {}), range=list(win.norm_range))
    layout["title"] = dict(layout.get("title", {}), text=_title(win, title))
    return dict(spec, data=data, layout=layout)


def _hover(name: str, win: Window) -> str:
    """A main trace's hover text: the value, then the step (or the steps a column holds)."""
    tail = "<br>" + ("step %{x}" if win.bins.exact else f"steps around %{{x:.0f}} ({win.bins.width} per column)")
    if name == "norm":
        return f"‖h‖₂ = %{{y:.3f}}{tail}<extra></extra>"
    what = name[-1] if name.startswith("gate") else "h"
    return f"unit %{{y}}<br>{what} = %{{z:.3f}}{tail}<extra></extra>"


def _title(win: Window, title: str | None) -> str:
    return title if title is not None else f"{win.label}{' · ' if win.label else ''}{win.describe()}"


def _row_title(name: str) -> str:
    return {"hidden": "hidden state h", "norm": "‖h‖₂"}.get(name) or f"gate {_GATE_TITLES[name[-1]]}"


def _row_axis(name: str) -> str:
    return "‖h‖₂" if name == "norm" else "unit"


def _colorbar(fig: go.Figure, rows, title: str) -> dict:
    """A colour bar beside ``rows`` (1-based) of a one-column subplot figure."""
    rows = [rows] if isinstance(rows, int) else list(rows)
    doms = [fig.get_subplot(r, 1).yaxis.domain for r in rows]
    lo, hi = min(d[0] for d in doms), max(d[1] for d in doms)
    return dict(title=dict(text=title), y=(lo + hi) / 2, len=hi - lo, yanchor="middle", thickness=12)


def time_cursor_shape(step: int) -> dict:
    """The time cursor: a vertical line named ``"cursor"`` at ``step`` across every row (paper height)."""
    return dict(type="line", name="cursor", xref="x", yref="paper", x0=step, x1=step, y0=0, y1=1,
                line=CURSOR_LINE, layer="above")


def _svg_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("ascii")).decode("ascii")


_LINE_SVG = _svg_uri('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 2 100" width="2" height="100" '
                     f'preserveAspectRatio="none"><rect width="2" height="100" fill="{CURSOR_LINE["color"]}"/></svg>')
_RING_SVG = _svg_uri('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16" width="16" height="16">'
                     f'<circle cx="8" cy="8" r="6.5" fill="none" stroke="{CURSOR_LINE["color"]}" stroke-width="3"/></svg>')


def time_cursor_image(step: int) -> dict:
    """The live time cursor: a layout image named ``"cursor"`` (a thin red line at ``step``, full paper height).

    Moving a layout image is a cheap relayout in plotly.js (a shape's ``x0`` recalculates the plot);
    the view keeps its width at 2 pixels (``sizex`` in steps) on zoom.

    Examples:
        >>> im = time_cursor_image(7)
        >>> im["name"], im["x"], im["yref"], im["source"].startswith("data:image/svg+xml")
        ('cursor', 7, 'paper', True)
    """
    return dict(name="cursor", source=_LINE_SVG, xref="x", yref="paper", x=step, y=1, sizex=1, sizey=1,
                xanchor="center", yanchor="top", sizing="stretch", layer="above")


def point_cursor_image(x: float, y: float) -> dict:
    """The live 2D PCA cursor: a red ring image named ``"cursor"`` centred on ``(x, y)`` (16 pixels, kept on zoom)."""
    return dict(name="cursor", source=_RING_SVG, xref="x", yref="y", x=float(x), y=float(y), sizex=1e-9,
                sizey=1e-9, xanchor="center", yanchor="middle", sizing="stretch", layer="above")


_BAND_SVG = _svg_uri('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10" width="10" height="10" '
                     f'preserveAspectRatio="none"><rect width="10" height="10" fill="{BAND_COLOR}"/></svg>')


def range_band_image(first: int, last: int, *, opacity: float = 0.28) -> dict:
    """The selected steps ``first..last`` on a time axis: a translucent layout image named ``"band"``
    over the full height, from ``first - 0.5`` to ``last + 0.5`` (the view keeps it a few pixels wide).

    Examples:
        >>> im = range_band_image(5, 15)
        >>> im["name"], im["x"], im["sizex"], im["xanchor"]
        ('band', 10.0, 11.0, 'center')
    """
    return dict(name="band", source=_BAND_SVG, xref="x", yref="paper", x=(first + last) / 2, y=1,
                sizex=float(last - first + 1), sizey=1, xanchor="center", yanchor="top", sizing="stretch",
                layer="above", opacity=opacity)


def selection_shapes(units: Sequence[int], first: int, last: int) -> list[dict]:
    """Outlines of ``units`` over steps ``first..last`` on the hidden heatmap (shapes named ``"selection"``)."""
    return [dict(type="rect", name="selection", xref="x", yref="y", x0=first - 0.5, x1=last + 0.5,
                 y0=u - 0.5, y1=u + 0.5, line=SELECTION_LINE, fillcolor="rgba(0,0,0,0)", layer="above")
            for u in units]


# ---------------------------------------------------------------------------- PCA
@dataclass
class PCAView:
    """What the PCA scatter shows: points ``coords [N, k]`` of steps ``steps [N]`` coloured by ``color``."""

    coords: np.ndarray
    steps: np.ndarray
    color: np.ndarray
    color_title: str
    resets: np.ndarray
    """indices into ``coords`` of the reset points"""
    ratio: np.ndarray
    fitted_on: int
    """how many points the PCA was fitted on"""
    total: int
    """how many points the env has"""
    label: str = ""

    @property
    def k(self) -> int:
        return self.coords.shape[1]

    def point(self, step: int) -> np.ndarray:
        """The coordinates of ``step`` (clamped into the shown steps)."""
        i = int(np.clip(np.searchsorted(self.steps, step), 0, len(self.steps) - 1))
        return self.coords[i]


def pca_view(coords, steps, *, color, color_title: str = "step", resets=(), ratio, fitted_on: int, total: int,
             label: str = "") -> PCAView:
    """A :class:`PCAView` from coordinates ``[N, k]`` of consecutive-or-sorted ``steps [N]``.

    Examples:
        >>> v = pca_view(np.zeros((4, 2)), np.arange(10, 14), color=np.arange(4), resets=[12], ratio=[0.5, 0.2],
        ...              fitted_on=4, total=4)
        >>> v.k, v.resets.tolist()
        (2, [2])
    """
    steps = np.asarray(_np(steps), dtype=np.int64)
    r = np.asarray(_np(torch.as_tensor(resets)) if isinstance(resets, torch.Tensor) else resets, dtype=np.int64)
    idx = np.searchsorted(steps, r)
    ok = (idx < len(steps)) & (steps[np.minimum(idx, len(steps) - 1)] == r) if len(steps) else np.zeros(0, bool)
    return PCAView(coords=np.asarray(_np(coords), dtype=np.float32), steps=steps,
                   color=np.asarray(_np(color), dtype=np.float32), color_title=color_title, resets=idx[ok],
                   ratio=np.asarray(_np(ratio), dtype=np.float64), fitted_on=int(fitted_on), total=int(total),
                   label=label)


def pca_traces(view: PCAView) -> list[dict[str, Any]]:
    """The data of :func:`pca_scatter_figure`'s points and resets traces (cursor excluded), in figure order."""
    axes = ("x", "y", "z")[:view.k]
    pts = {a: view.coords[:, i] for i, a in enumerate(axes)}
    res = {a: view.coords[view.resets, i] for i, a in enumerate(axes)}
    return [dict(**pts, customdata=view.steps.astype(np.float32), marker=dict(color=view.color)),
            dict(**res, customdata=view.steps[view.resets].astype(np.float32))]


def pca_scatter_figure(view: PCAView, *, cursor: int | None = None, band=None, title: str | None = None,
                       height: int | None = None, width: int | None = None, template: str = TEMPLATE) -> go.Figure:
    """The points of ``view`` in 2D (WebGL ``scattergl``) or 3D, resets marked, the cursor at step ``cursor``.

    In 2D the cursor is a ring shape named ``"cursor"`` (a fixed size in pixels, moved by its anchor);
    in 3D a one-point trace named ``"cursor"``. ``band`` (``[N, k]`` coordinates, possibly none) adds a
    trace named ``"band"``: the selected steps' points, ringed. Axis titles are short (``"PC1 (34%)"``)
    in 3D, with small ticks, so a half-width scene stays legible.

    Examples:
        >>> v = pca_view(np.random.default_rng(0).normal(size=(6, 2)), np.arange(6), color=np.arange(6),
        ...              resets=[3], ratio=[0.6, 0.3], fitted_on=6, total=6)
        >>> fig = pca_scatter_figure(v, cursor=4)
        >>> [d.type for d in fig.data], fig.layout.shapes[0].name, bool(fig.layout.shapes[0].xanchor == v.coords[4, 0])
        (['scattergl', 'scattergl'], 'cursor', True)
    """
    three = view.k == 3
    points, resets = pca_traces(view)
    kind = go.Scatter3d if three else go.Scattergl
    axes = ("x", "y", "z")[:view.k]
    hover = "step %{customdata}<br>" + "<br>".join(f"PC{i + 1} = %{{{a}:.3f}}" for i, a in enumerate(axes))
    big = len(view.steps) > 5000
    fig = go.Figure()
    fig.add_trace(kind(**{k: v for k, v in points.items() if k != "marker"}, name="points",
                       mode="markers" if big else "lines+markers",
                       line=dict(color="rgba(120, 120, 120, 0.4)", width=1),
                       marker=dict(**points["marker"], coloraxis="coloraxis", size=2 if three else (3 if big else 5)),
                       hovertemplate=hover + "<extra></extra>"))
    fig.add_trace(kind(**resets, name="reset (is_init)", mode="markers", hovertemplate=hover + "<extra>reset</extra>",
                       marker=dict(symbol="x", size=4 if three else 8, color="black")))
    if band is not None:
        b = np.asarray(band, dtype=np.float32).reshape(-1, view.k)
        ring = dict(size=3, color=BAND_COLOR, opacity=0.7) if three else dict(
            size=11, color="rgba(0,0,0,0)", line=dict(color=BAND_COLOR, width=2))
        fig.add_trace(kind(**{a: b[:, i] for i, a in enumerate(axes)}, name="band", mode="markers", marker=ring,
                           hoverinfo="skip"))
    if cursor is not None:
        if three:
            fig.add_trace(pca_cursor(view, cursor, three=True))
        else:
            fig.add_shape(**pca_cursor(view, cursor, three=False))
    ratio = view.ratio
    labels = [f"PC{i + 1} ({ratio[i]:.0%})" if three else f"PC{i + 1} ({ratio[i]:.1%})" for i in range(view.k)]
    fitted = (f"PCA fitted on {view.fitted_on:,} of {view.total:,} points (evenly spaced)"
              if view.fitted_on < view.total else f"PCA fitted on all {view.total:,} points")
    layout: dict[str, Any] = dict(
        coloraxis=dict(colorscale="Viridis", colorbar=dict(title=dict(text=view.color_title), thickness=12)),
        meta=dict(explained_variance_ratio=ratio.tolist(), fitted_on=view.fitted_on, total=view.total),
    )
    if three:  # half width: short titles, small ticks, the camera back a little so nothing is clipped
        layout["scene"] = {f"{a}axis": dict(title=dict(text=t, font=dict(size=11)), tickfont=dict(size=9),
                                            nticks=5, autorange=True) for a, t in zip(axes, labels)}
        layout["scene"]["camera"] = dict(eye=dict(x=1.9, y=1.9, z=1.2))  # checked in Chromium at 460 px: closer or lower, PC3's title is clipped
    else:  # autorange stated: a figure updated in place fits its new points
        layout["xaxis"] = dict(title=dict(text=labels[0]), autorange=True)
        layout["yaxis"] = dict(title=dict(text=labels[1]), autorange=True)
    shown = f"{len(view.steps):,} points"
    fig.update_layout(title=dict(text=title or f"{view.label}{' · ' if view.label else ''}{shown}<br>"
                                 f"<span style='font-size:11px'>{fitted}</span>", font=dict(size=13)),
                      height=height, width=width, template=template, showlegend=False,
                      margin=dict(t=60, b=10, l=10, r=10) if three else dict(t=60, b=40, l=60, r=40), **layout)
    return fig


def pca_cursor(view: PCAView, step: int, *, three: bool) -> Any:
    """The PCA cursor at ``step``: a ring shape (2D, a dict for ``add_shape``) or a one-point trace (3D)."""
    p = view.point(step)
    if three:
        return go.Scatter3d(x=[float(p[0])], y=[float(p[1])], z=[float(p[2])], mode="markers", name="cursor",
                            marker=dict(size=6, color=CURSOR_LINE["color"]), hoverinfo="skip")
    return dict(type="circle", name="cursor", xref="x", yref="y", xsizemode="pixel", ysizemode="pixel",
                xanchor=float(p[0]), yanchor=float(p[1]), x0=-8, x1=8, y0=-8, y1=8,
                line=dict(color=CURSOR_LINE["color"], width=3), layer="above")
