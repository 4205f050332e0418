"""Environments for recurrent policies: :class:`EnvSpec` → :func:`make_env`.

Any gymnasium id runs through torchrl's ``GymWrapper`` (the class behind
``GymEnv``), with ``InitTracker`` (``is_init``), ``StepCounter`` and the
policy's primers. Partially observed variants hide the velocities
(``hide_velocity=True``) and still report the full state under
``KEYS.true_state``, for probes.

Examples:
    >>> env = make_env(EnvSpec("CartPole-v1", hide_velocity=True, seed=0))
    >>> td = env.reset()
    >>> td["observation"].shape, td["true_state"].shape, bool(td["is_init"])
    (torch.Size([2]), torch.Size([4]), True)
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import multiprocessing
import os
import signal
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch

from .errors import ConfigError, WorkerTimeoutError
from .keys import KEYS
from .specs import Spec, setting

__all__ = [
    "EnvSpec",
    "VelocityMask",
    "VELOCITY_MASKS",
    "make_env",
    "make_base_env",
    "observation_names",
    "state_names",
    "env_spec_of",
    "close_env",
    "WorkerWatch",
    "WORKER_TIMEOUT_S",
]

WORKER_TIMEOUT_S = 60.0
"""default seconds a worker process may take to answer one command (a step takes milliseconds)"""

SHUTDOWN_TIMEOUT_S = 2.0
"""seconds a closing worker gets to exit before it is killed"""


@dataclass(frozen=True)
class VelocityMask:
    """Which observation entries stay visible when the velocities are hidden."""

    keep: tuple[int, ...]
    """indices of the full observation that stay visible"""
    names: tuple[str, ...]
    """names of the full observation's entries (the true state)"""


VELOCITY_MASKS: dict[str, VelocityMask] = {
    "CartPole-v0": VelocityMask((0, 2), ("x", "x_dot", "theta", "theta_dot")),
    "CartPole-v1": VelocityMask((0, 2), ("x", "x_dot", "theta", "theta_dot")),
    "Pendulum-v1": VelocityMask((0, 1), ("cos_theta", "sin_theta", "theta_dot")),
    "Acrobot-v1": VelocityMask(
        (0, 1, 2, 3), ("cos_theta1", "sin_theta1", "cos_theta2", "sin_theta2", "theta1_dot", "theta2_dot")
    ),
    "MountainCar-v0": VelocityMask((0,), ("position", "velocity")),
    "MountainCarContinuous-v0": VelocityMask((0,), ("position", "velocity")),
}
"""Environments with a partially observed variant: what stays visible, and the state's names."""


@dataclass(frozen=True)
class EnvSpec(Spec):
    """What environment to build; :func:`make_env` builds it.

    Examples:
        >>> EnvSpec("Pendulum-v1", hide_velocity=True, num_envs=2).num_envs
        2
        >>> EnvSpec("Pendulum-v1", num_envs=0)
        Traceback (most recent call last):
        ...
        workbench.errors.ConfigError: EnvSpec: 'num_envs' must be an int >= 1; got 0.
    """

    env_id: str = setting("CartPole-v1", "a registered gymnasium id, e.g. ``\"CartPole-v1\"``, ``\"Pendulum-v1\"``",
                          label="environment")
    hide_velocity: bool = setting(False, "hide the velocities from the observation (a POMDP); ids in ``VELOCITY_MASKS``",
                                  label="hide velocities (POMDP)")
    num_envs: int = setting(1, "environments stepped together (the trajectory's first dimension)", low=1)
    parallel: bool = setting(
        False, "with ``num_envs > 1``: worker processes (``ParallelEnv``) instead of one process (``SerialEnv``)")
    max_steps: int | None = setting(
        None, "truncate episodes after this many steps (``StepCounter``); None keeps the env's own limit",
        kind="int", low=1, optional=True)
    seed: int | None = setting(
        0, "seed of the environments (env 0 gets it, the others seeds derived from it); None: unseeded",
        low=0, optional=True)
    categorical_actions: bool = setting(
        True, "discrete actions as an integer index (``True``) or one-hot vectors (``False``)")
    true_state: bool = setting(True, "report the full observation (velocities included) under ``KEYS.true_state``")

    def _check(self) -> None:
        if not isinstance(self.env_id, str) or not self.env_id:
            raise ConfigError(f"EnvSpec: 'env_id' must be a gymnasium id such as 'CartPole-v1'; got {self.env_id!r}.")
        import gymnasium as gym

        from . import tasks  # noqa: F401  (registers the workbench/ ids)

        try:
            gym.spec(self.env_id)
        except Exception as err:  # gymnasium raises several NameNotFound/VersionNotFound types
            raise ConfigError(
                f"EnvSpec: 'env_id' must be a registered gymnasium id (e.g. 'CartPole-v1', 'Pendulum-v1', "
                f"'Acrobot-v1', 'MountainCar-v0'); got {self.env_id!r} ({err})."
            ) from None
        if self.hide_velocity and self.env_id not in VELOCITY_MASKS:
            raise ConfigError(
                f"EnvSpec: 'hide_velocity=True' needs one of {sorted(VELOCITY_MASKS)}; got env_id={self.env_id!r}."
            )


