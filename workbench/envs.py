"""Environments for recurrent policies: :class:`EnvSpec` → :func:`make_env`.

Any gymnasium id runs through torchrl's ``GymWrapper`` (the class behind
``GymEnv``), with ``InitTracker`` (``is_init``), ``StepCounter`` and the
policy's primers. Partially observed variants hide the velocities
(``hide_velocity=True``) and still report the full state under
``KEYS.true_state``, for probes.

Examples:
    >>> env = make_env(EnvSpec("CartPole-v1", hide_velocity=True, seed=0))
    >>> td = env.reset()
    >>> td["observation"].shape, td["true_state"].shape, bool(td["is_init"])
    (torch.Size([2]), torch.Size([4]), True)
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import weakref
from dataclasses import dataclass

import numpy as np
import torch

from .errors import ConfigError
from .keys import KEYS
from .specs import Spec, setting
from .workers import SHUTDOWN_TIMEOUT_S, WORKER_TIMEOUT_S, WorkerWatch, close_at_exit, close_env

__all__ = [
    "EnvSpec",
    "VelocityMask",
    "VELOCITY_MASKS",
    "make_env",
    "make_base_env",
    "observation_names",
    "state_names",
    "env_spec_of",
]

@dataclass(frozen=True)
class VelocityMask:
    """Which observation entries stay visible when the velocities are hidden."""

    keep: tuple[int, ...]
    """indices of the full observation that stay visible"""
    names: tuple[str, ...]
    """names of the full observation's entries (the true state)"""


VELOCITY_MASKS: dict[str, VelocityMask] = {
    "CartPole-v0": VelocityMask((0, 2), ("x", "x_dot", "theta", "theta_dot")),
    "CartPole-v1": VelocityMask((0, 2), ("x", "x_dot", "theta", "theta_dot")),
    "Pendulum-v1": VelocityMask((0, 1), ("cos_theta", "sin_theta", "theta_dot")),
    "Acrobot-v1": VelocityMask(
        (0, 1, 2, 3), ("cos_theta1", "sin_theta1", "cos_theta2", "sin_theta2", "theta1_dot", "theta2_dot")
    ),
    "MountainCar-v0": VelocityMask((0,), ("position", "velocity")),
    "MountainCarContinuous-v0": VelocityMask((0,), ("position", "velocity")),
}
"""Environments with a partially observed variant: what stays visible, and the state's names."""


@dataclass(frozen=True)
class EnvSpec(Spec):
    """What environment to build; :func:`make_env` builds it.

    Examples:
        >>> EnvSpec("Pendulum-v1", hide_velocity=True, num_envs=2).num_envs
        2
        >>> EnvSpec("Pendulum-v1", num_envs=0)
        Traceback (most recent call last):
        ...
        workbench.errors.ConfigError: EnvSpec: 'num_envs' must be an int >= 1; got 0.
    """

    env_id: str = setting("CartPole-v1", "a registered gymnasium id, e.g. ``\"CartPole-v1\"``, ``\"Pendulum-v1\"``",
                          label="environment")
    hide_velocity: bool = setting(False, "hide the velocities from the observation (a POMDP); ids in ``VELOCITY_MASKS``",
                                  label="hide velocities (POMDP)")
    num_envs: int = setting(1, "environments stepped together (the trajectory's first dimension)", low=1)
    parallel: bool = setting(
        False, "with ``num_envs > 1``: worker processes (``ParallelEnv``) instead of one process (``SerialEnv``)")
    max_steps: int | None = setting(
        None, "truncate episodes after this many steps (``StepCounter``); None keeps the env's own limit",
        kind="int", low=1, optional=True)
    seed: int | None = setting(
        0, "seed of the environments (env 0 gets it, the others seeds derived from it); None: unseeded",
        low=0, optional=True)
    categorical_actions: bool = setting(
        True, "discrete actions as an integer index (``True``) or one-hot vectors (``False``)")
    true_state: bool = setting(True, "report the full observation (velocities included) under ``KEYS.true_state``")
    delay: int | None = setting(
        None, "the memory length of a task with that knob (``workbench/CueMemory-v0``: steps from the cue to the "
        "decision); None: the task's default", kind="int", low=1, optional=True)

    def _check(self) -> None:
        if not isinstance(self.env_id, str) or not self.env_id:
            raise ConfigError(f"EnvSpec: 'env_id' must be a gymnasium id such as 'CartPole-v1'; got {self.env_id!r}.")
        import gymnasium as gym

        from .tasks import TASKS, task_info  # importing tasks registers the workbench/ ids

        try:
            gym.spec(self.env_id)
        except Exception as err:  # gymnasium raises several NameNotFound/VersionNotFound types
            raise ConfigError(
                f"EnvSpec: 'env_id' must be a registered gymnasium id (e.g. 'CartPole-v1', 'Pendulum-v1', "
                f"'Acrobot-v1', 'MountainCar-v0'); got {self.env_id!r} ({err})."
            ) from None
        if self.delay is not None and "delay" not in getattr(task_info(self.env_id), "knobs", ()):
            with_delay = sorted(env_id for env_id, task in TASKS.items() if "delay" in task.knobs)
            raise ConfigError(
                f"EnvSpec: 'delay' needs an environment with a delay ({', '.join(with_delay)}); "
                f"got env_id={self.env_id!r} with delay={self.delay!r}."
            )
        if self.hide_velocity and self.env_id not in VELOCITY_MASKS:
            raise ConfigError(
                f"EnvSpec: 'hide_velocity=True' needs one of {sorted(VELOCITY_MASKS)}; got env_id={self.env_id!r}."
            )


