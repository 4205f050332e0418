"""Recurrent policies: :class:`PolicySpec` → :func:`build_policy`; checkpoints.

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
import json
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from .errors import CheckpointError, ConfigError
from .files import atomic_torch_save, load_tagged
from .gru import GRUModule
from .keys import KEYS
from .provenance import checkpoint_identity, versions
from .specs import Spec, setting

__all__ = [
    "PolicySpec",
    "PolicyIO",
    "MLPHead",
    "build_policy",
    "save_checkpoint",
    "load_checkpoint",
    "recurrent_modules",
    "policy_spec_of",
    "checkpoint_of",
    "resolve_device",
    "checkpoint_metadata",
]

FEATURES_KEY = "features"
"""where the GRU writes its output for the head"""

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}
"""activation names a :class:`PolicySpec` accepts"""

CHECKPOINT_FORMAT = "gru-workbench-checkpoint"
CHECKPOINT_VERSION = 1


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


_POLICY_SPECS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""the one record of which spec and IO built which policy (nothing is stuck on torchrl's objects)"""


def policy_spec_of(policy) -> tuple[PolicySpec, PolicyIO] | None:
    """The spec and IO a policy was built from (None if not built by :func:`build_policy`)."""
    try:
        return _POLICY_SPECS.get(policy)
    except TypeError:  # not weak-referenceable: not one of ours
        return None


def checkpoint_of(policy) -> dict[str, str] | None:
    """The checkpoint a policy was loaded from (:func:`~workbench.provenance.checkpoint_identity`: path and
    sha256), or None when it was built here."""
    return getattr(policy, "_workbench_checkpoint", None)


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


def save_checkpoint(
    policy: nn.Module,
    spec: PolicySpec,
    path: str | os.PathLike,
    *,
    io: PolicyIO | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Writes the weights, the spec and the IO (as JSON-able dicts) to one file, atomically.

    Args:
        policy: a policy from :func:`build_policy`.
        spec: its spec.
        path: the file to write (``torch.save`` format, loadable with ``weights_only=True``).

    Keyword Args:
        io: the policy's :class:`PolicyIO`; read from the policy when omitted.
        metadata: extra JSON-able entries (e.g. the training environment and
            command); :func:`checkpoint_metadata` reads them back.

    Returns:
        The path written.

    Examples:
        >>> import tempfile
        >>> from workbench.envs import EnvSpec, make_env
        >>> spec = PolicySpec(hidden_size=4)
        >>> policy = build_policy(spec, make_env(EnvSpec("CartPole-v1")), device="cpu")
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = save_checkpoint(policy, spec, Path(tmp) / "policy.pt")
        ...     loaded, loaded_spec = load_checkpoint(path)
        >>> loaded_spec == spec
        True
    """
    if not isinstance(spec, PolicySpec):
        raise TypeError(f"save_checkpoint: 'spec' must be a PolicySpec; got {type(spec).__name__}.")
    if io is None:
        built = policy_spec_of(policy)
        io = built[1] if built is not None else None
        if io is None:
            raise ValueError("save_checkpoint: pass io=PolicyIO.from_env(env); this policy was not made by build_policy.")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "spec": json.dumps(spec.to_dict()),
        "io": json.dumps(io.to_dict()),
        "versions": json.dumps(versions()),
        "metadata": json.dumps(metadata or {}),
        "state_dict": {k: v.detach().cpu() for k, v in policy.state_dict().items()},
    }
    path = Path(path)
    atomic_torch_save(payload, path)
    return path


def _load_payload(path: str | os.PathLike, caller: str) -> dict[str, Any]:
    return load_tagged(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, caller, "checkpoint")


def _json_entry(payload: dict[str, Any], name: str, path, caller: str, default: str | None = None) -> Any:
    """The JSON text stored under ``name``, parsed; a :class:`CheckpointError` when absent or malformed."""
    text = payload.get(name, default)
    try:
        if not isinstance(text, str):
            raise ValueError(f"expected JSON text; got {type(text).__name__}")
        return json.loads(text)
    except ValueError as error:
        raise CheckpointError(f"{caller}: {str(path)!r}: the stored '{name}' is unreadable ({error})") from None


def _check_weights(stored: Any, spec: PolicySpec, io: PolicyIO, path, caller: str) -> None:
    """Refuses stored weights that do not fit ``spec`` and ``io`` before anything is allocated.

    The expected shapes come from the policy assembled on the meta device (no memory).
    """
    where = f"{caller}: {str(path)!r}"
    if not isinstance(stored, dict) or not all(isinstance(v, torch.Tensor) for v in stored.values()):
        raise CheckpointError(f"{where}: the stored 'state_dict' must map names to tensors; got {type(stored).__name__}")
    least = 4 * spec.num_layers + 2 * (len(spec.head_cells) + 1)
    if len(stored) < least:
        raise CheckpointError(
            f"{where}: its spec (num_layers={spec.num_layers}, head_cells={list(spec.head_cells)}) needs at least "
            f"{least} weight tensors; the file stores {len(stored)}"
        )
    expected = {k: tuple(v.shape) for k, v in _assemble(spec, io, meta=True).state_dict().items()}
    for name, shape in expected.items():
        if name not in stored:
            raise CheckpointError(f"{where}: parameter {name!r} (shape {list(shape)}) is missing from the stored weights")
        if tuple(stored[name].shape) != shape:
            raise CheckpointError(
                f"{where}: parameter {name!r} should have shape {list(shape)} for its spec (hidden_size="
                f"{spec.hidden_size}, observation_size={io.observation_size}); stored {list(stored[name].shape)}"
            )
        if not stored[name].is_floating_point():
            raise CheckpointError(f"{where}: parameter {name!r} should be floating point; stored {stored[name].dtype}")
    unexpected = sorted(set(stored) - set(expected))
    if unexpected:
        raise CheckpointError(f"{where}: the stored weights have entries its spec does not make: {unexpected[:5]}")


def load_checkpoint(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> tuple[nn.Module, PolicySpec]:
    """Rebuilds a policy saved by :func:`save_checkpoint`; its outputs equal the original's bit for bit.

    Raises :class:`~workbench.errors.CheckpointError` for a file that is not a readable
    checkpoint, and for stored weights that do not fit the stored spec (checked before the
    policy is built, so a corrupt ``hidden_size`` never allocates memory).

    Keyword Args:
        device: where to put the policy (``"auto"``, ``"cpu"``, ``"cuda"``). Default: ``"cpu"``.

    Returns:
        ``(policy, spec)``; :func:`checkpoint_of` gives the file's path and sha256.
    """
    caller = "load_checkpoint"
    payload = _load_payload(path, caller)
    try:
        spec = PolicySpec.from_dict(_json_entry(payload, "spec", path, caller))
        io = PolicyIO.from_dict(_json_entry(payload, "io", path, caller))
    except CheckpointError:
        raise
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{caller}: {str(path)!r}: the stored spec is invalid: {error}") from None
    _check_weights(payload.get("state_dict"), spec, io, path, caller)
    policy = build_policy(spec, io, device="cpu")
    policy.load_state_dict(payload["state_dict"])
    policy._workbench_checkpoint = checkpoint_identity(path)
    return policy.to(resolve_device(device)), spec


def checkpoint_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The extra entries :func:`save_checkpoint` stored (``{}`` when none)."""
    meta = _json_entry(_load_payload(path, "checkpoint_metadata"), "metadata", path, "checkpoint_metadata", "{}")
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint_metadata: {str(path)!r}: the stored 'metadata' must be a JSON object; "
                              f"got {type(meta).__name__}")
    return meta
