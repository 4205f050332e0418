"""Recurrent policies: :class:`PolicySpec` → :func:`build_policy` (checkpoint files: :mod:`workbench.checkpoints`).

A policy is a torchrl ``ProbabilisticActor`` around ``GRUModule → MLPHead``:

- discrete actions: logits → ``Categorical`` (integer actions) or
  ``OneHotCategorical`` (one-hot actions);
- continuous actions: ``loc, scale`` → ``TanhNormal`` squashed into the
  action bounds.

Sampling is random by default and greedy (argmax, or ``tanh(loc)`` scaled)
under ``torchrl.envs.utils.set_exploration_type(ExplorationType.DETERMINISTIC)``
(what ``rollout(..., deterministic=True)`` uses), so the same object serves a
PPO loss later. Sizes come from the environment (:class:`PolicyIO`).

Examples:
    >>> from workbench.envs import EnvSpec, make_env
    >>> policy = build_policy(PolicySpec(hidden_size=8), make_env(EnvSpec("CartPole-v1")))
    >>> gru = recurrent_modules(policy)[0]
    >>> gru.in_keys, gru.out_keys
    (['observation', 'recurrent_state', 'is_init'], ['features', ('next', 'recurrent_state')])
"""

from __future__ import annotations

import contextlib
import dataclasses
import weakref
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from .errors import ConfigError
from .gru import GRUModule
from .keys import KEYS
from .specs import Spec, setting

__all__ = [
    "PolicySpec",
    "PolicyIO",
    "MLPHead",
    "build_policy",
    "expected_weight_shapes",
    "recurrent_modules",
    "policy_spec_of",
    "resolve_device",
    "with_recorded_gates",
    "derived_from",
]

