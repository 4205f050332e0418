"""Plotly figure builders: one function per figure, the same keywords everywhere.

Every builder takes its data first (a tensor, or a trajectory TensorDict with
the entries of :data:`workbench.keys.KEYS`), then keyword-only options, among
them the shared ``env=0``, ``title=None``, ``height=None``, ``width=None`` and
``template="plotly_white"``. Each returns a :class:`plotly.graph_objects.Figure`
and never displays it. The numbers come from :mod:`workbench.analysis`.

Reset steps (``is_init``) are drawn as dotted vertical lines between the last
step of one episode and the first of the next (layout shapes named
``"reset"``); alternate episodes get a light band (shapes named
``"episode"``). Hover text shows the step, episode, env and value.

Examples:
    >>> h = torch.tanh(torch.randn(2, 12, 1, 4, generator=torch.Generator().manual_seed(0)))
    >>> is_init = torch.zeros(2, 12, 1, dtype=torch.bool); is_init[:, ::5] = True
    >>> fig = hidden_heatmap(h, is_init=is_init)
    >>> fig.data[0].z.shape, sum(s.name == "reset" for s in fig.layout.shapes)
    ((4, 12), 2)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from tensordict import TensorDictBase

from . import analysis
from .keys import KEYS

__all__ = [
    "hidden_heatmap",
    "pca_figure",
    "norm_figure",
    "gates_figure",
    "divergence_figure",
    "probe_figure",
    "timing_figure",
    "timing_rows",
    "aligned_units_figure",
    "pca_groups_figure",
    "training_figure",
]

TEMPLATE = "plotly_white"
RESET_LINE = dict(color="rgba(40, 40, 40, 0.75)", width=1, dash="dot")
BAND_FILL = "rgba(120, 120, 120, 0.10)"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")


# ---------------------------------------------------------------------------- helpers
def _np(x) -> np.ndarray:
    """A tensor (or array-like) as a numpy array on the CPU."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def _get(data: TensorDictBase, key):
    return data.get(key, None)


def _unpack(data, key, is_init, episode):
    """Values, is_init and episode from a TensorDict or from tensors."""
    if isinstance(data, TensorDictBase):
        values = data.get(key, None)
        if values is None:
            raise KeyError(f"the trajectory has no entry {key!r}; it has {sorted(map(str, data.keys(True, True)))}.")
        is_init = _get(data, KEYS.is_init) if is_init is None else is_init
        episode = _get(data, KEYS.episode) if episode is None else episode
        return values, is_init, episode
    return data, is_init, episode


def _env_index(env: int, n_envs: int) -> int:
    if not -n_envs <= env < n_envs:
        raise IndexError(f"env={env} is out of range for {n_envs} env(s).")
    return env % n_envs


def _episode_info(is_init, episode, e: int, t: int):
    """``(init [E, T] bool, episode [E, T], since [E, T])`` with defaults when missing."""
    if is_init is None:
        init = torch.zeros(e, t, dtype=torch.bool)
        init[:, 0] = True
    else:
        init = analysis._bool_init(torch.as_tensor(is_init).cpu(), (e, t))
    if episode is None:
        episode = init.long().cumsum(1) - init[:, :1].long()
    else:
        episode = torch.as_tensor(episode).cpu().reshape(e, t).long()
    since = analysis.steps_since_reset(init)
    return init, episode, since


def _axis_refs(fig: go.Figure, row: int | None, col: int | None) -> tuple[str, str]:
    if row is None:
        return "x", "y"
    sub = fig.get_subplot(row, col)
    return sub.xaxis.plotly_name.replace("axis", ""), sub.yaxis.plotly_name.replace("axis", "")


def _reset_shapes(fig, init_row: torch.Tensor, *, row=None, col=None, bands: bool = True,
                  strip: bool = False) -> list[dict]:
    """Vertical reset lines (between steps) and alternating episode bands for one env.

    Bands span the plot behind the data, or with ``strip`` (for heatmaps, which
    would hide them) form a thin episode track above the plot.
    """
    xref, yref = _axis_refs(fig, row, col)
    t = init_row.numel()
    starts = torch.nonzero(init_row).flatten().tolist()
    shapes = [
        dict(type="line", name="reset", xref=xref, yref=f"{yref} domain", x0=s - 0.5, x1=s - 0.5, y0=0, y1=1,
             line=RESET_LINE, layer="above")
        for s in starts if s > 0
    ]
    if bands:
        bounds = sorted({0, *starts, t})
        y0, y1 = (1.01, 1.045) if strip else (0, 1)
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            if i % 2 == 1 or strip:
                fill = ("rgba(90, 90, 90, 0.55)" if i % 2 else "rgba(90, 90, 90, 0.18)") if strip else BAND_FILL
                shapes.append(dict(type="rect", name="episode", xref=xref, yref=f"{yref} domain",
                                   x0=a - 0.5, x1=b - 0.5, y0=y0, y1=y1, fillcolor=fill,
                                   line=dict(width=0), layer="below"))
    return shapes


