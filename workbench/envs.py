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
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch

from .keys import KEYS

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


def _check_int(owner: str, name: str, value: Any, minimum: int, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = f"an int >= {minimum}" + (" or None" if optional else "")
        raise ValueError(f"{owner}: '{name}' must be {what}; got {value!r}.")


def _check_bool(owner: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{owner}: '{name}' must be a bool; got {value!r}.")


@dataclass(frozen=True)
class EnvSpec:
    """What environment to build; :func:`make_env` builds it.

    Examples:
        >>> EnvSpec("Pendulum-v1", hide_velocity=True, num_envs=2).num_envs
        2
        >>> EnvSpec("Pendulum-v1", num_envs=0)
        Traceback (most recent call last):
        ...
        ValueError: EnvSpec: 'num_envs' must be an int >= 1; got 0.
    """

    env_id: str = "CartPole-v1"
    """a registered gymnasium id, e.g. ``"CartPole-v1"``, ``"Pendulum-v1"``"""
    hide_velocity: bool = False
    """hide the velocities from the observation (a POMDP); ids in ``VELOCITY_MASKS``"""
    num_envs: int = 1
    """environments stepped together (the trajectory's first dimension)"""
    parallel: bool = False
    """with ``num_envs > 1``: worker processes (``ParallelEnv``) instead of one process (``SerialEnv``)"""
    max_steps: int | None = None
    """truncate episodes after this many steps (``StepCounter``); None keeps the env's own limit"""
    seed: int | None = 0
    """seed of the environments (env 0 gets it, the others seeds derived from it); None: unseeded"""
    categorical_actions: bool = True
    """discrete actions as an integer index (``True``) or one-hot vectors (``False``)"""
    true_state: bool = True
    """report the full observation (velocities included) under ``KEYS.true_state``"""

    def __post_init__(self) -> None:
        if not isinstance(self.env_id, str) or not self.env_id:
            raise ValueError(f"EnvSpec: 'env_id' must be a gymnasium id such as 'CartPole-v1'; got {self.env_id!r}.")
        _check_bool("EnvSpec", "hide_velocity", self.hide_velocity)
        _check_int("EnvSpec", "num_envs", self.num_envs, 1)
        _check_bool("EnvSpec", "parallel", self.parallel)
        _check_int("EnvSpec", "max_steps", self.max_steps, 1, optional=True)
        _check_int("EnvSpec", "seed", self.seed, 0, optional=True)
        _check_bool("EnvSpec", "categorical_actions", self.categorical_actions)
        _check_bool("EnvSpec", "true_state", self.true_state)
        import gymnasium as gym

        from . import tasks  # noqa: F401  (registers the workbench/ ids)

        try:
            gym.spec(self.env_id)
        except Exception as err:  # gymnasium raises several NameNotFound/VersionNotFound types
            raise ValueError(
                f"EnvSpec: 'env_id' must be a registered gymnasium id (e.g. 'CartPole-v1', 'Pendulum-v1', "
                f"'Acrobot-v1', 'MountainCar-v0'); got {self.env_id!r} ({err})."
            ) from None
        if self.hide_velocity and self.env_id not in VELOCITY_MASKS:
            raise ValueError(
                f"EnvSpec: 'hide_velocity=True' needs one of {sorted(VELOCITY_MASKS)}; got env_id={self.env_id!r}."
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; :meth:`from_dict` inverts it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnvSpec:
        """The spec of :meth:`to_dict`; unknown fields raise.

        Examples:
            >>> spec = EnvSpec("Acrobot-v1", max_steps=50)
            >>> EnvSpec.from_dict(spec.to_dict()) == spec
            True
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"EnvSpec.from_dict: unknown fields {unknown}; expected some of {sorted(known)}.")
        return cls(**data)


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

    gym_env = gym.make(spec.env_id)
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
        A ``ParallelEnv`` holds worker processes: ``env.close()`` when done.

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
        create = functools.partial(make_base_env, spec)
        if spec.parallel:
            base = ParallelEnv(spec.num_envs, create, mp_start_method=_start_method(), device="cpu")
        else:
            base = SerialEnv(spec.num_envs, create, device="cpu")
    transforms = [InitTracker(), StepCounter(spec.max_steps)]
    if policy is not None:
        primers = get_primers_from_module(policy, warn=False)
        if primers is not None:
            transforms.append(primers.to("cpu"))
    env = TransformedEnv(base, Compose(*transforms))
    if spec.seed is not None:
        env.set_seed(spec.seed)
    env._workbench_spec = spec
    return env


def env_spec_of(env) -> EnvSpec | None:
    """The :class:`EnvSpec` an environment was made from (None if not made by :func:`make_env`)."""
    return getattr(env, "_workbench_spec", None)
