"""Writing and reading the workbench's own files: atomically, with a format tag.

Every file the workbench writes (checkpoints, trajectories, exported figures)
goes through :func:`atomic_write`: a temporary file in the same folder, then
``os.replace``. A failed write leaves no partial file and the previous file,
if any, untouched.

Examples:
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = atomic_torch_save({"format": "demo", "format_version": 1, "x": 3}, Path(tmp) / "a.pt")
    ...     load_tagged(path, "demo", 1, "load_demo")["x"]
    3
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["atomic_write", "atomic_torch_save", "load_tagged"]

_CHUNK = 1 << 20


def _umask() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def _write_bytes(fh, data: bytes) -> None:
    """Writes ``data`` to an open file in chunks."""
    view = memoryview(data)
    for start in range(0, len(view), _CHUNK):
        fh.write(view[start:start + _CHUNK])


def atomic_write(path: Path, data: bytes) -> Path:
    """Writes ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    Raises the ``OSError`` of a failed write after removing the temporary
    file; an existing file at ``path`` keeps its content and permissions.
    """
    path = Path(path)
    mode = (path.stat().st_mode & 0o777) if path.exists() else (0o666 & ~_umask())
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            _write_bytes(fh, data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def atomic_torch_save(obj: Any, path: Path) -> Path:
    """``torch.save`` to ``path`` atomically (creating its folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write(path, buffer.getbuffer())


def load_tagged(path: str | os.PathLike, tag: str, version: int, caller: str, kind: str = "file") -> dict[str, Any]:
    """Loads a dict saved by :func:`atomic_torch_save` whose ``"format"`` is ``tag``.

    Raises a ``ValueError`` naming ``caller``, the path and ``kind`` when the file is not
    of that format, or of a newer ``format_version`` than ``version``.
    """
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != tag:
        raise ValueError(f"{caller}: {str(path)!r} is not a GRU Workbench {kind} (no '{tag}' tag).")
    if payload.get("format_version", 0) > version:
        raise ValueError(
            f"{caller}: {str(path)!r} has format version {payload['format_version']}; this workbench reads "
            f"up to {version}. Upgrade gru-workbench."
        )
    return payload
