"""Hidden-state analysis on plain tensors: PCA, norms, alignment on resets, gates, probes.

Everything here takes tensors (or a trajectory TensorDict with the entries
named in :data:`workbench.keys.KEYS`) and returns tensors or small
dataclasses of tensors. Nothing here plots; :mod:`workbench.figures` draws the
results. Shapes follow the trajectory layout ``[E, T, ...]`` (envs, time).

Episodes are the segments between ``is_init`` flags: a segment starts at every
step where ``is_init`` is True, and at ``t = 0`` of every env. A segment that
starts at ``t = 0`` without ``is_init`` is *partial* (its steps since reset are
unknown).

Examples:
    >>> is_init = torch.tensor([[1, 0, 0, 1, 0]], dtype=torch.bool)
    >>> steps_since_reset(is_init).tolist()
    [[0, 1, 2, 0, 1]]
    >>> aligned = align_on_resets(torch.arange(5.0).view(1, 5), is_init)
    >>> aligned.values.tolist(), aligned.lengths.tolist()
    ([[0.0, 1.0, 2.0], [3.0, 4.0, nan]], [3, 2])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch
from tensordict import TensorDictBase

from .errors import WorkbenchError
from .keys import KEYS

__all__ = [
    "AnalysisError",
    "hidden_states",
    "PCAResult",
    "pca",
    "hidden_norm",
    "UnitStats",
    "unit_stats",
    "saturated_fraction",
    "episode_segments",
    "steps_since_reset",
    "Aligned",
    "align_on_resets",
    "GateSummary",
    "gate_summary",
    "GATE_NAMES",
    "previous_step",
    "split_episodes",
    "fit_ridge",
    "ProbeResult",
    "linear_probe",
    "probe_suite",
    "select_units",
    "episode_spans",
    "episode_summary",
]

GATE_NAMES = ("r", "z", "n")
"""Order of the gates in a ``gates`` entry (``torch.nn.GRU``'s: reset, update, candidate)."""


class AnalysisError(WorkbenchError, ValueError):
    """Inputs that the analysis cannot use (wrong shape, too few episodes...)."""


# ---------------------------------------------------------------------------- inputs
def _bool_init(is_init: torch.Tensor, shape: Sequence[int] | None = None) -> torch.Tensor:
    """``is_init`` as a bool ``[E, T]`` tensor (accepts ``[E, T, 1]``)."""
    if is_init.dim() == 3 and is_init.shape[-1] == 1:
        is_init = is_init.squeeze(-1)
    if is_init.dim() != 2:
        raise AnalysisError(f"is_init must have shape [E, T] or [E, T, 1], got {tuple(is_init.shape)}.")
    if shape is not None and tuple(is_init.shape) != tuple(shape[:2]):
        raise AnalysisError(
            f"is_init has shape {tuple(is_init.shape)} but the values have leading shape {tuple(shape[:2])}."
        )
    return is_init.to(torch.bool)


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


# ---------------------------------------------------------------------------- episodes and alignment
@dataclass
class _Segments:
    ids: torch.Tensor  # [E, T] segment index
    pos: torch.Tensor  # [E, T] steps since the segment start
    env: torch.Tensor  # [S] env of each segment
    start: torch.Tensor  # [S] start step of each segment
    lengths: torch.Tensor  # [S]
    from_reset: torch.Tensor  # [S] bool: the segment starts with is_init


def _segments(is_init: torch.Tensor) -> _Segments:
    init = _bool_init(is_init)
    e, t = init.shape
    starts = init.clone()
    starts[:, 0] = True
    steps = torch.arange(t, device=init.device).expand(e, t)
    last_start = torch.where(starts, steps, torch.zeros_like(steps)).cummax(dim=1).values
    pos = steps - last_start
    ids = starts.reshape(-1).cumsum(0).reshape(e, t) - 1
    flat = starts.reshape(-1)
    env = torch.arange(e, device=init.device).repeat_interleave(t)[flat]
    start = steps.reshape(-1)[flat]
    lengths = torch.bincount(ids.reshape(-1), minlength=int(flat.sum()))
    return _Segments(ids, pos, env, start, lengths, init.reshape(-1)[flat])


def episode_segments(is_init: torch.Tensor) -> torch.Tensor:
    """A global index of the episode (segment between resets) of every step, ``[E, T]``.

    Indices count segments env by env, in time order, from 0.

    Examples:
        >>> is_init = torch.tensor([[1, 0, 1], [1, 0, 0]], dtype=torch.bool)
        >>> episode_segments(is_init).tolist()
        [[0, 0, 1], [2, 2, 2]]
    """
    return _segments(is_init).ids


def steps_since_reset(is_init: torch.Tensor) -> torch.Tensor:
    """Steps since the last ``is_init`` at every step, ``[E, T]`` (int64; -1 before any reset).

    Examples:
        >>> steps_since_reset(torch.tensor([[0, 0, 1, 0]], dtype=torch.bool)).tolist()
        [[-1, -1, 0, 1]]
    """
    seg = _segments(is_init)
    known = seg.from_reset[seg.ids]
    return torch.where(known, seg.pos, torch.full_like(seg.pos, -1))


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
    init = _bool_init(is_init, values.shape).to(values.device)
    seg = _segments(init)
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


# ---------------------------------------------------------------------------- probes
def previous_step(values: torch.Tensor, is_init: torch.Tensor) -> torch.Tensor:
    """The value one step earlier in the same episode (zeros at each episode start).

    Args:
        values: ``[E, T, ...]``.
        is_init: ``[E, T]`` or ``[E, T, 1]``.

    Examples:
        >>> prev = previous_step(torch.tensor([[1.0, 2.0, 3.0, 4.0]]),
        ...                      torch.tensor([[1, 0, 1, 0]], dtype=torch.bool))
        >>> prev.tolist()
        [[0.0, 1.0, 0.0, 3.0]]
    """
    init = _bool_init(is_init, values.shape).to(values.device)
    prev = torch.zeros_like(values)
    prev[:, 1:] = values[:, :-1]
    fresh = init.clone()
    fresh[:, 0] = True
    prev[fresh] = 0
    return prev


def split_episodes(is_init: torch.Tensor, *, test_fraction: float = 0.25, seed: int = 0) -> torch.Tensor:
    """A held-out mask ``[E, T]`` that keeps whole episodes together.

    A random ``test_fraction`` of the episodes (at least one, and at least one
    left for training) is held out; the same ``seed`` gives the same split.

    Examples:
        >>> is_init = torch.tensor([[1, 0, 1, 0, 1, 0]], dtype=torch.bool)
        >>> test = split_episodes(is_init, test_fraction=0.34)
        >>> test.view(3, 2).all(-1).sum().item(), (test.view(3, 2).any(-1) == test.view(3, 2).all(-1)).all().item()
        (1, True)
    """
    if not 0 < test_fraction < 1:
        raise AnalysisError(f"test_fraction must be in (0, 1), got {test_fraction}.")
    seg = _segments(is_init)
    n = seg.lengths.numel()
    if n < 2:
        raise AnalysisError(
            f"a held-out split by episode needs at least 2 episodes, got {n}; roll out more envs or steps."
        )
    n_test = min(max(1, round(test_fraction * n)), n - 1)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=gen)
    held = torch.zeros(n, dtype=torch.bool)
    held[order[:n_test]] = True
    return held.to(seg.ids.device)[seg.ids]