FEATURES_KEY = "features"
"""where the GRU writes its output for the head"""

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}
"""activation names a :class:`PolicySpec` accepts"""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The device a choice names, with one rule for every entry point (library, panels, CLI).

    ``"auto"`` is CUDA when present, else CPU. An explicit ``"cuda"`` (or
    ``"cuda:N"``) without CUDA is an error, never a silent fall back to CPU.

    Raises:
        ConfigError: an unknown choice; its subclass ``DeviceUnavailableError`` (also a
            ``RuntimeError``) for CUDA asked for where there is none.

    Examples:
        >>> resolve_device("cpu")
        device(type='cpu')
        >>> resolve_device("tpu")
        Traceback (most recent call last):
        ...
        workbench.errors.ConfigError: device: expected 'auto', 'cpu', 'cuda' or 'cuda:N'; got 'tpu'.
    """
    from .errors import ConfigError, DeviceUnavailableError

    expected = "device: expected 'auto', 'cpu', 'cuda' or 'cuda:N'"
    if isinstance(device, torch.device):
        choice = str(device)
    elif isinstance(device, str):
        choice = device
    else:
        raise ConfigError(f"{expected}; got {device!r}.")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice != "cpu" and not (choice == "cuda" or choice.startswith("cuda:")):
        raise ConfigError(f"{expected}; got {choice!r}.")
    try:
        resolved = torch.device(choice)
    except RuntimeError:  # e.g. 'cuda:x'
        raise ConfigError(f"{expected}; got {choice!r}.") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU build"
            raise DeviceUnavailableError(
                f"device: {choice!r} was asked for but CUDA is not available; use 'auto' or 'cpu' "
                f"(torch {torch.__version__}, {build})."
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"device: {choice!r} was asked for but only {torch.cuda.device_count()} CUDA device(s) exist; "
                f"use 'cuda:0' to 'cuda:{torch.cuda.device_count() - 1}', 'auto' or 'cpu'."
            )
    return resolved


@dataclass(frozen=True)
class PolicySpec(Spec):
    """How to build a recurrent policy; :func:`build_policy` builds it.

    Examples:
        >>> PolicySpec(hidden_size=8, head_cells=[32, 32]).head_cells
        (32, 32)
        >>> PolicySpec(record_gates=True)
        Traceback (most recent call last):
        ...
        workbench.errors.ConfigError: PolicySpec: 'record_gates=True' needs python_based=True (the native GRU does not expose its gates); got python_based=False.
    """

    hidden_size: int = setting(16, "features of the GRU's hidden state", low=1, label="hidden size")
    num_layers: int = setting(1, "stacked GRU layers", low=1, label="layers")
    head_cells: tuple[int, ...] = setting(
        (32,), "hidden layer sizes of the MLP head after the GRU (``()``: a linear head)", low=1, label="head cells")
    activation: str = setting("tanh", "activation of the head", choices=tuple(sorted(ACTIVATIONS)))
    python_based: bool = setting(
        False, "run the Python GRU cell (vmap-safe, can record gates) instead of ``torch.nn.GRU``", label="cell",
        choice_labels={False: "torch.nn.GRU (cuDNN on GPU)", True: "Python cell (gates)"})
    record_gates: bool = setting(
        False, "write the r, z, n gates to ``KEYS.gates`` at every step (needs ``python_based``)")
    recurrent_backend: str = setting("auto", "the GRU's kernel in recurrent mode (see ``GRUModule``)",
                                     choices=tuple(GRUModule.BACKENDS), accepted=tuple(GRUModule._BACKEND_ALIASES),
                                     label="backend")
    seed: int = setting(0, "seed of the weight initialisation", low=0)

    def _check(self) -> None:
        if self.record_gates and not self.python_based:
            raise ConfigError(
                "PolicySpec: 'record_gates=True' needs python_based=True (the native GRU does not expose its "
                f"gates); got python_based={self.python_based!r}."
            )


@dataclass(frozen=True)
class PolicyIO(Spec):
    """What a policy reads and writes, taken from an environment's specs (JSON-able, for checkpoints).

    Examples:
        >>> from workbench.envs import EnvSpec, make_env
        >>> io = PolicyIO.from_env(make_env(EnvSpec("Pendulum-v1", hide_velocity=True)))
        >>> io.observation_size, io.action_kind, io.action_size, io.action_low, io.action_high
        (2, 'continuous', 1, (-2.0,), (2.0,))
    """

    observation_size: int = setting(help="features of ``KEYS.observation``", kind="int", low=1)
    action_kind: Literal["categorical", "one_hot", "continuous"] = setting(
        help="integer actions, one-hot actions, or a bounded box", kind="str",
        choices=("categorical", "one_hot", "continuous"))
    action_size: int = setting(help="number of discrete actions, or dimensions of a continuous action", kind="int",
                               low=1)
    action_low: tuple[float, ...] | None = setting(None, "lower bounds of a continuous action", kind="floats")
    action_high: tuple[float, ...] | None = setting(None, "upper bounds of a continuous action", kind="floats")

    def _check(self) -> None:
        if self.action_kind == "continuous":
            for name in ("action_low", "action_high"):
                value = getattr(self, name)
                if value is None or len(value) != self.action_size:
                    raise ConfigError(
                        f"PolicyIO: '{name}' must hold {self.action_size} bounds for a continuous action; got {value!r}."
                    )
                object.__setattr__(self, name, tuple(float(v) for v in value))

    @classmethod
    def from_env(cls, env) -> PolicyIO:
        """Reads the observation size and the action space from a torchrl environment."""
        from torchrl.data import Bounded, Categorical, OneHot

        obs_spec = env.observation_spec_unbatched
        if KEYS.observation not in obs_spec.keys(True):
            raise KeyError(
                f"PolicyIO.from_env: the environment has no {KEYS.observation!r} observation; it has "
                f"{sorted(str(k) for k in obs_spec.keys(True, True))}."
            )
        shape = obs_spec[KEYS.observation].shape
        if len(shape) != 1:
            raise ValueError(f"PolicyIO.from_env: {KEYS.observation!r} must be a flat vector; got shape {list(shape)}.")
        action = env.action_spec_unbatched
        if isinstance(action, Categorical):
            return cls(int(shape[0]), "categorical", int(action.space.n))
        if isinstance(action, OneHot):
            return cls(int(shape[0]), "one_hot", int(action.space.n))
        if isinstance(action, Bounded) and len(action.shape) == 1:
            low = action.space.low.flatten().tolist()
            high = action.space.high.flatten().tolist()
            return cls(int(shape[0]), "continuous", int(action.shape[0]), tuple(low), tuple(high))
        raise TypeError(
            "PolicyIO.from_env: the action space must be discrete (Categorical/OneHot) or a bounded box "
            f"(Bounded, 1-d); got {type(action).__name__} with shape {list(action.shape)}."
        )

    @property
    def action_range(self) -> str | None:
        """A continuous action's bounds as people write them, one ``[low, high]`` per dimension (None if discrete).

        Examples:
            >>> PolicyIO(2, "continuous", 1, (-2.0,), (2.0,)).action_range
            '[-2, 2]'
            >>> PolicyIO(2, "continuous", 2, (-1.0, 0.0), (1.0, 0.5)).action_range
            '[-1, 1] × [0, 0.5]'
        """
        if self.action_kind != "continuous":
            return None
        return " × ".join(f"[{lo:g}, {hi:g}]" for lo, hi in zip(self.action_low, self.action_high))

    def action_spec(self):
        """The torchrl action spec (unbatched)."""
        from torchrl.data import Bounded, Categorical, OneHot

        if self.action_kind == "categorical":
            return Categorical(self.action_size)
        if self.action_kind == "one_hot":
            return OneHot(self.action_size)
        return Bounded(
            low=torch.tensor(self.action_low), high=torch.tensor(self.action_high), shape=(self.action_size,)
        )


def _head_base():
    from tensordict.nn import TensorDictModuleBase

    return TensorDictModuleBase


class MLPHead(_head_base()):
    """The policy head: an MLP from one key to one key (or to ``loc, scale``), with no per-call overhead.

    ``tensordict.nn.TensorDictModule`` does the same job generically, but each
    call pays for its output handling (in tensordict 0.14 a package look-up for
    every key it writes), which in a 1000-step rollout of a small policy costs
    more than the GRU itself. This module reads ``in_key``, runs ``module`` and
    writes the result with ``TensorDict.set``; with ``param_extractor`` (e.g.
    ``NormalParamExtractor``) the output is split into ``out_keys = [loc, scale]``.

    Args:
        module: the network (e.g. ``torchrl.modules.MLP``).
        in_key: the key it reads.
        out_keys: the key(s) it writes: one, or two with ``param_extractor``.

    Keyword Args:
        param_extractor: an optional module that splits the output into two tensors.

    Examples:
        >>> from tensordict import TensorDict
        >>> head = MLPHead(nn.Linear(3, 2), "features", ["logits"])
        >>> head(TensorDict({"features": torch.zeros(4, 3)}, [4]))["logits"].shape
        torch.Size([4, 2])
    """

    def __init__(self, module: nn.Module, in_key, out_keys, *, param_extractor: nn.Module | None = None) -> None:
        super().__init__()
        out_keys = [out_keys] if isinstance(out_keys, (str, tuple)) else list(out_keys)
        expected = 1 if param_extractor is None else 2
        if len(out_keys) != expected:
            raise ValueError(
                f"MLPHead: expected {expected} out_key(s) ({'with' if param_extractor is not None else 'without'} "
                f"a param_extractor); got {out_keys!r}."
            )
        self.module = module
        self.param_extractor = param_extractor
        self.in_keys = [in_key]
        self.out_keys = out_keys

    def forward(self, tensordict):
        out = self.module(tensordict.get(self.in_keys[0]))
        if self.param_extractor is None:
            tensordict.set(self.out_keys[0], out)
        else:
            first, second = self.param_extractor(out)
            tensordict.set(self.out_keys[0], first)
            tensordict.set(self.out_keys[1], second)
        return tensordict


def build_policy(spec: PolicySpec, env, *, device: str | torch.device = "auto"):
    """The policy of ``spec`` for an environment (or a :class:`PolicyIO`).

    Args:
        spec: the architecture.
        env: a torchrl environment (its observation and action specs are read)
            or a :class:`PolicyIO`.

    Keyword Args:
        device: where the parameters live: ``"auto"`` (CUDA when present),
            ``"cpu"`` or ``"cuda"``. Initialisation happens on CPU under
            ``spec.seed``, so the weights do not depend on the device.

    Returns:
        A torchrl ``ProbabilisticActor``: ``GRUModule`` (``KEYS.observation``,
        ``KEYS.hidden`` → ``"features"``, ``KEYS.next_hidden``), an
        :class:`MLPHead` (``"features"`` → ``"logits"``, or ``"loc", "scale"``),
        and a distribution; it writes ``KEYS.action`` and its log-probability.

    Examples:
        >>> from workbench.envs import EnvSpec, make_env
        >>> from tensordict import TensorDict
        >>> env = make_env(EnvSpec("CartPole-v1"))
        >>> policy = build_policy(PolicySpec(hidden_size=8), env, device="cpu")
        >>> td = policy(make_env(EnvSpec("CartPole-v1"), policy).reset())
        >>> td["action"].shape, td["logits"].shape, td["next", "recurrent_state"].shape
        (torch.Size([]), torch.Size([2]), torch.Size([1, 8]))
    """
    if not isinstance(spec, PolicySpec):
        raise TypeError(f"build_policy: 'spec' must be a PolicySpec; got {type(spec).__name__}.")
    io = env if isinstance(env, PolicyIO) else PolicyIO.from_env(env)
    target = resolve_device(device)
    policy = _assemble(spec, io).to(target)
    _POLICY_SPECS[policy] = (spec, io)
    return policy


def _assemble(spec: PolicySpec, io: PolicyIO, *, meta: bool = False):
    """The policy of :func:`build_policy` on CPU; with ``meta``, its GRU and head hold no memory (shapes only)."""
    from tensordict.nn import InteractionType, NormalParamExtractor, TensorDictSequential
    from torch.distributions import Categorical
    from torchrl.modules import MLP, OneHotCategorical, ProbabilisticActor, TanhNormal

    from .gru import GRUModule

    continuous = io.action_kind == "continuous"
    out_features = 2 * io.action_size if continuous else io.action_size
    where = torch.device("meta") if meta else contextlib.nullcontext()
    with torch.random.fork_rng(devices=[]), where:
        torch.manual_seed(spec.seed)
        gru = GRUModule(
            io.observation_size,
            spec.hidden_size,
            spec.num_layers,
            python_based=spec.python_based,
            recurrent_backend=spec.recurrent_backend,
            in_keys=[KEYS.observation, KEYS.hidden],
            out_keys=[FEATURES_KEY, KEYS.next_hidden],
            gates_key=KEYS.gates if spec.record_gates else None,
        )
        mlp = MLP(
            in_features=spec.hidden_size,
            out_features=out_features,
            num_cells=list(spec.head_cells),
            activation_class=ACTIVATIONS[spec.activation],
        )
    if continuous:
        head = MLPHead(mlp, FEATURES_KEY, ["loc", "scale"], param_extractor=NormalParamExtractor())
        dist_keys, dist_cls = ["loc", "scale"], TanhNormal
        dist_kwargs = {"low": torch.tensor(io.action_low), "high": torch.tensor(io.action_high)}
    else:
        head = MLPHead(mlp, FEATURES_KEY, ["logits"])
        dist_keys = ["logits"]
        dist_cls = Categorical if io.action_kind == "categorical" else OneHotCategorical
        dist_kwargs = {}
    return ProbabilisticActor(
        TensorDictSequential(gru, head),
        in_keys=dist_keys,
        out_keys=[KEYS.action],
        spec=io.action_spec(),
        distribution_class=dist_cls,
        distribution_kwargs=dist_kwargs,
        return_log_prob=True,
        default_interaction_type=InteractionType.RANDOM,
    )


def expected_weight_shapes(spec: PolicySpec, io: PolicyIO) -> dict[str, tuple[int, ...]]:
    """The ``state_dict`` names and shapes :func:`build_policy` makes for ``spec`` and ``io``, allocating nothing.

    The policy is assembled on the meta device, so a huge ``hidden_size`` costs no memory
    (:func:`workbench.checkpoints.load_checkpoint` checks stored weights against it).

    Examples:
        >>> shapes = expected_weight_shapes(PolicySpec(hidden_size=10**6), PolicyIO(4, "categorical", 2))
        >>> shapes["module.0.module.0.gru.weight_ih_l0"]
        (3000000, 4)
    """
    return {k: tuple(v.shape) for k, v in _assemble(spec, io, meta=True).state_dict().items()}


_POLICY_SPECS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""the one record of which spec and IO built which policy (nothing is stuck on torchrl's objects)"""