def _finish(fig: go.Figure, *, title, default_title: str, height, width, template, shapes=(), **layout) -> go.Figure:
    fig.update_layout(
        title=dict(text=default_title if title is None else title),
        height=height,
        width=width,
        template=template,
        **layout,
    )
    if shapes:
        fig.update_layout(shapes=list(fig.layout.shapes) + list(shapes))
    return fig


def _hidden_input(data, layer, is_init, episode, key=KEYS.next_hidden):
    values, is_init, episode = _unpack(data, key, is_init, episode)
    values = torch.as_tensor(values)
    if values.dim() == 4:
        values = values[..., layer, :]
    elif values.dim() == 2:  # a single env [T, H]
        values = values.unsqueeze(0)
    if values.dim() != 3:
        raise ValueError(f"hidden states must be [E, T, H], [E, T, L, H] or [T, H]; got {tuple(values.shape)}.")
    if is_init is not None and torch.as_tensor(is_init).dim() == 1:
        is_init = torch.as_tensor(is_init).unsqueeze(0)
    if episode is not None and torch.as_tensor(episode).dim() == 1:
        episode = torch.as_tensor(episode).unsqueeze(0)
    return values, is_init, episode


# ---------------------------------------------------------------------------- hidden state
def hidden_heatmap(
    data,
    *,
    env: int = 0,
    layer: int = -1,
    is_init=None,
    episode=None,
    bands: bool = True,
    colorscale: str = "RdBu_r",
    title: str | None = None,
    height: int | None = None,
    width: int | None = None,
    template: str = TEMPLATE,
) -> go.Figure:
    """Hidden state of one env as a heatmap, time × unit, with resets and episode bands.

    Args:
        data: hidden states ``[E, T, H]``, ``[E, T, L, H]`` or ``[T, H]``, or a
            trajectory TensorDict (``KEYS.next_hidden``, ``KEYS.is_init``, ``KEYS.episode``).

    Keyword Args:
        env: which env to draw.
        layer: which layer, for ``[E, T, L, H]`` inputs.
        is_init, episode: ``[E, T(, 1)]`` resets and episode indices (read from a TensorDict).
        bands: shade alternate episodes.
        colorscale: diverging scale centred on 0 (range ±1, or ±max|h| beyond).

    Examples:
        >>> fig = hidden_heatmap(torch.zeros(1, 6, 3), is_init=torch.tensor([[1, 0, 0, 1, 0, 0]]))
        >>> fig.data[0].z.shape, fig.layout.xaxis.title.text, fig.layout.yaxis.title.text
        ((3, 6), 'step', 'hidden unit')
    """
    h, is_init, episode = _hidden_input(data, layer, is_init, episode)
    e_count, t, n_units = h.shape
    e = _env_index(env, e_count)
    init, ep, since = _episode_info(is_init, episode, e_count, t)
    z = _np(h[e]).T
    zmax = max(1.0, float(np.nanmax(np.abs(z)))) if z.size else 1.0
    custom = np.broadcast_to(np.stack([_np(ep[e]), _np(since[e])], -1)[None], (n_units, t, 2))
    fig = go.Figure(go.Heatmap(
        z=z, x=np.arange(t), y=np.arange(n_units), customdata=custom,
        colorscale=colorscale, zmin=-zmax, zmax=zmax, zmid=0,
        colorbar=dict(title=dict(text="h")),
        hovertemplate=(f"env {e}<br>step %{{x}}<br>episode %{{customdata[0]}} "
                       "(step %{customdata[1]} since reset)<br>unit %{y}<br>h = %{z:.3f}<extra></extra>"),
    ))
    return _finish(
        fig, title=title, default_title=f"Hidden state, env {e}", height=height, width=width, template=template,
        shapes=_reset_shapes(fig, init[e], bands=bands, strip=True),
        xaxis=dict(title=dict(text="step")), yaxis=dict(title=dict(text="hidden unit")),
    )