def fit_ridge(x: torch.Tensor, y: torch.Tensor, *, alpha: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form ridge regression ``y ≈ x @ W + b`` (features standardised internally).

    Args:
        x: ``[N, F]`` features.
        y: ``[N, D]`` targets.

    Keyword Args:
        alpha: L2 penalty on the standardised weights (the intercept is not penalised).

    Returns:
        ``(W [F, D], b [D])`` in the original units of ``x`` (float64).

    Examples:
        >>> x = torch.randn(100, 3, generator=torch.Generator().manual_seed(0))
        >>> y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 3
        >>> w, b = fit_ridge(x, y, alpha=1e-6)
        >>> [round(v, 3) for v in w.squeeze(-1).tolist()], round(b.item(), 3)
        ([1.0, -2.0, 0.5], 3.0)
    """
    x = x.to(torch.float64)
    y = y.to(torch.float64)
    mx, my = x.mean(0), y.mean(0)
    sx = x.std(0, correction=0).clamp_min(1e-12)
    xs = (x - mx) / sx
    gram = xs.T @ xs + alpha * torch.eye(x.shape[1], dtype=torch.float64, device=x.device)
    ws = torch.linalg.solve(gram, xs.T @ (y - my))
    w = ws / sx[:, None]
    return w, my - mx @ w


def _r2(y: torch.Tensor, pred: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Per-target R² against a given mean (``[N, D] -> [D]``)."""
    ss_res = ((y - pred) ** 2).sum(0)
    ss_tot = ((y - mean) ** 2).sum(0)
    return torch.where(ss_tot > 0, 1 - ss_res / ss_tot.clamp_min(1e-300), torch.full_like(ss_res, math.nan))


@dataclass
class ProbeResult:
    """A linear probe's held-out fit, overall and by steps since reset."""

    name: str
    """what the features were (``"hidden"``, ``"observation"``...)"""
    r2: float
    """held-out R², averaged over targets"""
    r2_per_target: torch.Tensor
    """``[D]``: held-out R² of each target"""
    curve: torch.Tensor
    """``[S]``: held-out R² at each step since reset, ``1 - MSE_s / Var`` with the
    held-out variance of the whole split as denominator (NaN where fewer than
    ``min_count`` samples)"""
    count: torch.Tensor
    """``[S]``: held-out samples at each step since reset"""
    weights: torch.Tensor = field(repr=False)
    """``[F, D]``: the probe's weights"""
    bias: torch.Tensor = field(repr=False)
    """``[D]``: the probe's intercept"""
    alpha: float = 1.0
    train_samples: int = 0
    test_samples: int = 0
    test_episodes: int = 0

    @property
    def steps(self) -> torch.Tensor:
        """``[S]``: the steps since reset of ``curve``."""
        return torch.arange(self.curve.shape[0])

    def r2_after(self, steps: int) -> float:
        """Held-out R² pooled over the samples at least ``steps`` steps since their reset.

        The curve's points weighted by their sample counts, so it is the R² of
        those samples together (same held-out variance as :attr:`curve`).
        NaN when no held-out sample is that far into an episode.

        Examples:
            >>> r = ProbeResult("hidden", 0.5, torch.tensor([0.5]), torch.tensor([0.0, 0.8, 0.95]),
            ...                 torch.tensor([10, 10, 30]), torch.zeros(1, 1), torch.zeros(1))
            >>> round(r.r2_after(1), 4), round(r.r2_after(2), 4), r.r2_after(3)
            (0.9125, 0.95, nan)
        """
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"r2_after: 'steps' must be an int >= 0; got {steps!r}.")
        curve, count = self.curve[steps:].double(), self.count[steps:].double()
        ok = ~torch.isnan(curve) & (count > 0)
        if not bool(ok.any()):
            return math.nan
        return float((curve[ok] * count[ok]).sum() / count[ok].sum())


