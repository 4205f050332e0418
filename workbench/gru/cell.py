"""Our Python GRU: ``torch.nn.GRU``'s parameters and gates, written in plain ops.

It is what ``GRUModule(python_based=True)`` runs. Compared with the native
layer it can restart rows mid-sequence, record its gate activations for the
visualizer, and run under ``torch.vmap`` (no in-place ops, no data-dependent
Python branches), which cuDNN cannot.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from . import fast
from .kernels import SequenceResult, loop_sequence, weight_list

__all__ = ["PythonGRU"]


class PythonGRU(nn.Module):
    """A multi-layer GRU with ``torch.nn.GRU``'s parameter names and convention.

    Args:
        input_size: features of the input.
        hidden_size: features of the hidden state.
        num_layers: stacked layers. Default: 1.
        bias: use ``bias_ih_l*`` / ``bias_hh_l*``. Default: ``True``.
        batch_first: must be ``True`` (the TensorDict layout). Default: ``True``.
        dropout: dropout between layers in training mode. Default: 0.
        bidirectional: must be ``False``.
        device, dtype: where and how the parameters are created.

    ``state_dict()`` is interchangeable with ``torch.nn.GRU(..., batch_first=True)``.

    Examples:
        >>> gru = PythonGRU(3, 5, num_layers=2)
        >>> native = torch.nn.GRU(3, 5, num_layers=2, batch_first=True)
        >>> gru.load_state_dict(native.state_dict())
        <All keys matched successfully>
        >>> x = torch.randn(4, 7, 3)
        >>> y, h = gru(x)
        >>> y_ref, h_ref = native(x)
        >>> tuple(y.shape), tuple(h.shape), torch.allclose(y, y_ref, atol=1e-6)
        ((4, 7, 5), (2, 4, 5), True)
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = True,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not batch_first:
            raise ValueError("PythonGRU supports batch_first=True only (the TensorDict layout); got batch_first=False.")
        if bidirectional:
            raise ValueError("PythonGRU does not support bidirectional=True: a recurrent policy runs forward in time.")
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.bias = bool(bias)
        self.batch_first = True
        self.dropout = float(dropout)
        self.bidirectional = False
        factory = {"device": device, "dtype": dtype}
        for layer in range(self.num_layers):
            layer_in = self.input_size if layer == 0 else self.hidden_size
            gates = 3 * self.hidden_size
            self.register_parameter(f"weight_ih_l{layer}", nn.Parameter(torch.empty(gates, layer_in, **factory)))
            self.register_parameter(f"weight_hh_l{layer}", nn.Parameter(torch.empty(gates, self.hidden_size, **factory)))
            if self.bias:
                self.register_parameter(f"bias_ih_l{layer}", nn.Parameter(torch.empty(gates, **factory)))
                self.register_parameter(f"bias_hh_l{layer}", nn.Parameter(torch.empty(gates, **factory)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in ``±1/sqrt(hidden_size)``, as ``torch.nn.GRU`` initialises."""
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        with torch.no_grad():
            for p in self.parameters():
                if p.device.type != "meta":
                    p.uniform_(-bound, bound)

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        if not self.bias:
            text += ", bias=False"
        if self.dropout:
            text += f", dropout={self.dropout}"
        return text + ", batch_first=True"

    def sequence(
        self,
        x: Tensor,
        stored: Tensor,
        is_init: Tensor | None = None,
        *,
        record_gates: bool = False,
    ) -> SequenceResult:
        """Runs ``x`` ``[N, T, F]`` from ``stored[:, 0]``, restarting rows from ``stored`` where ``is_init``.

        The kernel contract of :mod:`workbench.gru.kernels`. Runs the fused
        kernel (:func:`workbench.gru.fast.fused_sequence`, with its
        hand-written backward) when it can, and the plain step loop
        (:func:`workbench.gru.kernels.loop_sequence`) when gates are recorded,
        under ``torch.func`` transforms (``vmap`` over stacked parameters) and
        under ``torch.compile``. Both compute the same thing.
        """
        weights = weight_list(self)
        if not record_gates and fast.can_fuse(x, stored, weights[1]):
            return fast.fused_sequence(self, x, stored, is_init, weights=weights)
        return loop_sequence(self, x, stored, is_init, weights=weights, record_gates=record_gates)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Same call as ``torch.nn.GRU(batch_first=True)``: ``(output, h_n)``.

        ``input`` is ``[N, T, F]`` (or ``[T, F]`` unbatched), ``hx`` is
        ``[L, N, H]`` (or ``[L, H]``), zeros when omitted.
        """
        unbatched = input.dim() == 2
        if unbatched:
            input = input.unsqueeze(0)
            hx = None if hx is None else hx.unsqueeze(1)
        if input.dim() != 3 or input.shape[-1] != self.input_size:
            raise ValueError(
                f"PythonGRU expected input of shape [N, T, {self.input_size}] or [T, {self.input_size}], "
                f"got {list(input.shape)}."
            )
        n = input.shape[0]
        if hx is None:
            h0 = input.new_zeros(n, self.num_layers, self.hidden_size)
        else:
            expected = (self.num_layers, n, self.hidden_size)
            if tuple(hx.shape) != expected:
                raise ValueError(f"PythonGRU expected hx of shape {list(expected)}, got {list(hx.shape)}.")
            h0 = hx.transpose(0, 1)
        res = self.sequence(input, h0.unsqueeze(1))
        output, h_n = res.output, res.trace[:, -1].transpose(0, 1)
        if unbatched:
            output, h_n = output.squeeze(0), h_n.squeeze(1)
        return output, h_n