def state_names(spec: EnvSpec) -> tuple[str, ...] | None:
    """Names of the true state's entries, when known.

    Examples:
        >>> state_names(EnvSpec("CartPole-v1", hide_velocity=True))
        ('x', 'x_dot', 'theta', 'theta_dot')
    """
    from .tasks import task_info

    task = task_info(spec.env_id)
    if task is not None:
        return task.state_names
    mask = VELOCITY_MASKS.get(spec.env_id)
    return None if mask is None else mask.names


def observation_names(spec: EnvSpec) -> tuple[str, ...] | None:
    """Names of the observation's entries, when known.

    Examples:
        >>> observation_names(EnvSpec("Pendulum-v1", hide_velocity=True))
        ('cos_theta', 'sin_theta')
    """
    from .tasks import task_info

    task = task_info(spec.env_id)
    if task is not None:
        return task.observation_names
    mask = VELOCITY_MASKS.get(spec.env_id)
    if mask is None:
        return None
    return tuple(mask.names[i] for i in mask.keep) if spec.hide_velocity else mask.names


def make_base_env(spec: EnvSpec):
    """One environment on CPU, without the torchrl transforms (what a worker of :func:`make_env` runs).

    Examples:
        >>> base = make_base_env(EnvSpec("Pendulum-v1", hide_velocity=True))
        >>> base.observation_spec["observation"].shape, base.observation_spec["true_state"].shape
        (torch.Size([2]), torch.Size([3]))
    """
    import gymnasium as gym
    from torchrl.data import Unbounded
    from torchrl.envs import GymWrapper
    from torchrl.envs.libs.gym import default_info_dict_reader

    from .tasks import MaskedTrueState  # importing tasks registers the workbench/ ids, also in workers

    gym_env = gym.make(spec.env_id)
    try:  # the workbench tasks report their own true state
        state_space = gym_env.get_wrapper_attr("true_state_space")
    except AttributeError:
        state_space = None
    if state_space is None and (spec.hide_velocity or spec.true_state):
        gym_env = MaskedTrueState(gym_env, VELOCITY_MASKS[spec.env_id].keep if spec.hide_velocity else None)
        state_space = gym_env.true_state_space
    env = GymWrapper(gym_env, categorical_action_encoding=spec.categorical_actions, device="cpu")
    if spec.hide_velocity or spec.true_state:
        dtype = torch.from_numpy(np.zeros(0, dtype=state_space.dtype)).dtype
        state_spec = Unbounded(shape=state_space.shape, dtype=dtype, device="cpu")
        env.set_info_dict_reader(default_info_dict_reader([KEYS.true_state], spec={KEYS.true_state: state_spec}))
    return env


def _start_method() -> str:
    methods = multiprocessing.get_all_start_methods()
    return "fork" if "fork" in methods else "spawn"


def _make_worker_env(spec: EnvSpec, owner_pid: int):
    """:func:`make_base_env` in a worker process, which leaves Ctrl-C (SIGINT) to the process that owns it.

    A terminal's Ctrl-C reaches the whole process group; the owner then closes its workers itself.
    torchrl also calls this in the owner to read the specs: there SIGINT is left alone.
    """
    if os.getpid() != owner_pid:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return make_base_env(spec)


_OPEN_PARALLEL_ENVS: weakref.WeakSet = weakref.WeakSet()
"""the ``ParallelEnv`` s made by :func:`make_env` that may still hold worker processes"""


def _close_open_envs_at_exit() -> None:
    for env in list(_OPEN_PARALLEL_ENVS):
        close_env(env)


def _close_at_exit(parallel_env) -> None:
    """Closes ``parallel_env`` when the interpreter exits (end of script, uncaught error, Ctrl-C)."""
    if not _OPEN_PARALLEL_ENVS:
        import multiprocessing.util  # noqa: F401  (registers its exit handler, which joins the workers, first)

        atexit.unregister(_close_open_envs_at_exit)
        atexit.register(_close_open_envs_at_exit)  # atexit runs last-in first-out: this runs before that join
    _OPEN_PARALLEL_ENVS.add(parallel_env)


