"""Backend timing: each backend's time as a ratio to the floor, one facet per shape
(:func:`ratio_figure`), and the median time per call against sequence length (or batch, hidden,
reset rate; :func:`timing_figure`).

Examples:
    >>> timing_rows([{"backend": "torch", "pass": "forward", "steps": 8, "median_s": 0.002}])[0]["batch"] is None
    True
"""

from __future__ import annotations

import dataclasses
import keyword
import math
from typing import Any, Iterable, Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._style import PALETTE, TEMPLATE, _finish

__all__ = ["timing_rows", "timing_figure", "ratio_figure", "shape_label"]

_TIMING_REQUIRED = ("backend", "pass", "steps", "median_s")
_TIMING_FIELDS = ("backend", "pass", "batch", "steps", "hidden", "reset_rate", "median_s", "q1_s", "q3_s",
                  "layers", "input_size", "device", "dtype")
_TIMING_LABELS = {"batch": "batch", "steps": "steps T", "hidden": "hidden", "reset_rate": "reset rate"}
_SHAPE_LABELS = {"batch": "B", "steps": "T", "hidden": "H", "reset_rate": "reset", "layers": "layers",
                 "input_size": "inputs", "device": "", "dtype": ""}


def _field_name(attribute: str) -> str:
    """An attribute's record field: ``pass_`` is ``pass`` (PEP 8's spelling of a keyword as a name)."""
    stem = attribute[:-1]
    return stem if attribute.endswith("_") and keyword.iskeyword(stem) else attribute


def timing_rows(records: Iterable[Any]) -> list[dict[str, Any]]:
    """Timing records (mappings or dataclasses) as plain dicts of the fields the figure reads.

    The field names are those of :func:`workbench.timing.time_backends`' records (``pass``,
    ``reset_rate``, ...); missing optional fields are ``None``. A dataclass spells ``pass`` as
    ``pass_`` (a Python keyword cannot be a field name).

    Examples:
        >>> timing_rows([{"backend": "torch", "pass": "forward", "steps": 16, "median_s": 0.001}])[0]["pass"]
        'forward'
    """
    rows = []
    for i, rec in enumerate(records):
        if isinstance(rec, Mapping):
            d = dict(rec)
        else:
            attrs = dataclasses.asdict(rec) if dataclasses.is_dataclass(rec) and not isinstance(rec, type) else vars(rec)
            d = {_field_name(k): v for k, v in attrs.items()}
        missing = [f for f in _TIMING_REQUIRED if d.get(f) is None]
        if missing:
            raise ValueError(f"timing record {i} lacks {missing}; it has {sorted(d)}.")
        rows.append({f: d.get(f) for f in _TIMING_FIELDS})
    return rows


