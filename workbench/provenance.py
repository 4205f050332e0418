"""Where a result came from: library versions, the module, the checkpoint, the run.

One owner for what checkpoints, trajectories, timing records and exported files
say about their origin:

- :func:`versions`: the workbench's and the libraries' versions (a selection of
  :data:`LIBRARIES`), read from the installed distributions (nothing is imported);
- :func:`describe_module`: a (GRU) module's class, sizes, keys and backend;
- :func:`checkpoint_identity`: a file's path and sha256, so a result names the
  exact weights it came from;
- :func:`record`: one provenance record (creation time, versions, platform, plus
  the caller's entries made JSON-ready); :func:`complete` lays an existing record
  (e.g. a trajectory's) over a fresh one, which is what an export embeds;
- :func:`origin`: which checkpoint and which rollout a result came from, read from
  such a record (:func:`origin_lines` says it in words, e.g. an HTML export's footer).

Importing this module is light: it never imports torch (a tensor or module can
only reach it once torch is loaded), so ``python -m workbench --version`` stays fast.

Examples:
    >>> import torch
    >>> sorted(versions())
    ['tensordict', 'torch', 'torchrl', 'workbench']
    >>> meta = record(seed=3, steps=torch.arange(3))
    >>> meta["seed"], meta["steps"], "python" in meta["versions"]
    (3, [0, 1, 2], True)
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import hashlib
import importlib.metadata
import math
import os
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    import torch

__all__ = [
    "DISTRIBUTION",
    "CORE",
    "LIBRARIES",
    "workbench_version",
    "versions",
    "describe_module",
    "checkpoint_identity",
    "jsonable",
    "record",
    "complete",
    "NOT_SAVED",
    "NOT_RECORDED",
    "ROLLOUT_FIELDS",
    "origin",
    "origin_lines",
]

DISTRIBUTION = "gru-workbench"
"""the workbench's distribution name (``pip install gru-workbench``)"""

CORE = ("torch", "torchrl", "tensordict")
"""the libraries a checkpoint records (what its weights and keys depend on)"""

LIBRARIES = ("python", *CORE, "gymnasium", "numpy", "plotly", "kaleido")
"""every library :func:`record` reports (``"python"``: the interpreter)"""


def workbench_version() -> str:
    """The installed distribution's version, else the package's ``__version__``.

    Examples:
        >>> from workbench import __version__
        >>> workbench_version() == __version__
        True
    """
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        from . import __version__

        return __version__


def _library_version(name: str) -> str | None:
    if name == "python":
        return platform.python_version()
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return getattr(sys.modules.get(name), "__version__", None)


def versions(libraries: Sequence[str] = CORE) -> dict[str, str | None]:
    """``{"workbench": ..., <library>: <version or None>}`` for each of ``libraries``.

    Args:
        libraries: names from :data:`LIBRARIES` (or any distribution name); default :data:`CORE`.

    Examples:
        >>> list(versions(("python", "gymnasium")))
        ['workbench', 'python', 'gymnasium']
        >>> versions(("no-such-library",))["no-such-library"] is None
        True
    """
    return {"workbench": workbench_version(), **{name: _library_version(name) for name in libraries}}


def describe_module(module: torch.nn.Module) -> dict[str, Any]:
    """What identifies a (GRU) module: its class, sizes, keys, cell and backend, parameter count.

    Sizes are read from ``module.gru`` when the module wraps one (``GRUModule``),
    else from the module itself (``torch.nn.GRU``).

    Examples:
        >>> import torch
        >>> from workbench import GRUModule
        >>> info = describe_module(GRUModule(3, 4, in_key="x", out_key="y"))
        >>> info["class"], info["input_size"], info["hidden_size"], info["python_based"], info["in_keys"]
        ('GRUModule', 3, 4, False, ['x', 'recurrent_state', 'is_init'])
        >>> describe_module(torch.nn.GRU(2, 5))["parameters"]
        135
    """
    out: dict[str, Any] = {"class": type(module).__qualname__}
    gru = getattr(module, "gru", module)
    if gru is not module:
        out["gru_class"] = type(gru).__qualname__
    for name in ("input_size", "hidden_size", "num_layers", "bias", "dropout", "batch_first"):
        if hasattr(gru, name):
            out[name] = getattr(gru, name)
    for name in ("python_based", "recurrent_backend", "in_keys", "out_keys"):
        value = getattr(module, name, None)
        if value is not None:
            out[name] = value
    out["parameters"] = sum(p.numel() for p in module.parameters())
    return jsonable(out)