def _as_target(target: torch.Tensor) -> torch.Tensor:
    return target.unsqueeze(-1) if target.dim() == 2 else target


def linear_probe(
    features: torch.Tensor,
    target: torch.Tensor,
    is_init: torch.Tensor,
    *,
    name: str = "hidden",
    alpha: float = 1.0,
    test: torch.Tensor | None = None,
    test_fraction: float = 0.25,
    seed: int = 0,
    max_steps: int | None = None,
    min_count: int = 2,
) -> ProbeResult:
    """Fits a ridge probe from features to a target on training episodes, scores it on held-out ones.

    Args:
        features: ``[E, T, F]`` (e.g. hidden states after each step).
        target: ``[E, T, D]`` or ``[E, T]`` (e.g. the hidden velocity).
        is_init: ``[E, T]`` or ``[E, T, 1]`` episode starts.

    Keyword Args:
        name: a label for the result.
        alpha: ridge penalty on standardised features.
        test: a held-out mask ``[E, T]`` (from :func:`split_episodes`);
            default: a fresh split with ``test_fraction`` and ``seed``.
        max_steps: length of the R² curve (default: the longest held-out episode).
        min_count: the curve is NaN where fewer held-out samples exist.

    Returns:
        A :class:`ProbeResult`.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> feats = torch.randn(4, 30, 5, generator=g)
        >>> is_init = torch.zeros(4, 30, dtype=torch.bool); is_init[:, ::10] = True
        >>> res = linear_probe(feats, feats[..., :2].sum(-1), is_init, alpha=1e-6)
        >>> round(res.r2, 4), res.curve.shape, res.test_episodes
        (1.0, torch.Size([10]), 3)
    """
    init = _bool_init(is_init, features.shape).to(features.device)
    target = _as_target(target).to(features.device)
    if features.dim() != 3 or tuple(target.shape[:2]) != tuple(features.shape[:2]):
        raise AnalysisError(
            f"features must be [E, T, F] and target [E, T, D] with the same [E, T]; "
            f"got {tuple(features.shape)} and {tuple(target.shape)}."
        )
    if test is None:
        test = split_episodes(init, test_fraction=test_fraction, seed=seed)
    test = test.to(device=features.device, dtype=torch.bool)
    seg = _segments(init)
    x = features.reshape(-1, features.shape[-1]).to(torch.float64)
    y = target.reshape(-1, target.shape[-1]).to(torch.float64)
    finite = torch.isfinite(x).all(-1) & torch.isfinite(y).all(-1)
    held = test.reshape(-1) & finite
    train = ~test.reshape(-1) & finite
    if int(train.sum()) < 2 or int(held.sum()) < 1:
        raise AnalysisError(
            f"probe {name!r}: {int(train.sum())} training and {int(held.sum())} held-out samples; need more data."
        )
    w, b = fit_ridge(x[train], y[train], alpha=alpha)
    pred = x @ w + b
    y_test, p_test = y[held], pred[held]
    mean = y_test.mean(0)
    per_target = _r2(y_test, p_test, mean)
    # curve: MSE at each step since reset over the held-out variance
    known = seg.from_reset[seg.ids].reshape(-1)
    pos = seg.pos.reshape(-1)
    use = held & known
    longest = int(pos[use].max()) + 1 if bool(use.any()) else 0
    width = longest if max_steps is None else int(max_steps)
    use = use & (pos < width)
    count = torch.bincount(pos[use], minlength=width)[:width]
    sq = ((y - pred) ** 2)[use]
    sse = torch.zeros(width, y.shape[-1], dtype=torch.float64, device=y.device).index_add_(0, pos[use], sq)
    var = ((y_test - mean) ** 2).mean(0)
    mse = sse / count.clamp_min(1)[:, None]
    curve_t = 1 - mse / var.clamp_min(1e-300)
    curve_t = torch.where(var > 0, curve_t, torch.full_like(curve_t, math.nan))
    curve = curve_t.mean(-1)
    curve[count < max(min_count, 1)] = math.nan
    return ProbeResult(
        name=name,
        r2=float(per_target.nanmean()),
        r2_per_target=per_target,
        curve=curve,
        count=count,
        weights=w,
        bias=b,
        alpha=alpha,
        train_samples=int(train.sum()),
        test_samples=int(held.sum()),
        test_episodes=int(torch.unique(seg.ids.reshape(-1)[held]).numel()),
    )


