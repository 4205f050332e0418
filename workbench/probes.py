"""Linear probes: what can be read out of the hidden state, and how soon after a reset.

A ridge regression from features (hidden states, or baselines such as the
observation) to a target, fitted on some episodes and scored on held-out ones,
overall and by steps since reset. :func:`probe_suite` runs the hidden state and
the baselines on one shared split; :func:`workbench.figures.probe_figure` draws the result.

Examples:
    >>> is_init = torch.tensor([[1, 0, 0, 1, 0, 0]], dtype=torch.bool)
    >>> previous_step(torch.arange(6.0).view(1, 6), is_init).tolist()
    [[0.0, 0.0, 1.0, 0.0, 3.0, 4.0]]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch
from tensordict import TensorDictBase

from .episodes import as_bool_init, segments
from .errors import AnalysisError
from .hidden import hidden_states
from .keys import KEYS

__all__ = [
    "previous_step",
    "split_episodes",
    "fit_ridge",
    "ProbeResult",
    "linear_probe",
    "probe_suite",
]


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
    init = as_bool_init(is_init, values.shape).to(values.device)
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
    seg = segments(is_init)
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
    init = as_bool_init(is_init, features.shape).to(features.device)
    target = _as_target(target).to(features.device)
    if features.dim() != 3 or tuple(target.shape[:2]) != tuple(features.shape[:2]):
        raise AnalysisError(
            f"features must be [E, T, F] and target [E, T, D] with the same [E, T]; "
            f"got {tuple(features.shape)} and {tuple(target.shape)}."
        )
    if test is None:
        test = split_episodes(init, test_fraction=test_fraction, seed=seed)
    test = test.to(device=features.device, dtype=torch.bool)
    seg = segments(init)
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
    init = as_bool_init(trajectory.get(KEYS.is_init))
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
