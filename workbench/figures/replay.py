"""Stepwise rollout against its replay: how far the hidden states drift apart, step by step.

Examples:
    >>> fig = divergence_figure(torch.tensor([0.0, 1e-6]), tol=1e-5)
    >>> fig.data[0].name, fig.layout.shapes[0].name
    ('max |Δh|', 'tolerance')
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import plotly.graph_objects as go
import torch

from ..decimate import COLUMNS, envelope
from ..episodes import as_bool_init
from ._style import PALETTE, TEMPLATE, _env_index, _finish, _np, _reset_shapes

__all__ = ["divergence_figure"]


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
        # a long run is drawn at screen resolution: each column's min and max (the largest gap survives)
        steps, true = envelope(_np(y), columns=COLUMNS)
        fig.add_trace(go.Scatter(
            x=steps, y=np.where(true > 0, true, floor), mode="lines", name=name,
            customdata=true, line=dict(color=PALETTE[i % len(PALETTE)]),
            hovertemplate=f"{name}<br>{where}<br>step %{{x}}<br>max |Δh| = %{{customdata:.3e}}<extra></extra>",
        ))
        if env is not None and is_init is not None and i == 0:
            init = as_bool_init(torch.as_tensor(is_init).cpu().reshape(v.shape[0], -1))
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