def state_names(spec: EnvSpec) -> tuple[str, ...] | None:
    """Names of the true state's entries, when known.

    Examples:
        >>> state_names(EnvSpec("CartPole-v1", hide_velocity=True))
        ('x', 'x_dot', 'theta', 'theta_dot')
    """
    from .tasks import task_info

    task = task_info(spec.env_id)
    if task is not None:
        return task.state_names
    mask = VELOCITY_MASKS.get(spec.env_id)
    return None if mask is None else mask.names


def observation_names(spec: EnvSpec) -> tuple[str, ...] | None:
    """Names of the observation's entries, when known.

    Examples:
        >>> observation_names(EnvSpec("Pendulum-v1", hide_velocity=True))
        ('cos_theta', 'sin_theta')
    """
    from .tasks import task_info

    task = task_info(spec.env_id)
    if task is not None:
        return task.observation_names
    mask = VELOCITY_MASKS.get(spec.env_id)
    if mask is None:
        return None
    return tuple(mask.names[i] for i in mask.keep) if spec.hide_velocity else mask.names


def gym_options(spec: EnvSpec) -> dict:
    """The keyword arguments of ``gymnasium.make`` for ``spec``'s knobs (the cue task's ``delay``).

    Examples:
        >>> gym_options(EnvSpec("workbench/CueMemory-v0", delay=100))
        {'delay': 100, 'max_episode_steps': 102}
        >>> gym_options(EnvSpec("CartPole-v1"))
        {}
    """
    import gymnasium as gym

    if spec.delay is None:
        return {}
    # an episode ends at step delay + 1: the registered time limit must come later
    return {"delay": spec.delay, "max_episode_steps": max(gym.spec(spec.env_id).max_episode_steps or 0, spec.delay + 2)}


def make_base_env(spec: EnvSpec):
    """One environment on CPU, without the torchrl transforms (what a worker of :func:`make_env` runs).

    Examples:
        >>> base = make_base_env(EnvSpec("Pendulum-v1", hide_velocity=True))
        >>> base.observation_spec["observation"].shape, base.observation_spec["true_state"].shape
        (torch.Size([2]), torch.Size([3]))
    """
    import gymnasium as gym
    from torchrl.data import Unbounded
    from torchrl.envs import GymWrapper
    from torchrl.envs.libs.gym import default_info_dict_reader

    from .tasks import MaskedTrueState  # importing tasks registers the workbench/ ids, also in workers

    gym_env = gym.make(spec.env_id, **gym_options(spec))
    try:  # the workbench tasks report their own true state
        state_space = gym_env.get_wrapper_attr("true_state_space")
    except AttributeError:
        state_space = None
    if state_space is None and (spec.hide_velocity or spec.true_state):
        gym_env = MaskedTrueState(gym_env, VELOCITY_MASKS[spec.env_id].keep if spec.hide_velocity else None)
        state_space = gym_env.true_state_space
    env = GymWrapper(gym_env, categorical_action_encoding=spec.categorical_actions, device="cpu")
    if spec.hide_velocity or spec.true_state:
        dtype = torch.from_numpy(np.zeros(0, dtype=state_space.dtype)).dtype
        state_spec = Unbounded(shape=state_space.shape, dtype=dtype, device="cpu")
        env.set_info_dict_reader(default_info_dict_reader([KEYS.true_state], spec={KEYS.true_state: state_spec}))
    return env