def probe_suite(
    trajectory: TensorDictBase,
    target: torch.Tensor | int | Sequence[int],
    *,
    layer: int = -1,
    extra: Mapping[str, torch.Tensor] | None = None,
    baselines: bool = True,
    alpha: float = 1.0,
    test_fraction: float = 0.25,
    seed: int = 0,
    max_steps: int | None = None,
    min_count: int = 2,
) -> dict[str, ProbeResult]:
    """Probes a target from the hidden state and from the baselines, on one shared episode split.

    Feature sets: ``"hidden"`` (``KEYS.next_hidden`` of one layer, the state
    after reading ``o_t``), and with ``baselines``: ``"observation"`` (``o_t``)
    and ``"obs+prev"`` (``[o_t, o_{t-1}]``, zeros before the episode start:
    one step of memory is enough for a finite-difference velocity), plus each
    ``extra`` feature set (e.g. an untrained GRU's hidden states, ``[E, T, F]``
    or ``[E, T, L, H]``).

    Args:
        trajectory: ``[E, T]`` TensorDict with ``KEYS.next_hidden``,
            ``KEYS.is_init``, ``KEYS.observation`` and, for an index target,
            ``KEYS.true_state``.
        target: a tensor ``[E, T(, D)]``, or indices into ``true_state``'s
            last dimension (e.g. ``(1, 3)`` for CartPole's ẋ and θ̇).

    Keyword Args:
        layer: the hidden layer to probe (also used for ``[E, T, L, H]`` extras).
        extra: more named feature sets.
        baselines: add the observation and ``[o_t, o_{t-1}]`` probes.
        alpha, test_fraction, seed, max_steps, min_count: as :func:`linear_probe`.

    Returns:
        ``{name: ProbeResult}`` in the order hidden, observation, obs+prev, extras.

    Examples:
        >>> from tensordict import TensorDict
        >>> g = torch.Generator().manual_seed(0)
        >>> E, T = 4, 20
        >>> pos = torch.randn(E, T, generator=g).cumsum(1)
        >>> is_init = torch.zeros(E, T, 1, dtype=torch.bool); is_init[:, ::5] = True
        >>> vel = pos - previous_step(pos, is_init)               # what o_t alone cannot give
        >>> td = TensorDict({KEYS.observation: pos[..., None], KEYS.is_init: is_init,
        ...                  KEYS.true_state: torch.stack([pos, vel], -1),
        ...                  KEYS.next_hidden: torch.stack([pos, vel], -1)[:, :, None]}, [E, T])
        >>> res = probe_suite(td, target=1, alpha=1e-6)
        >>> list(res), round(res["hidden"].r2, 3), round(res["obs+prev"].r2, 3)
        (['hidden', 'observation', 'obs+prev'], 1.0, 1.0)
    """
    init = _bool_init(trajectory.get(KEYS.is_init))
    if isinstance(target, torch.Tensor):
        y = target
    else:
        idx = [target] if isinstance(target, int) else list(target)
        y = trajectory.get(KEYS.true_state)[..., idx]
    test = split_episodes(init, test_fraction=test_fraction, seed=seed)
    feature_sets: dict[str, torch.Tensor] = {"hidden": hidden_states(trajectory, layer=layer)}
    if baselines:
        obs = trajectory.get(KEYS.observation)
        obs = obs.reshape(*obs.shape[:2], -1)
        feature_sets["observation"] = obs
        feature_sets["obs+prev"] = torch.cat([obs, previous_step(obs, init)], -1)
    for name, feats in (extra or {}).items():
        if name in feature_sets:
            raise AnalysisError(f"extra feature set {name!r} clashes with a built-in one ({list(feature_sets)}).")
        feats = feats[..., layer, :] if feats.dim() == 4 else feats
        feature_sets[name] = feats
    return {
        name: linear_probe(feats.to(torch.float64), y, init, name=name, alpha=alpha, test=test,
                           max_steps=max_steps, min_count=min_count)
        for name, feats in feature_sets.items()
    }


