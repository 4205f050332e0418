"""A saved session: one file holding a policy, its environment, a trajectory and a view, reopened later.

The file is a zip archive (stored, not compressed: tensors do not shrink) that ``unzip -l`` lists:

- ``manifest.json``: the format tag and version, when it was made, the workbench and library
  versions, and what is inside;
- ``policy.pt``: the policy as a checkpoint (:func:`workbench.checkpoints.save_checkpoint`, with its
  metadata), so ``unzip session.zip policy.pt`` gives a file the policy panel loads;
- ``env.json``: the :class:`~workbench.envs.EnvSpec`;
- ``trajectory.pt`` (optional): the trajectory (:func:`workbench.rollout.save_trajectory`). A trajectory
  that already lives in a folder the workbench wrote (``rollout(..., storage="memmap")``) is not copied:
  the manifest refers to that folder, and opening the session says so clearly if it moved;
- ``view.json``: the view state (a JSON object, e.g. the explorer's cursor, episode and selected units).

:func:`save_session` writes atomically (a temporary file, then ``os.replace``; through symlinks; see
:mod:`workbench.files`), checks the output path before any work and never replaces an existing file
unless ``overwrite=True``. :func:`load_session` checks the format, version and every entry, and raises
one :class:`~workbench.errors.CheckpointError` naming the file, what it expected and what it found.

Examples:
    >>> import tempfile
    >>> from workbench.envs import EnvSpec, make_env
    >>> from workbench.policy import PolicySpec, build_policy
    >>> from workbench.rollout import rollout
    >>> env_spec, spec = EnvSpec("CartPole-v1", max_steps=10), PolicySpec(hidden_size=4)
    >>> policy = build_policy(spec, make_env(env_spec), device="cpu")
    >>> traj = rollout(policy, make_env(env_spec, policy), 12, seed=0, progress=False, device="cpu")
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = save_session(Path(tmp) / "run.zip", policy=policy, policy_spec=spec, env_spec=env_spec,
    ...                         trajectory=traj, view={"cursor": 7})
    ...     opened = load_session(path)
    ...     sorted(read_manifest(path)["contents"])
    ['env', 'policy', 'trajectory', 'view']
    >>> opened.env_spec == env_spec, opened.trajectory.batch_size, opened.view
    (True, torch.Size([1, 12]), {'cursor': 7})
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import Cancelled, CheckpointError, ConfigError
from .files import atomic_writer, check_output_path
from .jobs import CancelToken, Progress, report

__all__ = ["SESSION_FORMAT", "SESSION_VERSION", "SavedSession", "save_session", "load_session", "read_manifest"]

SESSION_FORMAT = "gru-workbench-session"
"""the tag every session file's manifest carries (``manifest["format"]``)"""
SESSION_VERSION = 1
"""the newest ``format_version`` this code reads and the one it writes"""

MANIFEST, POLICY, ENV, TRAJECTORY, VIEW = "manifest.json", "policy.pt", "env.json", "trajectory.pt", "view.json"
_CHUNK = 1 << 20


@dataclass
class SavedSession:
    """What :func:`load_session` returns."""

    path: Path
    """the session file"""
    policy: Any
    """the policy, rebuilt from its checkpoint (outputs equal the saved one's bit for bit)"""
    policy_spec: Any
    """its :class:`~workbench.policy.PolicySpec`"""
    env_spec: Any
    """the :class:`~workbench.envs.EnvSpec`"""
    trajectory: Any = None
    """the trajectory (``None`` when the session holds none); a referenced folder is read from disk"""
    view: dict[str, Any] = field(default_factory=dict)
    """the view state saved with it (``{}`` when none)"""
    metadata: dict[str, Any] = field(default_factory=dict)
    """the policy checkpoint's metadata (``{}`` when none)"""
    manifest: dict[str, Any] = field(default_factory=dict)
    """the manifest: format, version, created, versions, contents"""
    trajectory_folder: Path | None = None
    """the folder the trajectory is read from when the session refers to one (``None`` when embedded)"""


