"""The look every figure shares: template, colours, reset lines and episode bands, input unpacking.

Reset steps (``is_init``) are drawn as dotted vertical lines between the last
step of one episode and the first of the next (layout shapes named
``"reset"``); alternate episodes get a light band (shapes named
``"episode"``). Every builder ends with :func:`_finish` (title, size, template).

Examples:
    >>> fig = go.Figure(go.Scatter(x=[0, 1, 2, 3], y=[0, 1, 0, 1]))
    >>> [(s["name"], s["x0"]) for s in _reset_shapes(fig, torch.tensor([True, False, True, False]))]
    [('reset', 1.5), ('episode', 1.5)]
    >>> _finish(fig, title=None, default_title="demo", height=200, width=None, template=TEMPLATE).layout.title.text
    'demo'
"""

from __future__ import annotations

import plotly.graph_objects as go
import torch
from tensordict import TensorDictBase

from ..decimate import as_numpy
from ..episodes import as_bool_init, episode_and_step, steps_since_reset
from ..keys import KEYS

TEMPLATE = "plotly_white"
"""The plotly template every builder uses by default."""
RESET_LINE = dict(color="rgba(40, 40, 40, 0.75)", width=1, dash="dot")
BAND_FILL = "rgba(120, 120, 120, 0.10)"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
CURSOR_LINE = dict(color="#d62728", width=2)
SELECTION_LINE = dict(color="black", width=2)


_np = as_numpy
"""a tensor or array-like as a numpy array on the CPU (:func:`workbench.decimate.as_numpy`)"""


def _env_trace_name(env: int) -> str:
    """The name of env ``env``'s line (norm figure) or path (PCA figure)."""
    return f"env {env}"


def _unpack(data, key, is_init, episode):
    """Values, is_init and episode from a TensorDict or from tensors."""
    if isinstance(data, TensorDictBase):
        values = data.get(key, None)
        if values is None:
            raise KeyError(f"the trajectory has no entry {key!r}; it has {sorted(map(str, data.keys(True, True)))}.")
        is_init = data.get(KEYS.is_init, None) if is_init is None else is_init
        episode = data.get(KEYS.episode, None) if episode is None else episode
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
        init = as_bool_init(torch.as_tensor(is_init).cpu(), (e, t))
    if episode is None:
        episode, _ = episode_and_step(init)
    else:
        episode = torch.as_tensor(episode).cpu().reshape(e, t).long()
    since = steps_since_reset(init)
    return init, episode, since


def _hidden_input(data, layer, is_init, episode, key=KEYS.next_hidden):
    """Hidden states as ``[E, T, H]`` (one layer) with ``[E, T]`` is_init and episode, from any accepted input."""
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
    """Title, size, template and extra layout; ``shapes`` are added to the figure's own."""
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
