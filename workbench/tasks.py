"""Partially observed tasks, registered with gymnasium under the ``workbench/`` namespace.

Importing this module registers (idempotently):

- ``workbench/CartPoleNoVel-v1``: CartPole-v1 with the velocities hidden
  (observation ``[x, theta]``; 500-step limit);
- ``workbench/PendulumNoVel-v1``: Pendulum-v1 with the angular velocity hidden
  (observation ``[cos theta, sin theta]``; 200 steps, truncation only);
- ``workbench/CueMemory-v0``: a T-maze-style cue task (:class:`CueMemoryEnv`).

Every task puts its full state in ``info[KEYS.true_state]`` (for probes) and
declares its space as the ``true_state_space`` attribute, which
:func:`workbench.envs.make_base_env` reads. :class:`workbench.envs.EnvSpec`
imports this module, so the ids work everywhere an id is accepted.

Examples:
    >>> import gymnasium as gym
    >>> env = gym.make("workbench/CueMemory-v0")
    >>> obs, info = env.reset(seed=0)
    >>> obs.tolist(), info["true_state"].tolist()
    ([1.0, 0.0, 1.0], [1.0, 0.0])
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from .keys import KEYS

__all__ = ["TaskInfo", "TASKS", "CueMemoryEnv", "register_tasks", "task_info", "cue_success_rate", "cue_decisions"]

@dataclass(frozen=True)
class TaskInfo:
    """Names of a task's observation and true-state entries, and the knobs its constructor takes (e.g. ``delay``)."""

    observation_names: tuple[str, ...]
    state_names: tuple[str, ...]
    knobs: tuple[str, ...] = ()


TASKS: dict[str, TaskInfo] = {
    "workbench/CartPoleNoVel-v1": TaskInfo(("x", "theta"), ("x", "x_dot", "theta", "theta_dot")),
    "workbench/PendulumNoVel-v1": TaskInfo(("cos_theta", "sin_theta"), ("cos_theta", "sin_theta", "theta_dot")),
    "workbench/CueMemory-v0": TaskInfo(("cue", "is_decision", "bias"), ("cue", "time"), knobs=("delay",)),
}
"""The registered ids and their entries' names."""


def task_info(env_id: str) -> TaskInfo | None:
    """The :class:`TaskInfo` of a workbench id (None for other ids)."""
    return TASKS.get(env_id)


class MaskedTrueState(gym.ObservationWrapper):
    """Keeps the entries ``keep`` of a flat Box observation (all when ``None``); the full one goes to
    ``info[KEYS.true_state]`` and its space to ``true_state_space``."""

    def __init__(self, env: gym.Env, keep: tuple[int, ...] | None = None):
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ValueError(
                f"MaskedTrueState: needs a flat Box observation space; got {space!r} for {env.spec and env.spec.id}."
            )
        self.keep = None if keep is None else np.asarray(keep, dtype=np.int64)
        self.true_state_space = space
        if self.keep is not None:
            self.observation_space = gym.spaces.Box(space.low[self.keep], space.high[self.keep], dtype=space.dtype)

    def observation(self, observation):
        return observation if self.keep is None else observation[self.keep]

    def _info(self, observation, info):
        info = dict(info)
        info[KEYS.true_state] = np.array(observation, copy=True)
        return info

    def reset(self, **kwargs):
        observation, info = self.env.reset(**kwargs)
        return self.observation(observation), self._info(observation, info)

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        return self.observation(observation), reward, terminated, truncated, self._info(observation, info)


def make_cartpole_novel(**kwargs) -> gym.Env:
    """CartPole with ``x_dot`` and ``theta_dot`` hidden (entry point of ``workbench/CartPoleNoVel-v1``)."""
    from gymnasium.envs.classic_control import CartPoleEnv

    return MaskedTrueState(CartPoleEnv(**kwargs), (0, 2))


def make_pendulum_novel(**kwargs) -> gym.Env:
    """Pendulum with ``theta_dot`` hidden (entry point of ``workbench/PendulumNoVel-v1``)."""
    from gymnasium.envs.classic_control import PendulumEnv

    return MaskedTrueState(PendulumEnv(**kwargs), (0, 1))


