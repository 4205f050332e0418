"""Rollouts of recurrent policies, and trajectories on disk.

:func:`rollout` steps a policy (on CPU or CUDA) through an environment (on
CPU) for a fixed number of steps; episodes end and restart inside it. The
result is a trajectory TensorDict ``[envs, T]`` with the :data:`KEYS` entries,
including the hidden state read at every step and the one after it.

Examples:
    >>> from workbench.envs import EnvSpec, make_env
    >>> from workbench.policy import PolicySpec, build_policy
    >>> spec = EnvSpec("CartPole-v1", hide_velocity=True, max_steps=10)
    >>> policy = build_policy(PolicySpec(hidden_size=8), make_env(spec), device="cpu")
    >>> traj = rollout(policy, make_env(spec, policy), 25, seed=0, progress=False, device="cpu")
    >>> traj.batch_size, traj[KEYS.hidden].shape, traj[KEYS.true_state].shape
    (torch.Size([1, 25]), torch.Size([1, 25, 1, 8]), torch.Size([1, 25, 4]))
    >>> traj[KEYS.episode][0, ::5].tolist(), traj[KEYS.step][0, ::5].tolist()
    ([0, 0, 1, 1, 2], [0, 5, 0, 5, 0])
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase

from .episodes import episode_and_step
from .errors import Cancelled
from .files import atomic_torch_save, json_entry, load_tagged
from .keys import KEYS
from .checkpoints import checkpoint_of
from .policy import policy_spec_of, recurrent_modules, resolve_device
from .jobs import CancelToken, Progress, report
from .provenance import describe_module, record
from .storage import StepStorage, check_storage
from .wiring import WiringWarning, check_wiring
from .workers import WORKER_TIMEOUT_S, WorkerWatch

__all__ = [
    "rollout",
    "save_trajectory",
    "load_trajectory",
    "trajectory_metadata",
    "METADATA_KEY",
]

METADATA_KEY = "metadata"
"""the non-tensor entry of a trajectory that holds its JSON-able metadata dict"""

TRAJECTORY_FORMAT = "gru-workbench-trajectory"
TRAJECTORY_VERSION = 1


def _metadata(policy, env, steps, seed, deterministic, device, extra) -> dict[str, Any]:
    from .envs import env_spec_of, observation_names, state_names

    env_spec = env_spec_of(env)
    built = policy_spec_of(policy)
    modules = recurrent_modules(policy)
    meta = record(
        steps=steps,
        num_envs=max(1, env.batch_size.numel()),
        seed=seed,
        deterministic=deterministic,
        device=str(device),
        env_id=env_spec.env_id if env_spec is not None else None,
        env=env_spec.to_dict() if env_spec is not None else None,
        policy=built[0].to_dict() if built is not None else None,
        module=describe_module(modules[0]) if modules else None,
        checkpoint=checkpoint_of(policy),
        observation_names=list(observation_names(env_spec) or []) if env_spec is not None else None,
        state_names=list(state_names(env_spec) or []) if env_spec is not None else None,
    )
    if extra:
        meta.update(extra)
    json.dumps(meta)  # fail early on a value that would not survive save_trajectory
    return meta


def rollout(
    policy,
    env,
    steps: int,
    *,
    seed: int | None = None,
    progress: bool = True,
    deterministic: bool = False,
    device: str | torch.device = "auto",
    check: bool = True,
    metadata: dict[str, Any] | None = None,
    worker_timeout: float = WORKER_TIMEOUT_S,
    storage: str = "memory",
    memmap_folder: str | os.PathLike | None = None,
    cancel: CancelToken | None = None,
    on_progress: Progress | None = None,
) -> TensorDictBase:
    """Runs ``policy`` in ``env`` for ``steps`` steps per env, single-step mode, no gradients.

    Episodes that end are reset inside the rollout (torchrl's
    ``break_when_any_done=False``), so several episodes and their resets
    appear. The policy runs on ``device`` and the environment on its own
    device; data moves between them at each step. Each step is copied into
    CPU storage ``[envs, steps]`` allocated once at the first step
    (:class:`workbench.storage.StepStorage`): memory grows by the bytes the
    trajectory stores, and no more.

    Args:
        policy: a recurrent policy (e.g. :func:`workbench.policy.build_policy`).
        env: an environment wired for it (:func:`workbench.envs.make_env` with ``policy``).
        steps: steps per env (>= 1).

    Keyword Args:
        seed: reseeds the environment and the action sampling, for a
            reproducible rollout; ``None`` keeps the current random state.
        progress: show a ``tqdm`` progress bar.
        deterministic: greedy actions (``ExplorationType.DETERMINISTIC``)
            instead of samples.
        device: where the policy runs: ``"auto"`` (CUDA when present),
            ``"cpu"`` or ``"cuda"``. The policy is moved there in place (like
            ``nn.Module.to``).
        check: run :func:`workbench.wiring.check_wiring` first: errors
            raise :class:`~workbench.wiring.WiringError`, warnings warn.
        metadata: extra JSON-able entries for the trajectory's metadata.
        worker_timeout: seconds a worker process of the environment (``ParallelEnv``) may
            take to answer one reset or step; past it the workers are killed, the
            environment is closed and :class:`~workbench.errors.WorkerTimeoutError` names
            the worker (index and pid). A step normally takes milliseconds.
        storage: ``"memory"`` (CPU tensors) or ``"memmap"``: memory-mapped files in
            ``memmap_folder``, for runs larger than RAM; the trajectory returned reads from
            them, and :func:`load_trajectory` (or ``TensorDict.load_memmap``) reopens the folder.
        memmap_folder: the folder of ``storage="memmap"``: new, or empty (a folder with files
            in it is refused before any step); removed again if the rollout fails.
        cancel: a :class:`~workbench.jobs.CancelToken`, checked before every step.
        on_progress: ``on_progress(done, steps)`` after every step.

    Returns:
        The trajectory, batch size ``[envs, steps]`` (one env: ``[1, steps]``):
        the environment's and policy's entries, plus ``KEYS.hidden`` (read at
        step t; zeros when the environment carries none), ``KEYS.next_hidden``,
        ``KEYS.episode``, ``KEYS.step``, ``KEYS.true_state`` (when the env
        reports it), ``KEYS.gates`` (when the GRU records them), and the
        metadata dict (:func:`trajectory_metadata`).

    Raises:
        ConfigError: a bad argument, e.g. ``device="cuda"`` where CUDA is not available.
        OutputPathError: a ``memmap_folder`` that has files in it or cannot be written.
        WorkerTimeoutError: a worker did not answer within ``worker_timeout``.
        Cancelled: ``cancel`` was set; its ``partial`` is the trajectory ``[envs, done]`` of
            the steps finished (metadata ``cancelled: True``, ``steps: done``,
            ``steps_planned: steps``; a memmap folder keeps them), ``None`` before the first step.

    Examples:
        >>> from workbench.envs import EnvSpec, make_env
        >>> from workbench.jobs import CancelToken
        >>> from workbench.policy import PolicySpec, build_policy
        >>> spec = EnvSpec("CartPole-v1", hide_velocity=True, max_steps=10)
        >>> policy = build_policy(PolicySpec(hidden_size=8), make_env(spec), device="cpu")
        >>> token = CancelToken()
        >>> def stop_at_7(done, total):
        ...     if done == 7:
        ...         token.cancel("enough")
        >>> try:
        ...     rollout(policy, make_env(spec, policy), 25, progress=False, device="cpu",
        ...             cancel=token, on_progress=stop_at_7)
        ... except Cancelled as stopped:
        ...     print(stopped, stopped.partial.batch_size, trajectory_metadata(stopped.partial)["cancelled"])
        rollout: cancelled after 7 of 25 steps torch.Size([1, 7]) True
    """
    from torchrl.envs.utils import ExplorationType, set_exploration_type
    from tqdm.auto import tqdm

    from ._compat import guard_ray_exit
    from .gru import set_recurrent_mode

    guard_ray_exit()  # an uncaught Ctrl-C still ends a script by SIGINT after torchrl imported Ray
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"rollout: 'steps' must be an int >= 1; got {steps!r}.")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"rollout: 'seed' must be an int >= 0 or None; got {seed!r}.")
    folder = check_storage(storage, memmap_folder)
    target = resolve_device(device)
    watch = WorkerWatch(env, worker_timeout)
    if check:
        with warnings.catch_warnings():
            warnings.simplefilter("always", WiringWarning)
            check_wiring(policy, env, strict=True)
    policy.to(target)
    env_device = env.device if env.device is not None else torch.device("cpu")
    move = target != env_device
    exploration = ExplorationType.DETERMINISTIC if deterministic else ExplorationType.RANDOM
    rng_devices = [target] if target.type == "cuda" else []
    store = StepStorage(steps, batch_dims=env.batch_dims, storage=storage, folder=folder,
                        rename=_hidden_renames(policy))
    done = 0
    bar = tqdm(total=steps, desc="rollout", unit="step", disable=not progress, leave=False)
    try:
        with torch.random.fork_rng(devices=rng_devices, enabled=seed is not None), torch.no_grad(), \
                set_recurrent_mode(False), set_exploration_type(exploration), watch:
            if seed is not None:
                torch.manual_seed(seed)
                with watch.call("set_seed"):
                    env.set_seed(seed)
            with watch.call("reset"):
                td = env.reset()
            for t in range(steps):
                if cancel is not None and cancel.cancelled:
                    break
                if move:
                    td = policy(td.to(target)).to(env_device)
                else:
                    td = policy(td)
                with watch.call("step"):
                    frame, td = env.step_and_maybe_reset(td)
                store.write(t, frame)
                done = t + 1
                bar.update(1)
                report(on_progress, done, steps)
        if done == 0:
            raise Cancelled("rollout", done=0, total=steps, unit="steps", partial=None)
        extra = dict(metadata or {})
        if storage == "memmap":
            extra.update(storage="memmap", memmap_folder=str(folder))
        if done < steps:
            extra.update(cancelled=True, steps_planned=steps)
        meta = _metadata(policy, env, done, seed, deterministic, target, extra)
        traj = store.finish(done, _trajectory_entries(store, done), {METADATA_KEY: meta})
        store.release()  # a Cancelled's traceback keeps this frame: not the whole storage with it
    except BaseException:  # an error, Ctrl-C, or a Cancel before the first step: no half-written folder stays
        store.discard()
        raise
    finally:
        bar.close()
    if done < steps:
        raise Cancelled("rollout", done=done, total=steps, unit="steps", partial=traj)
    return traj


def _hidden_renames(policy) -> dict[Any, Any]:
    """The GRU's hidden keys that differ from the KEYS names, mapped to them (stored under KEYS names)."""
    modules = recurrent_modules(policy)
    if not modules:
        return {}
    gru = modules[0]
    pairs = ((gru.in_keys[1], KEYS.hidden), (gru.out_keys[1], KEYS.next_hidden))
    return {key: name for key, name in pairs if key != name}


