"""Pure tensor kernels for GRU layers: no TensorDict keys, no modes.

Every function takes a GRU layer object only to read its parameters by their
``torch.nn.GRU`` names (``weight_ih_l0``, ``bias_hh_l1``, ...), so the same
kernel serves ``torch.nn.GRU`` and our :class:`~workbench.gru.cell.PythonGRU`,
and parameters swapped in with ``TensorDict.to_module`` (as torchrl losses do)
are picked up at call time.

Shapes, with ``N`` rows, ``T`` steps, ``L`` layers and ``H`` hidden units:

- inputs ``x``: ``[N, T, F]``
- hidden states in the TensorDict layout: ``[N, (T,) L, H]``
- ``is_init``: ``[N, T]`` booleans

Every reset-aware sequence kernel (here and in :mod:`workbench.gru.fast`) has
one contract::

    kernel(gru, x, stored, is_init=None, *, weights=None) -> SequenceResult

``stored`` ``[N, T, L, H]`` holds the state each step starts from when it
(re)starts: step 0 always starts from ``stored[:, 0]``, and a step ``t >= 1``
where ``is_init[:, t]`` is set starts from ``stored[:, t]`` instead of the
carried state (selected, never blended: nothing crosses, not even a NaN).
Without ``is_init`` only ``stored[:, 0]`` is read (``h0.unsqueeze(1)`` will
do). ``weights`` is the layer's :func:`weight_list` when the caller has it.
Single steps go through :func:`step`.

The gate convention is ``torch.nn.GRU``'s (order r, z, n; the reset gate
multiplies ``W_hn h + b_hn``), and the update is computed as
``h' = (h - n) * z + n``, the same expression ATen uses, so results agree with
the native kernel to the last bits on CPU.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._compat import parameter_dicts

__all__ = [
    "LayerWeights",
    "SequenceResult",
    "layer_weights",
    "weight_list",
    "gru_cell",
    "step",
    "loop_sequence",
    "native_sequence",
    "trajectory_end_mask",
    "reset_columns",
    "dropout_between_layers",
]


class LayerWeights(NamedTuple):
    """The four parameters of one GRU layer (biases are ``None`` without bias)."""

    w_ih: Tensor
    w_hh: Tensor
    b_ih: Tensor | None
    b_hh: Tensor | None


class SequenceResult(NamedTuple):
    """What a sequence kernel returns.

    ``output`` is the last layer's hidden state at every step, ``[N, T, H]``;
    ``trace`` the hidden state of every layer after every step, ``[N, T, L, H]``
    (``None`` when the kernel was not asked for it); ``gates`` the r, z, n
    activations, ``[N, T, L, 3, H]``, when recorded; ``ends`` the hidden state
    of every layer at trajectory ends and zeros elsewhere, ``[N, T, L, H]``.
    """

    output: Tensor
    trace: Tensor | None
    gates: Tensor | None
    ends: Tensor


def layer_weights(gru: nn.Module, layer: int) -> LayerWeights:
    """Reads layer ``layer``'s parameters from a GRU by their ``nn.GRU`` names.

    Examples:
        >>> w = layer_weights(torch.nn.GRU(3, 4, num_layers=2), 1)
        >>> tuple(w.w_ih.shape), tuple(w.w_hh.shape), tuple(w.b_hh.shape)
        ((12, 4), (12, 4), (12,))
    """
    if gru.bias:
        b_ih = getattr(gru, f"bias_ih_l{layer}")
        b_hh = getattr(gru, f"bias_hh_l{layer}")
    else:
        b_ih = b_hh = None
    return LayerWeights(
        getattr(gru, f"weight_ih_l{layer}"), getattr(gru, f"weight_hh_l{layer}"), b_ih, b_hh
    )


def weight_list(gru: nn.Module) -> list[Tensor | None]:
    """``[w_ih_l0, w_hh_l0, b_ih_l0, b_hh_l0, w_ih_l1, ...]`` as read now (biases ``None`` without bias).

    Reads the instance dictionary first, then ``_parameters``: the same lookup
    as ``getattr`` (so parameters swapped in by ``TensorDict.to_module`` or
    ``torch.func.functional_call`` are seen), without ``nn.Module.__getattr__``'s
    cost on every call.

    Examples:
        >>> gru = torch.nn.GRU(2, 3, num_layers=2)
        >>> [tuple(w.shape) for w in weight_list(gru)][:4]
        [(9, 2), (9, 3), (9,), (9,)]
    """
    names = _weight_names(gru)
    attrs, params = parameter_dicts(gru)
    out = []
    for name in names:
        if name is None:
            out.append(None)
        elif name in attrs:
            out.append(attrs[name])
        else:
            out.append(params[name])
    return out


_NAMES_CACHE: dict[tuple[int, bool], tuple[str | None, ...]] = {}


def _weight_names(gru: nn.Module) -> tuple[str | None, ...]:
    key = (gru.num_layers, bool(gru.bias))
    names = _NAMES_CACHE.get(key)
    if names is None:
        names = []
        for layer in range(gru.num_layers):
            names += [f"weight_ih_l{layer}", f"weight_hh_l{layer}"]
            names += [f"bias_ih_l{layer}", f"bias_hh_l{layer}"] if gru.bias else [None, None]
        names = _NAMES_CACHE[key] = tuple(names)
    return names


def gru_cell(gi: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> tuple[Tensor, Tensor]:
    """One GRU step from a precomputed input projection ``gi = W_ih x + b_ih``.

    Returns the new hidden state ``[N, H]`` and the gates stacked as
    ``[N, 3, H]`` in the order r, z, n. Out-of-place and branch-free, so it
    runs under ``torch.vmap``.

    Examples:
        >>> gru = torch.nn.GRU(2, 3)
        >>> x, h = torch.randn(5, 2), torch.randn(5, 3)
        >>> gi = F.linear(x, gru.weight_ih_l0, gru.bias_ih_l0)
        >>> h1, gates = gru_cell(gi, h, gru.weight_hh_l0, gru.bias_hh_l0)
        >>> ref = torch.gru_cell(x, h, gru.weight_ih_l0, gru.weight_hh_l0,
        ...                      gru.bias_ih_l0, gru.bias_hh_l0)
        >>> torch.allclose(h1, ref), tuple(gates.shape)
        (True, (5, 3, 3))
    """
    gh = F.linear(h, w_hh, b_hh)
    i_r, i_z, i_n = gi.chunk(3, -1)
    h_r, h_z, h_n = gh.chunk(3, -1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    h_new = (h - n) * z + n
    return h_new, torch.stack((r, z, n), -2)


def trajectory_end_mask(is_init: Tensor) -> Tensor:
    """``True`` at the last step of every trajectory: before each reset and at the end.

    Examples:
        >>> trajectory_end_mask(torch.tensor([[True, False, True, False, False]]))
        tensor([[False,  True, False, False,  True]])
    """
    last = torch.ones_like(is_init[..., :1])
    return torch.cat((is_init[..., 1:], last), -1)


def reset_columns(is_init: Tensor) -> list[int]:
    """Time indices ``t >= 1`` at which at least one row restarts.

    Examples:
        >>> reset_columns(torch.tensor([[True, False, True], [False, True, False]]))
        [1, 2]
    """
    return (is_init[:, 1:].any(0).nonzero().flatten() + 1).tolist()


def dropout_between_layers(gru: nn.Module, out: Tensor, layer: int) -> Tensor:
    """``out`` of layer ``layer`` with ``gru``'s dropout applied, in training mode, below the last layer."""
    if gru.dropout and gru.training and layer < gru.num_layers - 1:
        return F.dropout(out, gru.dropout, training=True)
    return out


