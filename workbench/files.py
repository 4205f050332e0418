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

from .errors import OutputPathError

__all__ = ["atomic_write", "atomic_torch_save", "check_output_path", "load_tagged", "save_or_fallback"]

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


def check_output_path(path: str | os.PathLike, *, what: str = "output", overwrite: bool = True) -> Path:
    """Checks, before long work starts, that a file can be written at ``path``; returns the real target.

    Symlinks are followed (the write goes to their target). Refuses a folder, a
    device, FIFO or socket, an existing file when ``overwrite`` is false, and a
    place where no file can be created (probed with a temporary file in the
    nearest existing folder, so ``/proc`` or a read-only mount fail here and
    not after an hour of training). ``what`` names the argument in the error.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     check_output_path(Path(tmp) / "new" / "ckpt.pt", what="--out").name
        'ckpt.pt'
        >>> check_output_path("/dev/null", what="--out")
        Traceback (most recent call last):
        ...
        workbench.errors.OutputPathError: --out: expected a regular file path; '/dev/null' is a character device
    """
    given = str(path)
    target = Path(os.path.realpath(Path(path).expanduser()))
    if target.exists():
        if target.is_dir():
            raise OutputPathError(f"{what}: expected a file path; {given!r} is a folder")
        if not target.is_file():
            raise OutputPathError(f"{what}: expected a regular file path; {given!r} is a {_kind(target)}")
        if not overwrite:
            raise OutputPathError(f"{what}: {given!r} exists and would be overwritten; choose another name")
    folder = target.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise OutputPathError(f"{what}: cannot create a file under {given!r}: {str(folder)!r} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".workbench-probe.", suffix=".tmp")
    except OSError as error:
        raise OutputPathError(
            f"{what}: cannot write {given!r}: {str(folder)!r} does not accept new files ({error.strerror})"
        ) from None
    os.close(fd)
    os.unlink(probe)
    return target


def _kind(path: Path) -> str:
    """What a non-regular path is, in words."""
    import stat

    mode = path.stat().st_mode
    for test, name in ((stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


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


def save_or_fallback(save, path: str | os.PathLike) -> tuple[Path, OSError | None]:
    """Calls ``save(path)``; if that fails with an ``OSError``, calls ``save`` on a fresh file in the temp folder.

    For results that took long to make (a trained model, a benchmark): a write
    that fails at the end must not lose them. Returns ``(path written, None)``,
    or ``(fallback path, the first error)``; the caller says where the file went.
    """
    try:
        return Path(save(Path(path))), None
    except OSError as error:
        name = Path(path).name or "workbench-output"
        stem, dot, suffix = name.rpartition(".")
        fd, fallback = tempfile.mkstemp(prefix=f"workbench-{stem if dot else name}.",
                                        suffix=f".{suffix}" if dot else "")
        os.close(fd)  # mode 0600: only this user reads the fallback
        try:
            return Path(save(Path(fallback))), error
        except BaseException:
            os.unlink(fallback)
            raise