def _trajectory_entries(store: StepStorage, n: int) -> dict[Any, torch.Tensor]:
    """The entries a trajectory adds to the first ``n`` stored steps: ``KEYS.hidden`` (zeros) when the
    environment carried none, ``KEYS.episode`` and ``KEYS.step`` (from ``KEYS.is_init``)."""
    stored = store.td[:, :n] if n < store.steps else store.td
    keys = set(stored.keys(True))
    entries = {}
    if KEYS.hidden not in keys and KEYS.next_hidden in keys:
        # no primer: the module read zeros at every step
        entries[KEYS.hidden] = torch.zeros_like(stored.get(KEYS.next_hidden), memory_format=torch.contiguous_format)
    if KEYS.is_init in keys:
        episode, step = episode_and_step(stored.get(KEYS.is_init).reshape(stored.batch_size))
        entries[KEYS.episode] = episode
        entries[KEYS.step] = step
    return entries


def trajectory_metadata(trajectory: TensorDictBase) -> dict[str, Any]:
    """The metadata dict of a trajectory (empty when it has none).

    Examples:
        >>> td = TensorDict({}, [1, 3])
        >>> td = td.set_non_tensor(METADATA_KEY, {"env_id": "CartPole-v1"})
        >>> trajectory_metadata(td)["env_id"], trajectory_metadata(TensorDict({}, [1, 3]))
        ('CartPole-v1', {})
    """
    if METADATA_KEY not in trajectory.keys():
        return {}
    return dict(trajectory.get_non_tensor(METADATA_KEY))


