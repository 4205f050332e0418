"""Which kernel a ``GRUModule`` call runs: the whole rule, as one table (:func:`select_backend`).

Examples:
    >>> import torch
    >>> from workbench.gru import GRUModule
    >>> from workbench.gru.kernels import weight_list
    >>> module = GRUModule(3, 4, in_key="x", out_key="y")
    >>> x, hidden = torch.randn(2, 5, 3), torch.zeros(2, 5, 1, 4)
    >>> select_backend(module, x, hidden, weight_list(module.gru)), SEQUENCE_KERNELS["fused"].__name__
    ('fused', 'fused_sequence')
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from . import fast, kernels, packed
from .cell import PythonGRU

if TYPE_CHECKING:
    from .module import GRUModule

__all__ = ["SEQUENCE_KERNELS", "select_backend"]

SEQUENCE_KERNELS = {
    "native": kernels.native_sequence,
    "packed": packed.packed_sequence,
    "fused": fast.fused_sequence,
    "loop": kernels.loop_sequence,
}
"""The recurrent-mode kernels by name; all share the contract of :mod:`workbench.gru.kernels`."""


def select_backend(module: GRUModule, x: Tensor, hidden: Tensor, weights: list, *, single_step: bool = False,
                   restarts: Tensor | None = None) -> str:
    """The kernel one call runs: the whole backend-selection rule of :class:`GRUModule`, in one place.

    ====================================================  ===========================================
    situation (first row that applies)                    kernel
    ====================================================  ===========================================
    single step, gates recorded                           ``loop`` (one step of it)
    single step, Python layer under ``torch.func``/meta   ``loop`` (pure ops)
    single step, otherwise                                ``step`` (ATen ``gru_cell`` per layer)
    sequence, gates recorded                              ``loop`` (only it records gates)
    sequence under ``torch.func``, compile, or on meta    ``loop`` (the others need eager data)
    sequence, ``recurrent_backend="loop"``                ``loop``
    sequence, Python layer                                ``fused`` (its own loop, fast)
    sequence, ``fused``                                   ``fused``
    sequence, ``packed`` or ``native``, trace of L > 1    ``fused`` (native returns the last layer)
    sequence, ``packed`` / ``native``                     ``packed`` / ``native``
    sequence, ``auto``, CPU, or trace of L > 1            ``fused`` (measured fastest on CPU)
    sequence, ``auto``, CUDA                              ``packed`` with restarts, else ``native``
    ====================================================  ===========================================

    Every value is one of :data:`workbench.gru.arguments.BACKENDS` except ``"step"``, the
    single-step kernel.
    """
    gates = module.gates_key is not None
    python_layer = isinstance(module.gru, PythonGRU)
    if single_step:
        if gates or (python_layer and not fast.can_fuse(x, hidden, weights[1])):
            return "loop"
        return "step"
    requested = module.recurrent_backend
    if gates or requested == "loop" or not fast.can_fuse(x, hidden, weights[1]):
        return "loop"
    if python_layer or requested == "fused":
        return "fused"
    layer_trace = module.hidden_trace_key is not None and module.num_layers > 1
    if layer_trace:
        return "fused"
    if requested != "auto":
        return requested
    if x.device.type != "cuda":
        return "fused"
    return "packed" if restarts is not None and bool(restarts[:, 1:].any()) else "native"
