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
import errno
import io
import json
import os
import pickle
import re
import stat
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import torch

from .errors import CheckpointError, OutputPathError

__all__ = [
    "atomic_write", "atomic_writer", "atomic_torch_save", "check_output_folder", "check_output_path", "clean_stale_temp_files",
    "free_name", "is_shipped_asset", "json_entry", "load_tagged", "save_or_fallback",
]

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
    target = _real_target(path, what)
    if target.exists() and not overwrite:
        raise OutputPathError(f"{what}: {given!r} exists and would be overwritten; choose another name")
    folder = _nearest_existing(target.parent)
    if not folder.is_dir():
        raise OutputPathError(f"{what}: cannot create a file under {given!r}: {str(folder)!r} is not a folder")
    _probe_folder(folder, what, given)
    return target


def check_output_folder(folder: str | os.PathLike, *, what: str = "output") -> Path:
    """Checks, before long work starts, that files can be written into ``folder`` (created later if missing).

    Examples:
        >>> check_output_folder("/proc/workbench-out", what="--out")
        Traceback (most recent call last):
        ...
        workbench.errors.OutputPathError: --out: cannot write '/proc/workbench-out': '/proc' does not accept new files (No such file or directory)
    """
    path = Path(folder).expanduser()
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise OutputPathError(f"{what}: expected a folder to write into; {str(existing)!r} is a file, not a folder")
    _probe_folder(existing, what, str(folder))
    return path


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _probe_folder(folder: Path, what: str, given: str) -> None:
    """Creates and removes a temporary file in ``folder``: the only sure test that it accepts new files."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".workbench-probe.", suffix=".tmp")
    except OSError as error:
        raise OutputPathError(
            f"{what}: cannot write {given!r}: {str(folder)!r} does not accept new files ({error.strerror or error})"
        ) from None
    os.close(fd)
    os.unlink(probe)


def _kind(path: Path) -> str:
    """What a non-regular path is, in words."""
    mode = path.stat().st_mode
    for test, name in ((stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def _real_target(path: str | os.PathLike, what: str) -> Path:
    """The regular file a write to ``path`` should replace: symlinks (chains, dangling ones) followed.

    Raises :class:`OutputPathError` for a folder, a device, FIFO or socket, and a symlink loop.
    """
    given = str(path)
    target = Path(os.path.realpath(Path(path).expanduser()))
    if target.is_symlink():  # realpath stops at a loop
        raise OutputPathError(f"{what}: expected a regular file path; {given!r} is a symlink loop")
    if target.exists():
        if target.is_dir():
            raise OutputPathError(f"{what}: expected a file path; {given!r} is a folder")
        if not target.is_file():
            raise OutputPathError(f"{what}: expected a regular file path; {given!r} is a {_kind(target)}")
    return target


SHIPPED_ASSETS = Path(__file__).resolve().parent.parent / "assets"
"""the repository's shipped checkpoints and figures: never a target for the workbench's writes"""


def is_shipped_asset(path: str | os.PathLike) -> bool:
    """Whether ``path`` (symlinks followed) lies under the repository's ``assets/`` folder.

    Examples:
        >>> is_shipped_asset(SHIPPED_ASSETS / "agents" / "cartpole_novel.pt"), is_shipped_asset("/tmp/p.pt")
        (True, False)
    """
    real = Path(os.path.realpath(Path(path).expanduser()))
    return real == SHIPPED_ASSETS or SHIPPED_ASSETS in real.parents


def free_name(path: str | os.PathLike) -> Path:
    """``path`` if nothing is there, else the first free ``NAME-1.SUFFIX``, ``NAME-2.SUFFIX``, ...

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = (Path(tmp) / "policy.pt").write_bytes(b"")
        ...     _ = (Path(tmp) / "policy-1.pt").write_bytes(b"")
        ...     free_name(Path(tmp) / "policy.pt").name, free_name(Path(tmp) / "policy-1.pt").name
        ('policy-2.pt', 'policy-2.pt')
    """
    path = Path(path).expanduser()
    if not os.path.lexists(path):
        return path
    base = re.sub(r"-[0-9]+$", "", path.stem)
    n = 1
    while os.path.lexists(candidate := path.with_name(f"{base}-{n}{path.suffix}")):
        n += 1
    return candidate


STALE_AFTER_S = 30 * 60
"""a temporary file of ours untouched this long is stale even if a process with its pid runs"""

# ours: .NAME.PID.XXXXXXXX.tmp (mkstemp's 8 random characters); older versions wrote .NAME.XXXXXXXX.tmp
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>[0-9]+)\.[a-z0-9_]{8}\.tmp$")
_OLD_TEMP = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: it exists, owned by someone else
        return True
    return True


def clean_stale_temp_files(folder: str | os.PathLike, name: str | None = None, *,
                           now: float | None = None) -> list[Path]:
    """Removes the temporary files :func:`atomic_write` left in ``folder`` when its writer was killed.

    Only our pattern ``.NAME.PID.XXXXXXXX.tmp`` (and, for the file ``name``, the
    ``.NAME.XXXXXXXX.tmp`` of older versions), only regular files owned by this user, and
    only stale ones: their writer's pid is gone, or they were not modified for
    :data:`STALE_AFTER_S` seconds. A live writer's file stays. Returns what was removed;
    errors are ignored (cleaning never fails a save).
    """
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP.match(entry.name)
        old = None if match else _OLD_TEMP.match(entry.name)
        if match is None and (old is None or old["name"] != name):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
                continue
            pid = int(match["pid"]) if match else None
            dead = pid is not None and pid != os.getpid() and not _pid_alive(pid)
            if dead or now - info.st_mtime > STALE_AFTER_S:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def _named_error(error: OSError, target: Path) -> OutputPathError:
    """``error`` as an :class:`OutputPathError` naming ``target`` (never the temporary file)."""
    if error.errno is not None and error.strerror:
        return OutputPathError(error.errno, error.strerror, str(target))  # "[Errno 28] No space ...: 'target'"
    return OutputPathError(f"cannot write {str(target)!r}: {error}")


def atomic_write(path: str | os.PathLike, data: bytes, *, what: str = "output", overwrite: bool = True) -> Path:
    """Writes ``data`` to ``path`` through a temporary file in the target's folder and ``os.replace``.

    A symlink (or a chain of them, or a dangling one) is written through: its final
    target gets the data and the link stays. A folder, device, FIFO or socket is refused
    with an :class:`OutputPathError` (``what`` names the argument). The temporary file
    is ``.NAME.PID.XXXXXXXX.tmp``; stale ones a killed writer left in that folder are
    removed first (:func:`clean_stale_temp_files`). A failed write raises an
    ``OutputPathError`` (an ``OSError``) naming the target after removing the temporary
    file; an existing file keeps its content and permissions. Returns ``path``.
    ``overwrite=False`` never replaces a file: the temporary file is hard-linked to the target
    (atomic, fails if the target exists) and a ``FileExistsError`` is raised when it is there.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     real = Path(tmp) / "real.txt"
        ...     (Path(tmp) / "link.txt").symlink_to(real)
        ...     _ = atomic_write(Path(tmp) / "link.txt", b"hello")
        ...     real.read_bytes(), (Path(tmp) / "link.txt").is_symlink()
        (b'hello', True)
        >>> atomic_write("/dev/null", b"x", what="--out")
        Traceback (most recent call last):
        ...
        workbench.errors.OutputPathError: --out: expected a regular file path; '/dev/null' is a character device
    """
    with atomic_writer(path, what=what, overwrite=overwrite) as fh:
        _write_bytes(fh, data)
    return Path(path)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, *, what: str = "output", overwrite: bool = True) -> Iterator[BinaryIO]:
    """:func:`atomic_write` for data written in pieces: yields the temporary file (binary, seekable);
    when the block ends without an error it replaces ``path`` (symlinks written through, as there;
    ``overwrite=False``: a ``FileExistsError`` instead when ``path`` exists).

    An error (or a :class:`~workbench.errors.Cancelled`, or Ctrl-C) inside the block removes the
    temporary file and leaves ``path`` as it was.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     with atomic_writer(Path(tmp) / "a.txt") as fh:
        ...         _ = fh.write(b"one "); _ = fh.write(b"two")
        ...     (Path(tmp) / "a.txt").read_bytes(), [p.name for p in Path(tmp).iterdir()]
        (b'one two', ['a.txt'])
    """
    target = _real_target(path, what)
    mode = (target.stat().st_mode & 0o777) if target.exists() else (0o666 & ~_umask())
    clean_stale_temp_files(target.parent, target.name)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp")
    except OSError as error:
        raise _named_error(error, target) from error
    try:
        with os.fdopen(fd, "w+b") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        if overwrite:
            os.replace(tmp, target)
        else:
            _link_new(tmp, target)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(error, FileExistsError):
            raise FileExistsError(errno.EEXIST, "exists; it is never overwritten", str(target)) from None
        if isinstance(error, OSError) and not isinstance(error, OutputPathError):
            raise _named_error(error, target) from error
        raise


def _link_new(tmp: str, target: Path) -> None:
    """Moves ``tmp`` to ``target`` unless ``target`` exists (``FileExistsError``): a hard link is atomic; where
    the file system has none, an existence check then ``os.replace``."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "exists", str(target)) from None
        os.replace(tmp, target)
        return
    os.unlink(tmp)


