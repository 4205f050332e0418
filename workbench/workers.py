"""Worker processes of parallel environments: closed on exit and on error, never waited on forever.

torchrl's ``ParallelEnv`` runs each environment in a worker process. Left open, those
workers keep a script (or a kernel) from exiting; a frozen worker blocks its caller for
torchrl's pipe timeout (hours). :func:`close_env` closes an environment within seconds
whatever its workers do, environments made by :func:`workbench.envs.make_env` are closed
when the interpreter exits, and :class:`WorkerWatch` fails a call whose workers do not
answer in time, naming them.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import time
import weakref
from typing import Any, Iterator

from ._compat import parallel_env_workers
from .errors import ConfigError, WorkerTimeoutError

__all__ = ["close_env", "close_at_exit", "WorkerWatch", "WORKER_TIMEOUT_S", "SHUTDOWN_TIMEOUT_S"]

WORKER_TIMEOUT_S = 60.0
"""default seconds a worker process may take to answer one command (a step takes milliseconds)"""

SHUTDOWN_TIMEOUT_S = 2.0
"""seconds a closing worker gets to exit before it is killed"""


_OPEN_PARALLEL_ENVS: weakref.WeakSet = weakref.WeakSet()
"""the ``ParallelEnv`` s made by :func:`make_env` that may still hold worker processes"""


def _close_open_envs_at_exit() -> None:
    for env in list(_OPEN_PARALLEL_ENVS):
        close_env(env)


def close_at_exit(parallel_env) -> None:
    """Closes ``parallel_env`` when the interpreter exits (end of script, uncaught error, Ctrl-C)."""
    if not _OPEN_PARALLEL_ENVS:
        import multiprocessing.util  # noqa: F401  (registers its exit handler, which joins the workers, first)

        atexit.unregister(_close_open_envs_at_exit)
        atexit.register(_close_open_envs_at_exit)  # atexit runs last-in first-out: this runs before that join
    _OPEN_PARALLEL_ENVS.add(parallel_env)


def _torchrl_workers(parallel_env) -> list[tuple[Any, bool | None]]:
    """Each worker process of a torchrl ``ParallelEnv``, with whether it has answered the command in flight
    (``None``: not known); see :func:`workbench._compat.parallel_env_workers`."""
    return parallel_env_workers(parallel_env)


def _parallel_base(env):
    """The torchrl ``ParallelEnv`` under ``env`` (through ``TransformedEnv`` s), or None."""
    from torchrl.envs import ParallelEnv

    seen = 0
    while env is not None and seen < 16:
        if isinstance(env, ParallelEnv):
            return env
        env = getattr(env, "base_env", None)
        seen += 1
    return None


def _process_state(pid: int) -> str | None:
    """The kernel's one-letter state of ``pid`` (Linux ``/proc``; e.g. ``"T"``: stopped), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _kill_workers(parallel_env) -> None:
    """SIGKILL every live worker of ``parallel_env`` (a stopped one too) and reap it."""
    workers = [p for p, _ in _torchrl_workers(parallel_env)]
    for process in workers:
        with contextlib.suppress(ValueError, OSError):  # ValueError: torchrl closed the Process object
            if process.is_alive():
                process.kill()
    deadline = time.monotonic() + 5.0
    for process in workers:
        with contextlib.suppress(ValueError, OSError, AssertionError):
            process.join(timeout=max(0.0, deadline - time.monotonic()))


def close_env(env) -> None:
    """Closes ``env`` and its worker processes, within seconds, whatever state they are in.

    Workers that do not exit within ``SHUTDOWN_TIMEOUT_S`` (frozen, dead or deadlocked) are
    killed. A closed environment is left as it is. :func:`make_env` environments are also closed
    this way when the interpreter exits.

    Examples:
        >>> from workbench.envs import EnvSpec, make_env
        >>> env = make_env(EnvSpec("CartPole-v1", num_envs=2, parallel=True))
        >>> close_env(env); close_env(env)
        >>> env.is_closed
        True
    """
    parallel = _parallel_base(env)
    try:
        if parallel is not None and any(not process.is_alive() for process, _ in _torchrl_workers(parallel)):
            _kill_workers(parallel)  # torchrl's close raises on a dead worker; kill the rest first
        env.close(raise_if_closed=False)
    except Exception:  # a worker that died or was killed: torchrl's bookkeeping fails, the processes are ours
        pass
    finally:
        if parallel is not None:
            _kill_workers(parallel)
            parallel.is_closed = True
            _OPEN_PARALLEL_ENVS.discard(parallel)


