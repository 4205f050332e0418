"""GRU gate activations r, z, n as heatmaps, one row per layer.

Examples:
    >>> fig = gates_figure(torch.rand(1, 4, 1, 3, 2))
    >>> [d.name for d in fig.data]
    ['layer 0 r', 'layer 0 z', 'layer 0 n']
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from ..hidden import GATE_NAMES
from ..keys import KEYS
from ._style import TEMPLATE, _env_index, _episode_info, _finish, _np, _reset_shapes, _unpack

__all__ = ["gates_figure"]

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
        subplot_titles=[f"layer {l} · {_GATE_TITLES[n]}" for l in layers for n in GATE_NAMES],
    )
    custom = np.broadcast_to(np.stack([_np(ep[e]), _np(since[e])], -1)[None], (n_units, t, 2))
    shapes = []
    for row, l in enumerate(layers, start=1):
        for col, name in enumerate(GATE_NAMES, start=1):
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
