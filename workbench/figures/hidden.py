"""Hidden state over time: heatmap, norm, and selected units aligned on resets.

Examples:
    >>> h = torch.tanh(torch.randn(2, 12, 1, 4, generator=torch.Generator().manual_seed(0)))
    >>> is_init = torch.zeros(2, 12, 1, dtype=torch.bool); is_init[:, ::5] = True
    >>> fig = hidden_heatmap(h, is_init=is_init)
    >>> fig.data[0].z.shape, sum(s.name == "reset" for s in fig.layout.shapes)
    ((4, 12), 2)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
import torch

from ..hidden import align_on_resets, hidden_norm, hidden_states
from ..keys import KEYS
from ._style import (PALETTE, RESET_LINE, TEMPLATE, _env_index, _env_trace_name, _episode_info, _finish,
                     _hidden_input, _np, _reset_shapes)

__all__ = ["hidden_heatmap", "norm_figure", "aligned_units_figure"]


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
    norms = _np(hidden_norm(h))
    envs = range(e_count) if env is None else [_env_index(env, e_count)]
    fig = go.Figure()
    for e in envs:
        custom = np.stack([_np(ep[e]), _np(since[e]), np.full(t, e)], -1)
        fig.add_trace(go.Scatter(
            x=np.arange(t), y=norms[e], mode="lines", name=_env_trace_name(e), customdata=custom,
            line=dict(color=PALETTE[e % len(PALETTE)]),
            hovertemplate=("env %{customdata[2]}<br>step %{x}<br>episode %{customdata[0]} "
                           "(step %{customdata[1]} since reset)<br>‖h‖₂ = %{y:.3f}<extra></extra>"),
        ))
    shapes = _reset_shapes(fig, init[envs[0]], bands=bands) if env is not None else []
    where = "all envs" if env is None else f"env {envs[0]}"
    return _finish(fig, title=title, default_title=f"Hidden-state norm, {where}", height=height, width=width,
                   template=template, shapes=shapes, showlegend=env is None,
                   xaxis=dict(title=dict(text="step")), yaxis=dict(title=dict(text="‖h‖₂"), rangemode="tozero"))


def aligned_units_figure(
    trajectory,
    units: Sequence[int],
    *,
    layer: int = -1,
    max_units: int | None = 24,
    title: str | None = None,
    height: int | None = None,
    width: int | None = None,
    template: str = TEMPLATE,
):
    """Selected units across every episode (all envs), aligned on their reset: small multiples, one panel
    per unit (one faint line per episode and the mean in bold; LSTMVis' match view), on one y scale.

    Every unit is drawn up to ``max_units`` (``None``: no limit); past it the first ``max_units`` are,
    and the title says how many were left out. ``height`` defaults to the panels' (a scrolling page).

    Examples:
        >>> from tensordict import TensorDict
        >>> h = torch.arange(12.0).view(1, 6, 1, 2) / 4
        >>> is_init = torch.tensor([[1, 0, 0, 1, 0, 0]], dtype=torch.bool).unsqueeze(-1)
        >>> td = TensorDict({("next", "recurrent_state"): h, "is_init": is_init}, [1, 6])
        >>> fig = aligned_units_figure(td, [1])
        >>> [d.name for d in fig.data], fig.data[1].y.tolist()
        (['unit 1 (episodes)', 'unit 1 (mean)'], [1.0, 1.5, 2.0])
        >>> fig = aligned_units_figure(td, [0, 1], max_units=1)
        >>> [d.name for d in fig.data][1], "1 of 2 selected units shown" in fig.layout.title.text
        ('unit 0 (mean)', True)
    """
    from plotly.subplots import make_subplots

    if max_units is not None and int(max_units) < 1:
        raise ValueError(f"max_units: expected an int >= 1 or None; got {max_units!r}.")
    hidden = hidden_states(trajectory, layer=layer)
    selected = [int(u) for u in units]
    units = selected if max_units is None else selected[:int(max_units)]
    left_out = len(selected) - len(units)
    n = len(units)
    cols = 1 if n <= 3 else 2 if n <= 8 else 3
    rows = max(1, -(-n // cols))
    fig = make_subplots(rows=rows, cols=cols, shared_xaxes=True, subplot_titles=[f"unit {u}" for u in units] or None,
                        vertical_spacing=min(0.08, 0.5 / rows), horizontal_spacing=0.06) if n else go.Figure()
    if units:
        aligned = align_on_resets(hidden[..., units], trajectory.get(KEYS.is_init))
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
            where = dict(row=i // cols + 1, col=i % cols + 1)
            y = np.concatenate([np.concatenate([values[j, :, i], sep]) for j in range(n_ep)]) if n_ep else steps[:0]
            fig.add_trace(go.Scatter(
                x=x, y=y, mode="lines", name=f"unit {unit} (episodes)", legendgroup=str(unit), customdata=info,
                line=dict(color=color, width=1), opacity=0.35, connectgaps=False,
                hovertemplate=(f"unit {unit}<br>env %{{customdata[0]}}, episode from step %{{customdata[1]}}"
                               "<br>%{x} steps since reset<br>h = %{y:.3f}<extra></extra>"),
            ), **where)
            fig.add_trace(go.Scatter(
                x=steps, y=mean[:, i], mode="lines", name=f"unit {unit} (mean)", legendgroup=str(unit),
                line=dict(color=color, width=3),
                hovertemplate=f"unit {unit}, mean over episodes<br>%{{x}} steps since reset<br>h = %{{y:.3f}}<extra></extra>",
            ), **where)
        fig.update_yaxes(matches="y")  # one scale: units compare at a glance
        fig.update_xaxes(title_text="steps since reset", row=rows)
        fig.update_yaxes(title_text="h", col=1)
        fig.add_vline(x=-0.5, line=RESET_LINE, name="reset", row="all", col="all")
        n_text = f"{n_ep} episode{'s' if n_ep != 1 else ''}"
    else:
        n_text = "no unit selected"
        fig.add_annotation(text="No unit selected: lower the threshold, shorten the range, or pick units.",
                           showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    text = title or (f"Selected units aligned on resets ({n_text})" if units else "No unit selected")
    if left_out:
        text += (f"<br><span style='font-size:12px'>{n} of {len(selected)} selected units shown "
                 f"(the first {n}; {left_out} left out)</span>")
    fig.update_layout(
        title=dict(text=text, font=dict(size=13)), showlegend=False,
        height=height if height is not None else 90 + (150 if cols == 1 else 130) * rows + (20 if left_out else 0),
        width=width, template=template, margin=dict(t=80 if left_out else 60, b=40, l=60, r=20),
    )
    return fig
