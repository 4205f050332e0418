"""Checkpoint files: a policy's weights, spec and IO in one file, and the checks that read it back.

:func:`save_checkpoint` writes one ``torch.save`` file atomically (loadable with
``weights_only=True``); :func:`load_checkpoint` refuses a file that is not a readable
checkpoint, or whose weights do not fit its stored spec, with one
:class:`~workbench.errors.CheckpointError` before anything is built;
:func:`checkpoint_metadata` reads the extra entries back, and :func:`checkpoint_of`
names the file (path and sha256) a loaded policy came from.

Examples:
    >>> import tempfile
    >>> from workbench.policy import PolicyIO, PolicySpec, build_policy
    >>> spec = PolicySpec(hidden_size=4)
    >>> policy = build_policy(spec, PolicyIO(4, "categorical", 2), device="cpu")
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = save_checkpoint(policy, spec, Path(tmp) / "p.pt", metadata={"env_id": "CartPole-v1"})
    ...     loaded, loaded_spec = load_checkpoint(path)
    ...     checkpoint_metadata(path), checkpoint_of(loaded)["sha256"] == checkpoint_identity(path)["sha256"]
    ({'env_id': 'CartPole-v1'}, True)
"""

from __future__ import annotations

import json
import os
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError, ConfigError
from .files import SHIPPED_ASSETS, atomic_torch_save, json_entry, load_tagged
from .policy import (PolicyIO, PolicySpec, build_policy, derived_from, expected_weight_shapes, policy_spec_of,
                     resolve_device)
from .provenance import checkpoint_identity, versions

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "save_checkpoint",
    "load_checkpoint",
    "checkpoint_metadata",
    "checkpoint_of",
    "recorded_env",
    "CheckpointInfo",
    "CheckpointListing",
    "checkpoint_info",
    "shipped_checkpoints",
    "find_checkpoints",
]

CHECKPOINT_FORMAT = "gru-workbench-checkpoint"
"""the tag every checkpoint file carries (``payload["format"]``)"""
CHECKPOINT_VERSION = 1
"""the newest ``format_version`` this code reads and the one it writes"""


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
        policy: a policy from :func:`~workbench.policy.build_policy`.
        spec: its spec.
        path: the file to write (``torch.save`` format, loadable with ``weights_only=True``).

    Keyword Args:
        io: the policy's :class:`~workbench.policy.PolicyIO`; read from the policy when omitted.
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
    expected = expected_weight_shapes(spec, io)
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
        spec = PolicySpec.from_dict(json_entry(payload, "spec", path, caller))
        io = PolicyIO.from_dict(json_entry(payload, "io", path, caller))
    except CheckpointError:
        raise
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{caller}: {str(path)!r}: the stored spec is invalid: {error}") from None
    _check_weights(payload.get("state_dict"), spec, io, path, caller)
    policy = build_policy(spec, io, device="cpu")
    policy.load_state_dict(payload["state_dict"])
    _LOADED_FROM[policy] = checkpoint_identity(path)
    return policy.to(resolve_device(device)), spec


def checkpoint_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The extra entries :func:`save_checkpoint` stored (``{}`` when none)."""
    payload = _load_payload(path, "checkpoint_metadata")
    return json_entry(payload, "metadata", path, "checkpoint_metadata", "{}", expect=dict)


_LOADED_FROM: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""the one record of which file each loaded policy came from (nothing is stuck on torchrl's objects)"""


def checkpoint_of(policy) -> dict[str, str] | None:
    """The checkpoint a policy was loaded from (:func:`~workbench.provenance.checkpoint_identity`: path and
    sha256), or None when it was built here."""
    try:
        found = _LOADED_FROM.get(policy)
    except TypeError:  # not weak-referenceable: not one of ours
        return None
    origin = derived_from(policy) if found is None else None  # with_recorded_gates: the same weights
    return checkpoint_of(origin) if origin is not None else found


def record_origin(policy, path: str, sha256: str) -> None:
    """Records where a loaded ``policy`` came from when that is not a file of its own (``path`` may name a
    member of an archive, e.g. ``"run.zip!policy.pt"``): :func:`checkpoint_of` then returns it."""
    _LOADED_FROM[policy] = {"path": str(path), "sha256": str(sha256)}