class WorkerWatch:
    """Fails a call to a ``ParallelEnv`` whose workers do not all answer within ``timeout_s``.

    torchrl waits for its workers up to ``BATCHED_PIPE_TIMEOUT`` (10000 s) and a frozen worker
    (SIGSTOP, a deadlock) blocks the caller that long. A watch thread times each call made in
    ``with watch.call("step"):``; past the timeout it kills the workers (which ends the
    blocked call), closes the environment, and the call raises
    :class:`~workbench.errors.WorkerTimeoutError` naming the worker (index and pid) that did not
    answer. Without worker processes the watch does nothing.

    Args:
        env: the environment (a ``ParallelEnv``, or a ``TransformedEnv`` around one).
        timeout_s: seconds each call may take.

    Keyword Args:
        owner: the function that asks, for messages.
        argument: the argument that set ``timeout_s``, for messages.

    Examples:
        >>> from workbench.envs import EnvSpec, make_env
        >>> env = make_env(EnvSpec("CartPole-v1", num_envs=2, parallel=True))
        >>> with WorkerWatch(env, 30.0) as watch, watch.call("reset"):
        ...     td = env.reset()
        >>> close_env(env); td.batch_size
        torch.Size([2])
        >>> WorkerWatch(env, 0)
        Traceback (most recent call last):
        ...
        workbench.errors.ConfigError: rollout: 'worker_timeout' expected a number of seconds > 0; got 0.
    """

    def __init__(self, env, timeout_s: float, *, owner: str = "rollout", argument: str = "worker_timeout"):
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
            raise ConfigError(f"{owner}: '{argument}' expected a number of seconds > 0; got {timeout_s!r}.")
        self.env, self.timeout_s, self.owner, self.argument = env, float(timeout_s), owner, argument
        self.parallel = _parallel_base(env)
        self._deadline: float | None = None
        self._what = ""
        self._stop = threading.Event()
        self._fired: list[tuple[int, int, str | None]] | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> WorkerWatch:
        if self.parallel is not None:
            self._thread = threading.Thread(target=self._watch, name="workbench-worker-watch", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @contextlib.contextmanager
    def call(self, what: str) -> Iterator[None]:
        """Times the block (one command to the workers, e.g. ``"step"``)."""
        if self._thread is None:
            yield
            return
        self._what = what
        self._deadline = time.monotonic() + self.timeout_s
        try:
            yield
        except Exception as err:
            if self._fired is not None:
                raise self._error() from err
            raise
        finally:
            self._deadline = None
        if self._fired is not None:  # the workers answered just as they were killed
            raise self._error()

    def _watch(self) -> None:
        poll = min(0.1, self.timeout_s / 20)
        while not self._stop.wait(poll):
            deadline = self._deadline
            if deadline is not None and time.monotonic() > deadline:
                workers = _torchrl_workers(self.parallel)
                silent = [i for i, (_, answered) in enumerate(workers) if answered is False]
                if not silent or len(silent) == len(workers):
                    silent = list(range(len(workers)))  # not known which: name them all
                self._fired = [(i, workers[i][0].pid, _process_state(workers[i][0].pid)) for i in silent]
                _kill_workers(self.parallel)
                return

    def _error(self) -> WorkerTimeoutError:
        close_env(self.env)
        names = ", ".join(f"{i} (pid {pid}{', stopped' if state in ('T', 't') else ''})"
                          for i, pid, state in self._fired)
        return WorkerTimeoutError(
            f"{self.owner}: environment worker{'s' if len(self._fired) > 1 else ''} {names} did not answer "
            f"within {self.argument}={self.timeout_s:g} s (during {self._what}); the environment's workers were "
            f"killed and it is closed. A step normally takes milliseconds: look for a frozen (SIGSTOP) or "
            f"deadlocked worker, or raise {self.argument}."
        )
