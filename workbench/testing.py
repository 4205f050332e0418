"""Small helpers for tests and demos: trajectories broken on purpose.

Each helper returns a corrupted *copy* of a trajectory ``[E, T]``, as the
bugs the diagnostics look for would leave it:

- :func:`inject_leak`: the hidden state is carried across every reset (the
  "leak demo": ``is_init`` is set but the memory was not restarted);
- :func:`drop_resets`: ``is_init`` is never True after the first step
  (an environment without ``InitTracker`` after its first reset);
- :func:`drop_hidden`: the hidden state read is zero at some steps
  mid-episode (memory lost between steps, torchrl #1406).

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> traj = TensorDict({"is_init": torch.tensor([[True, False, True]]).unsqueeze(-1),
    ...                    "recurrent_state": torch.tensor([0., 1., 0.]).view(1, 3, 1, 1),
    ...                    ("next", "recurrent_state"): torch.tensor([1., 2., 1.]).view(1, 3, 1, 1)}, [1, 3])
    >>> inject_leak(traj)["recurrent_state"].flatten().tolist()
    [0.0, 1.0, 2.0]
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase

from .episodes import trajectory_is_init
from .keys import KEYS

__all__ = ["policy_and_env", "inject_leak", "drop_resets", "drop_hidden"]


def policy_and_env(env_spec=None, policy_spec=None):
    """A small CPU policy and its wired environment (defaults: CartPole, hidden size 8).

    Examples:
        >>> policy, env = policy_and_env()
        >>> env.reset()["recurrent_state"].shape
        torch.Size([1, 8])
    """
    from .envs import EnvSpec, make_env
    from .policy import PolicySpec, build_policy
    from .session import policy_io

    env_spec = EnvSpec() if env_spec is None else env_spec
    policy_spec = PolicySpec(hidden_size=8, head_cells=(16,)) if policy_spec is None else policy_spec
    policy = build_policy(policy_spec, policy_io(env_spec), device="cpu")
    return policy, make_env(env_spec, policy)


def inject_leak(trajectory: TensorDictBase) -> TensorDictBase:
    """A copy where, at every ``is_init`` after the first step, the hidden read is the previous next hidden."""
    traj = trajectory.clone()
    hidden, next_hidden = traj.get(KEYS.hidden), traj.get(KEYS.next_hidden)
    resets = trajectory_is_init(traj).clone()  # a copy: edited below
    resets[:, 0] = False
    prev = torch.cat([next_hidden[:, :1], next_hidden[:, :-1]], 1)
    mask = resets.reshape(*resets.shape, *([1] * (hidden.dim() - 2)))
    traj.set(KEYS.hidden, torch.where(mask, prev, hidden))
    return traj


def drop_resets(trajectory: TensorDictBase) -> TensorDictBase:
    """A copy whose ``is_init`` is False everywhere after the first step.

    Examples:
        >>> from tensordict import TensorDict
        >>> traj = TensorDict({"is_init": torch.ones(1, 3, 1, dtype=torch.bool)}, [1, 3])
        >>> drop_resets(traj)["is_init"].flatten().tolist()
        [True, False, False]
    """
    traj = trajectory.clone()
    is_init = traj.get(KEYS.is_init).clone()
    is_init[:, 1:] = False
    traj.set(KEYS.is_init, is_init)
    return traj


def drop_hidden(trajectory: TensorDictBase, steps: slice | list[int]) -> TensorDictBase:
    """A copy whose hidden state read is zero at ``steps`` (in every env)."""
    traj = trajectory.clone()
    hidden = traj.get(KEYS.hidden).clone()
    hidden[:, steps] = 0
    traj.set(KEYS.hidden, hidden)
    return traj
