"""The reset audit: was a trajectory's hidden state restarted, carried and fed back?

:func:`reset_audit` reads a recorded trajectory and says in :class:`Finding`
objects whether the hidden state was restarted at every ``is_init``, carried
in between, and fed back at all; :func:`reset_status` gives the per-step
verdict (a :class:`ResetStatus` code) for plotting.

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> is_init = torch.tensor([[True, False, False, True, False]]).unsqueeze(-1)
    >>> hidden = torch.ones(1, 5, 1, 2)
    >>> hidden[:, [0, 3]] = 0  # restarted at both resets
    >>> done = torch.tensor([[False, False, True, False, False]]).unsqueeze(-1)
    >>> traj = TensorDict({"is_init": is_init, "recurrent_state": hidden,
    ...                    ("next", "recurrent_state"): torch.ones(1, 5, 1, 2), ("next", "done"): done}, [1, 5])
    >>> for finding in reset_audit(traj):
    ...     print(finding.severity, finding.title)
    ok Memory fed back
    ok Resets restart the memory
    ok Memory carried between steps
    ok Every finished episode is followed by is_init
    >>> reset_status(traj).tolist()
    [[1, 0, 0, 1, 0]]
"""

from __future__ import annotations

import enum

import torch
from tensordict import TensorDictBase
from torch import Tensor

from .diagnostics import Finding
from .episodes import ResetCounts, as_env_time, reset_counts, trajectory_is_init
from .keys import KEYS

__all__ = ["ResetStatus", "reset_status", "reset_audit"]


class ResetStatus(enum.IntEnum):
    """What happened to the hidden state the policy read at each step (see :func:`reset_status`)."""

    CARRIED = 0
    """mid-episode, equal to the previous step's next hidden state (healthy)"""
    RESTARTED = 1
    """at an ``is_init``: zero (healthy)"""
    LEAKED = 2
    """at an ``is_init``: the previous episode's non-zero next hidden state (a leak)"""
    DROPPED = 3
    """mid-episode: zero although the previous step's next hidden state was not (memory lost)"""
    CHANGED = 4
    """neither zero nor the previous next hidden state (something rewrote it)"""
    UNKNOWN = 5
    """first step of a trajectory that does not start an episode: nothing to compare with"""


def reset_status(trajectory: TensorDictBase, *, atol: float = 0.0) -> Tensor:
    """Per-step verdict on the hidden state read, as :class:`ResetStatus` codes ``[E, T]`` (int64).

    Needs ``KEYS.hidden`` and ``KEYS.next_hidden``; without ``KEYS.is_init``
    every step counts as mid-episode except the first.

    Examples:
        >>> from tensordict import TensorDict
        >>> traj = TensorDict({"is_init": torch.tensor([[True, False, True]]).unsqueeze(-1),
        ...                    "recurrent_state": torch.tensor([0., 1., 2.]).view(1, 3, 1, 1),
        ...                    ("next", "recurrent_state"): torch.tensor([1., 2., 3.]).view(1, 3, 1, 1)}, [1, 3])
        >>> [ResetStatus(s).name for s in reset_status(traj)[0].tolist()]
        ['RESTARTED', 'CARRIED', 'LEAKED']
    """
    traj = as_env_time(trajectory)
    hidden = traj.get(KEYS.hidden).flatten(2)
    next_hidden = traj.get(KEYS.next_hidden).flatten(2)
    is_init = trajectory_is_init(traj)
    if is_init is None:
        is_init = torch.zeros(traj.batch_size, dtype=torch.bool, device=hidden.device)
    zero = hidden.abs().amax(-1) <= atol
    prev = torch.cat([torch.full_like(next_hidden[:, :1], float("nan")), next_hidden[:, :-1]], 1)
    same_as_prev = (hidden - prev).abs().amax(-1) <= atol  # NaN at t=0 compares False
    prev_zero = prev.abs().amax(-1) <= atol
    status = torch.full(traj.batch_size, int(ResetStatus.CHANGED), dtype=torch.long, device=hidden.device)
    mid = ~is_init
    status[mid & same_as_prev] = int(ResetStatus.CARRIED)
    status[mid & zero & ~prev_zero] = int(ResetStatus.DROPPED)
    status[is_init & zero] = int(ResetStatus.RESTARTED)
    status[is_init & ~zero & same_as_prev] = int(ResetStatus.LEAKED)
    status[:, 0] = torch.where(is_init[:, 0] & zero[:, 0], int(ResetStatus.RESTARTED), int(ResetStatus.UNKNOWN))
    return status


