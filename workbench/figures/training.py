"""Training progress: each batch's mean episode return against frames, with a moving average.

Examples:
    >>> training_figure([{"frames": 64, "mean_return": 1.5}]).layout.title.text
    'Training return: 1.50 after 64 frames'
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from ._style import PALETTE, TEMPLATE, _finish

__all__ = ["training_figure"]


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
