"""Hidden-state statistics on plain tensors: PCA, norms, unit stats, saturation, alignment on resets, gates.

Everything here takes tensors (or a trajectory TensorDict with the entries
named in :data:`workbench.keys.KEYS`) and returns tensors or small
dataclasses of tensors. Nothing here plots; :mod:`workbench.figures` draws the
results. Shapes follow the trajectory layout ``[E, T, ...]`` (envs, time).

Episodes are the segments between ``is_init`` flags, as :mod:`workbench.episodes` cuts them.

Examples:
    >>> is_init = torch.tensor([[1, 0, 0, 1, 0]], dtype=torch.bool)
    >>> aligned = align_on_resets(torch.arange(5.0).view(1, 5), is_init)
    >>> aligned.values.tolist(), aligned.lengths.tolist()
    ([[0.0, 1.0, 2.0], [3.0, 4.0, nan]], [3, 2])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tensordict import TensorDictBase

from .episodes import as_bool_init, segments
from .errors import AnalysisError
from .keys import KEYS

__all__ = [
    "hidden_states",
    "PCAResult",
    "pca",
    "hidden_norm",
    "UnitStats",
    "unit_stats",
    "saturated_fraction",
    "select_units",
    "Aligned",
    "align_on_resets",
    "GateSummary",
    "gate_summary",
    "GATE_NAMES",
]

GATE_NAMES = ("r", "z", "n")
"""Order of the gates in a ``gates`` entry (``torch.nn.GRU``'s: reset, update, candidate)."""

# ---------------------------------------------------------------------------- inputs
def hidden_states(trajectory: TensorDictBase, *, layer: int | None = -1, key=KEYS.next_hidden) -> torch.Tensor:
    """The hidden states of a trajectory, one layer (``[E, T, H]``) or all (``[E, T, L, H]``).

    Args:
        trajectory: a TensorDict with ``key`` of shape ``[E, T, L, H]``.

    Keyword Args:
        layer: the layer to keep (default the last); ``None`` keeps them all.
        key: the entry to read (default ``KEYS.next_hidden``, the state after each step).

    Examples:
        >>> from tensordict import TensorDict
        >>> td = TensorDict({KEYS.next_hidden: torch.zeros(2, 5, 3, 8)}, [2, 5])
        >>> hidden_states(td).shape, hidden_states(td, layer=None).shape
        (torch.Size([2, 5, 8]), torch.Size([2, 5, 3, 8]))
    """
    h = trajectory.get(key)
    if h.dim() != 4:
        raise AnalysisError(f"{key!r} must have shape [E, T, L, H], got {tuple(h.shape)}.")
    return h if layer is None else h[..., layer, :]


# ---------------------------------------------------------------------------- PCA
@dataclass
class PCAResult:
    """Principal components of hidden states.

    The sign of each component is fixed so that its largest-magnitude loading
    is positive, so results do not flip between runs.
    """

    components: torch.Tensor
    """``[k, H]``: unit-norm principal axes, by decreasing variance"""
    coords: torch.Tensor
    """``[..., k]``: the inputs projected on the axes (same leading shape as the input)"""
    explained_variance: torch.Tensor
    """``[k]``: variance along each axis"""
    explained_variance_ratio: torch.Tensor
    """``[k]``: fraction of the total variance along each axis"""
    mean: torch.Tensor
    """``[H]``: the mean that was subtracted"""

    @property
    def k(self) -> int:
        """Number of components."""
        return self.components.shape[0]

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Projects other states ``[..., H]`` on the same axes, ``[..., k]``."""
        return (x.to(self.mean.dtype) - self.mean) @ self.components.T


def pca(hidden: torch.Tensor, k: int = 2) -> PCAResult:
    """Principal component analysis of hidden states ``[..., H]`` (e.g. ``[N, H]`` or ``[E, T, H]``).

    Args:
        hidden: the states; every leading index is one sample.
        k: number of components (at most ``min(samples, H)``).

    Returns:
        A :class:`PCAResult` with ``coords`` of shape ``[..., k]``.

    Examples:
        >>> t = torch.linspace(-1, 1, 50)
        >>> x = torch.stack([t, 2 * t, -t], -1)           # points on a line
        >>> res = pca(x, k=2)
        >>> round(res.explained_variance_ratio[0].item(), 6), res.coords.shape
        (1.0, torch.Size([50, 2]))
        >>> bool(res.components[0].abs().argmax() == 1 and res.components[0, 1] > 0)
        True
    """
    if hidden.dim() < 2:
        raise AnalysisError(f"pca expects states of shape [..., H], got {tuple(hidden.shape)}.")
    lead, h = hidden.shape[:-1], hidden.shape[-1]
    x = hidden.reshape(-1, h)
    n = x.shape[0]
    if not 1 <= k <= min(n, h):
        raise AnalysisError(f"k must be in [1, min(samples, H)] = [1, {min(n, h)}], got k={k}.")
    if not torch.isfinite(x).all():
        raise AnalysisError("pca: the hidden states contain NaN or inf.")
    dtype = hidden.dtype if hidden.is_floating_point() else torch.get_default_dtype()
    x64 = x.to(torch.float64)
    mean = x64.mean(0)
    centered = x64 - mean
    _, s, vh = torch.linalg.svd(centered, full_matrices=False)
    comps = vh[:k]
    # deterministic signs: the largest |loading| of each component is positive
    idx = comps.abs().argmax(-1)
    signs = torch.sign(comps.gather(-1, idx[:, None])).squeeze(-1)
    signs[signs == 0] = 1.0
    comps = comps * signs[:, None]
    var = s**2 / max(n - 1, 1)
    total = var.sum()
    ratio = var[:k] / total if total > 0 else torch.zeros(k, dtype=torch.float64)
    coords = centered @ comps.T
    return PCAResult(
        components=comps.to(dtype),
        coords=coords.reshape(*lead, k).to(dtype),
        explained_variance=var[:k].to(dtype),
        explained_variance_ratio=ratio.to(dtype),
        mean=mean.to(dtype),
    )


# ---------------------------------------------------------------------------- norms and units
def hidden_norm(hidden: torch.Tensor) -> torch.Tensor:
    """Euclidean norm ``‖h‖₂`` of every state: ``[..., H] -> [...]``.

    Examples:
        >>> hidden_norm(torch.tensor([[[3.0, 4.0], [0.0, 1.0]]])).tolist()
        [[5.0, 1.0]]
    """
    return torch.linalg.vector_norm(hidden, dim=-1)


@dataclass
class UnitStats:
    """Per-unit statistics of hidden states over all samples (each field ``[H]``)."""

    mean: torch.Tensor
    std: torch.Tensor
    min: torch.Tensor
    max: torch.Tensor
    saturated: torch.Tensor
    """fraction of samples with ``|h| > threshold``"""
    threshold: float = 0.9


def unit_stats(hidden: torch.Tensor, *, threshold: float = 0.9) -> UnitStats:
    """Mean, std, min, max and saturation of each hidden unit over time (and envs).

    Args:
        hidden: ``[..., H]`` states.

    Keyword Args:
        threshold: a unit is saturated where ``|h| > threshold`` (tanh range).

    Examples:
        >>> s = unit_stats(torch.tensor([[0.0, 0.5], [0.5, -1.0]]))
        >>> s.mean.tolist(), s.max.tolist(), s.saturated.tolist()
        ([0.25, -0.25], [0.5, 0.5], [0.0, 0.5])
    """
    x = hidden.reshape(-1, hidden.shape[-1]).to(torch.float64 if hidden.dtype == torch.float64 else torch.float32)
    return UnitStats(
        mean=x.mean(0),
        std=x.std(0, correction=0),
        min=x.amin(0),
        max=x.amax(0),
        saturated=(x.abs() > threshold).to(x.dtype).mean(0),
        threshold=threshold,
    )


def saturated_fraction(hidden: torch.Tensor, *, threshold: float = 0.9) -> torch.Tensor:
    """Fraction of units with ``|h| > threshold`` at each step: ``[..., H] -> [...]``.

    Examples:
        >>> saturated_fraction(torch.tensor([[0.1, 0.95, -0.97, 0.0]])).tolist()
        [0.5]
    """
    return (hidden.abs() > threshold).float().mean(-1)


def select_units(hidden: torch.Tensor, start: int, stop: int, threshold: float, *, absolute: bool = True) -> list[int]:
    """Units whose value exceeds ``threshold`` at every step ``start..stop`` (inclusive), as LSTMVis selects.

    Args:
        hidden: ``[T, H]`` states of one env.
        start, stop: the time range, inclusive.
        threshold: the value to exceed (``|h| > threshold`` with ``absolute``, else ``h > threshold``).

    Examples:
        >>> h = torch.tensor([[0.9, 0.1, -0.8], [0.7, 0.9, -0.9], [0.2, 0.9, -0.95]])
        >>> select_units(h, 0, 1, 0.5), select_units(h, 1, 2, 0.5), select_units(h, 0, 2, 0.5, absolute=False)
        ([0, 2], [1, 2], [])
    """
    if hidden.dim() != 2:
        raise ValueError(f"select_units: hidden must be [T, H]; got shape {tuple(hidden.shape)}.")
    t = hidden.shape[0]
    if not 0 <= start <= stop < t:
        raise ValueError(f"select_units: need 0 <= start <= stop < {t}; got start={start}, stop={stop}.")
    window = hidden[start : stop + 1]
    window = window.abs() if absolute else window
    return torch.nonzero((window > threshold).all(0)).flatten().tolist()


# ---------------------------------------------------------------------------- alignment on resets
@dataclass
class Aligned:
    """Values cut into episodes and aligned on steps since reset, padded with NaN."""

    values: torch.Tensor
    """``[episodes, max_len, ...]``: ``values[i, s]`` is episode ``i`` at ``s`` steps since its reset"""
    lengths: torch.Tensor
    """``[episodes]``: steps of each episode inside the window (capped at ``max_len``)"""
    env: torch.Tensor
    """``[episodes]``: the env of each episode"""
    start: torch.Tensor
    """``[episodes]``: the step where each episode starts"""

    @property
    def count(self) -> torch.Tensor:
        """``[max_len]``: how many episodes reach each step since reset."""
        steps = torch.arange(self.values.shape[1], device=self.lengths.device)
        return (self.lengths[:, None] > steps).sum(0)

    def mean(self) -> torch.Tensor:
        """Mean over episodes by steps since reset, ``[max_len, ...]`` (NaN where no episode)."""
        return self.values.nanmean(0)

    def std(self) -> torch.Tensor:
        """Standard deviation over episodes (population, NaN-aware), ``[max_len, ...]``."""
        mean = self.mean()
        return ((self.values - mean) ** 2).nanmean(0).sqrt()


def align_on_resets(
    values: torch.Tensor,
    is_init: torch.Tensor,
    *,
    max_len: int | None = None,
    include_partial: bool = False,
) -> Aligned:
    """Cuts ``[E, T, ...]`` values into episodes and aligns them on the step of their reset.

    Args:
        values: per-step values (hidden states, norms, gates...). Integers and
            booleans are converted to float so that padding can be NaN.
        is_init: ``[E, T]`` or ``[E, T, 1]`` bool, True where an episode starts.

    Keyword Args:
        max_len: keep at most this many steps per episode (default: the longest).
        include_partial: also keep segments that start at ``t = 0`` without
            ``is_init`` (their steps since reset are unknown; aligned on ``t = 0``).

    Returns:
        An :class:`Aligned` with ``values`` of shape ``[episodes, max_len, ...]``.

    Examples:
        >>> is_init = torch.tensor([[1, 0, 0, 1, 0], [0, 1, 0, 0, 0]], dtype=torch.bool)
        >>> values = torch.arange(10.0).view(2, 5)
        >>> a = align_on_resets(values, is_init)
        >>> a.values.tolist(), a.env.tolist(), a.start.tolist()
        ([[0.0, 1.0, 2.0, nan], [3.0, 4.0, nan, nan], [6.0, 7.0, 8.0, 9.0]], [0, 0, 1], [0, 3, 1])
        >>> a.mean().tolist(), a.count.tolist()
        ([3.0, 4.0, 5.0, 9.0], [3, 3, 2, 1])
    """
    if values.dim() < 2:
        raise AnalysisError(f"values must have shape [E, T, ...], got {tuple(values.shape)}.")
    init = as_bool_init(is_init, values.shape).to(values.device)
    seg = segments(init)
    if not values.is_floating_point():
        values = values.to(torch.get_default_dtype())
    keep = seg.from_reset if not include_partial else torch.ones_like(seg.from_reset)
    longest = int(seg.lengths[keep].max()) if bool(keep.any()) else 0
    width = longest if max_len is None else min(int(max_len), longest)
    new_index = torch.cumsum(keep.long(), 0) - 1  # segment -> output row
    n = int(keep.sum())
    out = torch.full((n, width, *values.shape[2:]), math.nan, dtype=values.dtype, device=values.device)
    mask = keep[seg.ids] & (seg.pos < width)
    out[new_index[seg.ids][mask], seg.pos[mask]] = values[mask]
    return Aligned(
        values=out,
        lengths=seg.lengths[keep].clamp(max=width),
        env=seg.env[keep],
        start=seg.start[keep],
    )


# ---------------------------------------------------------------------------- gates
@dataclass
class GateSummary:
    """Statistics of the r, z, n gates of a GRU (``torch.nn.GRU`` convention).

    ``h_t = z ⊙ h_{t-1} + (1 - z) ⊙ n``: the update gate ``z`` is the fraction
    of the previous state *kept* (retention) and ``1 - z`` the fraction
    rewritten by the candidate ``n``.
    """

    mean: torch.Tensor
    """``[L, 3, H]``: mean of r, z, n per unit"""
    low: torch.Tensor
    """``[L, 2, H]``: fraction of steps where r, z are below ``threshold`` (left-saturated)"""
    high: torch.Tensor
    """``[L, 2, H]``: fraction of steps where r, z are above ``1 - threshold`` (right-saturated)"""
    retention: torch.Tensor
    """``[E, T, L]``: mean of z over units at each step (memory kept)"""
    saturated: torch.Tensor
    """``[E, T, L, 2]``: fraction of units with r, z saturated (either side) at each step"""
    threshold: float = 0.1

    @property
    def mean_update_gate(self) -> torch.Tensor:
        """``[L]``: the mean of z over units and steps."""
        return self.mean[:, 1].mean(-1)

    @property
    def write(self) -> torch.Tensor:
        """``[E, T, L]``: mean of ``1 - z`` over units (how much the candidate overwrites)."""
        return 1 - self.retention


def gate_summary(gates: torch.Tensor, *, threshold: float = 0.1) -> GateSummary:
    """Saturation and retention statistics of recorded GRU gates.

    Args:
        gates: ``[E, T, L, 3, H]`` activations in the order r, z, n (a
            ``[T, L, 3, H]`` single-env trace also works).

    Keyword Args:
        threshold: a sigmoid gate is saturated below ``threshold`` or above
            ``1 - threshold`` (Karpathy et al. use 0.1).

    Examples:
        >>> g = torch.full((1, 4, 1, 3, 2), 0.5)
        >>> g[0, :, 0, 1, 0] = 1.0                       # unit 0's z: keeps its memory
        >>> s = gate_summary(g)
        >>> s.high[0, 1].tolist(), s.retention[0, :, 0].tolist()
        ([1.0, 0.0], [0.75, 0.75, 0.75, 0.75])
        >>> s.mean_update_gate.tolist(), s.saturated[0, 0, 0].tolist()
        ([0.75], [0.0, 0.5])
    """
    if gates.dim() == 4:
        gates = gates.unsqueeze(0)
    if gates.dim() != 5 or gates.shape[-2] != 3:
        raise AnalysisError(f"gates must have shape [E, T, L, 3, H], got {tuple(gates.shape)}.")
    g = gates.float() if not gates.is_floating_point() else gates
    flat = g.reshape(-1, *g.shape[2:])  # [N, L, 3, H]
    rz = flat[:, :, :2]
    low = (rz < threshold).to(g.dtype)
    high = (rz > 1 - threshold).to(g.dtype)
    rz_t = g[..., :2, :]
    sat_t = ((rz_t < threshold) | (rz_t > 1 - threshold)).to(g.dtype).mean(-1)
    return GateSummary(
        mean=flat.mean(0),
        low=low.mean(0),
        high=high.mean(0),
        retention=g[..., 1, :].mean(-1),
        saturated=sat_t,
        threshold=threshold,
    )