def pca_figure(
    data,
    *,
    k: int = 2,
    color: str = "time",
    env: int | None = 0,
    layer: int = -1,
    is_init=None,
    episode=None,
    result: analysis.PCAResult | None = None,
    title: str | None = None,
    height: int | None = None,
    width: int | None = None,
    template: str = TEMPLATE,
) -> go.Figure:
    """Hidden-state trajectory in its first 2 or 3 principal components, resets marked.

    The PCA is fitted on every env's states (or ``result`` is reused), then
    the chosen env (``env=None``: all of them) is drawn as a time curve whose
    markers are coloured by step or by episode; reset steps get an ``x``
    marker and the first step a diamond.

    Args:
        data: hidden states ``[E, T, H]`` / ``[E, T, L, H]`` or a trajectory TensorDict.

    Keyword Args:
        k: 2 or 3 dimensions.
        color: ``"time"`` or ``"episode"``.
        env: the env to draw, or ``None`` for all.
        result: a :class:`workbench.analysis.PCAResult` to project on (fitted here otherwise).

    Examples:
        >>> h = torch.randn(2, 10, 5, generator=torch.Generator().manual_seed(0))
        >>> fig = pca_figure(h, is_init=torch.tensor([[1] + [0] * 4 + [1] + [0] * 4] * 2))
        >>> [d.name for d in fig.data], len(fig.data[2].x)
        (['env 0', 'start', 'reset (is_init)'], 1)
        >>> len(pca_figure(h, k=3, env=None).data)
        4
    """
    if k not in (2, 3):
        raise ValueError(f"k must be 2 or 3, got {k}.")
    if color not in ("time", "episode"):
        raise ValueError(f"color must be 'time' or 'episode', got {color!r}.")
    h, is_init, episode = _hidden_input(data, layer, is_init, episode)
    e_count, t, _ = h.shape
    init, ep, since = _episode_info(is_init, episode, e_count, t)
    res = result if result is not None else analysis.pca(h, k=k)
    coords = _np(res.transform(h) if result is not None else res.coords)[..., :k]
    envs = range(e_count) if env is None else [_env_index(env, e_count)]
    scatter = go.Scatter3d if k == 3 else go.Scatter
    axes = ("x", "y", "z")[:k]
    steps = np.arange(t)
    hover = "<br>".join(
        ["env %{customdata[3]}", "step %{customdata[0]}",
         "episode %{customdata[1]} (step %{customdata[2]} since reset)"]
        + [f"PC{i + 1} = %{{{a}:.3f}}" for i, a in enumerate(axes)]
    ) + "<extra>%{fullData.name}</extra>"
    fig = go.Figure()
    marks = {"start": ([], "diamond"), "reset (is_init)": ([], "x")}
    for e in envs:
        xyz = {a: coords[e, :, i] for i, a in enumerate(axes)}
        custom = np.stack([steps, _np(ep[e]), _np(since[e]), np.full(t, e)], -1)
        c = steps if color == "time" else _np(ep[e])
        fig.add_trace(scatter(
            **xyz, mode="lines+markers", name=f"env {e}", customdata=custom, hovertemplate=hover,
            line=dict(color="rgba(120, 120, 120, 0.4)", width=2 if k == 3 else 1),
            marker=dict(color=c, coloraxis="coloraxis", size=4 if k == 3 else 6),
        ))
        starts = torch.nonzero(init[e]).flatten().tolist()
        marks["start"][0].append((e, [0]))
        marks["reset (is_init)"][0].append((e, [s for s in starts if s > 0]))
    for name, (where, symbol) in marks.items():
        idx = [(e, s) for e, ss in where for s in ss]
        es = np.array([e for e, _ in idx], dtype=int)
        ss = np.array([s for _, s in idx], dtype=int)
        pts = {a: coords[es, ss, i] for i, a in enumerate(axes)}
        custom = np.stack([ss, _np(ep)[es, ss], _np(since)[es, ss], es], -1) if idx else np.zeros((0, 4))
        fig.add_trace(scatter(
            **pts, mode="markers", name=name, customdata=custom, hovertemplate=hover,
            marker=dict(symbol=symbol, size=5 if k == 3 else 11, color="black",
                        **({} if k == 3 else dict(line=dict(width=1, color="white")))),
        ))
    ratio = _np(res.explained_variance_ratio)
    labels = [f"PC{i + 1} ({ratio[i]:.1%})" if k == 3 else f"PC{i + 1} ({ratio[i]:.1%} of variance)"
              for i in range(k)]
    layout: dict[str, Any] = dict(
        coloraxis=dict(colorscale="Viridis", colorbar=dict(title=dict(text="step" if color == "time" else "episode"))),
        legend=dict(orientation="h", y=-0.15),
        meta=dict(explained_variance_ratio=ratio.tolist()),
    )
    if k == 3:
        layout["scene"] = dict(**{f"{a}axis": dict(title=dict(text=lbl)) for a, lbl in zip(axes, labels)})
    else:
        layout["xaxis"] = dict(title=dict(text=labels[0]))
        layout["yaxis"] = dict(title=dict(text=labels[1]))
    where = "all envs" if env is None else f"env {envs[0]}"
    return _finish(fig, title=title, default_title=f"Hidden-state PCA, {where}", height=height, width=width,
                   template=template, **layout)