def _first(mask: Tensor) -> dict[str, int]:
    env, step = (int(i) for i in mask.nonzero()[0])
    return {"env": env, "step": step}


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def reset_audit(trajectory: TensorDictBase, *, atol: float = 0.0) -> list[Finding]:
    """Audits how the hidden state was handled around resets in a trajectory.

    Checks, each giving one finding: ``is_init`` present; the hidden state is
    not zero at every step (a dead or missing primer); at every ``is_init``
    after the first step the hidden state restarted from zero rather than
    carrying the previous episode's (a leak); between resets the hidden state
    is carried, not dropped or rewritten; every finished episode (``("next",
    "done")``) is followed by an ``is_init``.

    Args:
        trajectory: ``[E, T]`` (or ``[T]``) with ``KEYS.hidden``,
            ``KEYS.next_hidden``, ``KEYS.is_init`` and ``KEYS.done``.

    Keyword Args:
        atol: values this close count as equal (0: exact, the default, since
            the environment copies hidden states).

    Returns:
        A list of :class:`Finding`.
    """
    traj = as_env_time(trajectory)
    hidden = traj.get(KEYS.hidden, None)
    next_hidden = traj.get(KEYS.next_hidden, None)
    if hidden is None or next_hidden is None:
        missing = [str(k) for k, v in ((KEYS.hidden, hidden), (KEYS.next_hidden, next_hidden)) if v is None]
        return [
            Finding(
                "error",
                "No hidden state recorded",
                f"The trajectory has no {', '.join(missing)}: either the policy has no recurrent module or the "
                "trajectory was not made by workbench.rollout, so nothing can be audited.",
                "Record it with workbench.rollout.rollout(policy, env, steps).",
                {"missing": missing},
            )
        ]
    is_init = trajectory_is_init(traj)
    findings: list[Finding] = []
    if is_init is None:
        findings.append(
            Finding(
                "error",
                "No is_init",
                "The trajectory has no 'is_init' entry, so the environment has no InitTracker: the GRU cannot know "
                "where an episode starts and would carry memory from one episode into the next (it refuses to run "
                "without it).",
                "Add torchrl.envs.InitTracker() to the environment, or build it with workbench.envs.make_env(spec, policy).",
            )
        )
    dead = _audit_fed_back(hidden, next_hidden, atol, findings)
    if is_init is None or traj.batch_size[1] < 2:
        return findings
    done = traj.get(KEYS.done, None)
    done = None if done is None else done.reshape(*traj.batch_size).bool()
    status = reset_status(traj, atol=atol)
    _audit_resets(status, is_init, findings, reset_counts(is_init, done))
    if not dead:  # with a dead primer every step "drops" the memory: the finding above says it
        _audit_carried(status, is_init, done, findings)
    if done is not None:
        _audit_done_marked(is_init, done, findings)
    if not bool(is_init[:, 0].all()):
        findings.append(
            Finding(
                "warning",
                "Trajectory starts mid-episode",
                "is_init is False at the first step of some env, so the first hidden state cannot be checked and "
                "a replay starts from the stored state there.",
                "Start rollouts with env.reset() (workbench.rollout does).",
            )
        )
    return findings


def _audit_fed_back(hidden: Tensor, next_hidden: Tensor, atol: float, findings: list[Finding]) -> bool:
    """Is the hidden state read non-zero somewhere? Returns True for a dead memory."""
    if hidden.shape[1] < 2:
        return False
    h_zero = bool((hidden.abs() <= atol).all())
    nh_zero = bool((next_hidden.abs() <= atol).all())
    if h_zero and not nh_zero:
        findings.append(
            Finding(
                "error",
                "Memory never fed back (dead primer)",
                "The hidden state is zero at every step although the GRU produced non-zero next states: the "
                "environment has no primer for the hidden key, so the policy never receives its memory and "
                "behaves like a feed-forward network.",
                "env.append_transform(policy_module.make_tensordict_primer()) or make_env(spec, policy=policy).",
            )
        )
        return True
    if h_zero:
        findings.append(
            Finding(
                "warning",
                "Hidden state always zero",
                "Both the hidden state read and the next hidden state are zero at every step: the GRU's output "
                "is zero (zero weights?), so there is no memory to look at.",
                "Check the policy's weights (a fresh build_policy gives random, non-zero ones).",
            )
        )
    else:
        findings.append(Finding("ok", "Memory fed back", "The hidden state read by the policy is non-zero at some steps."))
    return False


def _counted(counts: ResetCounts) -> str:
    """`` Counted: 40 is_init steps = 4 env starts (t = 0) + 36 resets after an episode ended.``: both counts
    (the explorer's and the audit's) and their difference in words, when they differ; else empty."""
    return f" Counted: {counts.describe()}." if counts.differ else ""