class CueMemoryEnv(gym.Env):
    """A T-maze-style memory task: remember a cue shown at the start, act on it at the end.

    ``delay`` is the memory length: the steps between the start and the decision
    (the corridor's length); an episode has ``delay + 1`` steps. The observation is
    ``[cue, is_decision, 1]``: the cue (-1 or +1, drawn at reset) is visible
    during the first ``cue_steps`` observations and 0 afterwards;
    ``is_decision`` is 1 on the last observation only. Actions (0: left, 1:
    right) do nothing in the corridor (reward ``step_reward``); at the decision
    step action 1 is correct for cue +1 and action 0 for cue -1: reward +1 when
    correct, -1 when wrong, and the episode terminates.

    ``info["true_state"]`` is ``[cue, t / delay]``; ``info["correct"]`` is
    set on the decision step.

    Examples:
        >>> env = CueMemoryEnv(delay=3)
        >>> obs, _ = env.reset(seed=1)
        >>> cue = obs[0]
        >>> [env.step(0)[0].tolist() for _ in range(2)]
        [[-1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]
        >>> obs, reward, terminated, truncated, info = env.step(0)
        >>> obs.tolist(), reward, terminated, info["correct"]
        ([0.0, 1.0, 1.0], 0.0, False, None)
        >>> _, reward, terminated, _, info = env.step(1 if cue > 0 else 0)
        >>> reward, terminated, info["correct"]
        (1.0, True, True)
    """

    metadata = {"render_modes": []}

    def __init__(self, delay: int = 8, cue_steps: int = 2, step_reward: float = 0.0):
        if isinstance(delay, bool) or not isinstance(delay, int) or delay < 1:
            raise ValueError(f"CueMemoryEnv: 'delay' must be an int >= 1; got {delay!r}.")
        if isinstance(cue_steps, bool) or not isinstance(cue_steps, int) or not 1 <= cue_steps <= delay:
            raise ValueError(f"CueMemoryEnv: 'cue_steps' must be an int in 1..delay; got {cue_steps!r}.")
        self.delay = delay
        self.cue_steps = cue_steps
        self.step_reward = float(step_reward)
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)
        self.true_state_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self._cue = 1.0
        self._t = 0

    def _obs(self) -> np.ndarray:
        cue = self._cue if self._t < self.cue_steps else 0.0
        return np.array([cue, 1.0 if self._t == self.delay else 0.0, 1.0], dtype=np.float32)

    def _info(self, correct=None) -> dict:
        state = np.array([self._cue, self._t / self.delay], dtype=np.float32)
        return {KEYS.true_state: state, "correct": correct}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._cue = 1.0 if self.np_random.integers(2) == 1 else -1.0
        self._t = 0
        return self._obs(), self._info()

    def step(self, action):
        if self._t >= self.delay:  # the decision
            correct = bool((int(action) == 1) == (self._cue > 0))
            return self._obs(), (1.0 if correct else -1.0), True, False, self._info(correct)
        self._t += 1
        return self._obs(), self.step_reward, False, False, self._info()


def register_tasks() -> None:
    """Registers the ``workbench/`` ids with gymnasium (again is a no-op)."""
    registered = gym.envs.registry
    entries = {
        "workbench/CartPoleNoVel-v1": dict(entry_point=make_cartpole_novel, max_episode_steps=500,
                                           reward_threshold=475.0),
        "workbench/PendulumNoVel-v1": dict(entry_point=make_pendulum_novel, max_episode_steps=200),
        "workbench/CueMemory-v0": dict(entry_point=CueMemoryEnv, max_episode_steps=64, reward_threshold=0.9),
    }
    for env_id, kwargs in entries.items():
        if env_id not in registered:
            gym.register(id=env_id, **kwargs)


def cue_success_rate(returns) -> float:
    """Fraction of CueMemory episodes decided correctly (return > 0 with ``step_reward=0``)."""
    returns = np.asarray(returns, dtype=np.float64)
    return float((returns > 0).mean()) if returns.size else float("nan")


def cue_decisions(trajectory, action=None):
    """Whether each decision of a ``workbench/CueMemory-v0`` trajectory was right, in step order.

    A decision step is one whose observation has ``is_decision == 1``; it is
    right when action 1 meets cue +1 or action 0 meets cue -1 (the cue from
    ``true_state``).

    Args:
        trajectory: ``[E, T]`` TensorDict with ``KEYS.observation`` and ``KEYS.true_state``.
        action: ``[E, T]`` actions to judge (index, or one-hot ``[E, T, 2]``);
            default the trajectory's own ``KEYS.action`` (e.g. pass
            :func:`workbench.replay.replay_policy`'s actions instead).

    Returns:
        A bool tensor ``[decisions]``; its mean is the success rate.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> obs = torch.tensor([[[1., 0, 1], [0, 1, 1], [-1, 0, 1], [0, 1, 1]]])
        >>> state = torch.tensor([[[1., 0], [1, 1], [-1, 0], [-1, 1]]])
        >>> traj = TensorDict({"observation": obs, "true_state": state, "action": torch.tensor([[0, 1, 0, 1]])}, [1, 4])
        >>> cue_decisions(traj).tolist()
        [True, False]
    """
    import torch

    obs = trajectory.get(KEYS.observation)
    cue = trajectory.get(KEYS.true_state)[..., 0]
    act = trajectory.get(KEYS.action) if action is None else torch.as_tensor(action)
    if act.dim() == cue.dim() + 1:
        act = act.argmax(-1) if act.shape[-1] == 2 else act.squeeze(-1)
    if tuple(act.shape) != tuple(cue.shape):
        raise ValueError(f"cue_decisions: 'action' must be [E, T] like the trajectory {tuple(cue.shape)} "
                         f"(or one-hot [E, T, 2]); got {tuple(act.shape)}.")
    decision = obs[..., 1] == 1
    return ((act == 1) == (cue > 0))[decision]


register_tasks()