def norm_figure(
    data,
    *,
    env: int | None = 0,
    layer: int = -1,
    is_init=None,
    episode=None,
    bands: bool = True,
    title: str | None = None,
    height: int | None = None,
    width: int | None = None,
    template: str = TEMPLATE,
) -> go.Figure:
    """Hidden-state norm ``‖h‖₂`` over time, with resets and episode bands for one env.

    Args:
        data: hidden states ``[E, T, H]`` / ``[E, T, L, H]`` or a trajectory TensorDict.

    Keyword Args:
        env: the env to draw, or ``None`` for one line per env (no resets drawn).

    Examples:
        >>> h = torch.ones(2, 5, 4)
        >>> fig = norm_figure(h, is_init=torch.tensor([[1, 0, 1, 0, 0], [1, 0, 0, 0, 0]]))
        >>> fig.data[0].y.tolist(), [s.x0 for s in fig.layout.shapes if s.name == "reset"]
        ([2.0, 2.0, 2.0, 2.0, 2.0], [1.5])
        >>> len(norm_figure(h, env=None).data)
        2
    """
    h, is_init, episode = _hidden_input(data, layer, is_init, episode)
    e_count, t, _ = h.shape
    init, ep, since = _episode_info(is_init, episode, e_count, t)
    norms = _np(analysis.hidden_norm(h))
    envs = range(e_count) if env is None else [_env_index(env, e_count)]
    fig = go.Figure()
    for e in envs:
        custom = np.stack([_np(ep[e]), _np(since[e]), np.full(t, e)], -1)
        fig.add_trace(go.Scatter(
            x=np.arange(t), y=norms[e], mode="lines", name=f"env {e}", customdata=custom,
            line=dict(color=PALETTE[e % len(PALETTE)]),
            hovertemplate=("env %{customdata[2]}<br>step %{x}<br>episode %{customdata[0]} "
                           "(step %{customdata[1]} since reset)<br>‖h‖₂ = %{y:.3f}<extra></extra>"),
        ))
    shapes = _reset_shapes(fig, init[envs[0]], bands=bands) if env is not None else []
    where = "all envs" if env is None else f"env {envs[0]}"
    return _finish(fig, title=title, default_title=f"Hidden-state norm, {where}", height=height, width=width,
                   template=template, shapes=shapes, showlegend=env is None,
                   xaxis=dict(title=dict(text="step")), yaxis=dict(title=dict(text="‖h‖₂"), rangemode="tozero"))


# ---------------------------------------------------------------------------- gates
_GATE_TITLES = {"r": "r (reset gate)", "z": "z (update gate: memory kept)", "n": "n (candidate)"}


def gates_figure(
    data,
    *,
    env: int = 0,
    layers: Sequence[int] | None = None,
    is_init=None,
    episode=None,
    title: str | None = None,
    height: int | None = None,
    width: int | None = None,
    template: str = TEMPLATE,
) -> go.Figure:
    """Gate activations r, z, n of one env as heatmaps (time × unit), one row per layer.

    r and z share a 0–1 colour scale, n a −1–1 one; resets are drawn on every panel.

    Args:
        data: gates ``[E, T, L, 3, H]`` (order r, z, n) or a trajectory TensorDict (``KEYS.gates``).

    Keyword Args:
        layers: the layers to draw (default all).

    Examples:
        >>> g = torch.rand(1, 6, 2, 3, 4)
        >>> fig = gates_figure(g, is_init=torch.tensor([[1, 0, 0, 1, 0, 0]]))
        >>> len(fig.data), fig.data[1].z.shape, fig.data[5].coloraxis
        (6, (4, 6), 'coloraxis2')
        >>> sum(s.name == "reset" for s in fig.layout.shapes)
        6
    """
    g, is_init, episode = _unpack(data, KEYS.gates, is_init, episode)
    g = torch.as_tensor(g)
    if g.dim() == 4:
        g = g.unsqueeze(0)
    if g.dim() != 5 or g.shape[-2] != 3:
        raise ValueError(f"gates must be [E, T, L, 3, H]; got {tuple(g.shape)}.")
    e_count, t, n_layers, _, n_units = g.shape
    e = _env_index(env, e_count)
    layers = list(range(n_layers)) if layers is None else [_env_index(l, n_layers) for l in layers]
    init, ep, since = _episode_info(is_init, episode, e_count, t)
    fig = make_subplots(
        rows=len(layers), cols=3, shared_xaxes=True, shared_yaxes=True,
        horizontal_spacing=0.04, vertical_spacing=0.08 if len(layers) > 1 else 0.0,
        subplot_titles=[f"layer {l} · {_GATE_TITLES[n]}" for l in layers for n in analysis.GATE_NAMES],
    )
    custom = np.broadcast_to(np.stack([_np(ep[e]), _np(since[e])], -1)[None], (n_units, t, 2))
    shapes = []
    for row, l in enumerate(layers, start=1):
        for col, name in enumerate(analysis.GATE_NAMES, start=1):
            fig.add_trace(go.Heatmap(
                z=_np(g[e, :, l, col - 1]).T, x=np.arange(t), y=np.arange(n_units), customdata=custom,
                coloraxis="coloraxis2" if name == "n" else "coloraxis", name=f"layer {l} {name}",
                hovertemplate=(f"env {e}<br>step %{{x}}<br>episode %{{customdata[0]}} "
                               f"(step %{{customdata[1]}} since reset)<br>layer {l}, unit %{{y}}"
                               f"<br>{name} = %{{z:.3f}}<extra></extra>"),
            ), row=row, col=col)
            shapes += _reset_shapes(fig, init[e], row=row, col=col, bands=False)
            fig.update_xaxes(title_text="step" if row == len(layers) else None, row=row, col=col)
        fig.update_yaxes(title_text="hidden unit", row=row, col=1)
    return _finish(
        fig, title=title, default_title=f"GRU gates, env {e}", height=height or 220 * len(layers) + 120,
        width=width, template=template, shapes=shapes,
        coloraxis=dict(colorscale="Viridis", cmin=0, cmax=1,
                       colorbar=dict(title=dict(text="r, z"), x=1.02, len=0.9)),
        coloraxis2=dict(colorscale="RdBu_r", cmin=-1, cmax=1, cmid=0,
                        colorbar=dict(title=dict(text="n"), x=1.10, len=0.9)),
    )