def _audit_resets(status: Tensor, is_init: Tensor, findings: list[Finding], counts: ResetCounts) -> None:
    """At every is_init after the first step: restarted from zero, or leaked?"""
    resets = is_init.clone()
    resets[:, 0] = False
    n_resets = counts.resets
    leaked = resets & (status == ResetStatus.LEAKED)
    changed = resets & (status == ResetStatus.CHANGED)
    both = {"resets": n_resets, "is_init_steps": counts.is_init_steps, "env_starts": counts.env_starts}
    if bool(leaked.any()):
        n, where = int(leaked.sum()), _first(leaked)
        findings.append(
            Finding(
                "error",
                "Memory leaks across episodes",
                f"At {_count(n, 'reset')} of {n_resets} (first: env {where['env']}, step {where['step']}) the hidden "
                "state read at is_init is the previous episode's final hidden state, not zero. A single-step policy "
                "zeroes it, but a recurrent-mode replay (losses, GAE) restarts from the stored value, so the old "
                f"episode leaks into the new one.{_counted(counts)}",
                "Zero the hidden state at resets: keep the primer from make_tensordict_primer() in the environment "
                "(it resets the state) and do not copy ('next', hidden) into a reset step by hand.",
                {**where, "count": n, **both},
            )
        )
    if bool(changed.any()):
        n, where = int(changed.sum()), _first(changed)
        findings.append(
            Finding(
                "warning",
                "Non-zero hidden state at resets",
                f"At {_count(n, 'reset')} of {n_resets} (first: env {where['env']}, step {where['step']}) the hidden "
                "state read at is_init is neither zero nor the previous final state (a random or learned initial "
                f"state?). Single steps zero it; recurrent-mode replays restart from it, so the two disagree."
                f"{_counted(counts)}",
                "Use a zero-initialised primer (the GRUModule default) unless the difference is intended.",
                {**where, "count": n, **both},
            )
        )
    if n_resets and not bool(leaked.any()) and not bool(changed.any()):
        findings.append(
            Finding("ok", "Resets restart the memory",
                    f"All {_count(n_resets, 'reset')} restarted from a zero hidden state.{_counted(counts)}",
                    where=both)
        )


def _audit_carried(status: Tensor, is_init: Tensor, done: Tensor | None, findings: list[Finding]) -> None:
    """Inside episodes: is the hidden read the previous step's next hidden?"""
    inside = ~is_init
    if done is not None:  # a step right after a done starts an episode, marked or not (see _audit_done_marked)
        inside[:, 1:] &= ~done[:, :-1]
    inside[:, 0] = False
    dropped = inside & (status == ResetStatus.DROPPED)
    rewritten = inside & (status == ResetStatus.CHANGED)
    if bool(dropped.any()):
        n, where = int(dropped.sum()), _first(dropped)
        findings.append(
            Finding(
                "error",
                "Memory dropped mid-episode",
                f"At {_count(n, 'step')} inside an episode (first: env {where['env']}, step {where['step']}) the hidden "
                "state read is zero although the previous step produced a non-zero one: the environment does not "
                "carry ('next', hidden) to the next step (torchrl #1406: ParallelEnv zeroing the state).",
                "Put the primer in the environment's specs (make_env(spec, policy)) and check that the keys match "
                "the GRU's in_keys/out_keys.",
                {**where, "count": n},
            )
        )
    if bool(rewritten.any()):
        n, where = int(rewritten.sum()), _first(rewritten)
        findings.append(
            Finding(
                "error",
                "Memory rewritten mid-episode",
                f"At {_count(n, 'step')} inside an episode (first: env {where['env']}, step {where['step']}) the hidden "
                "state read differs from the previous step's next hidden state: something between two steps "
                "changed it (a transform, a second writer of the key, or a different module on each step).",
                "Make sure only the GRU writes ('next', hidden) and that no transform touches the hidden key.",
                {**where, "count": n},
            )
        )
    n_inside = int(inside.sum())
    if n_inside and not bool(dropped.any()) and not bool(rewritten.any()):
        findings.append(
            Finding("ok", "Memory carried between steps",
                    f"At all {_count(n_inside, 'step')} inside episodes the policy read the previous step's next hidden state.")
        )


def _audit_done_marked(is_init: Tensor, done: Tensor, findings: list[Finding]) -> None:
    """Is every step after a done an is_init?"""
    unmarked = done[:, :-1] & ~is_init[:, 1:]
    n_done = int(done[:, :-1].sum())
    if bool(unmarked.any()):
        n, where = int(unmarked.sum()), _first(unmarked)
        where["step"] += 1
        never = not bool(is_init[:, 1:].any())
        findings.append(
            Finding(
                "error",
                "is_init never set after episodes ended" if never else "Episode starts without is_init",
                f"{_count(n, 'episode')} ended (done) but the next step (first: env {where['env']}, step "
                f"{where['step']}) has is_init False"
                + (", and is_init is never True after the first step" if never else "")
                + ": the GRU carries the finished episode's memory into the new one.",
                "Add torchrl.envs.InitTracker() to the environment (make_env does), and keep 'is_init' through "
                "any transform or replay buffer.",
                {**where, "count": n, "done": n_done},
            )
        )
    elif n_done:
        findings.append(
            Finding("ok", "Every finished episode is followed by is_init",
                    f"{_count(n_done, 'episode')} ended inside the trajectory; each next step has is_init True.")
        )
