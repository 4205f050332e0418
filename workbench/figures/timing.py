"""Backend timing: median time per call against sequence length (or batch, hidden, reset prob).

Examples:
    >>> timing_rows([{"backend": "torch", "mode": "forward", "steps": 8, "median_s": 0.002}])[0]["batch"] is None
    True
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._style import PALETTE, TEMPLATE, _finish

__all__ = ["timing_rows", "timing_figure"]

_TIMING_ALIASES = {"mode": ("mode", "pass"), "reset_prob": ("reset_prob", "reset_rate")}
_TIMING_REQUIRED = ("backend", "mode", "steps", "median_s")
_TIMING_FIELDS = ("backend", "mode", "batch", "steps", "hidden", "reset_prob", "median_s", "q1_s", "q3_s")
_TIMING_LABELS = {"batch": "batch", "steps": "steps T", "hidden": "hidden", "reset_prob": "reset prob"}


def timing_rows(records: Iterable[Any]) -> list[dict[str, Any]]:
    """Timing records (mappings or dataclasses) as plain dicts with canonical field names.

    ``pass`` is read as ``mode`` and ``reset_rate`` as ``reset_prob`` (the
    names :func:`workbench.timing.time_backends` uses); missing optional fields are ``None``.

    Examples:
        >>> timing_rows([{"backend": "torch", "pass": "forward", "steps": 16, "median_s": 0.001}])[0]["mode"]
        'forward'
    """
    rows = []
    for i, rec in enumerate(records):
        if isinstance(rec, Mapping):
            d = dict(rec)
        elif dataclasses.is_dataclass(rec) and not isinstance(rec, type):
            d = dataclasses.asdict(rec)
        else:
            d = dict(vars(rec))
        for name, aliases in _TIMING_ALIASES.items():
            d.setdefault(name, next((d[a] for a in aliases if a in d), None))
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
    """Median time per call against T (or another field) per backend, one panel per mode.

    Panels are ``forward`` and ``forward+backward`` (whatever modes appear).
    Records that differ in another field (batch, hidden, reset prob) become
    separate series named after it. With ``q1_s``/``q3_s`` the quartiles are
    drawn as error bars.

    Args:
        records: mappings or dataclasses with ``backend``, ``mode`` (or
            ``pass``), ``batch``, ``steps``, ``hidden``, ``reset_prob`` (or
            ``reset_rate``) and ``median_s`` (seconds).

    Keyword Args:
        x: the field on the x axis (``"steps"``, ``"batch"``, ``"hidden"`` or ``"reset_prob"``).
        kind: ``"line"`` or ``"bar"`` (grouped bars, categorical x).
        log_x: log x axis for lines (default: when x spans a factor 8 or more).
        log_y: log y axis.
        env: unused; accepted for the shared signature.

    Examples:
        >>> recs = [dict(backend=b, mode=m, batch=8, steps=t, hidden=16, reset_prob=0.0, median_s=t * s)
        ...         for b, s in (("torch", 1e-5), ("workbench", 2e-5))
        ...         for m in ("forward", "forward+backward") for t in (16, 64)]
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
    modes = sorted({r["mode"] for r in rows}, key=lambda m: (m != "forward", m != "forward+backward", m))
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    others = [f for f in _TIMING_LABELS if f != x and len({r[f] for r in rows}) > 1]
    fig = make_subplots(rows=1, cols=len(modes), subplot_titles=modes, horizontal_spacing=0.08)
    xs = sorted({r[x] for r in rows if r[x] is not None})
    if log_x is None:
        log_x = kind == "line" and len(xs) > 1 and min(xs) > 0 and max(xs) / min(xs) >= 8
    quartiles = all(r["q1_s"] is not None and r["q3_s"] is not None for r in rows)
    dashes = ("solid", "dash", "dot", "dashdot", "longdash")
    series_keys = list(dict.fromkeys((r["backend"], tuple(r[f] for f in others)) for r in rows))
    variants = list(dict.fromkeys(k[1] for k in series_keys))
    shown = set()
    for col, mode in enumerate(modes, start=1):
        for backend, variant in series_keys:
            sel = sorted((r for r in rows if r["mode"] == mode and r["backend"] == backend
                          and tuple(r[f] for f in others) == variant), key=lambda r: r[x])
            if not sel:
                continue
            name = " · ".join([backend] + [f"{_TIMING_LABELS[f]} {v}" for f, v in zip(others, variant)])
            med = np.array([r["median_s"] * 1e3 for r in sel])
            custom = np.array([[r["batch"], r["steps"], r["hidden"], r["reset_prob"]] for r in sel], dtype=object)
            color = PALETTE[backends.index(backend) % len(PALETTE)]
            common = dict(
                x=[str(r[x]) for r in sel] if kind == "bar" else [r[x] for r in sel], y=med, name=name,
                legendgroup=name, showlegend=name not in shown, customdata=custom,
                hovertemplate=(f"{backend}<br>{mode}<br>batch %{{customdata[0]}}, steps %{{customdata[1]}}, "
                               "hidden %{customdata[2]}, reset prob %{customdata[3]}"
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