# ---------------------------------------------------------------------------- diagnostics
def divergence_figure(
    gap,
    *,
    env: int | None = None,
    is_init=None,
    tol: float | None = None,
    floor: float = 1e-12,
    title: str | None = None,
    height: int | None = None,
    width: int | None = None,
    template: str = TEMPLATE,
) -> go.Figure:
    """Stepwise-vs-replay divergence: the per-step max ``|Δh|`` on a log axis.

    Args:
        gap: ``[E, T]`` (or ``[T]``) per-step max ``|Δh|``, or ``{name: [E, T]}`` to
            compare several replays (e.g. one per backend); a
            :class:`workbench.diagnostics.ReplayReport` (or a mapping of them)
            also works, its ``atol`` then being the default ``tol``.

    Keyword Args:
        env: the env to draw; ``None`` draws the max over envs.
        is_init: ``[E, T]`` resets, drawn when ``env`` is given.
        tol: a tolerance drawn as a horizontal dashed line.
        floor: exact zeros are drawn at ``floor`` (a log axis has no 0); hover shows the true value.

    Examples:
        >>> gap = torch.tensor([[0.0, 1e-7, 2e-7], [1e-8, 0.0, 5e-7]], dtype=torch.float64)
        >>> fig = divergence_figure({"python": gap}, tol=1e-5)
        >>> fig.data[0].y.tolist(), fig.layout.yaxis.type
        ([1e-08, 1e-07, 5e-07], 'log')
    """
    if hasattr(gap, "gap"):  # a ReplayReport
        gap = {f"replay ({gap.backend})" if getattr(gap, "backend", None) else "replay": gap}
    series = dict(gap) if isinstance(gap, Mapping) else {"max |Δh|": gap}
    if tol is None:
        tols = [r.atol for r in series.values() if getattr(r, "atol", None) is not None]
        tol = min(tols) if tols else None
    series = {name: getattr(values, "gap", values) for name, values in series.items()}
    fig = go.Figure()
    shapes: list[dict] = []
    for i, (name, values) in enumerate(series.items()):
        v = torch.as_tensor(values).detach().cpu().double()
        if v.dim() == 1:
            v = v.unsqueeze(0)
        if v.dim() != 2:
            raise ValueError(f"divergence {name!r} must be [E, T] or [T]; got {tuple(v.shape)}.")
        if env is None:
            y, where = v.amax(0), "max over envs"
        else:
            y, where = v[_env_index(env, v.shape[0])], f"env {_env_index(env, v.shape[0])}"
        true = _np(y)
        fig.add_trace(go.Scatter(
            x=np.arange(true.shape[0]), y=np.where(true > 0, true, floor), mode="lines", name=name,
            customdata=true, line=dict(color=PALETTE[i % len(PALETTE)]),
            hovertemplate=f"{name}<br>{where}<br>step %{{x}}<br>max |Δh| = %{{customdata:.3e}}<extra></extra>",
        ))
        if env is not None and is_init is not None and i == 0:
            init = analysis._bool_init(torch.as_tensor(is_init).cpu().reshape(v.shape[0], -1))
            shapes += _reset_shapes(fig, init[_env_index(env, v.shape[0])], bands=False)
    if tol is not None:
        shapes.append(dict(type="line", name="tolerance", xref="x domain", yref="y", x0=0, x1=1, y0=tol, y1=tol,
                           line=dict(color="crimson", dash="dash", width=1)))
        # annotations on a log axis take log10 coordinates
        fig.add_annotation(x=1, xref="x domain", y=math.log10(tol), yref="y", text=f"tolerance {tol:g}",
                           showarrow=False, xanchor="right", yanchor="bottom", font=dict(color="crimson"))
    where = "max over envs" if env is None else f"env {env}"
    return _finish(fig, title=title, default_title=f"Stepwise vs replay divergence ({where})", height=height,
                   width=width, template=template, shapes=shapes, showlegend=len(series) > 1,
                   xaxis=dict(title=dict(text="step")),
                   yaxis=dict(title=dict(text="max |Δh| (log scale)"), type="log", exponentformat="power"))


