"""``GRUModule``: a TensorDict-aware GRU, a drop-in for ``torchrl.modules.GRUModule``.

This file reads and writes TensorDict keys, checks what comes in, and picks a
kernel with one table (:func:`workbench.gru.backends.select_backend`); its
constructor's checks live in :mod:`workbench.gru.arguments`. The math lives elsewhere:
:mod:`workbench.gru.kernels` (the kernel contract, single steps, the reference
loop, native calls between resets), :mod:`workbench.gru.fast` (the fused loop
with its hand-written backward, packed native calls) and
:mod:`workbench.gru.cell` (our Python layer).
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Literal, Sequence

import torch
from tensordict import TensorDictBase, unravel_key_list
from tensordict.nn import TensorDictModuleBase, dispatch
from torch import Tensor, nn

from .._compat import refresh_flat_weights
from . import kernels
from .arguments import (
    BACKEND_ALIASES,
    BACKENDS,
    DEFAULT_DROPOUT,
    DEFAULT_NUM_LAYERS,
    NestedKey,
    check_backend,
    check_gates_supported,
    check_given_layer,
    check_keys,
    make_layer,
)
from .backends import SEQUENCE_KERNELS, select_backend
from .cell import PythonGRU
from .modes import _normalize_mode, recurrent_mode

__all__ = ["GRUModule"]



def _as_tuple(key: NestedKey) -> tuple[str, ...]:
    return key if isinstance(key, tuple) else (key,)


class GRUModule(TensorDictModuleBase):
    """An embedder for a GRU: reads an input and a hidden state from a TensorDict, writes both back.

    Args:
        input_size: features of the input value.
        hidden_size: features of the hidden state.
        num_layers: stacked GRU layers. Default: 1.
        bias: whether the layers have biases. Default: ``True``.
        dropout: dropout between layers, in training mode. Default: 0.
        python_based: run our Python GRU cell (vmap-safe, can record gates)
            instead of ``torch.nn.GRU``. Default: ``False``.

    Keyword Args:
        batch_first: must be ``True`` (accepted for torchrl compatibility).
        bidirectional: must be ``False`` (a policy runs forward in time).
        recurrent_backend: how the native layer runs a sequence with resets
            in recurrent mode: ``"fused"`` (a reset-aware step loop with few
            ops per step and a hand-written backward; the fastest on CPU),
            ``"packed"`` (every trajectory packed into one native
            ``nn.GRU``/cuDNN call), ``"native"`` (``nn.GRU``/cuDNN calls
            between reset columns), ``"loop"`` (the plain reset-aware step
            loop, the reference; it also runs under ``torch.vmap`` and
            ``torch.compile``) or ``"auto"`` (the module picks from the device
            and the data; :attr:`last_backend` says which). Under
            ``torch.func`` transforms (``vmap``), ``torch.compile`` and on the
            ``meta`` device every backend runs ``"loop"``: the others need
            eager tensors with data (cuDNN has no vmap rule). torchrl's
            ``"pad"`` and ``"scan"`` are accepted as aliases of ``"native"``
            and ``"loop"``. A Python layer runs its own loop: ``"fused"``
            unless gates are recorded, under ``torch.func`` transforms or
            ``torch.compile``, or with ``recurrent_backend="loop"``. The whole
            rule is one table: :func:`~workbench.gru.backends.select_backend`. Default: ``"auto"``.
        in_key: the input value key; the hidden key is then ``"recurrent_state"``.
        in_keys: ``[value, hidden]`` (``"is_init"`` is appended). Exclusive with ``in_key``.
        out_key: the output value key; the hidden key is then ``("next", "recurrent_state")``.
        out_keys: ``[value, next_hidden]``. Exclusive with ``out_key``.
        device: device of the parameters.
        dtype: dtype of the parameters (e.g. ``torch.float64``).
        gru: an existing ``torch.nn.GRU`` (or :class:`PythonGRU`) to wrap.
            Exclusive with ``input_size``, ``hidden_size``, ``num_layers``,
            ``bias`` and ``dropout`` (even when the values agree);
            ``python_based``, ``device`` and ``dtype`` must agree with it.
        default_recurrent_mode: the mode when no ``set_recurrent_mode`` context
            is active. Default: ``False`` (single steps).
        hidden_trace_key: if given, also write the hidden state of every layer
            after every step there (``[*batch, T, L, H]`` in recurrent mode,
            ``[*batch, L, H]`` for a single step), for analysis.
        gates_key: if given (Python layer only), also write the r, z, n gate
            activations there (``[*batch, (T,) L, 3, H]``).

    Single-step mode: any batch shape; a missing hidden state means zeros, and
    the hidden state is zeroed where ``is_init`` is ``True``.

    Recurrent mode (time is the last batch dimension): at ``t = 0`` and at every
    ``is_init`` the sequence restarts from the hidden state stored at that
    step, so no hidden state crosses an episode boundary. ``out_keys[1]`` holds,
    as in torchrl, the hidden state after the last step of each trajectory and
    zeros elsewhere.

    Examples:
        >>> from tensordict import TensorDict
        >>> module = GRUModule(3, 8, num_layers=2, in_key="obs", out_key="features")
        >>> td = TensorDict({"obs": torch.randn(4, 3), "is_init": torch.ones(4, 1, dtype=torch.bool)}, [4])
        >>> td = module(td)
        >>> td["features"].shape, td["next", "recurrent_state"].shape
        (torch.Size([4, 8]), torch.Size([4, 2, 8]))
        >>> from workbench import set_recurrent_mode
        >>> seq = TensorDict({"obs": torch.randn(4, 10, 3), "is_init": torch.zeros(4, 10, 1, dtype=torch.bool)}, [4, 10])
        >>> with set_recurrent_mode(True):
        ...     seq = module(seq)
        >>> seq["features"].shape, module.last_backend
        (torch.Size([4, 10, 8]), 'fused')
    """

    DEFAULT_IN_KEYS = ["recurrent_state"]
    DEFAULT_OUT_KEYS = [("next", "recurrent_state")]
    BACKENDS = BACKENDS
    _BACKEND_ALIASES = BACKEND_ALIASES

    def __init__(
        self,
        input_size: int | None = None,
        hidden_size: int | None = None,
        num_layers: int = DEFAULT_NUM_LAYERS,
        bias: bool = True,
        dropout: float = DEFAULT_DROPOUT,
        python_based: bool = False,
        *,
        batch_first: bool = True,
        bidirectional: bool = False,
        recurrent_backend: Literal["auto", "native", "packed", "fused", "loop", "pad", "scan"] = "auto",
        in_key: NestedKey | None = None,
        in_keys: Sequence[NestedKey] | None = None,
        out_key: NestedKey | None = None,
        out_keys: Sequence[NestedKey] | None = None,
        device: torch.device | str | int | None = None,
        dtype: torch.dtype | None = None,
        gru: nn.Module | None = None,
        default_recurrent_mode: bool | None = None,
        hidden_trace_key: NestedKey | None = None,
        gates_key: NestedKey | None = None,
    ) -> None:
        super().__init__()
        if batch_first is not True:
            raise ValueError(f"GRUModule: 'batch_first' must be True (the TensorDict layout); got {batch_first!r}.")
        if bidirectional:
            raise ValueError(
                "GRUModule: 'bidirectional=True' is not supported: a recurrent policy steps forward in time "
                "and single-step mode cannot run backwards."
            )
        self.recurrent_backend = check_backend(recurrent_backend)
        if gru is None:
            gru = make_layer(input_size, hidden_size, num_layers, bias, dropout, python_based, device, dtype)
        else:
            check_given_layer(gru, input_size, hidden_size, num_layers, bias, dropout, python_based, device, dtype)
        self.gru = gru
        self.in_keys, self.out_keys = check_keys(in_key, in_keys, out_key, out_keys, self.DEFAULT_IN_KEYS,
                                                 self.DEFAULT_OUT_KEYS)
        self.hidden_trace_key = None if hidden_trace_key is None else unravel_key_list([hidden_trace_key])[0]
        self.gates_key = None if gates_key is None else unravel_key_list([gates_key])[0]
        check_gates_supported(self.gates_key, self.gru)
        for extra in (self.hidden_trace_key, self.gates_key):
            if extra is not None:
                if extra in self.in_keys or extra in self.out_keys:
                    raise ValueError(f"GRUModule: extra output key {extra!r} collides with in_keys/out_keys.")
                self.out_keys = [*self.out_keys, extra]
        self._recurrent_mode = _normalize_mode(default_recurrent_mode)
        self.last_backend: str | None = None
        """The kernel the last recurrent-mode call ran, one of :attr:`BACKENDS` other than ``"auto"``
        (``None`` before any call, or when the call had no step)."""

    # ------------------------------------------------------------------ properties
    @property
    def recurrent_mode(self) -> bool:
        """The effective mode: the innermost ``set_recurrent_mode``, else ``default_recurrent_mode``."""
        mode = recurrent_mode()
        return bool(self._recurrent_mode) if mode is None else bool(mode)

    @recurrent_mode.setter
    def recurrent_mode(self, value) -> None:
        raise RuntimeError(
            "GRUModule.recurrent_mode cannot be assigned. Use `with workbench.set_recurrent_mode(True):` "
            "(or torchrl.modules.set_recurrent_mode) around the call, or default_recurrent_mode=... at construction."
        )

    @property
    def python_based(self) -> bool:
        """Whether the layer is our Python cell."""
        return isinstance(self.gru, PythonGRU)

    @property
    def num_layers(self) -> int:
        return self.gru.num_layers

    @property
    def hidden_size(self) -> int:
        return self.gru.hidden_size

    @property
    def input_size(self) -> int:
        return self.gru.input_size

    @property
    def canonical_keys(self) -> list[NestedKey]:
        """Keys whose layout matters to this module (torchrl's ``canonicalize_rnn_subset`` reads them)."""
        return list(self.in_keys) + list(self.out_keys)

    def _reference_param(self) -> Tensor:
        return next(self.gru.parameters())

    # ------------------------------------------------------------------ mode (deprecated API)
    def set_recurrent_mode(self, mode: bool = True) -> GRUModule:
        """Deprecated: returns a copy sharing the same ``.gru`` whose default mode is ``mode``.

        Prefer ``with workbench.set_recurrent_mode(True):`` around the call.

        Examples:
            >>> import warnings
            >>> module = GRUModule(3, 4, in_key="x", out_key="y")
            >>> with warnings.catch_warnings():
            ...     warnings.simplefilter("ignore", DeprecationWarning)
            ...     training = module.set_recurrent_mode(True)
            >>> training.recurrent_mode, module.recurrent_mode, training.gru is module.gru
            (True, False, True)
        """
        warnings.warn(
            "GRUModule.set_recurrent_mode(mode) is deprecated: wrap the call in "
            "`with workbench.set_recurrent_mode(mode):` (or torchrl.modules.set_recurrent_mode), "
            "or pass default_recurrent_mode=... to the constructor.",
            DeprecationWarning,
            stacklevel=2,
        )
        mode = _normalize_mode(mode)
        if bool(mode) == bool(self._recurrent_mode):
            return self
        twin = copy.copy(self)
        for name in ("_parameters", "_buffers", "_modules"):
            twin.__dict__[name] = dict(self.__dict__[name])
        twin._recurrent_mode = mode
        return twin

    # ------------------------------------------------------------------ backend switching
    def _swap_layer(self, layer_cls: type[nn.Module]) -> GRUModule:
        old = self.gru
        if type(old) is layer_cls:
            return self
        new = layer_cls(
            input_size=old.input_size,
            hidden_size=old.hidden_size,
            num_layers=old.num_layers,
            bias=old.bias,
            dropout=old.dropout,
            batch_first=True,
            device="meta",
        )
        for name, param in old.named_parameters():
            setattr(new, name, param)  # the same Parameter objects: optimizers keep working
        new.train(old.training)
        if isinstance(new, nn.GRU):
            refresh_flat_weights(new)
        self.gru = new
        return self

    def make_python_based(self) -> GRUModule:
        """Switches the layer to our Python cell, keeping the very same parameters. Returns ``self``.

        Examples:
            >>> module = GRUModule(3, 4, in_key="x", out_key="y").eval()
            >>> weight = module.gru.weight_hh_l0
            >>> module.make_python_based().gru.weight_hh_l0 is weight, module.gru.training
            (True, False)
        """
        return self._swap_layer(PythonGRU)

    def make_cudnn_based(self) -> GRUModule:
        """Switches the layer to ``torch.nn.GRU`` (cuDNN on CUDA), keeping the parameters. Returns ``self``."""
        if self.gates_key is not None:
            raise ValueError(
                f"GRUModule.make_cudnn_based: this module records gates into {self.gates_key!r}, which needs the "
                "Python cell. Build it with gates_key=None to use the native layer."
            )
        return self._swap_layer(nn.GRU)

    # ------------------------------------------------------------------ primer
    def make_tensordict_primer(self):
        """A torchrl ``TensorDictPrimer`` that adds the hidden state to an environment's specs.

        Its spec has the module's shape ``(num_layers, hidden_size)``, dtype and device.

        Examples:
            >>> module = GRUModule(3, 4, num_layers=2, in_key="x", out_key="y", dtype=torch.float64)
            >>> spec = module.make_tensordict_primer().primers["recurrent_state"]
            >>> tuple(spec.shape), spec.dtype
            ((2, 4), torch.float64)
        """
        from torchrl.data import Unbounded
        from torchrl.envs import TensorDictPrimer

        hidden_in, hidden_out = _as_tuple(self.in_keys[1]), _as_tuple(self.out_keys[1])
        if hidden_out != ("next", *hidden_in):
            raise RuntimeError(
                "GRUModule.make_tensordict_primer: the output hidden key must be ('next', <input hidden key>) so "
                f"that the environment carries it from step to step; got in_keys[1]={self.in_keys[1]!r} and "
                f"out_keys[1]={self.out_keys[1]!r}."
            )
        param = self._reference_param()
        spec = Unbounded(shape=(self.num_layers, self.hidden_size), dtype=param.dtype, device=param.device)
        return TensorDictPrimer({self.in_keys[1]: spec}, expand_specs=True)

    # ------------------------------------------------------------------ reading inputs
    def _read_value(self, td: TensorDictBase, batch: torch.Size) -> Tensor:
        key = self.in_keys[0]
        value = td.get(key, None)
        if value is None:
            present = sorted(str(k) for k in td.keys(include_nested=True, leaves_only=True))
            raise KeyError(f"GRUModule: the input key {key!r} is missing from the TensorDict (it has {present}).")
        expected = [*batch, self.input_size]
        if list(value.shape) != expected:
            raise ValueError(
                f"GRUModule: {key!r} must have shape [*batch, input_size] = {expected}; got {list(value.shape)}."
            )
        param = self._reference_param()
        if value.dtype != param.dtype:
            if not value.dtype.is_floating_point:
                raise TypeError(
                    f"GRUModule: {key!r} has dtype {value.dtype}, but a GRU needs floating-point input "
                    f"({param.dtype}, the parameters' dtype); cast the input, e.g. td[{key!r}] = "
                    f"td[{key!r}].to({param.dtype})."
                )
            raise TypeError(
                f"GRUModule: {key!r} has dtype {value.dtype} but the GRU parameters are {param.dtype}; "
                f"cast the input or the module (e.g. module.to({value.dtype}))."
            )
        return value

    def _read_hidden(self, td: TensorDictBase, batch: torch.Size, value: Tensor) -> Tensor:
        key = self.in_keys[1]
        expected = [*batch, self.num_layers, self.hidden_size]
        hidden = td.get(key, None)
        if hidden is None:
            return value.new_zeros(expected)
        if list(hidden.shape) != expected:
            raise ValueError(
                f"GRUModule: the hidden state {key!r} must have shape [*batch, num_layers, hidden_size] = "
                f"{expected}; got {list(hidden.shape)}."
            )
        if hidden.dtype != value.dtype:
            raise TypeError(
                f"GRUModule: the hidden state {key!r} has dtype {hidden.dtype} but the input and the GRU "
                f"parameters are {value.dtype}; build the primer from this module (make_tensordict_primer() "
                f"follows its dtype) or cast the hidden state, e.g. td[{key!r}] = td[{key!r}].to({value.dtype})."
            )
        return hidden

    def _read_is_init(self, td: TensorDictBase, batch: torch.Size) -> Tensor:
        is_init = td.get("is_init", None)
        if is_init is None:
            raise KeyError(
                "GRUModule: 'is_init' is missing from the TensorDict. It marks the first step of each episode so "
                "the hidden state restarts there; add torchrl.envs.InitTracker() to the environment (or set it "
                "yourself)."
            )
        if list(is_init.shape) == [*batch, 1]:
            is_init = is_init.squeeze(-1)
        if list(is_init.shape) != list(batch):
            raise ValueError(f"GRUModule: 'is_init' must have shape {[*batch, 1]}; got {list(is_init.shape)}.")
        return is_init if is_init.dtype == torch.bool else is_init.bool()

    # ------------------------------------------------------------------ forward
    def forward(self, tensordict: TensorDictBase | None = None, *args, **kwargs) -> TensorDictBase:
        """Reads ``in_keys`` from ``tensordict``, writes ``out_keys`` into it and returns it.

        Like other TensorDict modules it can also be called with the input
        tensors as keyword arguments named after the keys (``module(x=..., is_init=...)``).
        """
        if isinstance(tensordict, TensorDictBase) and not args and not kwargs:  # the common call: no dispatch
            if self.recurrent_mode:
                return self._forward_sequence(tensordict)
            return self._forward_step(tensordict)
        if not isinstance(tensordict, TensorDictBase) and not (tensordict is None and kwargs and not args):
            keys = ", ".join(repr(k) for k in self.in_keys)
            raise TypeError(
                f"GRUModule expects a TensorDict holding {keys} (the hidden state may be missing: zeros); "
                f"got {type(tensordict).__name__}. Wrap the tensors, e.g. "
                f"TensorDict({{{self.in_keys[0]!r}: x, 'is_init': is_init}}, batch_size=x.shape[:-1])."
            )
        if tensordict is None:
            return self._dispatched_forward(**kwargs)
        return self._dispatched_forward(tensordict, *args, **kwargs)

    @dispatch
    def _dispatched_forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self.recurrent_mode:
            return self._forward_sequence(tensordict)
        return self._forward_step(tensordict)

    def _write(self, td: TensorDictBase, output: Tensor, next_hidden: Tensor, trace: Tensor | None, gates) -> None:
        td.set(self.out_keys[0], output)
        td.set(self.out_keys[1], next_hidden)
        if self.hidden_trace_key is not None:
            td.set(self.hidden_trace_key, trace)
        if self.gates_key is not None:
            td.set(self.gates_key, gates)

    def _forward_step(self, td: TensorDictBase) -> TensorDictBase:
        # The lean path reads the three tensors it needs and writes two; the full
        # readers run only when a quick check fails (they raise the detailed errors).
        batch = td.batch_size
        gru = self.gru
        weights = kernels.weight_list(gru)
        layers, size = gru.num_layers, gru.hidden_size
        value = td.get(self.in_keys[0], None)
        hidden = td.get(self.in_keys[1], None)
        is_init = td.get("is_init", None)
        if (
            value is None
            or value.shape[:-1] != batch
            or value.shape[-1] != gru.input_size
            or value.dtype != weights[0].dtype
        ):
            value = self._read_value(td, batch)
        if hidden is None or hidden.shape != (*batch, layers, size) or hidden.dtype != value.dtype:
            hidden = self._read_hidden(td, batch, value)
        if is_init is None or is_init.dtype != torch.bool or is_init.shape != (*batch, 1):
            is_init = self._read_is_init(td, batch)
        rows = batch.numel()
        x = value.reshape(rows, gru.input_size)
        h = hidden.reshape(rows, layers, size)
        restart = is_init.reshape(rows, 1)
        gates = None
        if rows == 0:
            output, h_next = x.new_zeros(0, size), h
            if self.gates_key is not None:
                gates = x.new_zeros(0, layers, 3, size)
        elif select_backend(self, x, h, weights, single_step=True) == "step":
            output, h_next = kernels.step(gru, x, h, restart, weights=weights)
        else:
            h = h.masked_fill(restart.view(rows, 1, 1), 0)
            res = kernels.loop_sequence(gru, x.unsqueeze(1), h.unsqueeze(1), weights=weights,
                                        record_gates=self.gates_key is not None)
            output, h_next = res.output[:, 0], res.trace[:, 0]
            gates = None if res.gates is None else res.gates[:, 0].reshape(*batch, layers, 3, size)
        h_next = h_next.view(*batch, layers, size)
        self._write(td, output.view(*batch, size), h_next, h_next, gates)
        return td

    def _forward_sequence(self, td: TensorDictBase) -> TensorDictBase:
        if td.batch_dims == 0:
            raise ValueError(
                "GRUModule in recurrent mode needs a TensorDict with at least one batch dimension (time, the last "
                "one); got batch_size=[]. Call it on a trajectory, or use single-step mode."
            )
        batch = td.batch_size
        value = self._read_value(td, batch)
        hidden = self._read_hidden(td, batch, value)
        is_init = self._read_is_init(td, batch)
        steps, layers, size = batch[-1], self.num_layers, self.hidden_size
        rows = math.prod(batch[:-1])
        x = value.reshape(rows, steps, self.input_size)
        stored = hidden.reshape(rows, steps, layers, size)
        restarts = is_init.reshape(rows, steps)
        if rows == 0 or steps == 0:
            self.last_backend = None
            zeros = stored.new_zeros(*batch, layers, size)
            gates = x.new_zeros(*batch, layers, 3, size) if self.gates_key is not None else None
            self._write(td, x.new_zeros(*batch, size), zeros, zeros, gates)
            return td
        weights = kernels.weight_list(self.gru)
        backend = select_backend(self, x, stored, weights, restarts=restarts)
        self.last_backend = backend
        if backend == "loop":
            res = kernels.loop_sequence(self.gru, x, stored, restarts, weights=weights,
                                        record_gates=self.gates_key is not None)
        else:
            res = SEQUENCE_KERNELS[backend](self.gru, x, stored, restarts, weights=weights)
        trace = res.trace
        if self.hidden_trace_key is not None and trace is None:
            trace = res.output.unsqueeze(2)  # one layer: the output is the trace
        self._write(
            td,
            res.output.reshape(*batch, size),
            res.ends.reshape(*batch, layers, size),
            None if trace is None else trace.reshape(*batch, layers, size),
            None if res.gates is None else res.gates.reshape(*batch, layers, 3, size),
        )
        return td

    def extra_repr(self) -> str:
        return (
            f"in_keys={self.in_keys}, out_keys={self.out_keys}, recurrent_backend={self.recurrent_backend!r}, "
            f"default_recurrent_mode={bool(self._recurrent_mode)}"
        )