def save_trajectory(trajectory: TensorDictBase, path: str | os.PathLike, *, metadata: dict[str, Any] | None = None) -> Path:
    """Writes a trajectory and its metadata to one file, atomically (temp file + ``os.replace``).

    Every tensor entry is kept bit for bit; the metadata dict (the
    trajectory's own, updated with ``metadata``) is stored as JSON. The file
    loads with ``torch.load(..., weights_only=True)``.

    Returns:
        The path written.

    Examples:
        >>> import tempfile
        >>> td = TensorDict({"observation": torch.randn(2, 5, 3), ("next", "reward"): torch.ones(2, 5, 1)}, [2, 5])
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = save_trajectory(td, Path(tmp) / "traj.pt", metadata={"seed": 3})
        ...     back = load_trajectory(path)
        >>> (back.exclude(METADATA_KEY) == td).all(), trajectory_metadata(back)
        (True, {'seed': 3})
    """
    meta = trajectory_metadata(trajectory)
    if metadata:
        meta.update(metadata)
    data = {}
    for key, value in trajectory.items(include_nested=True, leaves_only=True):
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            if value.untyped_storage().nbytes() != value.numel() * value.element_size():
                value = value.clone()  # a view (e.g. a cancelled memmap run's first steps): torch.save writes whole storages
            data[key] = value
    payload = {
        "format": TRAJECTORY_FORMAT,
        "format_version": TRAJECTORY_VERSION,
        "batch_size": list(trajectory.batch_size),
        "data": data,
        "metadata": json.dumps(meta),
    }
    path = Path(path)
    atomic_torch_save(payload, path)
    return path