def atomic_torch_save(obj: Any, path: str | os.PathLike, *, what: str = "output") -> Path:
    """``torch.save`` to ``path`` atomically (creating the target's folder); see :func:`atomic_write`."""
    target = _real_target(path, what)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _named_error(error, target) from error
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write(path, buffer.getbuffer(), what=what)


_ZIP_MAGIC = b"PK\x03\x04"
_ZIP_END = b"PK\x05\x06"
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"  # torch.save before 1.6


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:  # a multi-byte character cut at the end is still text
        return error.start >= len(head) - 3
    return True


def _file_problem(path: Path) -> str | None:
    """Why the file at ``path`` cannot be a ``torch.save`` archive, in words (None if it might be)."""
    size = path.stat().st_size
    if size == 0:
        return "the file is empty"
    with open(path, "rb") as fh:
        head = fh.read(4096)
        if head.startswith(_ZIP_MAGIC):
            fh.seek(max(0, size - (1 << 16) - 22))
            tail = fh.read()
        elif head.startswith(_LEGACY_MAGIC):
            return None
        elif _looks_like_text(head):
            return "the file is text, not a checkpoint"
        else:
            return f"the file is not a torch.save archive (it starts with {head[:8].hex(' ')})"
    end = tail.rfind(_ZIP_END)
    # the end-of-archive record is the last 22 bytes plus its comment: a cut anywhere loses it
    if end < 0 or len(tail) - end < 22 or end + 22 + int.from_bytes(tail[end + 20:end + 22], "little") != len(tail):
        return f"the file is truncated ({size} bytes; the end of the archive is missing)"
    return None


