"""Key names of a trajectory TensorDict, in one place.

A trajectory (what :func:`workbench.rollout.rollout` returns) has batch size
``[envs, T]`` and these entries:

- ``observation`` ``[E, T, obs]``, ``action`` ``[E, T, ...]``;
- ``is_init`` ``[E, T, 1]`` (bool): the first step of an episode;
- ``hidden`` ``[E, T, L, H]``: the hidden state the policy read at step t
  (zeroed by the module where ``is_init``), and ``next_hidden``
  ``[E, T, L, H]``: the hidden state after step t;
- ``gates`` ``[E, T, L, 3, H]`` (r, z, n), only with the Python cell;
- ``episode`` ``[E, T]`` (int64): episode index within each env, from 0;
- ``step`` (key ``"episode_step"``) ``[E, T]`` (int64): steps since the episode started, from 0;
- ``true_state`` ``[E, T, S]``: the environment's full state (velocities
  included, even when the observation hides them), for probes;
- ``reward``, ``done``, ``terminated``, ``truncated`` under ``"next"``.

Examples:
    >>> KEYS = TrajectoryKeys()
    >>> KEYS.next_hidden
    ('next', 'recurrent_state')
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TrajectoryKeys", "KEYS"]


@dataclass(frozen=True)
class TrajectoryKeys:
    """Names of the entries of a trajectory TensorDict."""

    observation: str = "observation"
    """what the policy sees"""
    action: str = "action"
    """what the policy did"""
    is_init: str = "is_init"
    """True on the first step of each episode (torchrl's InitTracker)"""
    hidden: str = "recurrent_state"
    """hidden state read at step t, [E, T, L, H]"""
    next_hidden: tuple[str, str] = ("next", "recurrent_state")
    """hidden state after step t, [E, T, L, H]"""
    gates: str = "gates"
    """r, z, n gate activations, [E, T, L, 3, H] (Python cell only)"""
    episode: str = "episode"
    """episode index within each env, [E, T]"""
    step: str = "episode_step"
    """steps since the episode started, [E, T]"""
    true_state: str = "true_state"
    """the environment's full state, velocities included, [E, T, S]"""
    reward: tuple[str, str] = ("next", "reward")
    done: tuple[str, str] = ("next", "done")
    terminated: tuple[str, str] = ("next", "terminated")
    truncated: tuple[str, str] = ("next", "truncated")


KEYS = TrajectoryKeys()