def _memmap_folder(trajectory) -> Path | None:
    """The folder a memory-mapped trajectory of :func:`~workbench.rollout.rollout` lives in (None if in memory)."""
    from .rollout import trajectory_metadata

    meta = trajectory_metadata(trajectory)
    folder = meta.get("memmap_folder")
    if meta.get("storage") != "memmap" or not isinstance(folder, str):
        return None
    folder = Path(folder)
    return folder.resolve() if (folder / "meta.json").is_file() else None


def save_session(
    path: str | os.PathLike,
    *,
    policy,
    policy_spec,
    env_spec,
    trajectory=None,
    view: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    embed: bool | None = None,
    overwrite: bool = False,
    cancel: CancelToken | None = None,
    on_progress: Progress | None = None,
) -> Path:
    """Writes a policy, its environment, a trajectory and a view state into one session file, atomically.

    Args:
        path: the file to write (a zip archive; e.g. ``run.session.zip``). Checked before any work.

    Keyword Args:
        policy: a policy from :func:`~workbench.policy.build_policy` or a checkpoint.
        policy_spec: its :class:`~workbench.policy.PolicySpec`.
        env_spec: the :class:`~workbench.envs.EnvSpec` it acts in.
        trajectory: a ``[envs, T]`` trajectory of :func:`~workbench.rollout.rollout`, or ``None``.
        view: a JSON-able dict (e.g. the explorer's ``view_state()``).
        metadata: the checkpoint's metadata (e.g. what training recorded); stored in ``policy.pt`` (with
            ``"env"``: the environment spec, unless it has one).
        embed: ``None`` (default): copy a trajectory held in memory, refer to one in a memory-mapped folder;
            ``True``: always copy it into the file; ``False``: refer to its folder (it must have one).
        overwrite: replace an existing file (default: refuse, with an error naming it).
        cancel: a :class:`~workbench.jobs.CancelToken`, checked between pieces (nothing is written then).
        on_progress: ``on_progress(bytes done, bytes total)`` while the archive is written.

    Returns:
        The path written.

    Raises:
        OutputPathError: ``path`` exists (without ``overwrite``), is a folder, or cannot be written.
        ConfigError: a bad argument (named, with what came in).
        Cancelled: ``cancel`` was set; the file is not written and an existing one is untouched.
    """
    from .envs import EnvSpec
    from .policy import PolicySpec

    where = "save_session"
    target = check_output_path(path, what=f"{where}: path", overwrite=overwrite)
    if not isinstance(policy_spec, PolicySpec):
        raise ConfigError(f"{where}: 'policy_spec' must be a PolicySpec; got {type(policy_spec).__name__}")
    if not isinstance(env_spec, EnvSpec):
        raise ConfigError(f"{where}: 'env_spec' must be an EnvSpec; got {type(env_spec).__name__}")
    if embed not in (None, True, False):
        raise ConfigError(f"{where}: 'embed' must be None, True or False; got {embed!r}")
    view = {} if view is None else view
    for name, value in (("view", view), ("metadata", metadata or {})):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: '{name}' must be a dict; got {type(value).__name__}")
        try:
            json.dumps(value)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{where}: '{name}' must hold JSON-able values only ({error})") from None
    if trajectory is not None and (not hasattr(trajectory, "batch_size") or len(trajectory.batch_size) != 2):
        raise ConfigError(f"{where}: 'trajectory' must be a [envs, T] TensorDict or None; got "
                          f"{type(trajectory).__name__} {list(getattr(trajectory, 'batch_size', []))}")
    folder = None if trajectory is None or embed is True else _memmap_folder(trajectory)
    if embed is False and trajectory is not None and folder is None:
        raise ConfigError(f"{where}: embed=False refers to the trajectory's folder, but this trajectory is in memory "
                          f"(only rollout(..., storage='memmap') writes one); pass embed=None to copy it")
    from .checkpoints import save_checkpoint
    from .provenance import versions, workbench_version
    from .rollout import save_trajectory

    contents: dict[str, Any] = {"policy": POLICY, "env": ENV, "view": VIEW}
    with tempfile.TemporaryDirectory(prefix="workbench-session-") as tmp:
        members = {MANIFEST: None, POLICY: Path(tmp) / POLICY, ENV: None, VIEW: None}
        save_checkpoint(policy, policy_spec, members[POLICY], metadata={"env": env_spec.to_dict(), **(metadata or {})})
        _check(cancel, 0)
        if trajectory is not None:
            shape = list(trajectory.batch_size)
            if folder is not None:
                contents["trajectory"] = {"kind": "folder", "folder": str(folder), "batch_size": shape}
            else:
                members[TRAJECTORY] = save_trajectory(trajectory, Path(tmp) / TRAJECTORY)
                contents["trajectory"] = {"kind": "embedded", "member": TRAJECTORY, "batch_size": shape}
            _check(cancel, 0)
        manifest = {
            "format": SESSION_FORMAT, "format_version": SESSION_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "workbench_version": workbench_version(),
            "versions": versions(), "contents": contents,
        }
        texts = {MANIFEST: json.dumps(manifest, indent=1), ENV: json.dumps(env_spec.to_dict(), indent=1),
                 VIEW: json.dumps(view, indent=1)}
        total = sum(p.stat().st_size for p in members.values() if p is not None) + sum(map(len, texts.values()))
        done = 0
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_writer(path, what=f"{where}: path") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED) as zf:
            for name, source in members.items():
                if source is None:
                    zf.writestr(name, texts[name])
                    done += len(texts[name])
                    report(on_progress, done, total)
                    continue
                with open(source, "rb") as src, zf.open(name, "w", force_zip64=True) as dst:
                    while chunk := src.read(_CHUNK):
                        _check(cancel, done, total)
                        dst.write(chunk)
                        done += len(chunk)
                        report(on_progress, done, total)
    return Path(path)