# ---------------------------------------------------------------------------- probes
def probe_figure(
    results: Mapping[str, analysis.ProbeResult] | Sequence[analysis.ProbeResult],
    *,
    env: int | None = None,
    title: str | None = None,
    height: int | None = None,
    width: int | None = None,
    template: str = TEMPLATE,
) -> go.Figure:
    """Held-out R² of linear probes against steps since reset, one line per feature set.

    The hidden-state probe is a thick solid line, baselines (observation only,
    ``[o_t, o_{t-1}]``, untrained GRU...) are dashed. The legend gives each
    probe's overall R².

    Args:
        results: :class:`workbench.analysis.ProbeResult` s, e.g. from
            :func:`workbench.analysis.probe_suite`.

    Keyword Args:
        env: unused (probes pool the envs); accepted for the shared signature.

    Examples:
        >>> r = analysis.ProbeResult("hidden", 0.9, torch.tensor([0.9]), torch.tensor([0.5, 0.75]),
        ...                          torch.tensor([4, 4]), torch.zeros(2, 1), torch.zeros(1))
        >>> fig = probe_figure([r])
        >>> fig.data[0].name, fig.data[0].y.tolist(), fig.layout.xaxis.title.text
        ('hidden (R² 0.90)', [0.5, 0.75], 'steps since reset')
    """
    items = list(results.values()) if isinstance(results, Mapping) else list(results)
    fig = go.Figure()
    lows = [0.0]
    dashes = ("dash", "dot", "dashdot", "longdash", "longdashdot")
    n_base = 0
    for i, r in enumerate(items):
        y = _np(r.curve).astype(float)
        is_main = r.name == "hidden" or (i == 0 and not any(x.name == "hidden" for x in items))
        line = dict(color=PALETTE[i % len(PALETTE)], width=3 if is_main else 2)
        if not is_main:
            line["dash"] = dashes[n_base % len(dashes)]
            n_base += 1
        if np.isfinite(y).any():
            lows.append(float(np.nanmin(y)))
        fig.add_trace(go.Scatter(
            x=np.arange(y.shape[0]), y=y, mode="lines+markers", name=f"{r.name} (R² {r.r2:.2f})",
            customdata=_np(r.count), line=line, marker=dict(size=4),
            hovertemplate=(f"{r.name}<br>steps since reset %{{x}}<br>R² = %{{y:.3f}}"
                           "<br>held-out samples %{customdata}<extra></extra>"),
        ))
    low = max(-1.0, min(lows) - 0.05)
    return _finish(fig, title=title, default_title="Linear probes: held-out R² by steps since reset",
                   height=height, width=width, template=template,
                   xaxis=dict(title=dict(text="steps since reset")),
                   yaxis=dict(title=dict(text="held-out R²"), range=[low, 1.05]),
                   legend=dict(title=dict(text="features")))


# ---------------------------------------------------------------------------- timing
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


