"""Hidden states in their principal components: one env's path in time, or every episode by group.

Examples:
    >>> h = torch.randn(1, 8, 4, generator=torch.Generator().manual_seed(0))
    >>> fig = pca_figure(h, is_init=torch.tensor([[1, 0, 0, 0, 1, 0, 0, 0]]))
    >>> fig.layout.xaxis.title.text.startswith("PC1"), len(fig.data[0].x)
    (True, 8)
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import plotly.graph_objects as go
import torch

from ..hidden import Aligned, PCAResult, align_on_resets, pca
from ._style import PALETTE, TEMPLATE, _env_index, _env_trace_name, _episode_info, _finish, _hidden_input, _np

__all__ = ["pca_figure", "pca_groups_figure"]


def pca_figure(
    data,
    *,
    k: int = 2,
    color: str = "time",
    env: int | None = 0,
    layer: int = -1,
    is_init=None,
    episode=None,
    result: PCAResult | None = None,
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
        result: a :class:`workbench.hidden.PCAResult` to project on (fitted here otherwise).
        height: in pixels; under 450 the legend sits lower, clear of the x-axis title.

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
    res = result if result is not None else pca(h, k=k)
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
            **xyz, mode="lines+markers", name=_env_trace_name(e), customdata=custom, hovertemplate=hover,
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
        # below the x-axis title; a short figure needs it further down not to cover the title
        legend=dict(orientation="h", y=-0.3 if height is not None and height < 450 else -0.15),
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


def pca_groups_figure(
    data,
    group,
    *,
    names: Mapping[float, str] | None = None,
    env: int | None = None,
    layer: int = -1,
    is_init=None,
    result: PCAResult | None = None,
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
        result: a :class:`workbench.hidden.PCAResult` to project on (fitted on all states otherwise).
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
    res = result if result is not None else pca(h, k=2)
    coords = (res.transform(h) if result is not None else res.coords)[..., :2].detach().cpu().double()
    aligned = align_on_resets(coords, init)
    if env is not None:
        keep = aligned.env == _env_index(env, e_count)
        aligned = Aligned(aligned.values[keep], aligned.lengths[keep], aligned.env[keep], aligned.start[keep])
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
                   template=template,  # the legend above the plot, under the title: clear of the axis titles
                   legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0),
                   margin=dict(t=90),
                   xaxis=dict(title=dict(text=f"PC1 ({ratio[0]:.1%} of variance)")),
                   yaxis=dict(title=dict(text=f"PC2 ({ratio[1]:.1%} of variance)")),
                   meta=dict(explained_variance_ratio=ratio.tolist()))