def step(gru: nn.Module, x: Tensor, h: Tensor, is_init: Tensor | None = None, *,
         weights: list[Tensor | None] | None = None) -> tuple[Tensor, Tensor]:
    """One step for ``x`` ``[N, F]`` from ``h`` ``[N, L, H]``, zeroed first where ``is_init`` ``[N, 1]``.

    ATen's fused ``gru_cell`` per layer (zeroing by selection: a NaN or inf in
    a restarted row's state is dropped). Returns the output ``[N, H]`` and the
    new hidden state ``[N, L, H]``.

    Examples:
        >>> gru = torch.nn.GRU(2, 3, num_layers=2, batch_first=True)
        >>> x, h = torch.randn(4, 2), torch.randn(4, 2, 3)
        >>> y, h1 = step(gru, x, h)
        >>> ref_y, ref_h = gru(x.unsqueeze(1), h.transpose(0, 1).contiguous())
        >>> torch.allclose(y, ref_y[:, 0], atol=1e-6), torch.allclose(h1, ref_h.transpose(0, 1), atol=1e-6)
        (True, True)
    """
    ws = weight_list(gru) if weights is None else weights
    rows, layers, hidden = h.shape
    if layers == 1:
        h = h.reshape(rows, hidden)  # a view of a contiguous state
        if is_init is not None:
            h = h.masked_fill(is_init, 0)
        h1 = torch.gru_cell(x, h, ws[0], ws[1], ws[2], ws[3])
        return h1, h1.view(rows, 1, hidden)
    if is_init is not None:
        h = h.masked_fill(is_init.view(rows, 1, 1), 0)
    layer_input, states = x, []
    for layer in range(layers):
        w_ih, w_hh, b_ih, b_hh = ws[4 * layer : 4 * layer + 4]
        h_layer = torch.gru_cell(layer_input, h[:, layer], w_ih, w_hh, b_ih, b_hh)
        states.append(h_layer)
        layer_input = dropout_between_layers(gru, h_layer, layer)
    return states[-1], torch.stack(states, 1)


