"""Two runs side by side: what a comparison of two trajectories is (no UI).

A *run* is a trajectory ``[E, T]`` as :func:`workbench.rollout.rollout` returns it (in memory or
memory-mapped); it may come from the current rollout, from a file (:func:`load_run`: a
:func:`~workbench.rollout.save_trajectory` file or a rollout's memmap folder), or from a policy or
checkpoint rolled out on the very same environment, seeds and steps as a reference run
(:func:`rollout_like`).

:func:`compare` aligns two runs on one env index and one layer over their common number of steps,
in one colour unit (a shared ``|h|`` scale for both heatmaps, a shared norm range), and, when both
hidden states have the same size, computes the difference ``h_a - h_b`` per unit and its norm per
step. It finds the first step where the hidden states differ by more than a tolerance, the first
step where the actions differ, and each run's resets, finished episodes and returns. Hidden states
of different sizes cannot be subtracted: the comparison says so (:attr:`Comparison.message`) and
keeps the per-step norms of both, to be drawn side by side.

Examples:
    >>> a = toy_run([[0.0, 0.5], [0.1, 0.5], [0.2, 0.4]])
    >>> b = toy_run([[0.0, 0.5], [0.1, 0.5], [0.2, 0.9]], actions=[0, 1, 1])
    >>> c = compare(a, b, labels=("A", "B"))
    >>> c.steps, c.same_size, c.first_divergence, c.first_action_difference
    (3, True, 2, 1)
    >>> c.distance.round(3).tolist(), c.zmax
    ([0.0, 0.0, 0.5], 1.0)
    >>> compare(a, toy_run([[0.0, 0.5, 0.1]] * 3)).message
    'The hidden states have different sizes (A: 2 units, B: 3 units): no difference h_a − h_b; the per-step norms ‖h‖ are shown side by side instead.'
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

from .episodes import as_bool_init, reset_counts
from .errors import ConfigError
from .jobs import CancelToken, Progress
from .keys import KEYS

__all__ = ["Comparison", "RunSummary", "compare", "load_run", "rollout_like", "run_label", "toy_run",
           "DEFAULT_TOLERANCE"]

DEFAULT_TOLERANCE = 1e-5
"""two hidden states *diverge* at the first step where some unit differs by more than this"""

_NEEDED = (KEYS.next_hidden, KEYS.is_init)


@dataclass
class RunSummary:
    """The numbers of one run over the compared steps (one env)."""

    label: str
    steps: int
    """the run's own number of steps (the comparison uses the common number)"""
    hidden_size: int
    layers: int
    resets: int
    """steps after the first where ``is_init`` is set (episodes that restarted inside the compared steps)"""
    finished: int
    """episodes that ended (``done``) inside the compared steps"""
    mean_return: float
    """mean return of those finished episodes (NaN when none finished)"""
    total_reward: float
    """sum of the rewards over the compared steps"""

    def row(self) -> list[str]:
        """The summary table's cells (text)."""
        ret = "–" if math.isnan(self.mean_return) else f"{self.mean_return:.2f}"
        return [self.label, f"{self.steps:,}", str(self.hidden_size), str(self.resets), str(self.finished), ret,
                f"{self.total_reward:.2f}"]