def _check(cancel: CancelToken | None, done: int, total: int | None = None) -> None:
    if cancel is not None and cancel.cancelled:
        raise Cancelled("save_session", done=done, total=total, unit="bytes", partial=None)


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a session file, checked (format tag, version, contents); nothing else is read.

    Raises:
        CheckpointError: naming the file, what was expected and what it holds.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = (Path(tmp) / "notes.zip").write_text("hello")
        ...     read_manifest(Path(tmp) / "notes.zip")
        Traceback (most recent call last):
        ...
        workbench.errors.CheckpointError: open_session: '/.../notes.zip': expected a GRU Workbench session (a zip archive with manifest.json); the file is text
    """
    with _open_zip(path) as zf:
        return _manifest(zf, _where(path))


def _where(path) -> str:
    return f"open_session: {str(path)!r}"


def _open_zip(path) -> zipfile.ZipFile:
    path, where = Path(path).expanduser(), _where(path)
    expected = "expected a GRU Workbench session (a zip archive with manifest.json)"
    if not path.exists():
        raise CheckpointError(f"{where}: {expected}; no such file")
    if not path.is_file():
        raise CheckpointError(f"{where}: {expected}; it is not a regular file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
        if not head:
            raise CheckpointError(f"{where}: {expected}; the file is empty")
        if head.startswith(b"PK\x03\x04") and not _ends_as_zip(path):
            raise CheckpointError(f"{where}: {expected}; the zip archive is truncated or damaged (its end is missing)")
        if not zipfile.is_zipfile(path):
            try:
                head.decode("utf-8")
                text = b"\x00" not in head
            except UnicodeDecodeError:
                text = False
            what = "the file is text" if text else f"the file is not a zip archive (it starts with {head[:8].hex(' ')})"
            if head.startswith(b"PK\x03\x04"):
                what = "the zip archive is truncated or damaged (its end is missing)"
            raise CheckpointError(f"{where}: {expected}; {what}")
        return zipfile.ZipFile(path)
    except OSError as error:
        raise CheckpointError(f"{where}: cannot read the file: {error.strerror or error}") from None
    except zipfile.BadZipFile as error:
        raise CheckpointError(f"{where}: {expected}; the zip archive is damaged ({error})") from None


def _ends_as_zip(path: Path) -> bool:
    """Whether the file ends with a zip end-of-archive record (a cut file does not; one of the stored
    archives inside, e.g. policy.pt, would otherwise pass for it)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(max(0, size - (1 << 16) - 22))
        tail = fh.read()
    end = tail.rfind(b"PK\x05\x06")
    return end >= 0 and len(tail) - end >= 22 and end + 22 + int.from_bytes(tail[end + 20:end + 22], "little") == len(tail)


