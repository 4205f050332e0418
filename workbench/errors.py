"""The workbench's one error family: every error a user can cause derives from :class:`WorkbenchError`.

Each subclass also derives from the built-in exception that callers of older
versions caught (``ValueError``, ``OSError``, ...), so ``except ValueError``
keeps working. The command line catches :class:`WorkbenchError` and prints its
message on one line with exit code 2; the panels show it and keep working.

Messages name the argument, what was expected and what came in.

Examples:
    >>> try:
    ...     raise ConfigError("--steps: expected an integer >= 1; got -10")
    ... except WorkbenchError as error:
    ...     print(type(error).__name__, isinstance(error, ValueError), error)
    ConfigError True --steps: expected an integer >= 1; got -10
"""

from __future__ import annotations

__all__ = [
    "WorkbenchError",
    "ConfigError",
    "DeviceUnavailableError",
    "CheckpointError",
    "OutputPathError",
    "EnvMismatchError",
    "WorkerTimeoutError",
    "AnalysisError",
    "ExportError",
    "ChromiumNotFoundError",
    "Cancelled",
    "ClusterError",
]


class WorkbenchError(Exception):
    """Base of every error the workbench raises for bad input or a failed operation."""


class ConfigError(WorkbenchError, ValueError):
    """A setting or argument out of its range or of the wrong type."""


class DeviceUnavailableError(ConfigError, RuntimeError):
    """A device asked for by name that this machine lacks, e.g. ``"cuda"`` without CUDA (older versions raised
    ``RuntimeError``)."""


class ClusterError(ConfigError, RuntimeError):
    """Ray could not start here, or the cluster address given cannot be reached."""


class CheckpointError(WorkbenchError, ValueError):
    """A checkpoint or trajectory file that cannot be read: empty, truncated, foreign, too new."""


class OutputPathError(WorkbenchError, OSError):
    """A path that cannot be written: a folder, a device, a read-only place, a missing parent."""


class EnvMismatchError(WorkbenchError, ValueError):
    """A policy and an environment whose observation or action specs do not fit together."""


class WorkerTimeoutError(WorkbenchError, TimeoutError):
    """An environment worker process that did not answer in time."""


class AnalysisError(WorkbenchError, ValueError):
    """Inputs that the analysis cannot use (wrong shape, too few episodes...)."""


class ExportError(WorkbenchError, RuntimeError):
    """An export that could not be done: a path that cannot be written, a bad option."""


class ChromiumNotFoundError(ExportError):
    """Static export (PNG/SVG/PDF) needs Chromium and none was found."""


class Cancelled(WorkbenchError):
    """Long work stopped on request (a Cancel button, Kernel → Interrupt, Ctrl-C) between two of its steps.

    ``partial`` holds what was finished before the stop (a shorter trajectory, the timing records
    measured so far, ...) or ``None`` when nothing usable was kept; ``done`` and ``total`` count
    the steps (or cases, batches) finished and planned.

    Examples:
        >>> err = Cancelled("rollout", done=3, total=10, partial=[1, 2, 3])
        >>> str(err), err.partial
        ('rollout: cancelled after 3 of 10 steps', [1, 2, 3])
    """

    def __init__(self, what: str = "work", *, done: int | None = None, total: int | None = None,
                 unit: str = "steps", partial=None):
        self.what, self.done, self.total, self.unit, self.partial = what, done, total, unit, partial
        count = "" if done is None else f" after {done:,}" + ("" if total is None else f" of {total:,}") + f" {unit}"
        super().__init__(f"{what}: cancelled{count}")
