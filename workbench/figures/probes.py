"""Linear probes: held-out R² against steps since reset, one line per feature set.

Examples:
    >>> r = ProbeResult("observation", 0.2, torch.tensor([0.2]), torch.tensor([0.1, 0.3]),
    ...                 torch.tensor([4, 4]), torch.zeros(2, 1), torch.zeros(1))
    >>> probe_figure({"observation": r}).data[0].line.width
    3
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import torch

from ..probes import ProbeResult
from ._style import PALETTE, TEMPLATE, _finish, _np

__all__ = ["probe_figure"]


def probe_figure(
    results: Mapping[str, ProbeResult] | Sequence[ProbeResult],
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
        results: :class:`workbench.ProbeResult` s, e.g. from
            :func:`workbench.probes.probe_suite`.

    Keyword Args:
        env: unused (probes pool the envs); accepted for the shared signature.

    Examples:
        >>> r = ProbeResult("hidden", 0.9, torch.tensor([0.9]), torch.tensor([0.5, 0.75]),
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
