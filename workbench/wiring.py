"""The wiring check: do a policy and an environment fit, before any step is taken?

Each thing that can be wrong is one :class:`WiringRule` in a table: its
name, when it is broken, and the :class:`~workbench.diagnostics.Finding` it
gives then (title, explanation and fix, as templates filled from the
:class:`WiringFacts` that the rule looked at). :data:`ENV_RULES` look at the
environment once; :data:`MODULE_RULES` at every recurrent module of the
policy. :func:`check_wiring` runs them all.

Examples:
    >>> [rule.name for rule in MODULE_RULES][:2]
    ['next hidden key feeds back', 'observation present']
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from .diagnostics import Finding, Severity
from .errors import EnvMismatchError, WorkbenchError
from .keys import KEYS

__all__ = [
    "WiringError",
    "WiringWarning",
    "WiringFacts",
    "WiringRule",
    "ENV_RULES",
    "MODULE_RULES",
    "check_wiring",
    "check_env_fits",
]


class WiringError(WorkbenchError, ValueError):
    """A policy and an environment that cannot work together; ``.findings`` says why."""

    def __init__(self, findings: list[Finding]):
        self.findings = list(findings)
        lines = [f"{len(self.findings)} wiring problem(s) found before the rollout:"]
        lines += [f"- {f.title}: {f.explanation} Fix: {f.fix}" for f in self.findings]
        super().__init__("\n".join(lines))


class WiringWarning(UserWarning):
    """A policy/env pair that runs but may not do what you expect."""


def _as_tuple(key) -> tuple:
    return tuple(key if isinstance(key, tuple) else (key,))


@dataclass(frozen=True)
class WiringFacts:
    """What the rules look at: the environment's entries and, for module rules, one module's keys and sizes."""

    available: list[str]
    """the environment's observation entries, sorted"""
    modules: int
    """how many recurrent modules the policy holds"""
    has_is_init: bool
    """the environment writes ``is_init`` (an ``InitTracker``)"""
    name: str = ""
    """the module's class name"""
    value_key: Any = None
    """the key the module reads its input from"""
    hidden_key: Any = None
    """the key the module reads its hidden state from"""
    next_key: Any = None
    """the key the module writes its next hidden state to"""
    expected_next: tuple = ()
    """``("next", *hidden_key)``: the only key the environment carries to the next step"""
    has_observation: bool = False
    """the environment produces ``value_key``"""
    observation_size: int | None = None
    """its last dimension"""
    observation_shape: list[int] = field(default_factory=list)
    """its shape"""
    input_size: int | None = None
    """the module's input features (None when it does not say)"""
    has_primer: bool = False
    """the environment has a ``hidden_key`` entry"""
    hidden_shape: list[int] = field(default_factory=list)
    """that entry's shape"""
    hidden_dtype: Any = None
    """that entry's dtype"""
    primer_shape: list[int] | None = None
    """the shape the module's own primer gives (None when it cannot tell)"""
    primer_dtype: Any = None
    """the dtype the module's own primer gives (None when it cannot tell)"""

    @classmethod
    def of_env(cls, env, modules: list) -> WiringFacts:
        """The facts about ``env`` alone (its entries, ``is_init``) and the number of recurrent ``modules``."""
        spec = env.observation_spec_unbatched
        return cls(sorted(str(k) for k in spec.keys(True, True)), len(modules), "is_init" in spec.keys(True))

    def of_module(self, module, env) -> WiringFacts:
        """These facts with ``module``'s keys and the environment's entries for them."""
        spec = env.observation_spec_unbatched
        hidden_key = module.in_keys[1]
        facts: dict[str, Any] = dict(
            name=type(module).__name__, value_key=module.in_keys[0], hidden_key=hidden_key,
            next_key=module.out_keys[1], expected_next=("next", *_as_tuple(hidden_key)),
            has_observation=module.in_keys[0] in spec.keys(True), input_size=getattr(module, "input_size", None),
            has_primer=hidden_key in spec.keys(True),
        )
        if facts["has_observation"]:
            shape = spec[facts["value_key"]].shape
            facts.update(observation_size=shape[-1] if len(shape) else 1, observation_shape=list(shape))
        if facts["has_primer"]:
            facts.update(hidden_shape=list(spec[hidden_key].shape), hidden_dtype=spec[hidden_key].dtype)
            try:
                primer = module.make_tensordict_primer().primers[hidden_key]
                facts.update(primer_shape=list(primer.shape), primer_dtype=primer.dtype)
            except Exception:  # a module with an unusual primer: compare what we can
                pass
        return replace(self, **facts)


@dataclass(frozen=True)
class WiringRule:
    """One way a policy/env pair can be miswired, and what to say when it is.

    Examples:
        >>> rule = WiringRule("is_init", lambda w: not w.has_is_init, "error", "No is_init",
        ...                   "Observations: {available}.", "Add an InitTracker.")
        >>> print(rule.finding(WiringFacts(["observation"], 1, False)))
        [ERROR] No is_init: Observations: ['observation']. Fix: Add an InitTracker.
    """

    name: str
    """what the rule checks, in a few words"""
    broken: Callable[[WiringFacts], bool]
    """True when the facts break the rule"""
    severity: Severity
    """of the finding"""
    title: str
    """the finding's title: a ``str.format`` template over the :class:`WiringFacts` fields"""
    explanation: str
    """the finding's explanation (a template)"""
    fix: str
    """the finding's fix (a template)"""

    def finding(self, facts: WiringFacts) -> Finding:
        """The finding this rule gives for ``facts``."""
        values = vars(facts)
        return Finding(self.severity, self.title.format(**values), self.explanation.format(**values),
                       self.fix.format(**values))