def timing_figure(
    records: Iterable[Any],
    *,
    x: str = "steps",
    kind: str = "line",
    log_x: bool | None = None,
    log_y: bool = False,
    env: int | None = None,
    title: str | None = None,
    height: int | None = None,
    width: int | None = None,
    template: str = TEMPLATE,
) -> go.Figure:
    """Median time per call against T (or another field) per backend, one panel per pass.

    Panels are ``forward`` and ``forward+backward`` (whatever passes appear).
    Records that differ in another field (batch, hidden, reset rate) become
    separate series named after it. With ``q1_s``/``q3_s`` the quartiles are
    drawn as error bars.

    Args:
        records: mappings or dataclasses with ``backend``, ``pass``, ``batch``, ``steps``,
            ``hidden``, ``reset_rate`` and ``median_s`` (seconds), as
            :func:`workbench.timing.time_backends` returns them.

    Keyword Args:
        x: the field on the x axis (``"steps"``, ``"batch"``, ``"hidden"`` or ``"reset_rate"``).
        kind: ``"line"`` or ``"bar"`` (grouped bars, categorical x).
        log_x: log x axis for lines (default: when x spans a factor 8 or more).
        log_y: log y axis.
        env: unused; accepted for the shared signature.

    Examples:
        >>> recs = [{"backend": b, "pass": p, "batch": 8, "steps": t, "hidden": 16, "reset_rate": 0.0,
        ...          "median_s": t * s}
        ...         for b, s in (("torch", 1e-5), ("workbench", 2e-5))
        ...         for p in ("forward", "forward+backward") for t in (16, 64)]
        >>> fig = timing_figure(recs)
        >>> len(fig.data), fig.data[0].name, fig.data[0].y.tolist(), fig.layout.yaxis.title.text
        (4, 'torch', [0.16, 0.64], 'time per call (ms)')
    """
    if kind not in ("line", "bar"):
        raise ValueError(f"kind must be 'line' or 'bar', got {kind!r}.")
    if x not in _TIMING_LABELS:
        raise ValueError(f"x must be one of {list(_TIMING_LABELS)}, got {x!r}.")
    rows = timing_rows(records)
    if not rows:
        raise ValueError("timing_figure needs at least one record.")
    passes = sorted({r["pass"] for r in rows}, key=lambda p: (p != "forward", p != "forward+backward", p))
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    others = [f for f in _TIMING_LABELS if f != x and len({r[f] for r in rows}) > 1]
    fig = make_subplots(rows=1, cols=len(passes), subplot_titles=passes, horizontal_spacing=0.08)
    xs = sorted({r[x] for r in rows if r[x] is not None})
    if log_x is None:
        log_x = kind == "line" and len(xs) > 1 and min(xs) > 0 and max(xs) / min(xs) >= 8
    quartiles = all(r["q1_s"] is not None and r["q3_s"] is not None for r in rows)
    dashes = ("solid", "dash", "dot", "dashdot", "longdash")
    series_keys = list(dict.fromkeys((r["backend"], tuple(r[f] for f in others)) for r in rows))
    variants = list(dict.fromkeys(k[1] for k in series_keys))
    shown = set()
    for col, which in enumerate(passes, start=1):
        for backend, variant in series_keys:
            sel = sorted((r for r in rows if r["pass"] == which and r["backend"] == backend
                          and tuple(r[f] for f in others) == variant), key=lambda r: r[x])
            if not sel:
                continue
            name = " · ".join([backend] + [f"{_TIMING_LABELS[f]} {v}" for f, v in zip(others, variant)])
            med = np.array([r["median_s"] * 1e3 for r in sel])
            custom = np.array([[r["batch"], r["steps"], r["hidden"], r["reset_rate"]] for r in sel], dtype=object)
            color = PALETTE[backends.index(backend) % len(PALETTE)]
            common = dict(
                x=[str(r[x]) for r in sel] if kind == "bar" else [r[x] for r in sel], y=med, name=name,
                legendgroup=name, showlegend=name not in shown, customdata=custom,
                hovertemplate=(f"{backend}<br>{which}<br>batch %{{customdata[0]}}, steps %{{customdata[1]}}, "
                               "hidden %{customdata[2]}, reset rate %{customdata[3]}"
                               "<br>median %{y:.3f} ms<extra></extra>"),
            )
            if quartiles:
                common["error_y"] = dict(type="data", symmetric=False,
                                         array=[(r["q3_s"] - r["median_s"]) * 1e3 for r in sel],
                                         arrayminus=[(r["median_s"] - r["q1_s"]) * 1e3 for r in sel])
            if kind == "bar":
                trace = go.Bar(**common, marker=dict(color=color,
                                                     pattern=dict(shape=["", "/", ".", "x", "-"][
                                                         variants.index(variant) % 5])))
            else:
                trace = go.Scatter(**common, mode="lines+markers", marker=dict(color=color),
                                   line=dict(color=color, dash=dashes[variants.index(variant) % len(dashes)]))
            fig.add_trace(trace, row=1, col=col)
            shown.add(name)
        ticks = dict(tickvals=xs, ticktext=[str(v) for v in xs]) if log_x else {}
        fig.update_xaxes(title_text=_TIMING_LABELS[x] if x != "steps" else "steps T (sequence length)",
                         type="category" if kind == "bar" else ("log" if log_x else None), row=1, col=col, **ticks)
        fig.update_yaxes(title_text="time per call (ms)" if col == 1 else None, type="log" if log_y else None,
                         rangemode="tozero" if not log_y else None, row=1, col=col)
    fixed = [f"{_TIMING_LABELS[f]} {rows[0][f]}" for f in _TIMING_LABELS
             if f != x and f not in others and rows[0][f] is not None]
    default_title = "Backend timing: median time per call" + (f" ({', '.join(fixed)})" if fixed else "")
    return _finish(fig, title=title, default_title=default_title, height=height, width=width, template=template,
                   barmode="group", legend=dict(title=dict(text="backend")))


