"""Every use of another library's private API, in one place.

An upgrade of torch, torchrl or kaleido that moves one of these touches this
file only; ``tests/test_compat.py`` checks each of them against the installed
versions. Nothing else in the workbench reads a private attribute of another
library.

=========================  ===========================================================
what                       private API used
=========================  ===========================================================
functorch wrappers         ``torch._C._functorch.is_functorch_wrapped_tensor``
                           (``is_batchedtensor`` on older torch)
native GRU call            ``torch._VF.gru`` (what ``nn.GRU.forward`` calls)
nn.GRU's flat weights      ``nn.GRU._flat_weights``, ``nn.GRU._init_flat_weights()``
a module's parameters      ``nn.Module.__dict__["_parameters"]`` (a fast ``getattr``)
torchrl's worker processes ``ParallelEnv._workers``, ``_use_buffers``, ``_shm_done_flags``
torchrl's recurrent mode   ``torchrl.modules.tensordict_module.rnn``:
                           ``recurrent_mode_state_manager`` (get/set the mode),
                           the base class ``set_recurrent_mode``
kaleido's server           ``kaleido._global_server``
profiler memory events     ``profile.profiler.kineto_results.events()``
Ray's exit hook            ``ray._private.worker.shutdown`` (registered with ``atexit``)
Voila's file handler       ``voila.static_file_handler.AllowListFileHandler`` (undocumented) and
                           ``Voila.init_handlers`` (its handler table, overridden by workbench.voila_app)
=========================  ===========================================================

Examples:
    >>> import torch
    >>> functorch_wrapped(torch.zeros(2)), torch.vmap(lambda t: torch.tensor(functorch_wrapped(t)))(torch.zeros(2)).all().item()
    (False, True)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "voila_file_handler",
    "functorch_wrapped",
    "native_gru",
    "flat_weights",
    "parameter_dicts",
    "refresh_flat_weights",
    "parallel_env_workers",
    "torchrl_rnn",
    "get_torchrl_recurrent_mode",
    "set_torchrl_recurrent_mode",
    "kaleido_server",
    "profiler_memory_events",
    "guard_ray_exit",
]

# ---------------------------------------------------------------------------- torch
_is_wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)


def functorch_wrapped(tensor: Tensor) -> bool:
    """Whether ``tensor`` is a ``torch.func`` wrapper (batched by ``vmap``, or tracked by ``grad``)."""
    if _is_wrapped is not None:
        return bool(_is_wrapped(tensor))
    return bool(torch._C._functorch.is_batchedtensor(tensor))  # pragma: no cover - older torch


def native_gru(data: Tensor, batch_sizes: Tensor, hx: Tensor, params: list[Tensor], *, bias: bool,
               num_layers: int, dropout: float, training: bool) -> tuple[Tensor, Tensor]:
    """ATen's multi-layer GRU over packed ``data`` (cuDNN on CUDA), with the weights given, not a module's."""
    return torch._VF.gru(data, batch_sizes, hx, params, bias, num_layers, dropout, training, False)


def flat_weights(gru: nn.Module) -> list[Tensor] | None:
    """``nn.GRU``'s cached list of its weights (what its forward passes to ATen), or ``None``."""
    return getattr(gru, "_flat_weights", None)


def parameter_dicts(module: nn.Module) -> tuple[dict, dict]:
    """``(module.__dict__, its registered parameters)``: ``getattr``'s two places, read without its cost."""
    attrs = module.__dict__
    return attrs, attrs["_parameters"]


def refresh_flat_weights(gru: nn.GRU) -> None:
    """Rebuilds ``nn.GRU``'s cached weight list after its parameters were swapped in with ``setattr``."""
    gru._init_flat_weights()


# ---------------------------------------------------------------------------- torchrl
def parallel_env_workers(parallel_env) -> list[tuple[Any, bool | None]]:
    """Each worker process of a torchrl ``ParallelEnv``, with whether it has answered the command in flight.

    torchrl 0.14.1 (``torchrl/envs/batched_envs.py``): ``ParallelEnv._workers`` is the list
    of ``multiprocessing.Process`` (absent once closed); with shared buffers
    (``_use_buffers``), a worker sets its byte in ``_shm_done_flags`` when it finishes a step
    or a reset, and ``ParallelEnv._wait_for_workers`` spins on those bytes before clearing
    them. ``None``: not known (no shared buffers, or a command such as ``set_seed`` that
    answers on the pipe).
    """
    state = vars(parallel_env)  # not getattr: ParallelEnv.__getattr__ raises RuntimeError once closed
    processes = list(state.get("_workers") or [])
    flags = state.get("_shm_done_flags") if state.get("_use_buffers") else None
    return [(p, None if flags is None else bool(flags[i])) for i, p in enumerate(processes)]


def torchrl_rnn():
    """torchrl's rnn module, which holds its recurrent-mode switch (``torchrl.modules`` re-exports parts)."""
    from torchrl.modules.tensordict_module import rnn

    return rnn


def get_torchrl_recurrent_mode() -> bool | None:
    """The mode torchrl's modules and losses read now (``None``: each module's default)."""
    return torchrl_rnn().recurrent_mode_state_manager.get_mode()


def set_torchrl_recurrent_mode(mode: bool | None) -> None:
    """Sets the mode torchrl's modules and losses read, in this thread/context."""
    torchrl_rnn().recurrent_mode_state_manager.set_mode(mode)


# ---------------------------------------------------------------------------- kaleido
def kaleido_server() -> Any | None:
    """kaleido's process-wide Chromium server (``start_sync_server`` starts it), or ``None``."""
    import kaleido

    return getattr(kaleido, "_global_server", None)


# ---------------------------------------------------------------------------- profiler
def profiler_memory_events(prof) -> list[tuple[int, int]]:
    """``(start_ns, bytes)`` of every allocation (+) and free (-) a CPU profile with ``profile_memory`` saw."""
    return [(e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]


# ---------------------------------------------------------------------------- ray
_ray_exit_guarded = False


def guard_ray_exit() -> bool:
    """Makes Ray's exit hook run only when Ray was started; returns whether it changed it (once per process).

    torchrl imports Ray when it is installed, and Ray's import registers ``ray._private.worker.shutdown``
    with ``atexit``. Run at exit in a process that never started Ray, it turns an uncaught Ctrl-C's exit
    by SIGINT (130 in a shell, what scripts and shells expect) into exit code 1. Here it is replaced by
    a hook that calls it only when ``ray.is_initialized()``.
    """
    import atexit
    import sys

    global _ray_exit_guarded
    worker = sys.modules.get("ray._private.worker")
    if _ray_exit_guarded or worker is None or not callable(getattr(worker, "shutdown", None)):
        return False
    shutdown = worker.shutdown
    atexit.unregister(shutdown)

    def shutdown_if_started() -> None:
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            shutdown(_exiting_interpreter=True)

    atexit.register(shutdown_if_started)
    _ray_exit_guarded = True
    return True


def voila_file_handler() -> type:
    """Voila's handler of ``/voila/files/`` (its allow-list file handler), which :mod:`workbench.voila_app` puts
    behind the login by swapping it in the table ``Voila.init_handlers`` returns (Voila documents neither)."""
    from voila.static_file_handler import AllowListFileHandler

    return AllowListFileHandler