def loop_sequence(
    gru: nn.Module,
    x: Tensor,
    stored: Tensor,
    is_init: Tensor | None = None,
    *,
    weights: list[Tensor | None] | None = None,
    record_gates: bool = False,
) -> SequenceResult:
    """Reset-aware GRU over a sequence, one step at a time, layer by layer: the reference.

    Args:
        gru: the layer whose parameters are used (``nn.GRU`` or ``PythonGRU``).
        x: inputs ``[N, T, F]``.
        stored: ``[N, T, L, H]``, the states steps (re)start from (see the module docstring).
        is_init: ``[N, T]``; where ``True`` (at ``t >= 1``) the step starts from
            ``stored`` instead of the carried state. ``None`` means no resets.
        weights: the :func:`weight_list` of ``gru``, if already read.
        record_gates: also return the r, z, n activations.

    The input projection of each layer is one matmul over all steps; resets
    are a ``torch.where`` (no data-dependent Python branch, so ``torch.vmap``
    works).

    Examples:
        >>> gru = torch.nn.GRU(2, 3, batch_first=True)
        >>> x, h0 = torch.randn(4, 6, 2), torch.zeros(4, 1, 3)
        >>> res = loop_sequence(gru, x, h0.unsqueeze(1))
        >>> ref, _ = gru(x, h0.transpose(0, 1))
        >>> torch.allclose(res.output, ref, atol=1e-6), tuple(res.trace.shape)
        (True, (4, 6, 1, 3))
    """
    ws = weight_list(gru) if weights is None else weights
    steps = x.shape[1]
    layer_input = x
    traces, gate_traces = [], []
    if is_init is not None:
        restart_t = is_init.unsqueeze(-1).unbind(1)
    for layer in range(len(ws) // 4):
        w_ih, w_hh, b_ih, b_hh = ws[4 * layer : 4 * layer + 4]
        # unbind once rather than index every step: the backward of T unbinds is one stack,
        # that of T selects is T full-size zero tensors (quadratic in T)
        gi_t = F.linear(layer_input, w_ih, b_ih).unbind(1)
        stored_t = stored[:, :, layer].unbind(1) if is_init is not None else None
        h = stored[:, 0, layer]
        outs, gates = [], []
        for t in range(steps):
            if t and is_init is not None:
                h = torch.where(restart_t[t], stored_t[t], h)
            h, g = gru_cell(gi_t[t], h, w_hh, b_hh)
            outs.append(h)
            gates.append(g)
        layer_out = torch.stack(outs, 1)
        traces.append(layer_out)
        if record_gates:
            gate_traces.append(torch.stack(gates, 1))
        layer_input = dropout_between_layers(gru, layer_out, layer)
    trace = torch.stack(traces, 2)
    if is_init is None:
        is_init = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)
    ends_mask = trajectory_end_mask(is_init)
    ends = torch.where(ends_mask[..., None, None], trace, torch.zeros((), dtype=trace.dtype, device=trace.device))
    gates_out = torch.stack(gate_traces, 2) if record_gates else None
    return SequenceResult(traces[-1], trace, gates_out, ends)


def native_sequence(
    gru: nn.GRU, x: Tensor, stored: Tensor, is_init: Tensor | None = None, *,
    weights: list[Tensor | None] | None = None,
) -> SequenceResult:
    """Reset-aware GRU through ``torch.nn.GRU`` (cuDNN on CUDA).

    The time axis is cut at the columns where some row restarts; each piece is
    one native call, and between pieces the rows that restart take their stored
    hidden state. Nothing is padded and no step is computed twice. The per-step
    trace of every layer is not available from the native kernel (``trace`` is
    ``None``).

    Examples:
        >>> gru = torch.nn.GRU(2, 3, batch_first=True)
        >>> x = torch.randn(2, 5, 2)
        >>> is_init = torch.tensor([[1, 0, 0, 1, 0], [1, 0, 0, 0, 0]]).bool()
        >>> h = torch.zeros(2, 5, 1, 3)
        >>> fast = native_sequence(gru, x, h, is_init)
        >>> slow = loop_sequence(gru, x, h, is_init)
        >>> torch.allclose(fast.output, slow.output, atol=1e-6)
        True
    """
    steps = x.shape[1]
    cuts = reset_columns(is_init) if is_init is not None else []
    bounds = [0, *cuts, steps]
    h0 = stored[:, 0]
    h = h0.transpose(0, 1).contiguous()  # [L, N, H]
    outputs, end_states = [], []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        if start > 0:
            restart = is_init[:, start].view(1, -1, 1)
            h = torch.where(restart, stored[:, start].transpose(0, 1), h).contiguous()
        y, h = gru(x[:, start:stop], h)
        outputs.append(y)
        if stop < steps:
            ending = is_init[:, stop].view(1, -1, 1)
            end_states.append(torch.where(ending, h, torch.zeros((), dtype=h.dtype, device=h.device)))
        else:
            end_states.append(h)
    output = torch.cat(outputs, 1) if len(outputs) > 1 else outputs[0]
    n, layers, hidden = h0.shape
    end_cols = torch.tensor([stop - 1 for stop in bounds[1:]], device=x.device)
    ends = h0.new_zeros(n, steps, layers, hidden).index_copy(
        1, end_cols, torch.stack(end_states, 0).permute(2, 0, 1, 3)
    )
    return SequenceResult(output, None, None, ends)
