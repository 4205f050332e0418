"""Backend timing: median time per call against sequence length (or batch, hidden, reset rate).

Examples:
    >>> timing_rows([{"backend": "torch", "pass": "forward", "steps": 8, "median_s": 0.002}])[0]["batch"] is None
    True
"""

from __future__ import annotations

import dataclasses
import keyword
from typing import Any, Iterable, Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._style import PALETTE, TEMPLATE, _finish

__all__ = ["timing_rows", "timing_figure"]

_TIMING_REQUIRED = ("backend", "pass", "steps", "median_s")
_TIMING_FIELDS = ("backend", "pass", "batch", "steps", "hidden", "reset_rate", "median_s", "q1_s", "q3_s")
_TIMING_LABELS = {"batch": "batch", "steps": "steps T", "hidden": "hidden", "reset_rate": "reset rate"}


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