_REBUILD_ENV = "Rebuild the environment with this policy: make_env(spec, policy=policy)."

ENV_RULES: tuple[WiringRule, ...] = (
    WiringRule(
        "policy has a recurrent module", lambda w: w.modules == 0, "warning", "No recurrent module",
        "The policy holds no module with make_tensordict_primer() (no GRU/LSTM), so there is no hidden "
        "state to wire or to watch.",
        "Build the policy with workbench.policy.build_policy.",
    ),
    WiringRule(
        "environment writes is_init", lambda w: not w.has_is_init, "error", "No is_init in the environment",
        "The environment does not write 'is_init' (no InitTracker), so the GRU cannot tell where episodes "
        "start: it would stop with a KeyError, or leak memory across episodes. Observations: {available}.",
        "env.append_transform(torchrl.envs.InitTracker()) or build it with make_env(spec, policy).",
    ),
)
"""Rules about the environment alone, checked once."""

MODULE_RULES: tuple[WiringRule, ...] = (
    WiringRule(
        "next hidden key feeds back", lambda w: _as_tuple(w.next_key) != w.expected_next, "error",
        "Next hidden key does not feed back",
        "{name} reads its hidden state from {hidden_key!r} but writes the next one to {next_key!r}; "
        "the environment only carries {expected_next!r} to the next step.",
        "Use out_keys=[..., {expected_next!r}].",
    ),
    WiringRule(
        "observation present", lambda w: not w.has_observation, "error", "No observation {value_key!r}",
        "{name} reads {value_key!r}, which the environment does not produce; it has {available}.",
        "Build the module with in_key=" + repr(KEYS.observation) + " (or the env's observation key).",
    ),
    WiringRule(
        "observation size",
        lambda w: w.has_observation and w.input_size is not None and w.observation_size != w.input_size, "error",
        "Observation size mismatch for {value_key!r}",
        "{name} expects {input_size} input features but the environment's {value_key!r} has "
        "{observation_size} (shape {observation_shape}); a hidden-velocity variant changes the size.",
        "Build the policy from this environment: build_policy(spec, env).",
    ),
    WiringRule(
        "primer present", lambda w: not w.has_primer, "error", "No primer for {hidden_key!r}",
        "The environment has no {hidden_key!r} entry, so the policy would read a zero hidden state at "
        "every step and never receive its memory (recurrence silently off, torchrl #2327).",
        "env.append_transform(policy_module.make_tensordict_primer()) or make_env(spec, policy=policy).",
    ),
    WiringRule(
        "hidden shape", lambda w: w.primer_shape is not None and w.hidden_shape != w.primer_shape, "error",
        "Hidden shape mismatch for {hidden_key!r}",
        "The environment's primer gives {hidden_key!r} the shape {hidden_shape} but {name} "
        "needs {primer_shape} (num_layers, hidden_size): the primer belongs to another module.",
        _REBUILD_ENV,
    ),
    WiringRule(
        "hidden dtype", lambda w: w.primer_dtype is not None and w.hidden_dtype != w.primer_dtype, "error",
        "Hidden dtype mismatch for {hidden_key!r}",
        "The environment's primer gives {hidden_key!r} dtype {hidden_dtype} but {name}'s "
        "parameters are {primer_dtype}.",
        _REBUILD_ENV,
    ),
)
"""Rules about each recurrent module and the environment's entries for it, checked in this order."""


def check_wiring(policy, env, *, strict: bool = True) -> list[Finding]:
    """Checks that a policy and an environment fit, before any step is taken.

    Runs :data:`ENV_RULES` once and :data:`MODULE_RULES` for every recurrent
    module: no primer for the GRU's hidden key (the memory would be zero at
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

    modules = recurrent_modules(policy)
    env_facts = WiringFacts.of_env(env, modules)
    findings = [rule.finding(env_facts) for rule in ENV_RULES if rule.broken(env_facts)]
    for module in modules:
        facts = env_facts.of_module(module, env)
        findings += [rule.finding(facts) for rule in MODULE_RULES if rule.broken(facts)]
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


def _describe_io(io) -> str:
    """``io``'s observation size and action space in words."""
    if io.action_kind == "continuous":
        action = f"a continuous action of {io.action_size} dim(s) in {io.action_range}"
    else:
        action = f"{io.action_size} discrete actions ({io.action_kind})"
    return f"observation size {io.observation_size} and {action}"


def check_env_fits(expected, found, env_id: str) -> None:
    """Raises :class:`~workbench.errors.EnvMismatchError` unless the ``found`` PolicyIO of ``env_id`` is ``expected``.

    Examples:
        >>> from workbench.policy import PolicyIO
        >>> check_env_fits(PolicyIO(4, "categorical", 2), PolicyIO(2, "categorical", 3), "MountainCar-v0")
        Traceback (most recent call last):
        ...
        workbench.errors.EnvMismatchError: 'MountainCar-v0' does not fit the policy: expected observation size 4 and 2 discrete actions (categorical); found observation size 2 and 3 discrete actions (categorical)
    """
    if expected != found:
        raise EnvMismatchError(
            f"{env_id!r} does not fit the policy: expected {_describe_io(expected)}; found {_describe_io(found)}"
        )