def _manifest(zf: zipfile.ZipFile, where: str) -> dict[str, Any]:
    names = zf.namelist()
    if MANIFEST not in names:
        hint = " (it looks like a policy checkpoint: load it in the policy panel)" if any(
            n.endswith("/data.pkl") for n in names) else ""
        raise CheckpointError(f"{where}: expected a GRU Workbench session with {MANIFEST}; the zip archive holds "
                              f"{sorted(names)[:5]}{hint}")
    manifest = _json(zf, MANIFEST, where, dict)
    if manifest.get("format") != SESSION_FORMAT:
        raise CheckpointError(f"{where}: expected a manifest with format {SESSION_FORMAT!r}; got "
                              f"{manifest.get('format')!r}")
    found = manifest.get("format_version")
    if isinstance(found, bool) or not isinstance(found, int):
        raise CheckpointError(f"{where}: the manifest's format_version must be an integer; got {found!r}")
    if found > SESSION_VERSION:
        raise CheckpointError(f"{where} has format version {found}; this workbench reads up to {SESSION_VERSION}. "
                              f"Upgrade gru-workbench.")
    contents = manifest.get("contents")
    if not isinstance(contents, dict):
        raise CheckpointError(f"{where}: the manifest's 'contents' must be a JSON object; got {contents!r}")
    for key, member in (("policy", POLICY), ("env", ENV), ("view", VIEW)):
        if contents.get(key) != member or member not in names:
            raise CheckpointError(f"{where}: expected {member} (the {key}) in the archive; the manifest says "
                                  f"{contents.get(key)!r} and the archive holds {sorted(names)}")
    traj = contents.get("trajectory")
    if traj is not None:
        kind = traj.get("kind") if isinstance(traj, dict) else None
        shape = traj.get("batch_size") if isinstance(traj, dict) else None
        if kind not in ("embedded", "folder") or not isinstance(shape, list) or len(shape) != 2:
            raise CheckpointError(f"{where}: the manifest's 'trajectory' must say kind 'embedded' or 'folder' and "
                                  f"a batch_size [envs, T]; got {traj!r}")
        if kind == "embedded" and (traj.get("member") != TRAJECTORY or TRAJECTORY not in names):
            raise CheckpointError(f"{where}: expected {TRAJECTORY} in the archive; it holds {sorted(names)}")
        if kind == "folder" and not isinstance(traj.get("folder"), str):
            raise CheckpointError(f"{where}: the manifest's trajectory folder must be a path; got "
                                  f"{traj.get('folder')!r}")
    return manifest


def _json(zf: zipfile.ZipFile, name: str, where: str, expect: type):
    try:
        value = json.loads(zf.read(name).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, zipfile.BadZipFile, OSError) as error:
        raise CheckpointError(f"{where}: {name} is unreadable ({type(error).__name__}: {error})") from None
    if not isinstance(value, expect):
        raise CheckpointError(f"{where}: {name} must hold a JSON object; got {type(value).__name__}")
    return value


def _extract(zf: zipfile.ZipFile, name: str, folder: str, where: str, cancel, on_progress, done: list) -> Path:
    """Copies one member into ``folder`` in chunks (Cancel checked between them); returns the file."""
    out = Path(folder) / name
    try:
        with zf.open(name) as src, open(out, "wb") as dst:
            while chunk := src.read(_CHUNK):
                if cancel is not None and cancel.cancelled:
                    raise Cancelled("open_session", done=done[0], total=done[1], unit="bytes", partial=None)
                dst.write(chunk)
                done[0] += len(chunk)
                report(on_progress, done[0], done[1])
    except (zipfile.BadZipFile, EOFError, OSError) as error:  # a CRC mismatch is a BadZipFile
        raise CheckpointError(f"{where}: {name} in the archive is damaged ({type(error).__name__}: {error})") from None
    return out