def _start_method() -> str:
    methods = multiprocessing.get_all_start_methods()
    return "fork" if "fork" in methods else "spawn"


def _make_worker_env(spec: EnvSpec, owner_pid: int):
    """:func:`make_base_env` in a worker process, which leaves Ctrl-C (SIGINT) to the process that owns it.

    A terminal's Ctrl-C reaches the whole process group; the owner then closes its workers itself.
    torchrl also calls this in the owner to read the specs: there SIGINT is left alone.
    """
    if os.getpid() != owner_pid:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return make_base_env(spec)


def make_env(spec: EnvSpec, policy=None):
    """The environment of ``spec`` (on CPU), wired for a recurrent ``policy``.

    Transforms: ``InitTracker`` (writes ``is_init``), ``StepCounter(spec.max_steps)``
    and, when ``policy`` is given, its primers
    (``torchrl.modules.utils.get_primers_from_module``), so the hidden state
    travels from step to step. With ``num_envs > 1`` the environments run in
    worker processes (``ParallelEnv``, ``parallel=True``) or in this process
    (``SerialEnv``); the transforms sit outside them, batched.

    Args:
        spec: what to build.
        policy: a policy whose recurrent modules need primers (optional).

    Returns:
        A torchrl ``TransformedEnv``, batch size ``[]`` or ``[num_envs]``.
        A ``ParallelEnv`` holds worker processes: :func:`workbench.workers.close_env` when done (they are
        closed at interpreter exit otherwise; its workers ignore SIGINT, left to this process).

    Examples:
        >>> from workbench.policy import PolicySpec, build_policy
        >>> spec = EnvSpec("CartPole-v1", num_envs=2)
        >>> policy = build_policy(PolicySpec(hidden_size=8), make_env(spec))
        >>> env = make_env(spec, policy)
        >>> env.reset()["recurrent_state"].shape
        torch.Size([2, 1, 8])
    """
    from torchrl.envs import Compose, InitTracker, ParallelEnv, SerialEnv, StepCounter, TransformedEnv
    from torchrl.modules.utils import get_primers_from_module

    if not isinstance(spec, EnvSpec):
        raise TypeError(f"make_env: 'spec' must be an EnvSpec; got {type(spec).__name__}.")
    if spec.num_envs == 1:
        base = make_base_env(spec)
    else:
        if spec.parallel:
            create = functools.partial(_make_worker_env, spec, os.getpid())
            base = ParallelEnv(spec.num_envs, create, mp_start_method=_start_method(), device="cpu",
                               shutdown_timeout=SHUTDOWN_TIMEOUT_S)
            close_at_exit(base)
        else:
            base = SerialEnv(spec.num_envs, functools.partial(make_base_env, spec), device="cpu")
    try:
        transforms = [InitTracker(), StepCounter(spec.max_steps)]
        if policy is not None:
            primers = get_primers_from_module(policy, warn=False)
            if primers is not None:
                transforms.append(primers.to("cpu"))
        env = TransformedEnv(base, Compose(*transforms))
        if spec.seed is not None:
            if spec.parallel:
                with WorkerWatch(env, WORKER_TIMEOUT_S, owner="make_env",
                                 argument="workbench.envs.WORKER_TIMEOUT_S") as watch, watch.call("set_seed"):
                    env.set_seed(spec.seed)
            else:
                env.set_seed(spec.seed)
    except BaseException:  # Ctrl-C too: no worker outlives a failed make_env
        close_env(base)
        raise
    _ENV_SPECS[env] = spec
    return env


_ENV_SPECS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""the one record of which :class:`EnvSpec` made which environment (nothing is stuck on torchrl's objects)"""


def env_spec_of(env) -> EnvSpec | None:
    """The :class:`EnvSpec` an environment was made from (None if not made by :func:`make_env`)."""
    try:
        return _ENV_SPECS.get(env)
    except TypeError:  # not weak-referenceable: not one of ours
        return None
