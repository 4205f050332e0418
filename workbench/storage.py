"""Where a rollout's steps go: ``[E, T]`` storage allocated once, in memory or memory-mapped in a folder.

:class:`StepStorage` takes the frames of a rollout one step at a time (each a TensorDict with the
environment's batch size, e.g. ``[E]``), allocates a TensorDict ``[E, T, ...]`` per leaf from the
first frame's structure, and copies every later frame into its time slot. Memory grows with the
steps written and nothing else: no per-step TensorDicts are kept (stacking them at the end held
~40 times the stored bytes). With ``storage="memmap"`` the leaves are memory-mapped files in a
folder (tensordict's ``memmap_like``): the run may be larger than RAM, the result reads from disk,
and ``TensorDict.load_memmap(folder)`` (or :func:`workbench.rollout.load_trajectory`) reopens it.

Examples:
    >>> frames = [TensorDict({"x": torch.full((2, 3), float(t)), "n": {"d": torch.tensor([t, -t])}}, [2])
    ...           for t in range(4)]
    >>> store = StepStorage(4, batch_dims=1)
    >>> for t, frame in enumerate(frames):
    ...     store.write(t, frame)
    >>> td = store.finish(4)
    >>> td.batch_size, td["x"][1, :, 0].tolist(), td["n", "d"][1].tolist()
    (torch.Size([2, 4]), [0.0, 1.0, 2.0, 3.0], [0, -1, -2, -3])
    >>> store.finish(2)["x"].shape  # the first 2 steps (e.g. after a Cancel)
    torch.Size([2, 2, 3])
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import torch
from tensordict import NonTensorData, NonTensorStack, TensorDict, TensorDictBase

from .errors import ConfigError, OutputPathError

__all__ = ["STORAGES", "StepStorage", "check_storage", "stored_bytes"]

STORAGES = ("memory", "memmap")
"""the kinds of :class:`StepStorage`: ``"memory"`` (CPU tensors) or ``"memmap"`` (memory-mapped files in a folder)"""


def check_storage(storage: str, folder: str | os.PathLike | None, *, owner: str = "rollout",
                  folder_arg: str = "memmap_folder") -> Path | None:
    """Checks a storage choice before work starts; returns the folder to write (``None`` in memory).

    ``"memmap"`` needs a folder that does not exist yet, or is empty, and that can be written
    (:func:`workbench.files.check_output_folder`): a folder with files in it is never overwritten.

    Examples:
        >>> check_storage("memory", None) is None
        True
        >>> check_storage("disk", None)
        Traceback (most recent call last):
        ...
        workbench.errors.ConfigError: rollout: 'storage' expected one of 'memory', 'memmap'; got 'disk'
        >>> check_storage("memmap", None)
        Traceback (most recent call last):
        ...
        workbench.errors.ConfigError: rollout: storage='memmap' needs 'memmap_folder', the folder to write the trajectory into; got None
    """
    from .files import check_output_folder

    if storage not in STORAGES:
        raise ConfigError(f"{owner}: 'storage' expected one of {', '.join(map(repr, STORAGES))}; got {storage!r}")
    if storage == "memory":
        if folder is not None:
            raise ConfigError(f"{owner}: '{folder_arg}' is for storage='memmap'; got {str(folder)!r} with "
                              f"storage='memory'")
        return None
    if folder is None:
        raise ConfigError(f"{owner}: storage='memmap' needs '{folder_arg}', the folder to write the trajectory "
                          f"into; got None")
    if not isinstance(folder, (str, os.PathLike)):
        raise ConfigError(f"{owner}: '{folder_arg}' expected a folder path; got {type(folder).__name__}")
    path = Path(folder).expanduser()
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise OutputPathError(f"{owner}: '{folder_arg}' expected a folder; {str(folder)!r} is a file")
        if any(path.iterdir()):
            raise OutputPathError(
                f"{owner}: '{folder_arg}' {str(folder)!r} exists and is not empty; its files would be overwritten: "
                f"choose a new folder (or an empty one)")
    return check_output_folder(path, what=f"{owner}: '{folder_arg}'")


def stored_bytes(td: TensorDictBase) -> int:
    """Bytes held by the tensor leaves of ``td`` (their elements, not views' whole storages).

    Examples:
        >>> stored_bytes(TensorDict({"a": torch.zeros(2, 5), "b": {"c": torch.zeros(2, 5, dtype=torch.bool)}}, [2, 5]))
        50
    """
    return sum(v.numel() * v.element_size() for v in td.values(True, True) if isinstance(v, torch.Tensor))


def _is_leaf(cls: type) -> bool:
    """Tensors and non-tensor data are leaves (``items(True, True)`` leaves the latter out by default)."""
    return not issubclass(cls, TensorDictBase) or issubclass(cls, (NonTensorData, NonTensorStack))


class StepStorage:
    """Streams the frames of a rollout into ``[E, steps]`` storage allocated at the first frame.

    Args:
        steps: the time slots.

    Keyword Args:
        batch_dims: the environment's batch dims (0: one env, its frames have batch size ``[]``;
            1: ``[E]``; more are flattened into E).
        storage: ``"memory"`` or ``"memmap"`` (see :data:`STORAGES`).
        folder: the folder of ``"memmap"`` (checked with :func:`check_storage`; made at allocation).
        rename: frame keys to store under another key (e.g. a GRU's hidden key → ``KEYS.hidden``).

    The storage is on CPU whatever device the frames come from. Non-tensor entries of the frames
    (none in the workbench's environments) are kept per step and stacked at the end (memory only).
    """

    def __init__(self, steps: int, *, batch_dims: int = 1, storage: str = "memory",
                 folder: str | os.PathLike | None = None, rename: Mapping[Any, Any] | None = None) -> None:
        self.steps, self.batch_dims, self.kind = steps, batch_dims, storage
        self.folder = None if folder is None else Path(folder)
        self.rename = dict(rename or {})
        self.td: TensorDictBase | None = None
        self.envs = 0
        self._dest: dict[Any, torch.Tensor] = {}  # frame key → storage leaf [E, steps, ...]
        self._others: list[TensorDictBase] = []   # non-tensor entries, one per step
        self._other_keys: list[Any] = []
        self._made_folder = False

    @property
    def allocated(self) -> bool:
        """Whether the first frame came (and the storage exists)."""
        return self.td is not None

    def _allocate(self, frame: TensorDictBase) -> None:
        bd = self.batch_dims
        self.envs = max(1, frame.batch_size[:bd].numel()) if bd else 1
        shape = (self.envs, self.steps)
        leaves, template = {}, TensorDict({}, batch_size=shape)
        for key, value in frame.items(True, True, is_leaf=_is_leaf):
            if not isinstance(value, torch.Tensor):
                self._other_keys.append(key)
                continue
            name = self.rename.get(key, key)
            if name in leaves.values():
                raise ConfigError(f"rollout: the frame holds both {key!r} and {name!r}; cannot store {key!r} "
                                  f"under {name!r}")
            leaves[key] = name
            full = shape + tuple(value.shape[bd:])
            if self.kind == "memmap":  # zero strides: no memory; memmap_like makes the files from shape and dtype
                template.set(name, torch.empty((), dtype=value.dtype).expand(full))
            else:
                template.set(name, torch.empty(full, dtype=value.dtype, device="cpu"))
        if self._other_keys and self.kind == "memmap":
            raise ConfigError(f"rollout: storage='memmap' stores tensors only; the frames hold the non-tensor "
                              f"entries {self._other_keys}; use storage='memory'")
        if self.kind == "memmap":
            existed = self.folder.exists()
            self.folder.mkdir(parents=True, exist_ok=True)
            self._made_folder = not existed
            template = template.memmap_like(prefix=str(self.folder), existsok=True)
        self.td = template
        self._dest = {key: template.get(name) for key, name in leaves.items()}

    def write(self, t: int, frame: TensorDictBase) -> None:
        """Copies ``frame`` (one step, batch size the env's) into time slot ``t``; the first call allocates."""
        if self.td is None:
            self._allocate(frame)
        dest, bd, seen = self._dest, self.batch_dims, 0
        for key, value in frame.items(True, True):
            target = dest.get(key)
            if target is None:
                raise ConfigError(f"rollout: step {t} has the entry {key!r} that the first step had not; "
                                  f"every step must hold the same entries")
            if bd > 1:
                value = value.reshape((self.envs,) + tuple(value.shape[bd:]))
            target.select(1, t).copy_(value)  # one env (bd 0): [...] broadcasts into [1, ...]
            seen += 1
        if seen != len(dest):
            missing = sorted(map(str, set(dest) - set(frame.keys(True, True))))
            raise ConfigError(f"rollout: step {t} lacks the entries {missing} that the first step had; every step "
                              f"must hold the same entries")
        if self._other_keys:
            self._others.append(frame.select(*self._other_keys).reshape(self.envs).cpu())

    def finish(self, n: int, entries: Mapping[Any, torch.Tensor] | None = None,
               non_tensor: Mapping[str, Any] | None = None) -> TensorDictBase:
        """The ``[E, n]`` result: the first ``n`` steps written, plus ``entries`` (tensors ``[E, n, ...]``) and
        ``non_tensor`` (key → JSON-able value) added.

        In memory, ``n < steps`` returns a compact copy of those steps (not a view of the storage). In a
        memmap folder the files keep all ``steps`` slots (the slots past ``n`` hold zeros), the entries
        are written there too, and the result is a view of the first ``n``; the folder's ``meta.json``
        is brought up to date, so ``TensorDict.load_memmap`` reopens everything.
        """
        if self.td is None:
            raise ValueError("StepStorage.finish: nothing was written")
        td = self.td
        if self.kind == "memory":
            td = td if n == self.steps else td[:, :n].clone()  # compact: not a view of the whole allocation
            if self._others:
                td.update(torch.stack(self._others[:n], dim=1))
            for key, value in (entries or {}).items():
                td.set(key, value)
            for key, value in (non_tensor or {}).items():
                td.set_non_tensor(key, value)
            return td
        td.unlock_()
        for key, value in (entries or {}).items():
            if n < self.steps:
                full = torch.zeros((self.envs, self.steps) + tuple(value.shape[2:]), dtype=value.dtype)
                full[:, :n] = value
                value = full
            td.set(key, value)
        for key, value in (non_tensor or {}).items():
            td.set_non_tensor(key, value)
        td.memmap_(prefix=str(self.folder), existsok=True)  # writes the new entries and meta.json; the rest stays
        # unlocked like a trajectory in memory: entries set later stay in memory; in-place edits write to the files
        return (td if n == self.steps else td[:, :n]).unlock_()

    def release(self) -> None:
        """Drops this object's references to the storage (what :meth:`finish` returned stays valid)."""
        self.td, self._dest, self._others = None, {}, []

    def discard(self) -> None:
        """Releases the storage and removes what a failed run wrote to its memmap folder (a folder that was
        empty before is kept, empty)."""
        self.release()
        if self.kind != "memmap" or self.folder is None or not self.folder.exists():
            return
        if self._made_folder:
            shutil.rmtree(self.folder, ignore_errors=True)
            return
        for child in self.folder.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
