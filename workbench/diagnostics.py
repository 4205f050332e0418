"""Debugging recurrent policies: findings in plain words.

Recurrent bugs are silent: a missing primer zeroes the memory, a missing
``InitTracker`` leaks it across episodes, and a rollout and its replay can
disagree. Each check here returns :class:`Finding` objects (severity, title,
explanation, fix) that a :class:`DiagnosticsReport` collects:

- :func:`check_wiring` — a policy/env pair, *before* a rollout;
- :func:`reset_audit` — a trajectory: were hidden states restarted at every
  ``is_init``, carried in between, and fed back at all?
  (:func:`reset_status` gives the per-step verdict for plotting);
- :func:`replay_check` — re-runs a trajectory in recurrent mode and compares
  with the hidden states recorded step by step;
- :func:`replay_policy` and :func:`replay_hidden` — what a loss would see
  when it replays a trajectory, with or without its resets (the leak a
  missing ``InitTracker`` causes in training);
- :func:`diagnose` — all of them.

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
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from tensordict import TensorDictBase
from torch import Tensor

from .episodes import as_bool_init, episode_and_step
from .errors import WorkbenchError
from .keys import KEYS

__all__ = [
    "Finding",
    "DiagnosticsReport",
    "ReplayReport",
    "ResetStatus",
    "WiringError",
    "WiringWarning",
    "check_wiring",
    "reset_audit",
    "reset_status",
    "replay_check",
    "replay_hidden",
    "replay_policy",
    "diagnose",
]

Severity = Literal["ok", "warning", "error"]
_SEVERITIES = ("ok", "warning", "error")
_MARK = {"ok": "[ok]", "warning": "[warning]", "error": "[ERROR]"}


class WiringError(WorkbenchError, ValueError):
    """A policy and an environment that cannot work together; ``.findings`` says why."""

    def __init__(self, findings: list[Finding]):
        self.findings = list(findings)
        lines = [f"{len(self.findings)} wiring problem(s) found before the rollout:"]
        lines += [f"- {f.title}: {f.explanation} Fix: {f.fix}" for f in self.findings]
        super().__init__("\n".join(lines))


class WiringWarning(UserWarning):
    """A policy/env pair that runs but may not do what you expect."""


@dataclass(frozen=True)
class Finding:
    """One verdict of a check, in plain words.

    Examples:
        >>> print(Finding("warning", "Short", "Only one step.", "Run more steps."))
        [warning] Short: Only one step. Fix: Run more steps.
    """

    severity: Severity
    """``"ok"``, ``"warning"`` or ``"error"``"""
    title: str
    """a few words"""
    explanation: str
    """what was seen and why it matters"""
    fix: str = ""
    """what to do about it (empty when nothing is needed)"""
    where: dict[str, Any] = field(default_factory=dict)
    """JSON-able location details, e.g. ``{"env": 0, "step": 12, "count": 3}``"""

    def __post_init__(self) -> None:
        if self.severity not in _SEVERITIES:
            raise ValueError(f"Finding: 'severity' must be one of {list(_SEVERITIES)}; got {self.severity!r}.")

    def __str__(self) -> str:
        text = f"{_MARK[self.severity]} {self.title}: {self.explanation}"
        return f"{text} Fix: {self.fix}" if self.fix else text

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return asdict(self)


@dataclass
class DiagnosticsReport:
    """Findings collected from several checks.

    Examples:
        >>> report = DiagnosticsReport([Finding("ok", "A", "fine."), Finding("error", "B", "broken.", "mend it.")])
        >>> report.ok, len(report.errors)
        (False, 1)
        >>> print(report.summary())
        1 error, 0 warnings, 1 ok
        [ERROR] B: broken. Fix: mend it.
        [ok] A: fine.
    """

    findings: list[Finding] = field(default_factory=list)
    """every finding, in the order the checks produced them"""
    replay: ReplayReport | None = None
    """the replay check's numbers, when it ran"""

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        """No errors."""
        return not self.errors

    def extend(self, findings: list[Finding]) -> DiagnosticsReport:
        self.findings.extend(findings)
        return self

    def summary(self) -> str:
        """A short text: counts, then errors, warnings and oks, one per line."""
        counts = (
            f"{len(self.errors)} error{'s' if len(self.errors) != 1 else ''}, "
            f"{len(self.warnings)} warning{'s' if len(self.warnings) != 1 else ''}, "
            f"{len(self.findings) - len(self.errors) - len(self.warnings)} ok"
        )
        order = sorted(self.findings, key=lambda f: -_SEVERITIES.index(f.severity))
        return "\n".join([counts, *(str(f) for f in order)])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (the replay's gap tensor is left out)."""
        data: dict[str, Any] = {"ok": self.ok, "findings": [f.to_dict() for f in self.findings]}
        if self.replay is not None:
            data["replay"] = self.replay.to_dict()
        return data


# ---------------------------------------------------------------------------------------------- helpers
def _as_env_time(trajectory: TensorDictBase) -> TensorDictBase:
    if trajectory.batch_dims == 1:
        return trajectory.unsqueeze(0)
    if trajectory.batch_dims != 2:
        raise ValueError(
            f"expected a trajectory with batch size [envs, T] (or [T]); got batch_size={list(trajectory.batch_size)}."
        )
    return trajectory


def _flat_init(trajectory: TensorDictBase) -> Tensor | None:
    is_init = trajectory.get(KEYS.is_init, None)
    return None if is_init is None else as_bool_init(is_init.reshape(*trajectory.batch_size))


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
    traj = _as_env_time(trajectory)
    hidden = traj.get(KEYS.hidden).flatten(2)
    next_hidden = traj.get(KEYS.next_hidden).flatten(2)
    is_init = _flat_init(traj)
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


# ---------------------------------------------------------------------------------------------- reset audit
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
    traj = _as_env_time(trajectory)
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
    is_init = _flat_init(traj)
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
    _audit_resets(status, is_init, findings)
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


def _audit_resets(status: Tensor, is_init: Tensor, findings: list[Finding]) -> None:
    """At every is_init after the first step: restarted from zero, or leaked?"""
    resets = is_init.clone()
    resets[:, 0] = False
    n_resets = int(resets.sum())
    leaked = resets & (status == ResetStatus.LEAKED)
    changed = resets & (status == ResetStatus.CHANGED)
    if bool(leaked.any()):
        n, where = int(leaked.sum()), _first(leaked)
        findings.append(
            Finding(
                "error",
                "Memory leaks across episodes",
                f"At {_count(n, 'reset')} of {n_resets} (first: env {where['env']}, step {where['step']}) the hidden "
                "state read at is_init is the previous episode's final hidden state, not zero. A single-step policy "
                "zeroes it, but a recurrent-mode replay (losses, GAE) restarts from the stored value, so the old "
                "episode leaks into the new one.",
                "Zero the hidden state at resets: keep the primer from make_tensordict_primer() in the environment "
                "(it resets the state) and do not copy ('next', hidden) into a reset step by hand.",
                {**where, "count": n, "resets": n_resets},
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
                "state?). Single steps zero it; recurrent-mode replays restart from it, so the two disagree.",
                "Use a zero-initialised primer (the GRUModule default) unless the difference is intended.",
                {**where, "count": n, "resets": n_resets},
            )
        )
    if n_resets and not bool(leaked.any()) and not bool(changed.any()):
        findings.append(
            Finding("ok", "Resets restart the memory", f"All {_count(n_resets, 'reset')} restarted from a zero hidden state.",
                    where={"resets": n_resets})
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


# ---------------------------------------------------------------------------------------------- replay
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
    traj = _as_env_time(trajectory)
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
    is_init = _flat_init(traj)
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
    traj = _as_env_time(trajectory)
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


# ---------------------------------------------------------------------------------------------- wiring
def check_wiring(policy, env, *, strict: bool = True) -> list[Finding]:
    """Checks that a policy and an environment fit, before any step is taken.

    Catches: no primer for the GRU's hidden key (the memory would be zero at
    every step), no ``is_init`` in the environment (no ``InitTracker``), the
    GRU's input key missing from the observations or of the wrong size, and a
    primer whose shape or dtype does not match the module.

    Args:
        policy: a policy holding recurrent modules (e.g. from ``build_policy``).
        env: a torchrl environment.

    Keyword Args:
        strict: raise :class:`WiringError` listing the errors, and emit
            :class:`WiringWarning` for the warnings. Default: ``True``.

    Returns:
        The findings (errors only when ``strict=False``, since strict raises).

    Examples:
        >>> from workbench.envs import EnvSpec, make_env
        >>> from workbench.policy import PolicySpec, build_policy
        >>> policy = build_policy(PolicySpec(hidden_size=4), make_env(EnvSpec()))
        >>> try:
        ...     check_wiring(policy, make_env(EnvSpec()))  # no policy given: no primer
        ... except WiringError as err:
        ...     print(err.findings[0].title)
        No primer for 'recurrent_state'
        >>> [f.severity for f in check_wiring(policy, make_env(EnvSpec(), policy))]
        ['ok']
    """
    from .policy import recurrent_modules

    findings: list[Finding] = []
    spec = env.observation_spec_unbatched
    available = sorted(str(k) for k in spec.keys(True, True))
    modules = recurrent_modules(policy)
    if not modules:
        findings.append(
            Finding(
                "warning",
                "No recurrent module",
                "The policy holds no module with make_tensordict_primer() (no GRU/LSTM), so there is no hidden "
                "state to wire or to watch.",
                "Build the policy with workbench.policy.build_policy.",
            )
        )
    if "is_init" not in spec.keys(True):
        findings.append(
            Finding(
                "error",
                "No is_init in the environment",
                "The environment does not write 'is_init' (no InitTracker), so the GRU cannot tell where episodes "
                f"start: it would stop with a KeyError, or leak memory across episodes. Observations: {available}.",
                "env.append_transform(torchrl.envs.InitTracker()) or build it with make_env(spec, policy).",
            )
        )
    for module in modules:
        name = type(module).__name__
        value_key, hidden_key = module.in_keys[0], module.in_keys[1]
        next_key = module.out_keys[1]
        expected_next = ("next", *(hidden_key if isinstance(hidden_key, tuple) else (hidden_key,)))
        if tuple(next_key if isinstance(next_key, tuple) else (next_key,)) != expected_next:
            findings.append(
                Finding(
                    "error",
                    "Next hidden key does not feed back",
                    f"{name} reads its hidden state from {hidden_key!r} but writes the next one to {next_key!r}; "
                    f"the environment only carries {expected_next!r} to the next step.",
                    f"Use out_keys=[..., {expected_next!r}].",
                )
            )
        if value_key not in spec.keys(True):
            findings.append(
                Finding(
                    "error",
                    f"No observation {value_key!r}",
                    f"{name} reads {value_key!r}, which the environment does not produce; it has {available}.",
                    f"Build the module with in_key={KEYS.observation!r} (or the env's observation key).",
                )
            )
        else:
            size = spec[value_key].shape[-1] if len(spec[value_key].shape) else 1
            input_size = getattr(module, "input_size", None)
            if input_size is not None and size != input_size:
                findings.append(
                    Finding(
                        "error",
                        f"Observation size mismatch for {value_key!r}",
                        f"{name} expects {input_size} input features but the environment's {value_key!r} has "
                        f"{size} (shape {list(spec[value_key].shape)}); a hidden-velocity variant changes the size.",
                        "Build the policy from this environment: build_policy(spec, env).",
                    )
                )
        if hidden_key not in spec.keys(True):
            findings.append(
                Finding(
                    "error",
                    f"No primer for {hidden_key!r}",
                    f"The environment has no {hidden_key!r} entry, so the policy would read a zero hidden state at "
                    "every step and never receive its memory (recurrence silently off, torchrl #2327).",
                    "env.append_transform(policy_module.make_tensordict_primer()) or make_env(spec, policy=policy).",
                )
            )
            continue
        hidden_spec = spec[hidden_key]
        try:
            primer = module.make_tensordict_primer().primers[hidden_key]
        except Exception:  # a module with an unusual primer: compare what we can
            primer = None
        expected_shape = tuple(primer.shape) if primer is not None else None
        expected_dtype = primer.dtype if primer is not None else None
        if expected_shape is not None and tuple(hidden_spec.shape) != expected_shape:
            findings.append(
                Finding(
                    "error",
                    f"Hidden shape mismatch for {hidden_key!r}",
                    f"The environment's primer gives {hidden_key!r} the shape {list(hidden_spec.shape)} but {name} "
                    f"needs {list(expected_shape)} (num_layers, hidden_size): the primer belongs to another module.",
                    "Rebuild the environment with this policy: make_env(spec, policy=policy).",
                )
            )
        if expected_dtype is not None and hidden_spec.dtype != expected_dtype:
            findings.append(
                Finding(
                    "error",
                    f"Hidden dtype mismatch for {hidden_key!r}",
                    f"The environment's primer gives {hidden_key!r} dtype {hidden_spec.dtype} but {name}'s "
                    f"parameters are {expected_dtype}.",
                    "Rebuild the environment with this policy: make_env(spec, policy=policy).",
                )
            )
    if not any(f.severity == "error" for f in findings) and modules:
        findings.append(
            Finding("ok", "Policy and environment are wired",
                    "Every recurrent module finds its observation, a primer with the right shape and dtype, and is_init.")
        )
    if strict:
        errors = [f for f in findings if f.severity == "error"]
        if errors:
            raise WiringError(errors)
        for f in findings:
            if f.severity == "warning":
                warnings.warn(str(f), WiringWarning, stacklevel=2)
    return findings


def diagnose(trajectory: TensorDictBase, policy=None, env=None) -> DiagnosticsReport:
    """Runs every check that the arguments allow and collects the findings.

    Args:
        trajectory: ``[E, T]`` from :func:`workbench.rollout.rollout`.
        policy: the policy that recorded it (adds the replay check).
        env: its environment (adds the wiring check, with ``policy``).

    Returns:
        A :class:`DiagnosticsReport`; ``print(report.summary())`` for the text.
    """
    report = DiagnosticsReport()
    if policy is not None and env is not None:
        report.extend(check_wiring(policy, env, strict=False))
    report.extend(reset_audit(trajectory))
    if policy is not None:
        traj = _as_env_time(trajectory)
        if all(k in traj.keys(True) for k in (KEYS.hidden, KEYS.next_hidden, KEYS.is_init)):
            report.replay = replay_check(policy, traj)
            report.findings.append(report.replay.finding)
    return report