def recorded_env(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The environment a checkpoint's metadata records, as ``EnvSpec`` fields (None when it records none).

    ``workbench train`` records ``env_id``, a :class:`~workbench.session.Session` its whole
    ``env`` spec, the policy panel ``panel_env``; this reads any of them.

    Examples:
        >>> recorded_env({"env_id": "workbench/CueMemory-v0"})
        {'env_id': 'workbench/CueMemory-v0'}
        >>> recorded_env({"panel_env": {"env_id": "CartPole-v1", "hide_velocity": True}})["hide_velocity"]
        True
        >>> recorded_env({}) is None
        True
    """
    for key in ("env", "panel_env"):
        if isinstance(metadata.get(key), dict) and isinstance(metadata[key].get("env_id"), str):
            return dict(metadata[key])
    if isinstance(metadata.get("env_id"), str):
        return {"env_id": metadata["env_id"]}
    return None




# ---------------------------------------------------------------------------- finding checkpoints
@dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint file as a list shows it: where it is, what it was trained on, how big, how good."""

    path: Path
    """the file"""
    spec: PolicySpec
    """its architecture"""
    env_id: str | None = None
    """the environment its metadata records (None when it records none)"""
    solved: bool | None = None
    """whether training reached its solve threshold (None when not recorded)"""
    mean_return: float | None = None
    """the last recorded return: greedy evaluation, else the training batches' mean (None when not recorded)"""
    shipped: bool = False
    """whether it is one of the repository's ``assets/agents``"""

    @property
    def label(self) -> str:
        """``"cue_memory.pt · workbench/CueMemory-v0 · GRU 32 · return 0.97 · shipped"``: one line for a list."""
        parts = [self.path.name, self.env_id or "environment not recorded",
                 f"GRU {self.spec.hidden_size}" + (f" × {self.spec.num_layers}" if self.spec.num_layers > 1 else "")]
        if self.solved is not None:
            parts.append("solved" if self.solved else "not solved")
        if self.mean_return is not None:
            parts.append(f"return {self.mean_return:.3g}")
        if self.shipped:
            parts.append("shipped")
        return " · ".join(parts)


@dataclass(frozen=True)
class CheckpointListing:
    """What :func:`find_checkpoints` found in a folder: the checkpoints, and the ``.pt`` files it skipped (why)."""

    folder: Path
    checkpoints: list[CheckpointInfo] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    """``(file, reason)`` for every ``.pt`` file that is not a readable workbench checkpoint"""


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def checkpoint_info(path: str | os.PathLike) -> CheckpointInfo:
    """Reads a checkpoint's spec and metadata (not its weights into a policy) for a listing.

    Raises :class:`~workbench.errors.CheckpointError` for a file that is not a readable checkpoint.

    Examples:
        >>> info = checkpoint_info(SHIPPED_ASSETS / "agents" / "cue_memory.pt")
        >>> info.env_id, info.spec.hidden_size, info.shipped
        ('workbench/CueMemory-v0', 32, True)
    """
    caller = "checkpoint_info"
    payload = _load_payload(path, caller)
    try:
        spec = PolicySpec.from_dict(json_entry(payload, "spec", path, caller))
    except CheckpointError:
        raise
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{caller}: {str(path)!r}: the stored spec is invalid: {error}") from None
    metadata = json_entry(payload, "metadata", path, caller, "{}", expect=dict)
    env = recorded_env(metadata)
    solved = metadata.get("solved")
    returns = [_number(metadata.get(k)) for k in ("eval_return", "final_mean_return")]
    from .files import is_shipped_asset

    return CheckpointInfo(
        path=Path(path), spec=spec, env_id=env["env_id"] if env else None,
        solved=solved if isinstance(solved, bool) else None,
        mean_return=next((r for r in returns if r is not None), None), shipped=is_shipped_asset(path))


def _shipped_folder() -> Path | None:
    """The shipped checkpoints' folder: next to the package (a source checkout or an editable install), else
    ``assets/agents`` under the current folder or its parent (a notebook in ``notebooks/``)."""
    here = Path.cwd()
    for folder in (SHIPPED_ASSETS / "agents", here / "assets" / "agents",
                   here.parent / "assets" / "agents"):
        if folder.is_dir() and any(folder.glob("*.pt")):
            return folder
    return None


def shipped_checkpoints() -> list[CheckpointInfo]:
    """The trained agents shipped in the repository's ``assets/agents`` (``[]`` when they are not there).

    Examples:
        >>> [info.path.name for info in shipped_checkpoints()]
        ['cartpole_novel.pt', 'cue_memory.pt']
        >>> shipped_checkpoints()[0].label
        'cartpole_novel.pt · workbench/CartPoleNoVel-v1 · GRU 64 · return 500 · shipped'
    """
    folder = _shipped_folder()
    return [] if folder is None else find_checkpoints(folder).checkpoints


def find_checkpoints(folder: str | os.PathLike, *, limit: int = 200) -> CheckpointListing:
    """The workbench checkpoints among the ``*.pt`` files of ``folder`` (not its subfolders), sorted by name.

    A ``.pt`` file that is not a readable workbench checkpoint is skipped, with the reason, in
    :attr:`CheckpointListing.skipped`.

    Args:
        folder: the folder to list.

    Keyword Args:
        limit: read at most this many ``.pt`` files (the rest are skipped, with that reason).

    Raises:
        ConfigError: ``folder`` is not an existing folder.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = (Path(tmp) / "notes.pt").write_text("hello")
        ...     listing = find_checkpoints(tmp)
        >>> listing.checkpoints, [(p.name, why) for p, why in listing.skipped]
        ([], [('notes.pt', 'not a GRU Workbench checkpoint: the file is text, not a checkpoint')])
        >>> find_checkpoints("/no/such/folder")
        Traceback (most recent call last):
        ...
        workbench.errors.ConfigError: find_checkpoints: 'folder' must be an existing folder; got '/no/such/folder' (no such folder)
    """
    path = Path(folder).expanduser()
    if not path.is_dir():
        why = "a file, not a folder" if path.exists() else "no such folder"
        raise ConfigError(f"find_checkpoints: 'folder' must be an existing folder; got {str(folder)!r} ({why})")
    listing = CheckpointListing(path)
    try:
        files = sorted(p for p in path.iterdir() if p.suffix == ".pt" and p.is_file())
    except OSError as error:
        raise ConfigError(f"find_checkpoints: cannot list {str(folder)!r}: {error.strerror or error}") from None
    for i, file in enumerate(files):
        if i >= limit:
            listing.skipped.append((file, f"not read: more than {limit} .pt files in the folder"))
            continue
        try:
            listing.checkpoints.append(checkpoint_info(file))
        except CheckpointError as error:
            reason = str(error).split(f"{str(file)!r}", 1)[-1].lstrip(": ")
            listing.skipped.append((file, reason.replace("is not a GRU", "not a GRU", 1)))
    return listing
