"""Episodes of a trajectory: ``is_init``, segments, steps since reset, returns.

The one place that turns ``is_init`` flags into episodes. A segment starts
at every step where ``is_init`` is True, and at ``t = 0`` of every env. A
segment that starts at ``t = 0`` without ``is_init`` is *partial*: its steps
since reset are unknown (``-1`` in :func:`steps_since_reset`).

Shapes follow the trajectory layout ``[E, T]`` (envs, time); ``is_init`` may
also come as ``[E, T, 1]``, as torchrl's ``InitTracker`` writes it.

Examples:
    >>> is_init = torch.tensor([[1, 0, 0, 1, 0]], dtype=torch.bool)
    >>> episode, step = episode_and_step(is_init)
    >>> episode.tolist(), step.tolist()
    ([[0, 0, 0, 1, 1]], [[0, 1, 2, 0, 1]])
    >>> episode_spans(episode[0])
    [(0, 0, 2), (1, 3, 4)]
    >>> episode_returns(episode, torch.ones(1, 5)).tolist()
    [[3.0, 2.0]]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from tensordict import TensorDictBase

from .errors import AnalysisError
from .keys import KEYS

__all__ = [
    "as_env_time",
    "as_bool_init",
    "trajectory_is_init",
    "Segments",
    "segments",
    "episode_and_step",
    "episode_segments",
    "steps_since_reset",
    "episode_spans",
    "episode_returns",
    "RunningReturns",
    "episode_summary",
    "ResetCounts",
    "reset_counts",
]


def as_env_time(trajectory: TensorDictBase) -> TensorDictBase:
    """A trajectory with batch size ``[E, T]``: a ``[T]`` one gets a leading env dim of 1.

    Examples:
        >>> from tensordict import TensorDict
        >>> as_env_time(TensorDict({}, [5])).batch_size
        torch.Size([1, 5])
        >>> as_env_time(TensorDict({}, [2, 3, 4]))
        Traceback (most recent call last):
        ...
        ValueError: expected a trajectory with batch size [envs, T] (or [T]); got batch_size=[2, 3, 4].
    """
    if trajectory.batch_dims == 1:
        return trajectory.unsqueeze(0)
    if trajectory.batch_dims != 2:
        raise ValueError(
            f"expected a trajectory with batch size [envs, T] (or [T]); got batch_size={list(trajectory.batch_size)}."
        )
    return trajectory


def as_bool_init(is_init: Tensor, shape: Sequence[int] | None = None) -> Tensor:
    """``is_init`` as a bool ``[E, T]`` tensor; accepts ``[E, T]`` or ``[E, T, 1]``, of any dtype.

    Args:
        is_init: the flags.
        shape: the shape of values they go with; its first two sizes must be ``[E, T]``.

    Raises:
        AnalysisError: another shape.

    Examples:
        >>> as_bool_init(torch.tensor([[[1], [0]]])).tolist()
        [[True, False]]
        >>> as_bool_init(torch.ones(2, 3), shape=(2, 4, 8))
        Traceback (most recent call last):
        ...
        workbench.errors.AnalysisError: is_init has shape (2, 3) but the values have leading shape (2, 4).
    """
    if is_init.dim() == 3 and is_init.shape[-1] == 1:
        is_init = is_init.squeeze(-1)
    if is_init.dim() != 2:
        raise AnalysisError(f"is_init must have shape [E, T] or [E, T, 1], got {tuple(is_init.shape)}.")
    if shape is not None and tuple(is_init.shape) != tuple(shape[:2]):
        raise AnalysisError(
            f"is_init has shape {tuple(is_init.shape)} but the values have leading shape {tuple(shape[:2])}."
        )
    return is_init.to(torch.bool)


def trajectory_is_init(trajectory: TensorDictBase) -> Tensor | None:
    """A trajectory's ``KEYS.is_init`` as a bool tensor of its batch size; None when it has none.

    Examples:
        >>> from tensordict import TensorDict
        >>> td = TensorDict({"is_init": torch.tensor([[[1], [0], [1]]])}, [1, 3])
        >>> trajectory_is_init(td).tolist(), trajectory_is_init(TensorDict({}, [1, 3]))
        ([[True, False, True]], None)
    """
    is_init = trajectory.get(KEYS.is_init, None)
    return None if is_init is None else is_init.reshape(*trajectory.batch_size).to(torch.bool)


@dataclass(frozen=True)
class Segments:
    """The segments (episodes) of ``[E, T]`` steps, from :func:`segments`.

    ``S`` is the number of segments over all envs, counted env by env in time order.
    """

    ids: Tensor
    """``[E, T]`` global segment index of every step"""
    episode: Tensor
    """``[E, T]`` segment index within each env, from 0"""
    pos: Tensor
    """``[E, T]`` steps since the segment started (partial segments count from ``t = 0``)"""
    env: Tensor
    """``[S]`` env of each segment"""
    start: Tensor
    """``[S]`` first step of each segment"""
    lengths: Tensor
    """``[S]`` steps in each segment"""
    from_reset: Tensor
    """``[S]`` bool: the segment starts with ``is_init`` (False: partial)"""


def segments(is_init: Tensor) -> Segments:
    """Cuts ``[E, T]`` (or ``[E, T, 1]``) steps into segments at every ``is_init`` and at ``t = 0``.

    Examples:
        >>> seg = segments(torch.tensor([[0, 0, 1, 0], [1, 0, 0, 0]]))
        >>> seg.ids.tolist(), seg.episode.tolist(), seg.pos.tolist()
        ([[0, 0, 1, 1], [2, 2, 2, 2]], [[0, 0, 1, 1], [0, 0, 0, 0]], [[0, 1, 0, 1], [0, 1, 2, 3]])
        >>> seg.env.tolist(), seg.start.tolist(), seg.lengths.tolist(), seg.from_reset.tolist()
        ([0, 0, 1], [0, 2, 0], [2, 2, 4], [False, True, True])
    """
    init = as_bool_init(is_init)
    e, t = init.shape
    starts = init.clone()
    starts[:, 0] = True
    steps = torch.arange(t, device=init.device).expand(e, t)
    last_start = torch.where(starts, steps, torch.zeros_like(steps)).cummax(dim=1).values
    episode = starts.long().cumsum(1) - 1
    ids = starts.reshape(-1).cumsum(0).reshape(e, t) - 1
    flat = starts.reshape(-1)
    env = torch.arange(e, device=init.device).repeat_interleave(t)[flat]
    lengths = torch.bincount(ids.reshape(-1), minlength=int(flat.sum()))
    return Segments(ids, episode, steps - last_start, env, steps.reshape(-1)[flat], lengths, init.reshape(-1)[flat])


def episode_and_step(is_init: Tensor) -> tuple[Tensor, Tensor]:
    """Episode index within each env and steps since the episode started, both ``[E, T]`` (int64).

    The first step counts as a start even when ``is_init`` is False there
    (what the trajectory keys ``KEYS.episode`` and ``KEYS.step`` hold).

    Examples:
        >>> episode, step = episode_and_step(torch.tensor([[False, False, True, False]]).unsqueeze(-1))
        >>> episode.tolist(), step.tolist()
        ([[0, 0, 1, 1]], [[0, 1, 0, 1]])
    """
    seg = segments(is_init)
    return seg.episode, seg.pos


def episode_segments(is_init: Tensor) -> Tensor:
    """A global index of the episode (segment between resets) of every step, ``[E, T]``.

    Indices count segments env by env, in time order, from 0.

    Examples:
        >>> is_init = torch.tensor([[1, 0, 1], [1, 0, 0]], dtype=torch.bool)
        >>> episode_segments(is_init).tolist()
        [[0, 0, 1], [2, 2, 2]]
    """
    return segments(is_init).ids


def steps_since_reset(is_init: Tensor) -> Tensor:
    """Steps since the last ``is_init`` at every step, ``[E, T]`` (int64; -1 before any reset).

    Examples:
        >>> steps_since_reset(torch.tensor([[0, 0, 1, 0]], dtype=torch.bool)).tolist()
        [[-1, -1, 0, 1]]
    """
    seg = segments(is_init)
    known = seg.from_reset[seg.ids]
    return torch.where(known, seg.pos, torch.full_like(seg.pos, -1))


def episode_spans(episode: Tensor) -> list[tuple[int, int, int]]:
    """``(episode, first step, last step)`` of each episode in one env's ``[T]`` episode indices.

    Examples:
        >>> episode_spans(torch.tensor([0, 0, 0, 1, 1, 2]))
        [(0, 0, 2), (1, 3, 4), (2, 5, 5)]
    """
    ids, counts = torch.unique_consecutive(episode.reshape(-1), return_counts=True)
    ends = counts.cumsum(0) - 1
    return [(int(i), int(e - c + 1), int(e)) for i, c, e in zip(ids, counts, ends)]


def episode_returns(episode: Tensor, reward: Tensor) -> Tensor:
    """The summed reward of every episode of every env, ``[E, N]`` (float64).

    ``N`` is one more than the largest episode index; an env with fewer
    episodes is padded with NaN. Open (unfinished) episodes are included: pick
    the finished ones with ``KEYS.done``.

    Args:
        episode: ``[E, T]`` episode index within each env (``KEYS.episode``).
        reward: ``[E, T]`` or ``[E, T, 1]`` (``KEYS.reward``).

    Examples:
        >>> episode = torch.tensor([[0, 0, 1, 1, 1], [0, 0, 0, 0, 0]])
        >>> episode_returns(episode, torch.arange(10.0).view(2, 5, 1)).tolist()
        [[1.0, 9.0], [35.0, nan]]
    """
    e, t = episode.shape[:2]
    episode = episode.reshape(e, t).long()
    reward = reward.reshape(e, t).to(torch.float64)
    n = int(episode.max()) + 1 if episode.numel() else 0
    returns = torch.zeros(e, n, dtype=torch.float64, device=reward.device)
    returns.scatter_add_(1, episode.to(reward.device), reward)
    count = torch.zeros(e, n, dtype=torch.long, device=reward.device)
    count.scatter_add_(1, episode.to(reward.device), torch.ones_like(episode, device=reward.device))
    return returns.masked_fill(count == 0, math.nan)


class RunningReturns:
    """Returns of episodes that run over several calls (batches or steps), one running sum per env.

    Examples:
        >>> returns = RunningReturns(2)
        >>> returns.update(torch.ones(2, 3), torch.tensor([[False, True, False], [False, False, False]]))
        [(0, 2.0)]
        >>> returns.update(torch.ones(2), torch.tensor([True, True]))  # one step of each env
        [(0, 2.0), (1, 4.0)]
    """

    def __init__(self, num_envs: int):
        self.running = [0.0] * num_envs
        """the returns of the episodes in progress, per env"""

    def update(self, reward: Tensor, done: Tensor) -> list[tuple[int, float]]:
        """Adds ``[E]`` or ``[E, T]`` rewards (``[..., 1]`` too); returns ``(env, return)`` of each
        episode that ``done`` ends, env by env, in time order."""
        e = len(self.running)
        reward, done = reward.reshape(e, -1).tolist(), done.reshape(e, -1).tolist()
        finished = []
        for env in range(e):
            for r, d in zip(reward[env], done[env]):
                self.running[env] += r
                if d:
                    finished.append((env, self.running[env]))
                    self.running[env] = 0.0
        return finished


@dataclass(frozen=True)
class ResetCounts:
    """How many steps of an ``[E, T]`` trajectory start an episode, counted two ways (see :func:`reset_counts`).

    ``is_init_steps`` (every step with ``is_init`` True: what the explorer counts) is
    ``env_starts`` (``is_init`` at ``t = 0``: each env's first step, right after ``env.reset()``)
    plus ``resets`` (``is_init`` after ``t = 0``: episodes restarted inside the trajectory, what the
    reset audit checks).
    """

    is_init_steps: int
    """steps with ``is_init`` True, ``t = 0`` included"""
    env_starts: int
    """``is_init`` at ``t = 0`` (at most one per env)"""
    resets: int
    """``is_init`` after ``t = 0``: ``is_init_steps - env_starts``"""
    episode_starts_after_done: int | None
    """of ``resets``, those right after a step whose ``done`` is True (``None``: no ``done`` given)"""
    envs: int
    """``E``"""

    @property
    def differ(self) -> bool:
        """Whether the two counts (``is_init_steps`` and ``resets``) differ, i.e. some env starts at ``t = 0``."""
        return self.is_init_steps != self.resets

    @property
    def unmarked_resets(self) -> int | None:
        """``is_init`` after ``t = 0`` without a ``done`` before it (``None``: no ``done`` given)."""
        return None if self.episode_starts_after_done is None else self.resets - self.episode_starts_after_done

    def describe(self) -> str:
        """Both counts and what separates them, in one sentence.

        Examples:
            >>> reset_counts(torch.tensor([[1, 0, 1], [1, 0, 0]])).describe()
            '3 is_init steps = 2 env starts (t = 0) + 1 reset after an episode ended'
            >>> reset_counts(torch.tensor([[0, 0, 1]])).describe()
            '1 reset after an episode ended (is_init at t = 0: none)'
        """
        after = f"{_plural(self.resets, 'reset')} after an episode ended"
        if self.unmarked_resets:
            after = (f"{_plural(self.resets, 'reset')} ({self.episode_starts_after_done} after a done, "
                     f"{self.unmarked_resets} without one)")
        if not self.env_starts:
            return f"{after} (is_init at t = 0: none)"
        return (f"{_plural(self.is_init_steps, 'is_init step')} = {_plural(self.env_starts, 'env start')} (t = 0) "
                f"+ {after}")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def reset_counts(is_init: Tensor, done: Tensor | None = None) -> ResetCounts:
    """Counts the episode starts of ``[E, T]`` (or ``[E, T, 1]``) ``is_init`` flags: the one place that does.

    Two numbers are easy to mix up: every ``is_init`` step (``t = 0`` included; each env starts
    there) and the *resets*, ``is_init`` after ``t = 0`` (an episode ended and the next began). With
    ``done`` (``("next", "done")``, same shape), also how many resets follow a done.

    Args:
        is_init: the flags, ``[E, T]`` or ``[E, T, 1]``.
        done: optional ``[E, T]`` or ``[E, T, 1]`` done flags of the same trajectory.

    Examples:
        >>> is_init = torch.zeros(4, 10, dtype=torch.bool)
        >>> is_init[:, 0] = True                  # 4 envs start
        >>> is_init[0, 5] = is_init[2, 3] = True  # 2 episodes restart
        >>> done = torch.zeros(4, 10, dtype=torch.bool)
        >>> done[0, 4] = done[2, 2] = True
        >>> counts = reset_counts(is_init, done)
        >>> counts.is_init_steps, counts.env_starts, counts.resets, counts.episode_starts_after_done
        (6, 4, 2, 2)
        >>> counts.describe()
        '6 is_init steps = 4 env starts (t = 0) + 2 resets after an episode ended'
    """
    init = as_bool_init(is_init)
    total, starts = int(init.sum()), int(init[:, 0].sum())
    after_done = None
    if done is not None:
        d = done.squeeze(-1) if done.dim() == 3 and done.shape[-1] == 1 else done
        if tuple(d.shape) != tuple(init.shape):
            raise AnalysisError(f"reset_counts: 'done' must have the shape of is_init, {tuple(init.shape)} (or with a "
                                f"trailing 1); got {tuple(done.shape)}.")
        d = d.to(torch.bool)
        after_done = int((init[:, 1:] & d[:, :-1]).sum())
    return ResetCounts(total, starts, total - starts, after_done, int(init.shape[0]))


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
    reward = trajectory.get(KEYS.reward).reshape(e_count, t)
    done = trajectory.get(KEYS.done).reshape(e_count, t)
    all_returns = episode_returns(episode, reward)
    rows = []
    for e in range(e_count):
        n = int(episode[e].max()) + 1
        returns = all_returns[e, :n]
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