def load_session(path: str | os.PathLike, *, device: str = "cpu", cancel: CancelToken | None = None,
                 on_progress: Progress | None = None) -> SavedSession:
    """Opens a session file written by :func:`save_session`: the policy, environment, trajectory and view.

    Keyword Args:
        device: where to put the policy (as :func:`~workbench.checkpoints.load_checkpoint`).
        cancel: a :class:`~workbench.jobs.CancelToken`, checked while the archive is read.
        on_progress: ``on_progress(bytes read, bytes total)``.

    Raises:
        CheckpointError: a file that is not a session, is damaged, of a newer format, or whose entries are
            unreadable (each named), or a trajectory folder it refers to that is not there any more.
    """
    from .checkpoints import checkpoint_metadata, checkpoint_of, load_checkpoint, record_origin
    from .envs import EnvSpec
    from .rollout import load_trajectory

    where = _where(path)
    with _open_zip(path) as zf:
        manifest = _manifest(zf, where)
        contents = manifest["contents"]
        traj_info = contents.get("trajectory")
        members = [POLICY] + ([TRAJECTORY] if traj_info and traj_info["kind"] == "embedded" else [])
        done = [0, sum(zf.getinfo(m).file_size for m in members)]
        try:
            env_spec = EnvSpec.from_dict(_json(zf, ENV, where, dict))
        except ConfigError as error:
            raise CheckpointError(f"{where}: {ENV} is not a valid environment spec ({error})") from None
        view = _json(zf, VIEW, where, dict)
        folder = None
        with tempfile.TemporaryDirectory(prefix="workbench-session-") as tmp:
            policy_file = _extract(zf, POLICY, tmp, where, cancel, on_progress, done)
            try:
                policy, spec = load_checkpoint(policy_file, device=device)
                metadata = checkpoint_metadata(policy_file)
                # provenance names the session file's member, not the temporary copy removed below
                record_origin(policy, f"{Path(path).resolve()}!{POLICY}", checkpoint_of(policy)["sha256"])
            except CheckpointError as error:
                raise CheckpointError(f"{where}: its {POLICY} is not a readable policy checkpoint "
                                      f"({str(error).split(': ', 2)[-1]})") from None
            trajectory = None
            if traj_info is not None and traj_info["kind"] == "embedded":
                trajectory = _load_trajectory(load_trajectory, _extract(zf, TRAJECTORY, tmp, where, cancel,
                                                                        on_progress, done), where, TRAJECTORY)
            elif traj_info is not None:
                folder = Path(traj_info["folder"])
                if not (folder / "meta.json").is_file():
                    raise CheckpointError(
                        f"{where}: expected its trajectory in the folder {str(folder)!r} (the session refers to it, "
                        f"it was not copied in); "
                        f"{'the folder holds no trajectory' if folder.is_dir() else 'no such folder'}: was it moved or "
                        f"deleted? Put it back there, or open the folder with load_trajectory and save the session "
                        f"again (embedded)")
                trajectory = _load_trajectory(load_trajectory, folder, where, f"the folder {str(folder)!r}")
            if trajectory is not None and list(trajectory.batch_size) != traj_info["batch_size"]:
                raise CheckpointError(f"{where}: expected a trajectory of batch size {traj_info['batch_size']} (the "
                                      f"manifest); {'the folder' if folder else TRAJECTORY} holds "
                                      f"{list(trajectory.batch_size)}")
    return SavedSession(Path(path), policy, spec, env_spec, trajectory, view, metadata, manifest, folder)


def _load_trajectory(load, source, where: str, what: str):
    try:
        return load(source)
    except CheckpointError as error:
        raise CheckpointError(f"{where}: {what} is not a readable trajectory ({str(error).split(': ', 2)[-1]})") from None