def aligned_units_figure(
    trajectory,
    units: Sequence[int],
    *,
    layer: int = -1,
    max_units: int = 6,
    title: str | None = None,
    height: int | None = None,
    width: int | None = None,
    template: str = "plotly_white",
):
    """Selected units across every episode (all envs), aligned on their reset: one faint line per
    episode and the mean in bold, per unit (LSTMVis' match view).

    Examples:
        >>> from tensordict import TensorDict
        >>> h = torch.arange(12.0).view(1, 6, 1, 2) / 4
        >>> is_init = torch.tensor([[1, 0, 0, 1, 0, 0]], dtype=torch.bool).unsqueeze(-1)
        >>> td = TensorDict({("next", "recurrent_state"): h, "is_init": is_init}, [1, 6])
        >>> fig = aligned_units_figure(td, [1])
        >>> [d.name for d in fig.data], fig.data[1].y.tolist()
        (['unit 1 (episodes)', 'unit 1 (mean)'], [1.0, 1.5, 2.0])
    """
    hidden = analysis.hidden_states(trajectory, layer=layer)
    units = [int(u) for u in units][:max_units]
    fig = go.Figure()
    if units:
        aligned = analysis.align_on_resets(hidden[..., units], trajectory.get(KEYS.is_init))
        values = aligned.values.detach().cpu().double().numpy()  # [episodes, L, U]
        n_ep, length = values.shape[:2]
        steps = np.arange(length)
        sep = np.full(1, np.nan)
        x = np.concatenate([np.concatenate([steps, sep]) for _ in range(n_ep)]) if n_ep else steps[:0]
        info = np.concatenate([np.repeat([[int(env), int(start)]], length + 1, axis=0)
                               for env, start in zip(aligned.env, aligned.start)]) if n_ep else np.zeros((0, 2))
        mean = aligned.mean().detach().cpu().double().numpy()
        for i, unit in enumerate(units):
            color = PALETTE[i % len(PALETTE)]
            y = np.concatenate([np.concatenate([values[j, :, i], sep]) for j in range(n_ep)]) if n_ep else steps[:0]
            fig.add_trace(go.Scatter(
                x=x, y=y, mode="lines", name=f"unit {unit} (episodes)", legendgroup=str(unit), customdata=info,
                line=dict(color=color, width=1), opacity=0.35, connectgaps=False,
                hovertemplate=(f"unit {unit}<br>env %{{customdata[0]}}, episode from step %{{customdata[1]}}"
                               "<br>%{x} steps since reset<br>h = %{y:.3f}<extra></extra>"),
            ))
            fig.add_trace(go.Scatter(
                x=steps, y=mean[:, i], mode="lines", name=f"unit {unit} (mean)", legendgroup=str(unit),
                line=dict(color=color, width=3),
                hovertemplate=f"unit {unit}, mean over episodes<br>%{{x}} steps since reset<br>h = %{{y:.3f}}<extra></extra>",
            ))
        n_text = f"{n_ep} episode{'s' if n_ep != 1 else ''}"
    else:
        n_text = "no unit selected"
        fig.add_annotation(text="No unit stays above the threshold over that range: lower it or shorten the range.",
                           showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    fig.add_vline(x=-0.5, line=dict(color="rgba(40, 40, 40, 0.75)", width=1, dash="dot"), name="reset")
    fig.update_layout(
        title=dict(text=title or f"Selected units aligned on resets ({n_text})"),
        xaxis=dict(title=dict(text="steps since reset")), yaxis=dict(title=dict(text="h")),
        height=height, width=width, template=template, legend=dict(orientation="h", y=-0.3),
    )
    return fig


# ---------------------------------------------------------------------------- groups and training
def pca_groups_figure(
    data,
    group,
    *,
    names: Mapping[float, str] | None = None,
    env: int | None = None,
    layer: int = -1,
    is_init=None,
    result: analysis.PCAResult | None = None,
    max_episodes: int | None = 200,
    title: str | None = None,
    height: int | None = None,
    width: int | None = None,
    template: str = TEMPLATE,
) -> go.Figure:
    """Every episode's hidden-state path in the first two principal components, coloured by a label.

    Use it to see whether the memory separates what it should remember (e.g.
    the cue of a memory task): each episode is a line from its first step
    (circle) to its last (diamond), coloured by its group: the value of ``group``
    at the episode's first step. Episodes that start before ``t = 0`` are left out.

    Args:
        data: hidden states ``[E, T, H]`` / ``[E, T, L, H]`` or a trajectory TensorDict.
        group: ``[E, T]`` per-step labels (e.g. ``trajectory["true_state"][..., 0]``).

    Keyword Args:
        names: a legend name for each group value (default: the value).
        env: draw only this env's episodes (``None``: every env's).
        result: a :class:`workbench.analysis.PCAResult` to project on (fitted on all states otherwise).
        max_episodes: draw at most this many episodes (the first ones; ``None``: all).

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> cue = torch.tensor([1.0, -1.0]).repeat_interleave(3).view(1, 6)
        >>> h = torch.randn(1, 6, 3, generator=g) + cue[..., None]
        >>> is_init = torch.tensor([[1, 0, 0, 1, 0, 0]], dtype=torch.bool)
        >>> fig = pca_groups_figure(h, cue, is_init=is_init, names={1.0: "cue +1", -1.0: "cue -1"})
        >>> [d.name for d in fig.data]
        ['cue -1 (1 episodes)', 'cue +1 (1 episodes)', 'first step', 'last step']
    """
    h, is_init, _ = _hidden_input(data, layer, is_init, None)
    e_count, t, _ = h.shape
    labels = torch.as_tensor(group).detach().cpu()
    labels = labels.reshape(e_count, t) if labels.numel() == e_count * t else labels
    if tuple(labels.shape) != (e_count, t):
        raise ValueError(f"pca_groups_figure: 'group' must be [E, T] = {(e_count, t)}; got {tuple(labels.shape)}.")
    init, _, _ = _episode_info(is_init, None, e_count, t)
    res = result if result is not None else analysis.pca(h, k=2)
    coords = (res.transform(h) if result is not None else res.coords)[..., :2].detach().cpu().double()
    aligned = analysis.align_on_resets(coords, init)
    if env is not None:
        keep = aligned.env == _env_index(env, e_count)
        aligned = analysis.Aligned(aligned.values[keep], aligned.lengths[keep], aligned.env[keep], aligned.start[keep])
    n_ep = aligned.values.shape[0] if max_episodes is None else min(aligned.values.shape[0], int(max_episodes))
    values = _np(aligned.values[:n_ep])
    ep_labels = [float(labels[int(env), int(start)]) for env, start in zip(aligned.env[:n_ep], aligned.start[:n_ep])]
    lengths = _np(aligned.lengths[:n_ep])
    names = dict(names or {})
    fig = go.Figure()
    ends: list[tuple[float, float, str]] = []
    for i, value in enumerate(sorted(set(ep_labels))):
        members = [j for j, v in enumerate(ep_labels) if v == value]
        name = names.get(value, f"{value:g}")
        xs, ys, custom = [], [], []
        for j in members:
            n = int(lengths[j])
            xs += list(values[j, :n, 0]) + [np.nan]
            ys += list(values[j, :n, 1]) + [np.nan]
            custom += [[s, int(aligned.env[j]), int(aligned.start[j])] for s in range(n)] + [[np.nan] * 3]
            ends.append((values[j, n - 1, 0], values[j, n - 1, 1], PALETTE[i % len(PALETTE)]))
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="lines+markers", name=f"{name} ({len(members)} episodes)", customdata=custom,
            line=dict(color=PALETTE[i % len(PALETTE)], width=1), marker=dict(size=4), opacity=0.6,
            connectgaps=False,
            hovertemplate=(f"{name}<br>env %{{customdata[1]}}, episode from step %{{customdata[2]}}"
                           "<br>%{customdata[0]} steps since reset<br>PC1 %{x:.3f}, PC2 %{y:.3f}<extra></extra>"),
        ))
    starts = values[:, 0, :] if n_ep else np.zeros((0, 2))
    fig.add_trace(go.Scatter(x=starts[:, 0], y=starts[:, 1], mode="markers", name="first step", hoverinfo="skip",
                             marker=dict(symbol="circle-open", size=10, color="black")))
    fig.add_trace(go.Scatter(x=[x for x, _, _ in ends], y=[y for _, y, _ in ends], mode="markers", name="last step",
                             hoverinfo="skip", marker=dict(symbol="diamond", size=9, color=[c for _, _, c in ends],
                                                           line=dict(width=1, color="black"))))
    ratio = _np(res.explained_variance_ratio)
    return _finish(fig, title=title, default_title="Hidden-state paths by group (PCA)", height=height, width=width,
                   template=template, legend=dict(orientation="h", y=-0.15),
                   xaxis=dict(title=dict(text=f"PC1 ({ratio[0]:.1%} of variance)")),
                   yaxis=dict(title=dict(text=f"PC2 ({ratio[1]:.1%} of variance)")),
                   meta=dict(explained_variance_ratio=ratio.tolist()))