def load_trajectory(path: str | os.PathLike) -> TensorDictBase:
    """Reads a trajectory written by :func:`save_trajectory` (on CPU), or the folder of a
    ``rollout(..., storage="memmap")`` (read from disk; a cancelled run's folder gives the steps it finished).

    Raises :class:`~workbench.errors.CheckpointError` naming the path and what is wrong for a
    file that is not a readable trajectory (empty, truncated, text, foreign, inconsistent shapes).
    """
    from .errors import CheckpointError

    if Path(path).is_dir():
        return _load_memmap_folder(Path(path))
    payload = load_tagged(path, TRAJECTORY_FORMAT, TRAJECTORY_VERSION, "load_trajectory", "trajectory")
    where = f"load_trajectory: {str(path)!r}"
    batch_size, data = payload.get("batch_size"), payload.get("data")
    if not isinstance(batch_size, (list, tuple)) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in batch_size):
        raise CheckpointError(f"{where}: the stored 'batch_size' must be a list of ints >= 0; got {batch_size!r}")
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{where}: the stored 'data' must map keys to tensors; got {type(data).__name__}")
    td = TensorDict({}, batch_size=batch_size)
    for key, value in data.items():
        if tuple(value.shape[:len(batch_size)]) != tuple(batch_size):
            raise CheckpointError(
                f"{where}: entry {key!r} should start with the batch size {list(batch_size)}; stored shape "
                f"{list(value.shape)}"
            )
        td.set(key, value)
    meta = json_entry(payload, "metadata", path, "load_trajectory", "{}", expect=dict)
    if meta:
        td.set_non_tensor(METADATA_KEY, meta)
    return td


def _load_memmap_folder(folder: Path) -> TensorDictBase:
    """The trajectory in a memmap folder of :func:`rollout`: its first ``metadata["steps"]`` steps, unlocked."""
    from .errors import CheckpointError

    where = f"load_trajectory: {str(folder)!r}"
    if not (folder / "meta.json").is_file():
        raise CheckpointError(f"{where}: a folder, but not a memory-mapped trajectory (no meta.json in it)")
    try:
        td = TensorDict.load_memmap(folder)
    except Exception as error:
        raise CheckpointError(f"{where}: cannot read the memory-mapped trajectory ({type(error).__name__}: "
                              f"{error})") from None
    meta = trajectory_metadata(td)
    steps = meta.get("steps")
    if td.batch_dims != 2 or not isinstance(steps, int) or not 0 < steps <= td.batch_size[1]:
        raise CheckpointError(f"{where}: expected a [envs, steps] trajectory with its metadata (a folder written by "
                              f"rollout(..., storage='memmap')); got batch size {list(td.batch_size)} and "
                              f"steps={steps!r}")
    if steps < td.batch_size[1]:
        td = td[:, :steps]
    return td.unlock_()