# ---------------------------------------------------------------------------- selection and episodes
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


def episode_spans(episode: torch.Tensor) -> list[tuple[int, int, int]]:
    """``(episode, first step, last step)`` of each episode in one env's ``[T]`` episode indices.

    Examples:
        >>> episode_spans(torch.tensor([0, 0, 0, 1, 1, 2]))
        [(0, 0, 2), (1, 3, 4), (2, 5, 5)]
    """
    ids, counts = torch.unique_consecutive(episode.reshape(-1), return_counts=True)
    ends = counts.cumsum(0) - 1
    return [(int(i), int(e - c + 1), int(e)) for i, c, e in zip(ids, counts, ends)]


def episode_summary(trajectory) -> list[dict]:
    """Per env: finished episodes, their mean / best return and mean length, and the steps of the open one.

    Examples:
        >>> from tensordict import TensorDict
        >>> done = torch.tensor([[0, 1, 0, 0, 1, 0]], dtype=torch.bool).unsqueeze(-1)
        >>> td = TensorDict({"episode": torch.tensor([[0, 0, 1, 1, 1, 2]]), ("next", "done"): done,
        ...                  ("next", "reward"): torch.ones(1, 6, 1)}, [1, 6])
        >>> episode_summary(td)
        [{'env': 0, 'finished': 2, 'mean_return': 2.5, 'best_return': 3.0, 'mean_length': 2.5, 'open_steps': 1}]
    """
    e_count, t = trajectory.batch_size[:2]
    episode = trajectory.get(KEYS.episode).reshape(e_count, t)
    reward = trajectory.get(KEYS.reward).reshape(e_count, t).to(torch.float64)
    done = trajectory.get(KEYS.done).reshape(e_count, t)
    rows = []
    for e in range(e_count):
        n = int(episode[e].max()) + 1
        returns = torch.zeros(n, dtype=torch.float64).index_add_(0, episode[e], reward[e])
        lengths = torch.bincount(episode[e], minlength=n)
        finished = torch.unique(episode[e][done[e]])
        open_steps = 0 if bool(done[e, -1]) else int(lengths[int(episode[e, -1])])
        rows.append({
            "env": e,
            "finished": int(finished.numel()),
            "mean_return": float(returns[finished].mean()) if finished.numel() else math.nan,
            "best_return": float(returns[finished].max()) if finished.numel() else math.nan,
            "mean_length": float(lengths[finished].double().mean()) if finished.numel() else math.nan,
            "open_steps": open_steps,
        })
    return rows
