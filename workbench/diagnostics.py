"""Debugging recurrent policies: findings in plain words, and the report that collects them.

Recurrent bugs are silent: a missing primer zeroes the memory, a missing
``InitTracker`` leaks it across episodes, and a rollout and its replay can
disagree. Each check returns :class:`Finding` objects (severity, title,
explanation, fix); a :class:`DiagnosticsReport` collects them. The checks,
one module per question:

- :mod:`workbench.wiring` — :func:`~workbench.wiring.check_wiring`: does a
  policy/env pair fit, *before* a rollout?
- :mod:`workbench.audit` — :func:`~workbench.audit.reset_audit`: were a
  trajectory's hidden states restarted at every ``is_init``, carried in
  between, and fed back at all?
- :mod:`workbench.replay` — :func:`~workbench.replay.replay_check`: does a
  recurrent-mode replay reproduce the hidden states recorded step by step?

:func:`diagnose` runs every check that its arguments allow.

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> traj = TensorDict({"is_init": torch.tensor([[[True], [False]]]),
    ...                    "recurrent_state": torch.tensor([0., 1.]).view(1, 2, 1, 1),
    ...                    ("next", "recurrent_state"): torch.tensor([1., 2.]).view(1, 2, 1, 1)}, [1, 2])
    >>> print(diagnose(traj).summary())
    0 errors, 0 warnings, 2 ok
    [ok] Memory fed back: The hidden state read by the policy is non-zero at some steps.
    [ok] Memory carried between steps: At all 1 step inside episodes the policy read the previous step's next hidden state.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from tensordict import TensorDictBase

from .episodes import as_env_time
from .keys import KEYS

if TYPE_CHECKING:
    from .replay import ReplayReport

__all__ = ["Finding", "DiagnosticsReport", "diagnose"]

Severity = Literal["ok", "warning", "error"]
"""How bad a finding is."""
_SEVERITIES = ("ok", "warning", "error")
_MARK = {"ok": "[ok]", "warning": "[warning]", "error": "[ERROR]"}


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


def diagnose(trajectory: TensorDictBase, policy=None, env=None, *,
             wiring: list[Finding] | None = None) -> DiagnosticsReport:
    """Runs every check that the arguments allow and collects the findings.

    Args:
        trajectory: ``[E, T]`` from :func:`workbench.rollout.rollout`.
        policy: the policy that recorded it (adds the replay check).
        env: its environment (adds the wiring check, with ``policy``).

    Keyword Args:
        wiring: findings of a :func:`check_wiring` already run on this policy and env (e.g. by
            :class:`workbench.session.Session` before its rollout): used instead of checking again.

    Returns:
        A :class:`DiagnosticsReport`; ``print(report.summary())`` for the text.
    """
    from .audit import reset_audit  # here, not at the top: the checks import Finding from this module
    from .replay import replay_check
    from .wiring import check_wiring

    report = DiagnosticsReport()
    if wiring is not None:
        report.extend(list(wiring))
    elif policy is not None and env is not None:
        report.extend(check_wiring(policy, env, strict=False))
    report.extend(reset_audit(trajectory))
    if policy is not None:
        traj = as_env_time(trajectory)
        if all(k in traj.keys(True) for k in (KEYS.hidden, KEYS.next_hidden, KEYS.is_init)):
            report.replay = replay_check(policy, traj)
            report.findings.append(report.replay.finding)
    return report