def _load_error(error: BaseException) -> str:
    """What a failed ``torch.load`` means, in words (never torch's advice to drop ``weights_only``)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if isinstance(error, pickle.UnpicklingError) or "weights_only" in str(error):
        return "it holds Python objects other than tensors and plain data, which are never loaded (unsafe)"
    return f"the archive is damaged ({type(error).__name__}: {text[:200]})"


def load_tagged(path: str | os.PathLike, tag: str, version: int, caller: str, kind: str = "file") -> dict[str, Any]:
    """Loads a dict saved by :func:`atomic_torch_save` whose ``"format"`` is ``tag``.

    Raises a :class:`~workbench.errors.CheckpointError` naming ``caller``, the path and what is
    wrong when the file is missing, empty, truncated, text, not a ``torch.save`` archive, not of
    that format, or of a ``format_version`` that is not an integer or newer than ``version``.
    Only tensors and plain data are ever loaded (``weights_only=True``).

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = (Path(tmp) / "notes.pt").write_text("hello")
        ...     load_tagged(Path(tmp) / "notes.pt", "demo", 1, "load_demo", "checkpoint")
        Traceback (most recent call last):
        ...
        workbench.errors.CheckpointError: load_demo: '/.../notes.pt' is not a GRU Workbench checkpoint: the file is text, not a checkpoint
    """
    path = Path(path)
    where = f"{caller}: {str(path)!r}"
    try:
        if not path.exists():
            raise CheckpointError(f"{where}: expected a GRU Workbench {kind}; no such file")
        if not path.is_file():
            raise CheckpointError(f"{where}: expected a GRU Workbench {kind}; it is not a regular file")
        problem = _file_problem(path)
        if problem is not None:
            raise CheckpointError(f"{where} is not a GRU Workbench {kind}: {problem}")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except OSError as error:
            if error.errno in (errno.EACCES, errno.EPERM, errno.EIO, errno.EISDIR):
                raise
            raise CheckpointError(f"{where} is not a readable GRU Workbench {kind}: {_load_error(error)}") from None
        except Exception as error:  # torch raises EOFError, KeyError, RuntimeError, UnpicklingError, ...
            raise CheckpointError(f"{where} is not a readable GRU Workbench {kind}: {_load_error(error)}") from None
    except OSError as error:  # permission denied, I/O error: named, one line
        raise CheckpointError(f"{where}: cannot read the {kind}: {error.strerror or error}") from None
    if not isinstance(payload, dict) or payload.get("format") != tag:
        raise CheckpointError(f"{where} is not a GRU Workbench {kind} (no '{tag}' tag).")
    found = payload.get("format_version", 0)
    if isinstance(found, bool) or not isinstance(found, int):
        raise CheckpointError(f"{where}: format_version must be an integer; got {found!r}")
    if found > version:
        raise CheckpointError(
            f"{where} has format version {found}; this workbench reads up to {version}. Upgrade gru-workbench."
        )
    return payload


def json_entry(payload: dict[str, Any], name: str, path, caller: str, default: str | None = None, *,
               expect: type | None = None) -> Any:
    """The JSON text a :func:`load_tagged` payload stores under ``name``, parsed (``default`` when absent).

    A :class:`CheckpointError` naming ``caller``, the path and the entry when it is missing, not
    JSON, or (with ``expect``) not of that type.

    Examples:
        >>> json_entry({"meta": '{"seed": 3}'}, "meta", "run.pt", "load_run", expect=dict)
        {'seed': 3}
        >>> json_entry({"meta": "[1]"}, "meta", "run.pt", "load_run", expect=dict)
        Traceback (most recent call last):
        ...
        workbench.errors.CheckpointError: load_run: 'run.pt': the stored 'meta' must be a JSON object; got list
    """
    text = payload.get(name, default)
    try:
        if not isinstance(text, str):
            raise ValueError(f"expected JSON text; got {type(text).__name__}")
        value = json.loads(text)
    except ValueError as error:
        raise CheckpointError(f"{caller}: {str(path)!r}: the stored '{name}' is unreadable ({error})") from None
    if expect is not None and not isinstance(value, expect):
        kind = "a JSON object" if expect is dict else f"JSON {expect.__name__}"
        raise CheckpointError(f"{caller}: {str(path)!r}: the stored '{name}' must be {kind}; got {type(value).__name__}")
    return value


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