@dataclass
class Comparison:
    """Two runs aligned on one env and layer over their common steps (see :func:`compare`)."""

    env: int
    layer: int
    steps: int
    """the common number of steps ``T``"""
    a: RunSummary
    b: RunSummary
    hidden_a: np.ndarray
    """``[T, H_a]`` hidden state of run A after each step (``KEYS.next_hidden``)"""
    hidden_b: np.ndarray
    norm_a: np.ndarray
    """``[T]`` ``‖h_a‖₂`` per step"""
    norm_b: np.ndarray
    resets_a: np.ndarray
    """steps ``t > 0`` where run A resets (``is_init``)"""
    resets_b: np.ndarray
    zmax: float
    """the one colour scale of both heatmaps: ``±zmax`` (``max(1, max |h|)`` over both runs)"""
    norm_range: tuple[float, float]
    """the one y range of both norm rows"""
    tolerance: float
    diff: np.ndarray | None = None
    """``[T, H]`` ``h_a - h_b`` (``None`` when the sizes differ)"""
    distance: np.ndarray | None = None
    """``[T]`` ``‖h_a - h_b‖₂`` per step (``None`` when the sizes differ)"""
    max_abs_diff: float | None = None
    first_divergence: int | None = None
    """the first step where ``max |h_a - h_b| > tolerance`` (``None``: never, or sizes differ)"""
    first_action_difference: int | None = None
    """the first step where the actions differ (``None``: never, or no actions to compare)"""
    message: str = ""
    """what the comparison could not do (different hidden sizes, different lengths), in plain words"""
    notes: list[str] = field(default_factory=list)

    @property
    def same_size(self) -> bool:
        """Whether the hidden states have the same size (a difference exists)."""
        return self.diff is not None

    def describe(self) -> str:
        """One paragraph: where the runs part, in plain words.

        Examples:
            >>> a = toy_run([[0.0], [0.3]])
            >>> compare(a, a, labels=("run", "again")).describe()
            'env 0 · layer 0 · 2 steps: the hidden states never differ by more than 1e-05 (max |h_a − h_b| = 0); the actions never differ.'
        """
        head = f"env {self.env} · layer {self.layer} · {self.steps:,} steps: "
        if self.same_size:
            if self.first_divergence is None:
                h = (f"the hidden states never differ by more than {self.tolerance:g} "
                     f"(max |h_a − h_b| = {self.max_abs_diff:.3g})")
            else:
                h = (f"the hidden states first differ by more than {self.tolerance:g} at step "
                     f"{self.first_divergence} (max |h_a − h_b| = {self.max_abs_diff:.3g})")
        else:
            h = f"hidden sizes differ ({self.a.hidden_size} vs {self.b.hidden_size} units)"
        if self.first_action_difference is None:
            act = "the actions never differ" if self._has_actions else "no actions to compare"
        else:
            act = f"the actions first differ at step {self.first_action_difference}"
        return head + h + "; " + act + "."

    _has_actions: bool = True


def toy_run(hidden: Sequence[Sequence[float]], *, actions: Sequence[int] | None = None,
            resets: Sequence[int] = (0,), rewards: Sequence[float] | None = None) -> TensorDict:
    """A one-env, one-layer trajectory ``[1, T]`` with the entries :func:`compare` reads (for examples and tests).

    Examples:
        >>> toy_run([[0.0, 1.0], [0.5, 0.5]]).get(KEYS.next_hidden).shape
        torch.Size([1, 2, 1, 2])
    """
    h = torch.as_tensor(hidden, dtype=torch.float32)
    t = h.shape[0]
    is_init = torch.zeros(1, t, 1, dtype=torch.bool)
    is_init[0, list(resets), 0] = True
    done = torch.zeros(1, t, 1, dtype=torch.bool)
    for r in resets:
        if r > 0:
            done[0, r - 1, 0] = True
    return TensorDict({
        KEYS.next_hidden: h.reshape(1, t, 1, -1),
        KEYS.is_init: is_init,
        KEYS.action: torch.as_tensor(actions if actions is not None else [0] * t).reshape(1, t),
        KEYS.reward: torch.as_tensor(rewards if rewards is not None else [1.0] * t, dtype=torch.float32).reshape(1, t, 1),
        KEYS.done: done,
    }, batch_size=[1, t])


def run_label(trajectory: TensorDictBase, fallback: str = "run") -> str:
    """A short label from a trajectory's metadata: the policy's size and cell, and its checkpoint's file name.

    Examples:
        >>> run_label(toy_run([[0.0]]), "A")
        'A'
    """
    from .rollout import trajectory_metadata

    meta = trajectory_metadata(trajectory)
    policy = meta.get("policy") or {}
    parts = []
    module = meta.get("module") or {}
    if policy.get("hidden_size") is not None:
        python = module.get("python_based", policy.get("python_based"))  # the cell that ran (make_python_based)
        cell = "Python cell" if python else "nn.GRU"
        parts.append(f"GRU {policy['hidden_size']} ({cell})")
    checkpoint = meta.get("checkpoint") or {}
    if isinstance(checkpoint, dict) and checkpoint.get("path"):
        parts.append(Path(str(checkpoint["path"])).name)
    return " · ".join(parts) or fallback


def _check_run(td: Any, name: str) -> None:
    if not isinstance(td, TensorDictBase):
        raise ConfigError(f"compare: '{name}' must be a trajectory TensorDict [envs, T] (what workbench.rollout."
                          f"rollout returns); got {type(td).__name__}.")
    if td.batch_dims != 2:
        raise ConfigError(f"compare: '{name}' must have batch size [envs, T]; got {list(td.batch_size)}.")
    keys = set(td.keys(True))
    missing = [k for k in _NEEDED if k not in keys]
    if missing:
        raise ConfigError(f"compare: '{name}' lacks the entries {missing} (a trajectory from workbench.rollout."
                          f"rollout has them); got the keys {sorted(map(str, keys))[:8]}.")
    h = td.get(KEYS.next_hidden)
    if h.dim() != 4:
        raise ConfigError(f"compare: '{name}'[{KEYS.next_hidden!r}] must have shape [envs, T, layers, hidden]; "
                          f"got {list(h.shape)}.")
    if td.batch_size[1] < 1:
        raise ConfigError(f"compare: '{name}' must hold at least 1 step; got batch size {list(td.batch_size)}.")


