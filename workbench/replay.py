"""Replaying a trajectory in recurrent mode: does it reproduce what the rollout saw?

A rollout runs the GRU step by step; a loss replays the whole trajectory in
one recurrent-mode call. :func:`replay_check` compares the two hidden-state
traces (a :class:`ReplayReport`, with its :class:`Finding`);
:func:`replay_hidden` and :func:`replay_policy` give what a loss would see,
with or without the trajectory's resets (the leak a missing ``InitTracker``
causes in training).

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> from workbench.gru import GRUModule
    >>> gru = GRUModule(input_size=1, hidden_size=2, in_key="x", out_key="y")
    >>> traj = TensorDict({"x": torch.ones(1, 4, 1), "is_init": torch.tensor([[[True], [False], [True], [False]]])}, [1, 4])
    >>> replay_hidden(gru, traj).shape
    torch.Size([1, 4, 1, 2])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from tensordict import TensorDictBase
from torch import Tensor

from .diagnostics import Finding
from .episodes import as_env_time, episode_and_step, trajectory_is_init
from .keys import KEYS

__all__ = ["ReplayReport", "replay_check", "replay_hidden", "replay_policy"]


@dataclass
class ReplayReport:
    """How far a recurrent-mode replay is from the step-by-step hidden states.

    ``gap[e, t]`` is the largest absolute difference, over layers and units,
    between the replayed and the recorded next hidden state of env ``e`` at
    step ``t``.
    """

    gap: Tensor = field(repr=False)
    """[E, T] largest |replay - recorded| of the next hidden state, per step"""
    max_gap: float
    """the largest gap"""
    env: int
    """env index of the largest gap"""
    step: int
    """step (time index) of the largest gap"""
    episode: int
    """episode (within that env) of the largest gap"""
    episode_step: int
    """steps since that episode started"""
    atol: float
    """gaps up to this are agreement"""
    backend: str | None
    """the GRU kernel the replay used"""
    output_gap: float | None = None
    """largest |replay - recorded| of the GRU's output, when recorded"""
    first_step_over: int | None = None
    """first step (over all envs) where the gap exceeds ``atol``"""

    @property
    def passed(self) -> bool:
        """Whether the replay agrees within ``atol``."""
        return self.max_gap <= self.atol

    @property
    def finding(self) -> Finding:
        where = {"env": self.env, "step": self.step, "episode": self.episode, "episode_step": self.episode_step,
                 "max_gap": self.max_gap}
        if self.passed:
            return Finding(
                "ok",
                "Replay matches the rollout",
                f"Re-running the trajectory in recurrent mode ({self.backend}) reproduces every step-by-step hidden "
                f"state (largest gap {self.max_gap:.2e} <= {self.atol:.0e}).",
                where=where,
            )
        place = f"env {self.env}, step {self.step} (episode {self.episode}, step {self.episode_step} of it)"
        if self.max_gap <= DRIFT_ATOL:
            return Finding(
                "warning",
                "Replay drifts slightly",
                f"The recurrent-mode replay ({self.backend}) differs from the step-by-step hidden states by up to "
                f"{self.max_gap:.2e} at {place}: numerical drift between kernels (e.g. TF32 on GPU or a different "
                "summation order), not a logic error.",
                "Harmless for most uses; for exact parity use float64 or disable TF32 "
                "(torch.backends.cudnn.allow_tf32 = False).",
                where,
            )
        return Finding(
            "error",
            "Replay disagrees with the rollout",
            f"The recurrent-mode replay ({self.backend}) differs from the step-by-step hidden states by up to "
            f"{self.max_gap:.2e} at {place}. A loss that replays this data would not see what the policy saw: "
            "usually a non-zero stored hidden state at a reset (the replay restarts from it, a single step zeroes "
            "it), a wrong is_init, or hidden states recorded by other weights.",
            "Run reset_audit on the trajectory; re-record it after changing the weights.",
            where,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (without the gap tensor)."""
        return {
            "max_gap": self.max_gap, "env": self.env, "step": self.step, "episode": self.episode,
            "episode_step": self.episode_step, "atol": self.atol, "backend": self.backend,
            "output_gap": self.output_gap, "first_step_over": self.first_step_over, "passed": self.passed,
        }


DRIFT_ATOL = 1e-2
"""replay gaps above ``atol`` but up to this are reported as numerical drift (a warning)"""


def _default_atol(dtype: torch.dtype) -> float:
    return 1e-10 if dtype == torch.float64 else 1e-4 if dtype == torch.float32 else 1e-2


def _the_gru(policy, caller: str = "replay_check"):
    from .gru import GRUModule
    from .policy import recurrent_modules

    if isinstance(policy, GRUModule):
        return policy
    grus = [m for m in recurrent_modules(policy) if isinstance(m, GRUModule)]
    if len(grus) != 1:
        raise ValueError(
            f"{caller}: the policy must hold exactly one workbench GRUModule; found {len(grus)} "
            f"({[type(m).__name__ for m in recurrent_modules(policy)]})."
        )
    return grus[0]


def replay_check(policy, trajectory: TensorDictBase, *, atol: float | None = None) -> ReplayReport:
    """Re-runs a trajectory through the policy's GRU in recurrent mode and compares hidden states.

    The step-by-step rollout recorded ``KEYS.next_hidden`` at every step; the
    replay runs the whole ``[E, T]`` trajectory in one recurrent-mode call
    (``set_recurrent_mode(True)``), restarting at every ``is_init`` from the
    stored hidden state as torchrl losses do, and records its per-step trace
    (a twin of the GRU, sharing its weights, with ``hidden_trace_key`` set).

    Args:
        policy: the policy that recorded the trajectory (one ``GRUModule`` inside).
        trajectory: ``[E, T]`` (or ``[T]``) from :func:`workbench.rollout.rollout`.

    Keyword Args:
        atol: gaps up to this count as agreement; default from the dtype
            (1e-4 for float32, 1e-10 for float64).

    Returns:
        A :class:`ReplayReport`; its ``finding`` says it in words.
    """
    gru = _the_gru(policy)
    traj = as_env_time(trajectory)
    for key in (gru.in_keys[0], KEYS.hidden, KEYS.next_hidden, KEYS.is_init):
        if key not in traj.keys(True):
            raise KeyError(f"replay_check: the trajectory has no {key!r} entry (it has {sorted(map(str, traj.keys()))}).")
    data = traj.select(gru.in_keys[0], KEYS.hidden, KEYS.is_init).to(next(gru.parameters()).device)
    backend = _replay_twin(gru, data, KEYS.hidden)
    trace = data.get(("_replay", "trace")).to(traj.device)
    recorded = traj.get(KEYS.next_hidden)
    gap = (trace - recorded).abs().flatten(2).amax(-1)
    if atol is None:
        atol = _default_atol(recorded.dtype)
    flat = int(gap.argmax()) if gap.numel() else 0
    steps = traj.batch_size[1]
    env, step = divmod(flat, steps) if steps else (0, 0)
    is_init = trajectory_is_init(traj)
    episode_t, step_t = episode_and_step(is_init)
    if KEYS.episode in traj.keys():
        episode_t = traj.get(KEYS.episode)
    if KEYS.step in traj.keys():
        step_t = traj.get(KEYS.step)
    output_gap = None
    output_key = gru.out_keys[0]
    if output_key in traj.keys(True):
        output_gap = float((data.get(("_replay", "output")).to(traj.device) - traj.get(output_key)).abs().max())
    over = (gap > atol).any(0).nonzero()
    return ReplayReport(
        gap=gap,
        max_gap=float(gap.max()) if gap.numel() else 0.0,
        env=env,
        step=step,
        episode=int(episode_t[env, step]) if gap.numel() else 0,
        episode_step=int(step_t[env, step]) if gap.numel() else 0,
        atol=float(atol),
        backend=backend,
        output_gap=output_gap,
        first_step_over=int(over[0]) if len(over) else None,
    )


def _replay_twin(gru, data: TensorDictBase, hidden_key) -> str:
    """Runs ``gru``'s weights over ``data`` in one recurrent-mode call, restarting from ``hidden_key``
    at every ``is_init``; writes ``("_replay", "output" | "next" | "trace")`` into ``data`` (the
    trace: every layer, every step) and returns the backend it used. A twin module shares the
    weights, so ``gru``'s own keys and settings stay untouched."""
    from .gru import GRUModule, set_recurrent_mode

    twin = GRUModule(
        gru=gru.gru,
        in_keys=[gru.in_keys[0], hidden_key],
        out_keys=[("_replay", "output"), ("_replay", "next")],
        hidden_trace_key=("_replay", "trace"),
        recurrent_backend=gru.recurrent_backend,
    )
    with torch.no_grad(), set_recurrent_mode(True):
        twin(data)
    return twin.last_backend


def _replay_data(trajectory: TensorDictBase, keys, resets: bool, caller: str) -> TensorDictBase:
    traj = as_env_time(trajectory)
    for key in (*keys, KEYS.is_init):
        if key not in traj.keys(True):
            raise KeyError(f"{caller}: the trajectory has no {key!r} entry (it has {sorted(map(str, traj.keys()))}).")
    data = traj.select(*keys, KEYS.is_init).clone()
    if not resets:
        is_init = data.get(KEYS.is_init).clone()
        is_init[:, 1:] = False
        data.set(KEYS.is_init, is_init)
    return data


def replay_hidden(module, trajectory: TensorDictBase, *, resets: bool = True) -> Tensor:
    """The hidden states a GRU computes on a trajectory's inputs, every layer, every step.

    Runs ``module`` (a workbench ``GRUModule``, or a policy holding one) in
    recurrent mode over the trajectory's ``[E, T]`` inputs, starting from zeros
    at every ``is_init``; no hidden state is read from the trajectory, so any
    GRU with the right input size works (e.g. an untrained one, as a probe
    baseline). ``resets=False`` keeps only the first step's ``is_init``: the
    memory then runs on across episodes, as when ``InitTracker`` is missing.

    Returns:
        ``[E, T, L, H]``: the hidden state after each step (like ``KEYS.next_hidden``).

    Examples:
        >>> from tensordict import TensorDict
        >>> from workbench.gru import GRUModule
        >>> gru = GRUModule(input_size=1, hidden_size=2, in_key="x", out_key="y")
        >>> is_init = torch.tensor([[True, False, True, False]]).unsqueeze(-1)
        >>> traj = TensorDict({"x": torch.ones(1, 4, 1), "is_init": is_init}, [1, 4])
        >>> h = replay_hidden(gru, traj)
        >>> h.shape, torch.equal(h[0, 2], h[0, 0])  # the episode restarts from zeros
        (torch.Size([1, 4, 1, 2]), True)
        >>> torch.equal(replay_hidden(gru, traj, resets=False)[0, 2], h[0, 2])  # leaks: not a restart
        False
    """
    gru = _the_gru(module, "replay_hidden")
    data = _replay_data(trajectory, [gru.in_keys[0]], resets, "replay_hidden")
    param = next(gru.parameters())
    data = data.to(param.device)
    e, t = data.batch_size
    data.set("_h0", torch.zeros(e, t, gru.gru.num_layers, gru.gru.hidden_size, dtype=param.dtype, device=param.device))
    _replay_twin(gru, data, "_h0")
    return data.get(("_replay", "trace"))


def replay_policy(policy, trajectory: TensorDictBase, *, resets: bool = True,
                  deterministic: bool = True) -> TensorDictBase:
    """The policy's outputs when a loss replays the trajectory in recurrent mode.

    Every segment starts from the hidden state the trajectory recorded at its
    first step (``KEYS.hidden``), as torchrl's losses do. ``resets=False``
    keeps only the first step's ``is_init``, so the memory of one episode
    runs into the next: the training-time leak of a missing ``InitTracker``.
    Compare the returned actions or log-probabilities with the rollout's.

    Keyword Args:
        resets: honour the trajectory's ``is_init`` (True) or drop it after step 0.
        deterministic: greedy actions (``ExplorationType.DETERMINISTIC``).

    Returns:
        A new ``[E, T]`` TensorDict with the policy's inputs and outputs
        (``"action"``, ``"logits"``...).
    """
    from torchrl.envs.utils import ExplorationType, set_exploration_type

    from .gru import set_recurrent_mode

    gru = _the_gru(policy, "replay_policy")
    data = _replay_data(trajectory, [gru.in_keys[0], KEYS.hidden], resets, "replay_policy")
    data = data.to(next(gru.parameters()).device)
    if gru.in_keys[1] != KEYS.hidden:
        data.rename_key_(KEYS.hidden, gru.in_keys[1])
    kind = ExplorationType.DETERMINISTIC if deterministic else ExplorationType.RANDOM
    with torch.no_grad(), set_recurrent_mode(True), set_exploration_type(kind):
        return policy(data)