def shape_label(row: Mapping[str, Any], fields: Iterable[str]) -> str:
    """A shape's short name from the given fields: ``"B 8 · T 64 · H 32 · reset 0.05"``.

    Examples:
        >>> shape_label({"batch": 8, "steps": 64, "hidden": 32, "reset_rate": 0.05}, ("steps", "hidden", "reset_rate"))
        'T 64 · H 32 · reset 0.05'
    """
    parts = []
    for f in fields:
        v = row.get(f)
        if v is None:
            continue
        text = f"{v:g}" if isinstance(v, float) else str(v)
        parts.append(f"{_SHAPE_LABELS[f]} {text}".strip())
    return " · ".join(parts)


def ratio_figure(
    records: Iterable[Any],
    *,
    columns: int | None = None,
    log_y: bool | None = None,
    text: bool | None = None,
    env: int | None = None,
    title: str | None = None,
    height: int | None = None,
    width: int | None = None,
    template: str = TEMPLATE,
) -> go.Figure:
    """Each backend's median time over the floor's, as grouped bars: one facet per shape, one colour per backend.

    A facet is one shape (batch × T × hidden × reset rate, and layers, inputs, device, dtype when they
    vary), titled by the fields that vary; inside it the passes (forward, forward+backward) are the x
    categories and each backend one bar, in the same colour in every facet, so the legend has one
    entry per backend. The floor (:data:`workbench.timing.FLOOR`, bare ``nn.GRU``, or the fastest
    backend when it was not measured; :func:`workbench.timing.floor_ratios`) is 1, drawn as a dashed
    line from which the bars start (up: slower, down: faster; ``y`` holds ``ratio - 1``, ``base`` 1, the
    ratio itself is ``customdata[:, 3]``); the y axes are shared, so facets compare.

    Args:
        records: as for :func:`timing_figure` (:func:`workbench.timing.time_backends`' records).

    Keyword Args:
        columns: facets per row (default: up to 4).
        log_y: log ratio axis (default: when the ratios span a factor 10 or more).
        text: print the ratio on each bar (default: when a facet has 12 bars or fewer).
        env: unused; accepted for the shared signature.

    Examples:
        >>> recs = [{"backend": b, "pass": p, "batch": 8, "steps": 64, "hidden": h, "reset_rate": 0.0,
        ...          "median_s": s * h * (2 if p == "forward+backward" else 1)}
        ...         for b, s in (("torch", 1e-4), ("workbench", 2e-4)) for h in (16, 32)
        ...         for p in ("forward", "forward+backward")]
        >>> fig = ratio_figure(recs)
        >>> [a.text for a in fig.layout.annotations][:2], [(d.name, d.xaxis) for d in fig.data]
        (['H 16', 'H 32'], [('torch (floor)', 'x'), ('workbench', 'x'), ('torch (floor)', 'x2'), ('workbench', 'x2')])
        >>> ratios = [float(c[3]) for c in fig.data[1].customdata]  # bars start at the floor: y = ratio - 1
        >>> list(fig.data[1].x), ratios, [float(y) for y in fig.data[1].y], fig.data[1].base
        (['forward', 'forward+backward'], [2.0, 2.0], [1.0, 1.0], 1.0)
        >>> [d.showlegend for d in fig.data]
        [True, True, False, False]
    """
    from ..timing import FLOOR, SHAPE_FIELDS, floor_ratios

    raw = list(records)
    rows = timing_rows(raw)
    if not rows:
        raise ValueError("ratio_figure needs at least one record.")
    ratios = floor_ratios(rows)
    passes = sorted({r["pass"] for r in rows}, key=lambda p: (p != "forward", p != "forward+backward", p))
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    varying = [f for f in SHAPE_FIELDS if len({r.get(f) for r in rows}) > 1]
    shape_key = lambda r: tuple(r.get(f) for f in SHAPE_FIELDS)  # noqa: E731
    shapes = sorted(dict.fromkeys(shape_key(r) for r in rows),
                    key=lambda k: tuple((v is None, v if not isinstance(v, str) else 0, str(v)) for v in k))
    n = len(shapes)
    cols = columns or min(n, 4)
    if cols < 1:
        raise ValueError(f"columns must be an int >= 1; got {columns!r}.")
    nrows = -(-n // cols)
    titles = [shape_label(dict(zip(SHAPE_FIELDS, k)), varying) or "all records" for k in shapes]
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=titles, shared_yaxes="all",
                        horizontal_spacing=0.03 if cols > 1 else 0.0, vertical_spacing=min(0.3, 0.5 / nrows))
    values = [q["ratio"] for q in ratios]
    if log_y is None:
        log_y = min(values) > 0 and max(values) / min(values) >= 10
    if text is None:
        text = len(backends) * len(passes) <= 12
    floor_names = sorted({q["floor"] for q in ratios})
    ticks = {}
    if log_y:  # powers of two, labelled 0.5×, 1×, 2×: no minor-tick digits
        low, high = math.floor(math.log2(min(values))), math.ceil(math.log2(max(values)))
        vals = [2.0 ** k for k in range(low, high + 1)]
        ticks = dict(tickvals=vals, ticktext=[f"{v:g}×" for v in vals])
    for i, key in enumerate(shapes):
        row, col = i // cols + 1, i % cols + 1
        for backend in backends:
            sel = [(r, q) for r, q in zip(rows, ratios) if shape_key(r) == key and r["backend"] == backend]
            sel.sort(key=lambda rq: passes.index(rq[0]["pass"]))
            if not sel:
                continue
            color = PALETTE[backends.index(backend) % len(PALETTE)]
            y = [q["ratio"] for _, q in sel]
            custom = [[r["median_s"] * 1e3, q["floor"], q["floor_s"] * 1e3, q["ratio"]] for r, q in sel]
            fig.add_trace(go.Bar(  # drawn from the floor line: up is slower, down faster
                x=[r["pass"] for r, _ in sel], y=[v - 1.0 for v in y], base=1.0,
                name=f"{backend} (floor)" if backend in floor_names else backend, legendgroup=backend, showlegend=i == 0,
                marker=dict(color=color), customdata=custom, offsetgroup=backend,
                text=[f"{v:.2f}" for v in y] if text else None, textposition="outside" if text else None,
                cliponaxis=False, textfont=dict(size=10),
                hovertemplate=(f"<b>{backend}</b> · %{{x}}<br>{titles[i]}<br>%{{customdata[3]:.2f}} × floor "
                               "(%{customdata[0]:.3f} ms; floor %{customdata[1]}: %{customdata[2]:.3f} ms)"
                               "<extra></extra>"),
            ), row=row, col=col)
        fig.add_hline(y=1, line=dict(color="#333", width=1, dash="dash"), row=row, col=col)
        fig.update_yaxes(type="log" if log_y else None, rangemode=None if log_y else "tozero", row=row, col=col,
                         title_text="× floor (lower is faster)" if col == 1 else None, **ticks)
        fig.update_xaxes(type="category", categoryorder="array", categoryarray=passes, row=row, col=col)
    fixed = [shape_label(rows[0], [f]) for f in ("batch", "steps", "hidden", "reset_rate") if f not in varying]
    fixed = [f for f in fixed if f]
    floor = FLOOR if floor_names == [FLOOR] else "the fastest backend of each shape"
    default_title = (f"Time as a ratio to the floor ({floor} = 1; lower is faster)"
                     + (f" · {', '.join(fixed)}" if fixed else ""))
    if height is None:
        height = 170 + 250 * nrows
    top, bottom = 90, 100  # the legend goes under the facets: at the top it would run into the title when it wraps
    return _finish(fig, title=title, default_title=default_title, height=height, width=width, template=template,
                   barmode="group", bargap=0.15,
                   legend=dict(orientation="h", yanchor="top", y=-48 / max(1, height - top - bottom), x=0,
                               title=dict(text="")),
                   margin=dict(t=top, l=60, r=20, b=bottom))