def _index(value: Any, count: int, name: str, what: str) -> int:
    """``value`` as an index into ``count`` items (negative from the end), or a ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"compare: '{name}' must be an int; got {value!r}.")
    if not -count <= value < count:
        raise ConfigError(f"compare: '{name}' must be in 0..{count - 1} ({what}); got {value}.")
    return int(value) % count


def _summary(td: TensorDictBase, e: int, layer: int, steps: int, label: str) -> RunSummary:
    h = td.get(KEYS.next_hidden)
    init = as_bool_init(torch.as_tensor(td.get(KEYS.is_init)[e:e + 1, :steps]).cpu())[0]
    keys = set(td.keys(True))
    finished, mean_return, total = 0, math.nan, math.nan
    if KEYS.reward in keys:
        reward = torch.as_tensor(td.get(KEYS.reward)[e, :steps]).reshape(steps).double()
        total = float(reward.sum())
        if KEYS.done in keys:
            done = torch.as_tensor(td.get(KEYS.done)[e, :steps]).reshape(steps).bool()
            finished = int(done.sum())
            if finished:
                episode = torch.cumsum(torch.cat([torch.zeros(1, dtype=torch.long), done[:-1].long()]), 0)
                sums = torch.zeros(int(episode[-1]) + 1, dtype=torch.float64).scatter_add_(0, episode, reward)
                mean_return = float(sums[:finished].mean())
    return RunSummary(label=label, steps=int(td.batch_size[1]), hidden_size=int(h.shape[-1]), layers=int(h.shape[-2]),
                      resets=reset_counts(init[None]).resets, finished=finished, mean_return=mean_return, total_reward=total)


def _hidden(td: TensorDictBase, e: int, layer: int, steps: int) -> np.ndarray:
    h = torch.as_tensor(td.get(KEYS.next_hidden)[e, :steps, layer]).detach().cpu()
    return (h.float() if h.dtype in (torch.float16, torch.bfloat16) else h).numpy()


def _actions_differ(a: TensorDictBase, b: TensorDictBase, e: int, steps: int, tolerance: float) -> int | None:
    """The first step where the actions of env ``e`` differ (exactly for integers, by ``tolerance`` for floats)."""
    xa = torch.as_tensor(a.get(KEYS.action)[e, :steps]).cpu()
    xb = torch.as_tensor(b.get(KEYS.action)[e, :steps]).cpu()
    if xa.shape != xb.shape:
        return 0
    if xa.is_floating_point() or xb.is_floating_point():
        bad = (xa.double() - xb.double()).abs().reshape(steps, -1).amax(-1) > tolerance
    else:
        bad = (xa != xb).reshape(steps, -1).any(-1)
    hit = torch.nonzero(bad).flatten()
    return int(hit[0]) if hit.numel() else None


def compare(a: TensorDictBase, b: TensorDictBase, *, env: int = 0, layer: int = -1,
            tolerance: float = DEFAULT_TOLERANCE, labels: tuple[str, str] = ("A", "B")) -> Comparison:
    """Aligns runs ``a`` and ``b`` on env ``env`` and layer ``layer`` over their common steps.

    Args:
        a, b: trajectories ``[envs, T]`` (:func:`workbench.rollout.rollout`; memory-mapped ones too) with
            ``KEYS.next_hidden`` ``[envs, T, layers, hidden]`` and ``KEYS.is_init``. Their numbers of envs,
            steps and hidden units may differ.

    Keyword Args:
        env: the env index (in both runs).
        layer: the layer (in both runs; negative counts from the last).
        tolerance: hidden states *diverge* where some unit differs by more than this.
        labels: what the runs are called in messages and tables.

    Returns:
        A :class:`Comparison`: both hidden states and norms in one colour unit, the difference and
        its norm per step when the sizes match, the first divergence, the first action difference,
        each run's :class:`RunSummary`.

    Raises:
        ConfigError: an argument that is not a trajectory ``[envs, T]``, an ``env`` or ``layer``
            outside one of the runs, a negative ``tolerance``.

    Examples:
        >>> compare(toy_run([[0.0]]), toy_run([[0.0]]), env=2)
        Traceback (most recent call last):
        ...
        workbench.errors.ConfigError: compare: 'env' must be in 0..0 (run A has 1 env(s)); got 2.
        >>> compare(toy_run([[0.0]]), TensorDict({}, [3]))
        Traceback (most recent call last):
        ...
        workbench.errors.ConfigError: compare: 'b' must have batch size [envs, T]; got [3].
    """
    _check_run(a, "a")
    _check_run(b, "b")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance >= 0:
        raise ConfigError(f"compare: 'tolerance' must be a number >= 0; got {tolerance!r}.")
    if len(labels) != 2:
        raise ConfigError(f"compare: 'labels' must be two names (A, B); got {labels!r}.")
    la, lb = (str(x) for x in labels)
    e_a = _index(env, a.batch_size[0], "env", f"run {la} has {a.batch_size[0]} env(s)")
    e_b = _index(env, b.batch_size[0], "env", f"run {lb} has {b.batch_size[0]} env(s)")
    n_a, n_b = a.get(KEYS.next_hidden).shape[-2], b.get(KEYS.next_hidden).shape[-2]
    l_a = _index(layer, n_a, "layer", f"run {la} has {n_a} layer(s)")
    l_b = _index(layer, n_b, "layer", f"run {lb} has {n_b} layer(s)")
    t = int(min(a.batch_size[1], b.batch_size[1]))
    ha, hb = _hidden(a, e_a, l_a, t), _hidden(b, e_b, l_b, t)
    na = np.linalg.norm(ha.astype(np.float64), axis=-1)
    nb = np.linalg.norm(hb.astype(np.float64), axis=-1)
    top = max(float(np.nanmax(np.abs(ha))) if ha.size else 0.0, float(np.nanmax(np.abs(hb))) if hb.size else 0.0)
    peak = max(float(np.nanmax(na)) if na.size else 0.0, float(np.nanmax(nb)) if nb.size else 0.0)

    def resets(td, e):
        init = as_bool_init(torch.as_tensor(td.get(KEYS.is_init)[e:e + 1, :t]).cpu())[0]
        return torch.nonzero(init[1:]).flatten().numpy() + 1

    out = Comparison(env=e_a, layer=l_a, steps=t, a=_summary(a, e_a, l_a, t, la), b=_summary(b, e_b, l_b, t, lb),
                     hidden_a=ha, hidden_b=hb, norm_a=na, norm_b=nb, resets_a=resets(a, e_a), resets_b=resets(b, e_b),
                     zmax=max(1.0, top), norm_range=(0.0, peak * 1.05 or 1.0), tolerance=float(tolerance))
    if a.batch_size[1] != b.batch_size[1]:
        out.notes.append(f"The runs have different lengths ({la}: {a.batch_size[1]:,} steps, {lb}: "
                         f"{b.batch_size[1]:,} steps): the first {t:,} steps are compared.")
    if ha.shape[-1] == hb.shape[-1]:
        diff = ha.astype(np.float64) - hb.astype(np.float64)
        out.diff = diff.astype(np.float32)
        out.distance = np.linalg.norm(diff, axis=-1)
        worst = np.abs(diff).max(axis=-1) if diff.size else np.zeros(t)
        out.max_abs_diff = float(worst.max()) if worst.size else 0.0
        hit = np.flatnonzero(worst > tolerance)
        out.first_divergence = int(hit[0]) if hit.size else None
    else:
        out.message = (f"The hidden states have different sizes ({la}: {ha.shape[-1]} units, {lb}: {hb.shape[-1]} "
                       f"units): no difference h_a − h_b; the per-step norms ‖h‖ are shown side by side instead.")
    if KEYS.action in a.keys(True) and KEYS.action in b.keys(True):
        out.first_action_difference = _actions_differ(a, b, e_a, t, tolerance)
    else:
        out._has_actions = False
    return out


def load_run(path: str | os.PathLike) -> TensorDictBase:
    """A trajectory file (:func:`~workbench.rollout.save_trajectory`, e.g. a session export's ``trajectory.pt``)
    or a rollout's memmap folder, checked for what :func:`compare` needs.

    Raises:
        ConfigError: an empty path, or a trajectory that :func:`compare` cannot use.
        CheckpointError: a file that is not a readable trajectory (from
            :func:`~workbench.rollout.load_trajectory`).

    Examples:
        >>> load_run("  ")
        Traceback (most recent call last):
        ...
        workbench.errors.ConfigError: load_run: 'path' must name a trajectory file or a rollout's memmap folder; got '  '.
    """
    from .rollout import load_trajectory

    if not str(path).strip():
        raise ConfigError(f"load_run: 'path' must name a trajectory file or a rollout's memmap folder; got {str(path)!r}.")
    p = Path(str(path).strip()).expanduser()
    if not p.exists():
        raise ConfigError(f"load_run: 'path' must name an existing trajectory file or memmap folder; got {str(p)!r} "
                          f"(no such file or folder).")
    td = load_trajectory(p)
    _check_run(td, "path")
    return td


def rollout_like(source: Any, reference: TensorDictBase, *, device: str | torch.device | None = None,
                 cancel: CancelToken | None = None, on_progress: Progress | None = None) -> TensorDictBase:
    """Rolls ``source`` out exactly as ``reference`` was: the same environment (spec, envs, seeds), steps,
    rollout seed and greedy/sampled actions, read from the reference's metadata
    (:func:`~workbench.rollout.trajectory_metadata`).

    The same policy gives the same trajectory bit for bit (on the same device); another policy sees the
    same first observations and environment seeds, so where the two part is the policies' doing.

    Args:
        source: a checkpoint path (:func:`~workbench.checkpoints.save_checkpoint`) or a policy from
            :func:`~workbench.policy.build_policy` / :func:`~workbench.checkpoints.load_checkpoint`.
        reference: the trajectory to reproduce the conditions of.

    Keyword Args:
        device: where the policy runs; default the reference's device when this machine has it, else ``"cpu"``.
        cancel, on_progress: the cancellation contract (:mod:`workbench.jobs`); a cancelled rollout raises
            :class:`~workbench.errors.Cancelled` with the steps it finished as ``partial``.

    Raises:
        ConfigError: a reference without the metadata needed (environment, seed, steps), an empty path.
        CheckpointError: a file that is not a readable checkpoint.
        EnvMismatchError: a policy that does not fit the reference's environment.

    Examples:
        >>> from workbench.envs import EnvSpec
        >>> from workbench.policy import PolicySpec
        >>> from workbench.session import Session
        >>> with Session(EnvSpec("CartPole-v1", num_envs=2, seed=1), PolicySpec(hidden_size=4), device="cpu") as s:
        ...     ref = s.rollout(12, seed=1, progress=False)
        >>> again = rollout_like(s.policy, ref)
        >>> again.batch_size, compare(ref, again).first_divergence is None
        (torch.Size([2, 12]), True)
    """
    from .checkpoints import checkpoint_of
    from .envs import EnvSpec
    from .rollout import trajectory_metadata
    from .session import Session

    if not isinstance(reference, TensorDictBase):
        raise ConfigError(f"rollout_like: 'reference' must be a trajectory TensorDict; got {type(reference).__name__}.")
    meta = trajectory_metadata(reference)
    env_fields = meta.get("env")
    if not isinstance(env_fields, dict) or "steps" not in meta:
        raise ConfigError(
            "rollout_like: 'reference' must carry the metadata of workbench.rollout.rollout (its environment spec, "
            f"seed and steps) to be reproduced; got metadata with the keys {sorted(meta)}.")
    env_spec = EnvSpec.from_dict(env_fields)
    num_envs = int(meta.get("num_envs") or reference.batch_size[0])
    if env_spec.num_envs != num_envs:
        env_spec = dataclasses.replace(env_spec, num_envs=num_envs)
    steps = int(reference.batch_size[1])
    if device is None:
        device = _usable_device(meta.get("device"))
    if isinstance(source, (str, os.PathLike)):
        if not str(source).strip():
            raise ConfigError("rollout_like: 'source' must be a checkpoint path or a policy; got an empty path.")
        session = Session(env_spec, checkpoint=Path(str(source).strip()).expanduser(), device=device)
    else:
        session = Session.of_policy(env_spec, source, device=device,
                                    checkpoint=(checkpoint_of(source) or {}).get("path"))
    with session:
        return session.rollout(steps, seed=meta.get("seed"), progress=False,
                               deterministic=bool(meta.get("deterministic", False)),
                               metadata={"reproduces": {"steps": steps, "seed": meta.get("seed"),
                                                        "env": env_spec.to_dict()}},
                               cancel=cancel, on_progress=on_progress)


def _usable_device(recorded: Any) -> str:
    """The recorded device when this machine has it (``"cuda:0"`` with CUDA), else ``"cpu"``."""
    if isinstance(recorded, str) and recorded.startswith("cuda") and torch.cuda.is_available():
        return recorded
    return "cpu"