def _torchrl_workers(parallel_env) -> list[tuple[Any, bool | None]]:
    """Each worker process of a torchrl ``ParallelEnv``, with whether it has answered the command in flight.

    The only place the workbench reads torchrl's private attributes (torchrl 0.14.1,
    ``torchrl/envs/batched_envs.py``): ``ParallelEnv._workers`` is the list of
    ``multiprocessing.Process`` (absent once closed); with shared buffers
    (``_use_buffers``), a worker sets its byte in ``_shm_done_flags`` when it finishes a
    step or a reset, and ``ParallelEnv._wait_for_workers`` spins on those bytes (with
    ``BATCHED_PIPE_TIMEOUT``, 10000 s by default) before clearing them. ``None``: not known
    (no shared buffers, or a command such as ``set_seed`` that answers on the pipe).
    """
    state = vars(parallel_env)  # not getattr: ParallelEnv.__getattr__ raises RuntimeError once closed
    processes = list(state.get("_workers") or [])
    flags = state.get("_shm_done_flags") if state.get("_use_buffers") else None
    return [(p, None if flags is None else bool(flags[i])) for i, p in enumerate(processes)]


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


def make_env(spec: EnvSpec, policy=None):
    """The environment of ``spec`` (on CPU), wired for a recurrent ``policy``.

    Transforms: ``InitTracker`` (writes ``is_init``), ``StepCounter(spec.max_steps)``
    and, when ``policy`` is given, its primers
    (``torchrl.modules.utils.get_primers_from_module``), so the hidden state
    travels from step to step. With ``num_envs > 1`` the environments run in
    worker processes (``ParallelEnv``, ``parallel=True``) or in this process
    (``SerialEnv``); the transforms sit outside them, batched.

    Args:
        spec: what to build.
        policy: a policy whose recurrent modules need primers (optional).

    Returns:
        A torchrl ``TransformedEnv``, batch size ``[]`` or ``[num_envs]``.
        A ``ParallelEnv`` holds worker processes: :func:`close_env` when done (they are
        closed at interpreter exit otherwise; its workers ignore SIGINT, left to this process).

    Examples:
        >>> from workbench.policy import PolicySpec, build_policy
        >>> spec = EnvSpec("CartPole-v1", num_envs=2)
        >>> policy = build_policy(PolicySpec(hidden_size=8), make_env(spec))
        >>> env = make_env(spec, policy)
        >>> env.reset()["recurrent_state"].shape
        torch.Size([2, 1, 8])
    """
    from torchrl.envs import Compose, InitTracker, ParallelEnv, SerialEnv, StepCounter, TransformedEnv
    from torchrl.modules.utils import get_primers_from_module

    if not isinstance(spec, EnvSpec):
        raise TypeError(f"make_env: 'spec' must be an EnvSpec; got {type(spec).__name__}.")
    if spec.num_envs == 1:
        base = make_base_env(spec)
    else:
        if spec.parallel:
            create = functools.partial(_make_worker_env, spec, os.getpid())
            base = ParallelEnv(spec.num_envs, create, mp_start_method=_start_method(), device="cpu",
                               shutdown_timeout=SHUTDOWN_TIMEOUT_S)
            _close_at_exit(base)
        else:
            base = SerialEnv(spec.num_envs, functools.partial(make_base_env, spec), device="cpu")
    try:
        transforms = [InitTracker(), StepCounter(spec.max_steps)]
        if policy is not None:
            primers = get_primers_from_module(policy, warn=False)
            if primers is not None:
                transforms.append(primers.to("cpu"))
        env = TransformedEnv(base, Compose(*transforms))
        if spec.seed is not None:
            if spec.parallel:
                with WorkerWatch(env, WORKER_TIMEOUT_S, owner="make_env",
                                 argument="workbench.envs.WORKER_TIMEOUT_S") as watch, watch.call("set_seed"):
                    env.set_seed(spec.seed)
            else:
                env.set_seed(spec.seed)
    except BaseException:  # Ctrl-C too: no worker outlives a failed make_env
        close_env(base)
        raise
    _ENV_SPECS[env] = spec
    return env


_ENV_SPECS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""the one record of which :class:`EnvSpec` made which environment (nothing is stuck on torchrl's objects)"""


def env_spec_of(env) -> EnvSpec | None:
    """The :class:`EnvSpec` an environment was made from (None if not made by :func:`make_env`)."""
    try:
        return _ENV_SPECS.get(env)
    except TypeError:  # not weak-referenceable: not one of ours
        return None