def policy_spec_of(policy) -> tuple[PolicySpec, PolicyIO] | None:
    """The spec and IO a policy was built from (None if not built by :func:`build_policy`)."""
    try:
        return _POLICY_SPECS.get(policy)
    except TypeError:  # not weak-referenceable: not one of ours
        return None


_DERIVED_FROM: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""which policy :func:`with_recorded_gates` made each twin from (its checkpoint stays the twin's provenance)"""


def with_recorded_gates(policy):
    """The same policy on our Python cell, recording the GRU's gates: the same weights (copied), the same outputs.

    A policy on ``torch.nn.GRU`` (every trained checkpoint: it is the fast path) does not expose its
    gates. This builds the policy's spec with ``python_based=True, record_gates=True`` (the layer
    :meth:`~workbench.gru.GRUModule.make_python_based` switches to, plus the gates key) and loads the
    original's weights into it; the original is left as it was. A policy that records gates already
    is returned as it is. :func:`derived_from` names the original (and
    :func:`~workbench.checkpoints.checkpoint_of` its file).

    Examples:
        >>> native = build_policy(PolicySpec(hidden_size=4), PolicyIO(3, "categorical", 2), device="cpu")
        >>> twin = with_recorded_gates(native)
        >>> type(recurrent_modules(native)[0].gru).__name__, type(recurrent_modules(twin)[0].gru).__name__
        ('GRU', 'PythonGRU')
        >>> policy_spec_of(twin)[0].record_gates, derived_from(twin) is native, with_recorded_gates(twin) is twin
        (True, True, True)
    """
    built = policy_spec_of(policy)
    if built is None:
        raise TypeError("with_recorded_gates: 'policy' must come from build_policy or load_checkpoint; got "
                        f"{type(policy).__name__} not built by the workbench.")
    spec, io = built
    if spec.record_gates:
        return policy
    device = next(policy.parameters()).device
    twin = build_policy(dataclasses.replace(spec, python_based=True, record_gates=True), io, device=device)
    twin.load_state_dict(policy.state_dict())
    twin.train(policy.training)
    _DERIVED_FROM[twin] = policy
    return twin


def derived_from(policy):
    """The policy :func:`with_recorded_gates` made ``policy`` from (None when it was not made that way)."""
    try:
        return _DERIVED_FROM.get(policy)
    except TypeError:  # not weak-referenceable: not one of ours
        return None


def recurrent_modules(policy: nn.Module) -> list[nn.Module]:
    """The recurrent modules inside ``policy``: those with ``make_tensordict_primer`` (torchrl's duck typing).

    Examples:
        >>> from workbench import GRUModule
        >>> len(recurrent_modules(GRUModule(3, 4, in_key="x", out_key="y")))
        1
    """
    found: list[nn.Module] = []
    for module in policy.modules():
        if hasattr(module, "make_tensordict_primer") and hasattr(module, "in_keys") and module not in found:
            found.append(module)
    return found