def checkpoint_identity(path: str | os.PathLike) -> dict[str, str]:
    """The file a result came from: its resolved path and the sha256 of its bytes.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     file = Path(tmp) / "policy.pt"
        ...     _ = file.write_bytes(b"weights")
        ...     checkpoint_identity(file)["sha256"][:12]
        '9a129038d9a0'
    """
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(path.resolve()), "sha256": digest.hexdigest()}


def jsonable(value: Any) -> Any:
    """A JSON-ready copy of ``value`` (tensors: small ones as lists, big ones as shape + dtype + sha256).

    Examples:
        >>> import torch
        >>> jsonable({"t": torch.zeros(100, dtype=torch.bool), "p": Path("/x"), "k": ("next", "h")})["t"]["shape"]
        [100]
        >>> jsonable([float("nan"), torch.float32, ("next", "h")])
        ['nan', 'torch.float32', ['next', 'h']]
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    torch = sys.modules.get("torch")  # a tensor, dtype or module exists only once torch is loaded
    if torch is not None:
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu()
            if t.numel() <= 64:
                return jsonable(t.tolist())
            raw = t.contiguous().view(torch.uint8) if t.dtype != torch.bool else t.to(torch.uint8)
            return {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""),
                    "sha256": hashlib.sha256(raw.numpy().tobytes()).hexdigest()}
        if isinstance(value, torch.nn.Module):
            return describe_module(value)
        if isinstance(value, (torch.dtype, torch.device)):
            return str(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return jsonable(value.tolist())
    return repr(value)


def record(**entries: Any) -> dict[str, Any]:
    """A provenance record: creation time (UTC), :func:`versions` of :data:`LIBRARIES`, platform, and ``entries``.

    Keyword Args:
        **entries: e.g. ``env=...``, ``seed=...``, ``module=<GRUModule>`` (described with
            :func:`describe_module`), ``is_init=<tensor>`` (large tensors as shape, dtype and
            sha256); made JSON-ready with :func:`jsonable`.

    Examples:
        >>> meta = record(env="CartPole-v1")
        >>> sorted(meta)
        ['created', 'env', 'platform', 'versions']
        >>> sorted(meta["versions"])[:4]
        ['gymnasium', 'kaleido', 'numpy', 'plotly']
    """
    meta: dict[str, Any] = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(LIBRARIES),
        "platform": platform.platform(),
    }
    meta.update({k: jsonable(v) for k, v in entries.items()})
    return meta


def complete(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """``metadata`` laid over a fresh :func:`record`: what it says wins, its ``versions`` merged into ours.

    Examples:
        >>> meta = complete({"versions": {"torch": "9.9"}, "steps": 80})
        >>> meta["versions"]["torch"], meta["versions"]["python"] is not None, meta["steps"]
        ('9.9', True, 80)
    """
    meta = record()
    for key, value in (metadata or {}).items():
        value = jsonable(value)
        if key == "versions" and isinstance(value, dict):
            meta["versions"] = {**meta["versions"], **value}
        else:
            meta[key] = value
    return meta


NOT_SAVED = "built in this session, not saved"
"""what :func:`origin` says of the checkpoint of a policy that was built, not loaded from a file"""
NOT_RECORDED = "not recorded"
"""what :func:`origin` says of the checkpoint when the metadata does not say (e.g. no rollout was given)"""
ROLLOUT_FIELDS = ("env_id", "env", "seed", "steps", "num_envs", "deterministic", "device", "created", "versions")
"""what :func:`origin` keeps of a rollout: environment id and spec, seed, sizes, action mode, device, time, versions"""


def _checkpoint(metadata: Mapping[str, Any]) -> dict[str, Any]:
    found = metadata.get("checkpoint", ...)
    if isinstance(found, Mapping) and found.get("sha256"):
        return {"path": found.get("path"), "sha256": found["sha256"]}
    if isinstance(found, Mapping) and "note" in found:  # already stated by origin()
        return dict(found)
    note = NOT_SAVED if found is None else NOT_RECORDED
    return {"path": None, "sha256": None, "note": note}


def origin(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """Which checkpoint and which rollout a result came from: ``{"checkpoint": ..., "rollout": ...}``.

    ``metadata`` is a rollout's record (:func:`workbench.rollout.trajectory_metadata`) or a
    session's provenance. The checkpoint is its path and sha256, or ``path``/``sha256`` ``None``
    with a ``note``: :data:`NOT_SAVED` for a policy built in this session (the record says
    ``checkpoint: None``), :data:`NOT_RECORDED` when the record does not say. ``"rollout"`` (the
    :data:`ROLLOUT_FIELDS`) is there when the record describes one (it has ``steps``).

    Examples:
        >>> origin({"checkpoint": {"path": "/w/p.pt", "sha256": "ab12"}})
        {'checkpoint': {'path': '/w/p.pt', 'sha256': 'ab12'}}
        >>> found = origin({"checkpoint": None, "env_id": "CartPole-v1", "seed": 3, "steps": 200, "num_envs": 2})
        >>> found["checkpoint"]["note"], found["rollout"]["steps"], found["rollout"]["env_id"]
        ('built in this session, not saved', 200, 'CartPole-v1')
        >>> origin(None)["checkpoint"]["note"]
        'not recorded'
    """
    metadata = metadata or {}
    out: dict[str, Any] = {"checkpoint": _checkpoint(metadata)}
    if isinstance(metadata.get("rollout"), Mapping):  # already stated by origin()
        out["rollout"] = dict(metadata["rollout"])
    elif metadata.get("steps") is not None:
        env = metadata.get("env")
        spec = env if isinstance(env, Mapping) else metadata.get("env_spec")
        env_id = metadata.get("env_id") or (env if isinstance(env, str) else None)
        if env_id is None and isinstance(spec, Mapping):
            env_id = spec.get("env_id")
        found = {**{k: metadata[k] for k in ROLLOUT_FIELDS if k in metadata}, "env_id": env_id, "env": spec}
        out["rollout"] = jsonable({k: found.get(k) for k in ROLLOUT_FIELDS})
    return out


def origin_lines(metadata: Mapping[str, Any] | None) -> list[str]:
    """:func:`origin` in words: a line for the checkpoint, one for the rollout (if any), one for the versions.

    Examples:
        >>> meta = {"checkpoint": {"path": "/w/p.pt", "sha256": "ab12"}, "env_id": "CartPole-v1", "seed": 3,
        ...         "steps": 200, "num_envs": 2, "deterministic": False, "device": "cpu",
        ...         "created": "2025-01-02T03:04:05+00:00", "versions": {"workbench": "0.1", "torch": "2.5"}}
        >>> for line in origin_lines(meta): print(line)
        Checkpoint: /w/p.pt (sha256 ab12)
        Rollout: CartPole-v1, seed 3, 2 envs × 200 steps, sampled actions, policy on cpu, 2025-01-02T03:04:05+00:00
        Versions: workbench 0.1, torch 2.5
        >>> origin_lines({"checkpoint": None})[0]
        'Checkpoint: none (built in this session, not saved)'
    """
    found = origin(metadata)
    ckpt = found["checkpoint"]
    if ckpt.get("sha256"):
        lines = [f"Checkpoint: {ckpt.get('path')} (sha256 {ckpt['sha256']})"]
    else:
        lines = [f"Checkpoint: none ({ckpt.get('note', NOT_RECORDED)})"]
    run = found.get("rollout")
    if run is not None:
        parts = [str(run.get("env_id") or "unknown env"),
                 f"seed {run.get('seed')}",
                 f"{run.get('num_envs') or '?'} env{'s' if run.get('num_envs') != 1 else ''} × {run.get('steps')} steps"]
        if run.get("deterministic") is not None:
            parts.append("greedy actions" if run["deterministic"] else "sampled actions")
        if run.get("device"):
            parts.append(f"policy on {run['device']}")
        if run.get("created"):
            parts.append(str(run["created"]))
        lines.append("Rollout: " + ", ".join(parts))
    vers = (run or {}).get("versions") or (metadata or {}).get("versions")
    if isinstance(vers, Mapping) and vers:
        lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items() if v is not None))
    return lines
