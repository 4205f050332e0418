"""A sweep's results: a table by grid point, a heatmap over two fields, probe R² and learning curves.

Every function takes the sweep's records (:func:`workbench.sweep.load_records`, or the list
:func:`workbench.sweep.run_sweep` returns: one dict per trial, ``status`` ``"ok"`` or
``"failed"``), groups them by their ``params`` (the grid point; the seeds of a point are its
repeats) and reports the mean and the spread over seeds. A failed trial is counted and shown
as failed, never dropped; a grid point whose trials all failed has no value (NaN), and says why.

Examples:
    >>> recs = [{"key": f"delay=4,seed={s}", "params": {"delay": 4}, "seed": s, "status": "ok",
    ...          "metrics": {"success": v, "mean_return": 2 * v - 1}} for s, v in enumerate([0.9, 0.7])]
    >>> row = sweep_table(recs)[0]
    >>> row["params"], row["n"], row["failed"], round(row["success"], 3), round(row["success_std"], 3)
    ({'delay': 4}, 2, 0, 0.8, 0.141)
    >>> sweep_heatmap(recs, x="delay").data[0].text[0][0]
    '0.80 ± 0.14<br>n=2'
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from ._style import PALETTE, TEMPLATE, _finish

__all__ = ["METRICS", "sweep_table", "sweep_fields", "sweep_heatmap", "sweep_probe_figure",
           "sweep_curves_figure", "cell_text"]

METRICS = ("success", "mean_return", "solved", "frames", "train_seconds", "seconds")
"""The numbers :func:`sweep_table` averages over seeds (``seconds`` is the whole trial's; ``solved`` a fraction)."""

_LABELS = {"success": "success (fraction correct)", "mean_return": "mean return", "solved": "solved (fraction)",
           "frames": "frames", "train_seconds": "training seconds", "seconds": "trial seconds"}


def _value(v: Any) -> float | None:
    """A finite float, or ``None`` (``None``, NaN, inf, a non-number)."""
    if v is None or isinstance(v, str):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _metric(record: Mapping[str, Any], name: str) -> float | None:
    if name == "seconds":
        return _value(record.get("seconds"))
    return _value((record.get("metrics") or {}).get(name))


def _point(params: Mapping[str, Any]) -> tuple:
    """A hashable, order-free grid point."""
    return tuple(sorted((str(k), _hashable(v)) for k, v in params.items()))


def _hashable(v: Any) -> Any:
    return tuple(_hashable(x) for x in v) if isinstance(v, (list, tuple)) else v


def _sort_key(v: Any) -> tuple:
    """Numbers in numeric order, before anything else in text order."""
    f = _value(v) if not isinstance(v, bool) else None
    return (0, f, "") if f is not None else (1, 0.0, str(v))


def sweep_fields(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """The grid fields of the records, in the order they first appear.

    Examples:
        >>> sweep_fields([{"params": {"delay": 4, "hidden_size": 8}}, {"params": {"lr": 0.1, "delay": 8}}])
        ['delay', 'hidden_size', 'lr']
    """
    fields: list[str] = []
    for r in records:
        for k in r.get("params") or {}:
            if k not in fields:
                fields.append(k)
    return fields


def _clean(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record with a ``key`` (from params and seed when missing) and its non-finite metrics as ``None``
    (records read from ``trials.jsonl`` have them so already; one built in memory may carry a NaN)."""
    from ..sweep import Trial

    out = dict(record)
    if "key" not in out:
        out["key"] = Trial(dict(out.get("params") or {}), out.get("seed", 0)).key
    if isinstance(out.get("metrics"), Mapping):
        out["metrics"] = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                          for k, v in out["metrics"].items()}
    return out


def sweep_table(records: Iterable[Mapping[str, Any]], *, metrics: Sequence[str] = METRICS) -> list[dict[str, Any]]:
    """One row per grid point, the seeds' mean and spread of each metric: :func:`workbench.sweep.summarize`
    (the table the command line prints) with what a figure or a panel also needs.

    Only the latest record of a trial counts (:func:`workbench.sweep.latest_records`: a failed trial run
    again replaces its failure). A row holds ``key`` (the grid point as text, ``"delay=8,hidden_size=16"``),
    ``params``, ``n`` (finished trials), ``failed`` (failed trials), ``seeds`` (of the finished ones,
    sorted), ``errors`` (the failed trials' ``(seed, error)``), and per metric ``<metric>`` (the mean over
    the finished trials that report it; ``None`` when none does) and ``<metric>_std`` (the sample standard
    deviation over seeds; ``None`` with fewer than two values); ``success`` and ``mean_return`` are
    ``summarize``'s ``success_mean``/``success_std`` and ``return_mean``/``return_std``. Rows are sorted by
    the grid fields, numbers in numeric order.

    Args:
        records: sweep records (``key``, ``params``, ``seed``, ``status``, ``metrics``, ``error``...).

    Keyword Args:
        metrics: the metrics to average (names in a record's ``metrics``, or ``"seconds"``).

    Examples:
        >>> ok = lambda d, s, v: {"key": f"delay={d},seed={s}", "params": {"delay": d}, "seed": s, "status": "ok",
        ...                       "metrics": {"success": v}}
        >>> bad = {"key": "delay=16,seed=0", "params": {"delay": 16}, "seed": 0, "status": "failed",
        ...        "error": "ValueError: boom"}
        >>> rows = sweep_table([ok(16, 1, 0.5), bad, ok(4, 0, 1.0)], metrics=("success",))
        >>> [(r["key"], r["n"], r["failed"], r["success"], r["errors"]) for r in rows]
        [('delay=4', 1, 0, 1.0, []), ('delay=16', 1, 1, 0.5, [(0, 'ValueError: boom')])]
    """
    from ..sweep import Trial, latest_records, mean_std, summarize

    records = latest_records([_clean(r) for r in records])
    members: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        members.setdefault(Trial(dict(r.get("params") or {}), 0).group, []).append(r)
    fields = sweep_fields(records)
    own = {"success": ("success_mean", "success_std"), "mean_return": ("return_mean", "return_std")}
    rows = []
    for summary in summarize(records):
        group = members[summary["group"]]
        ok = [r for r in group if r.get("status") == "ok" and r.get("metrics")]
        failed = [r for r in group if not (r.get("status") == "ok" and r.get("metrics"))]
        row: dict[str, Any] = {
            "key": summary["group"], "params": summary["params"], "n": summary["ok"], "failed": summary["failed"],
            "seeds": sorted(r.get("seed") for r in ok if r.get("seed") is not None),
            "errors": sorted(((r.get("seed"), str(r.get("error") or "failed")) for r in failed),
                             key=lambda e: _sort_key(e[0])),
        }
        for m in metrics:
            if m in own:
                row[m], row[f"{m}_std"] = (summary[name] for name in own[m])
            else:
                row[m], row[f"{m}_std"] = mean_std([v for v in (_metric(r, m) for r in ok) if v is not None])
        rows.append(row)
    rows.sort(key=lambda row: tuple(_sort_key(row["params"].get(f)) for f in fields))
    return rows


def cell_text(mean: float | None, std: float | None, n: int, failed: int = 0, *, digits: int = 2) -> str:
    """A heatmap cell's text: ``"0.95 ± 0.03<br>n=3"``, ``"failed (2)"``, ``"0.50<br>n=1, 1 failed"``.

    Examples:
        >>> cell_text(0.951, 0.0312, 3), cell_text(None, None, 0, 2), cell_text(0.5, None, 1, 1)
        ('0.95 ± 0.03<br>n=3', 'failed (2)', '0.50<br>n=1, 1 failed')
        >>> cell_text(None, None, 0)
        ''
    """
    if n == 0 or mean is None:
        if failed:
            return f"failed ({failed})"
        return "" if n == 0 else f"no value<br>n={n}"
    value = f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")
    return f"{value}<br>n={n}" + (f", {failed} failed" if failed else "")


def _check_field(name: str, value: str | None, fields: Sequence[str], *, owner: str) -> None:
    if value is not None and value not in fields:
        raise ValueError(f"{owner}: {name!r} must be a grid field of the records ({', '.join(fields) or 'none'}); "
                         f"got {value!r}.")


def _default_metric(records: Sequence[Mapping[str, Any]]) -> str:
    """``success`` when any finished trial reports it (the cue task), else ``mean_return``."""
    return "success" if any(_metric(r, "success") is not None for r in records) else "mean_return"


def _select(records: Iterable[Mapping[str, Any]], where: Mapping[str, Any] | None, *, owner: str) -> list:
    records = list(records)
    fields = sweep_fields(records)
    for k in (where or {}):
        _check_field("where", k, fields, owner=owner)
    if not where:
        return records
    return [r for r in records if all(_hashable((r.get("params") or {}).get(k)) == _hashable(v)
                                      for k, v in where.items())]


def _check_others(records, used: Sequence[str], where, *, owner: str) -> None:
    """Fields other than ``used`` must not vary (else the mean would mix them): name them and the way out."""
    fields = sweep_fields(records)
    varying = [f for f in fields if f not in used and f not in (where or {})
               and len({_hashable((r.get("params") or {}).get(f)) for r in records}) > 1]
    if varying:
        raise ValueError(f"{owner}: the records also vary {', '.join(map(repr, varying))}; pick one value with "
                         f"where={{{varying[0]!r}: ...}} (or use it as an axis).")


def sweep_heatmap(
    records: Iterable[Mapping[str, Any]],
    *,
    x: str | None = None,
    y: str | None = None,
    metric: str | None = None,
    where: Mapping[str, Any] | None = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
    digits: int = 2,
    env: int | None = None,
    title: str | None = None,
    height: int | None = None,
    width: int | None = None,
    template: str = TEMPLATE,
) -> go.Figure:
    """A metric over two grid fields: each cell the mean over seeds, its text ``mean ± spread`` and ``n``.

    Trace 0 is the heatmap (``z[i][j]``: row ``y`` value ``i``, column ``x`` value ``j``; NaN where no
    trial finished); a cell whose trials failed says ``failed (k)`` and gets a cross (trace ``"failed"``,
    its hover the errors); a cell not run yet is empty. ``success`` is drawn on a fixed 0..1 scale.

    Keyword Args:
        x, y: the grid fields on the axes (default: the records' first two; ``y=None`` with one field:
            a single row).
        metric: one of :data:`METRICS` (default: ``success`` when the trials report it, else
            ``mean_return``).
        where: fixed values of the other grid fields (``{"lr": 1e-3}``); fields that vary and are not
            on an axis or in ``where`` are refused (a mean over them would hide them).
        grid: the sweep's grid (``SweepSpec.grid``): its values of ``x`` and ``y`` are on the axes before
            their trials finished (empty cells), so a sweep's heatmap fills in without moving.
        digits: decimals in the cells' text.
        env: unused (a sweep pools its envs); accepted for the shared signature.

    Examples:
        >>> r = lambda d, h, s, v: {"params": {"delay": d, "hidden_size": h}, "seed": s, "status": "ok",
        ...                         "metrics": {"success": v}}
        >>> fail = {"params": {"delay": 8, "hidden_size": 4}, "seed": 0, "status": "failed", "error": "boom"}
        >>> fig = sweep_heatmap([r(4, 4, 0, 1.0), r(4, 4, 1, 0.9), r(8, 16, 0, 0.6), fail], x="delay", y="hidden_size")
        >>> fig.data[0].x, fig.data[0].y, [list(row) for row in fig.data[0].text]
        (('4', '8'), ('4', '16'), [['0.95 ± 0.07<br>n=2', 'failed (1)'], ['', '0.60<br>n=1']])
        >>> fig.data[1].name, fig.data[1].x, fig.data[1].y
        ('failed', ('8',), ('4',))
    """
    owner = "sweep_heatmap"
    records = _select(records, where, owner=owner)
    fields = sweep_fields(records)
    if x is None:
        x = fields[0] if fields else None
    if y is None and x is not None and len(fields) > 1:
        y = next(f for f in fields if f != x)
    _check_field("x", x, fields, owner=owner)
    _check_field("y", y, fields, owner=owner)
    if x is not None and x == y:
        raise ValueError(f"{owner}: 'x' and 'y' must be two different grid fields; got {x!r} twice.")
    if metric is None:
        metric = _default_metric(records)
    if metric not in METRICS:
        raise ValueError(f"{owner}: 'metric' must be one of {list(METRICS)}; got {metric!r}.")
    used = [f for f in (x, y) if f is not None]
    _check_others(records, used, where, owner=owner)
    rows = sweep_table(records, metrics=(metric,))
    planned = {k: {_hashable(v) for v in vs} for k, vs in (grid or {}).items()}
    xs = sorted({_hashable(r["params"].get(x)) for r in rows} | planned.get(x, set()), key=_sort_key) if x else [None]
    ys = sorted({_hashable(r["params"].get(y)) for r in rows} | planned.get(y, set()), key=_sort_key) if y else [None]
    cells = {(_hashable(r["params"].get(x)) if x else None, _hashable(r["params"].get(y)) if y else None): r
             for r in rows}
    z, text, hover, fail_x, fail_y, fail_text = [], [], [], [], [], []
    for yv in ys:
        z_row, t_row, h_row = [], [], []
        for xv in xs:
            row = cells.get((xv, yv))
            if row is None:
                z_row.append(float("nan")), t_row.append(""), h_row.append("not run")
                continue
            mean, std = row[metric], row[f"{metric}_std"]
            z_row.append(float("nan") if mean is None else mean)
            t_row.append(cell_text(mean, std, row["n"], row["failed"], digits=digits))
            seeds = ", ".join(map(str, row["seeds"])) or "none"
            h_row.append(f"{row['key']}<br>{_LABELS[metric]}: {t_row[-1].replace('<br>', ' · ') or '–'}"
                         f"<br>seeds finished: {seeds}")
            if row["failed"]:
                errors = "<br>".join(f"seed {s}: {e[:120]}" for s, e in row["errors"])
                h_row[-1] += f"<br>failed:<br>{errors}"
                fail_x.append(str(xv)), fail_y.append(str(yv)), fail_text.append(errors)
        z.append(z_row), text.append(t_row), hover.append(h_row)
    label = _LABELS[metric]
    scale = dict(zmin=0.0, zmax=1.0) if metric in ("success", "solved") else {}
    fig = go.Figure(go.Heatmap(
        x=[str(v) for v in xs], y=[str(v) for v in ys], z=z, text=text, texttemplate="%{text}",
        customdata=hover, hovertemplate="%{customdata}<extra></extra>", colorscale="Viridis",
        colorbar=dict(title=dict(text=label)), hoverongaps=True, name=metric, **scale))
    fig.add_trace(go.Scatter(
        x=fail_x, y=fail_y, mode="markers", name="failed", text=fail_text, showlegend=bool(fail_x),
        marker=dict(symbol="x-thin", size=26, line=dict(width=3, color="#c83c3c"), color="#c83c3c"),
        hovertemplate="failed:<br>%{text}<extra></extra>"))
    n_ok = sum(r["n"] for r in rows)
    n_failed = sum(r["failed"] for r in rows)
    seeds = max((r["n"] + r["failed"] for r in rows), default=0)
    where_text = "" if not where else " (" + ", ".join(f"{k}={v}" for k, v in where.items()) + ")"
    default_title = (f"{label.capitalize()} by {x or 'trial'}{f' × {y}' if y else ''}{where_text}: mean ± spread "
                     f"over up to {seeds} seed(s); {n_ok} trial(s) finished"
                     + (f", {n_failed} failed" if n_failed else ""))
    return _finish(fig, title=title, default_title=default_title, height=height, width=width, template=template,
                   xaxis=dict(title=dict(text=x or ""), type="category"),
                   yaxis=dict(title=dict(text=y or ""), type="category",
                              showticklabels=y is not None),
                   legend=dict(orientation="h", y=-0.2))


def _rgba(color: str, alpha: float) -> str:
    h = color.lstrip("#")
    return f"rgba({int(h[0:2], 16)}, {int(h[2:4], 16)}, {int(h[4:6], 16)}, {alpha})"


def sweep_probe_figure(
    records: Iterable[Mapping[str, Any]],
    *,
    state: str | None = None,
    by: str = "hidden_size",
    where: Mapping[str, Any] | None = None,
    env: int | None = None,
    title: str | None = None,
    height: int | None = None,
    width: int | None = None,
    template: str = TEMPLATE,
) -> go.Figure:
    """Probe R² of one true-state entry against steps since reset: one line per value of ``by``.

    Each line is the mean over the seeds (finished trials with ``metrics.probe_r2_by_age``) at each
    age, its band the mean ± the sample standard deviation (drawn with two or more seeds). Ages a
    trial has no value for (``null``) are left out of that age's mean.

    Keyword Args:
        state: the true-state entry (``"cue"`` for the cue task; default: the first the records report).
        by: the grid field with one line per value.
        where: fixed values of the other grid fields (``{"delay": 8}``); fields that vary otherwise
            are refused.
        env: unused; accepted for the shared signature.

    Examples:
        >>> r = lambda h, s, curve: {"params": {"hidden_size": h}, "seed": s, "status": "ok",
        ...     "metrics": {"probe_r2_by_age": {"cue": curve}}}
        >>> fig = sweep_probe_figure([r(4, 0, [1.0, 0.5]), r(4, 1, [1.0, 0.3]), r(16, 0, [1.0, None, 0.9])])
        >>> [(t.name, t.y) for t in fig.data if t.mode == "lines+markers"]
        [('hidden_size=4 (n=2)', (1.0, 0.4)), ('hidden_size=16 (n=1)', (1.0, None, 0.9))]
    """
    owner = "sweep_probe_figure"
    records = [r for r in _select(records, where, owner=owner)
               if r.get("status") == "ok" and ((r.get("metrics") or {}).get("probe_r2_by_age"))]
    fields = sweep_fields(records)
    if records:
        _check_field("by", by, fields, owner=owner)
        _check_others(records, [by], where, owner=owner)
    states = []
    for r in records:
        for k in r["metrics"]["probe_r2_by_age"]:
            if k not in states:
                states.append(k)
    if state is None:
        state = states[0] if states else ""
    elif records and state not in states:
        raise ValueError(f"{owner}: 'state' must be a probed true-state entry ({', '.join(states)}); got {state!r}.")
    groups: dict[Any, list[list[float | None]]] = {}
    for r in records:
        curve = r["metrics"]["probe_r2_by_age"].get(state)
        if curve:
            groups.setdefault(_hashable(r["params"].get(by)), []).append(curve)
    fig = go.Figure()
    lows = [0.0]
    for i, value in enumerate(sorted(groups, key=_sort_key)):
        curves = groups[value]
        length = max(len(c) for c in curves)
        a = np.full((len(curves), length), np.nan)
        for j, c in enumerate(curves):
            a[j, :len(c)] = [np.nan if _value(v) is None else float(v) for v in c]
        counts = np.isfinite(a).sum(0)
        with np.errstate(all="ignore"):
            mean = np.where(counts > 0, np.nansum(a, 0) / np.maximum(counts, 1), np.nan)
            dev = np.where(counts > 1, np.sqrt(np.nansum((a - mean) ** 2, 0) / np.maximum(counts - 1, 1)), np.nan)
        ages = np.arange(length)
        color = PALETTE[i % len(PALETTE)]
        name = f"{by}={value} (n={len(curves)})"
        if np.isfinite(dev).any():
            fig.add_trace(go.Scatter(x=ages, y=_nones(mean + dev), mode="lines", line=dict(width=0, color=color),
                                     legendgroup=name, showlegend=False, hoverinfo="skip", name=f"{name} upper"))
            fig.add_trace(go.Scatter(x=ages, y=_nones(mean - dev), mode="lines", line=dict(width=0, color=color),
                                     fill="tonexty", fillcolor=_rgba(color, 0.18), legendgroup=name,
                                     showlegend=False, hoverinfo="skip", name=f"{name} lower"))
            lows.append(float(np.nanmin(mean - dev)))
        elif np.isfinite(mean).any():
            lows.append(float(np.nanmin(mean)))
        fig.add_trace(go.Scatter(
            x=ages, y=_nones(mean), mode="lines+markers", name=name, legendgroup=name,
            line=dict(color=color, width=3), marker=dict(size=5), customdata=np.stack([_nones(dev), counts], -1),
            hovertemplate=(f"{by}={value}<br>steps since reset %{{x}}<br>R² = %{{y:.3f}} ± %{{customdata[0]:.3f}}"
                           "<br>seeds %{customdata[1]}<extra></extra>")))
    low = max(-1.0, min(lows) - 0.05)
    where_text = "" if not where else " (" + ", ".join(f"{k}={v}" for k, v in where.items()) + ")"
    return _finish(fig, title=title, default_title=f"Probe for {state or '–'}: held-out R² by steps since reset, "
                   f"per {by}{where_text}", height=height, width=width, template=template,
                   xaxis=dict(title=dict(text="steps since reset")),
                   yaxis=dict(title=dict(text="held-out R²"), range=[low, 1.05]),
                   legend=dict(title=dict(text=by)))


def _nones(a: np.ndarray) -> list[float | None]:
    """NaN as ``None`` (a gap in the line, and JSON-clean)."""
    return [None if not math.isfinite(v) else float(v) for v in np.asarray(a, dtype=float).tolist()]


def sweep_curves_figure(
    records: Iterable[Mapping[str, Any]],
    *,
    color: str | None = None,
    y: str = "mean_return",
    where: Mapping[str, Any] | None = None,
    target: float | None = None,
    env: int | None = None,
    title: str | None = None,
    height: int | None = None,
    width: int | None = None,
    template: str = TEMPLATE,
) -> go.Figure:
    """Learning curves, one line per trial (``curve``: frames → return), coloured by a grid field.

    Keyword Args:
        color: the grid field whose value sets a line's colour (one legend entry per value; default:
            the records' first field).
        y: ``"mean_return"`` (the training batches' episodes) or ``"eval_return"`` (the greedy
            evaluations, where the trial ran them).
        where: fixed values of other grid fields (only those trials are drawn).
        target: a return to reach, drawn as a dashed line.
        env: unused; accepted for the shared signature.

    Examples:
        >>> r = lambda h, s, ys: {"key": f"hidden_size={h},seed={s}", "params": {"hidden_size": h}, "seed": s,
        ...     "status": "ok", "curve": [{"frames": 100 * (i + 1), "mean_return": v} for i, v in enumerate(ys)]}
        >>> fig = sweep_curves_figure([r(4, 0, [0.1, None, 0.3]), r(16, 0, [0.5, 0.9])])
        >>> [(t.name, t.x, t.y, t.showlegend) for t in fig.data]
        [('hidden_size=4', (100, 300), (0.1, 0.3), True), ('hidden_size=16', (100, 200), (0.5, 0.9), True)]
    """
    owner = "sweep_curves_figure"
    if y not in ("mean_return", "eval_return"):
        raise ValueError(f"{owner}: 'y' must be 'mean_return' or 'eval_return'; got {y!r}.")
    records = [r for r in _select(records, where, owner=owner) if r.get("status") == "ok" and r.get("curve")]
    fields = sweep_fields(records)
    if color is None and fields:
        color = fields[0]
    if records:
        _check_field("color", color, fields, owner=owner)
    values = sorted({_hashable((r.get("params") or {}).get(color)) for r in records}, key=_sort_key)
    fig = go.Figure()
    shown = set()
    for r in sorted(records, key=lambda r: (_sort_key((r.get("params") or {}).get(color)), str(r.get("key")))):
        value = _hashable((r.get("params") or {}).get(color))
        points = [(int(p["frames"]), _value(p.get(y))) for p in r["curve"] if p.get("frames") is not None]
        points = [(f, v) for f, v in points if v is not None]
        group = f"{color}={value}"
        fig.add_trace(go.Scatter(
            x=[f for f, _ in points], y=[v for _, v in points], mode="lines", name=group, legendgroup=group,
            showlegend=group not in shown, line=dict(color=PALETTE[values.index(value) % len(PALETTE)], width=2),
            opacity=0.8, text=[str(r.get("key"))] * len(points),
            hovertemplate=f"%{{text}}<br>%{{x:,}} frames<br>{y.replace('_', ' ')} %{{y:.3f}}<extra></extra>"))
        shown.add(group)
    shapes = []
    if target is not None:
        shapes.append(dict(type="line", name="target", xref="x domain", yref="y", x0=0, x1=1, y0=target, y1=target,
                           line=dict(color="crimson", dash="dash", width=1)))
    where_text = "" if not where else " (" + ", ".join(f"{k}={v}" for k, v in where.items()) + ")"
    return _finish(fig, title=title, default_title=f"Learning curves of {len(records)} trial(s), by {color or '–'}"
                   f"{where_text}", height=height, width=width, template=template, shapes=shapes,
                   xaxis=dict(title=dict(text="frames")),
                   yaxis=dict(title=dict(text=y.replace("_", " "))), legend=dict(title=dict(text=color or "")))