def training_figure(
    history: Sequence[Mapping[str, Any]],
    *,
    target: float | None = None,
    window: int = 10,
    env: int | None = None,
    title: str | None = None,
    height: int | None = None,
    width: int | None = None,
    template: str = TEMPLATE,
) -> go.Figure:
    """A training curve: each batch's mean episode return against frames, with a moving average.

    Redraw it from a :func:`workbench.train.train` ``callback`` for a live
    curve (an empty history gives empty axes).

    Args:
        history: rows with ``frames`` and ``mean_return`` (NaN when no episode ended in the batch).

    Keyword Args:
        target: a return to reach, drawn as a dashed line.
        window: batches in the moving average (of the batches that finished episodes).
        env: unused (a history pools the envs); accepted for the shared signature.

    Examples:
        >>> rows = [{"frames": 100, "mean_return": 10.0}, {"frames": 200, "mean_return": float("nan")},
        ...         {"frames": 300, "mean_return": 30.0}]
        >>> fig = training_figure(rows, target=25, window=2)
        >>> fig.data[0].x, fig.data[1].y
        ((100, 300), (10.0, 20.0))
        >>> training_figure([]).data[0].x
        ()
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"training_figure: 'window' must be an int >= 1; got {window!r}.")
    rows = [r for r in history if r.get("mean_return") is not None and math.isfinite(float(r["mean_return"]))]
    frames = [int(r["frames"]) for r in rows]
    returns = [float(r["mean_return"]) for r in rows]
    smooth = [float(np.mean(returns[max(0, i + 1 - window):i + 1])) for i in range(len(returns))]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=frames, y=returns, mode="markers", name="batch mean return",
                             marker=dict(size=5, color=PALETTE[0], opacity=0.5),
                             hovertemplate="%{x} frames<br>mean return %{y:.2f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=frames, y=smooth, mode="lines", name=f"moving average ({window} batches)",
                             line=dict(color=PALETTE[0], width=3),
                             hovertemplate="%{x} frames<br>average %{y:.2f}<extra></extra>"))
    shapes = []
    if target is not None:
        shapes.append(dict(type="line", name="target", xref="x domain", yref="y", x0=0, x1=1, y0=target, y1=target,
                           line=dict(color="crimson", dash="dash", width=1)))
        fig.add_annotation(x=0, xref="x domain", y=target, yref="y", text=f"target {target:g}", showarrow=False,
                           xanchor="left", yanchor="bottom", font=dict(color="crimson"))
    last = f": {smooth[-1]:.2f} after {frames[-1]:,} frames" if rows else ""
    return _finish(fig, title=title, default_title=f"Training return{last}", height=height, width=width,
                   template=template, shapes=shapes, legend=dict(orientation="h", y=-0.2),
                   xaxis=dict(title=dict(text="frames")), yaxis=dict(title=dict(text="episode return")))
