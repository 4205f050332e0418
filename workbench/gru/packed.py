"""The packed kernel: every trajectory of a batch in one native GRU call (cuDNN on CUDA).

:func:`packed_sequence` cuts every row at its ``is_init`` steps and packs the
trajectories into one :class:`torch.nn.utils.rnn.PackedSequence`: no padding,
no step computed twice. ``GRUModule(recurrent_backend="packed")`` runs it, and
``"auto"`` picks it on CUDA when a batch has restarts.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._compat import flat_weights, native_gru
from .kernels import SequenceResult, weight_list

__all__ = ["packed_sequence"]


def packed_sequence(
    gru: nn.Module,
    x: Tensor,
    stored: Tensor,
    is_init: Tensor | None = None,
    *,
    weights: list[Tensor | None] | None = None,
) -> SequenceResult:
    """Reset-aware GRU in one native call: every trajectory becomes a sequence of a ``PackedSequence``.

    Each row is cut at its ``is_init`` steps; the trajectories are sorted by
    length and packed (index arithmetic and one gather, no padding), run by
    ATen's multi-layer GRU (cuDNN on CUDA) from their stored hidden states, and
    scattered back. The native kernel returns only the last layer at every
    step, so ``trace`` is ``None``.

    Examples:
        >>> from workbench.gru.kernels import loop_sequence
        >>> gru = torch.nn.GRU(2, 3, num_layers=2, batch_first=True)
        >>> x, h = torch.randn(4, 6, 2), torch.randn(4, 6, 2, 3)
        >>> is_init = torch.rand(4, 6) < 0.3
        >>> fast = packed_sequence(gru, x, h, is_init)
        >>> slow = loop_sequence(gru, x, h, is_init)
        >>> torch.allclose(fast.output, slow.output, atol=1e-6), torch.allclose(fast.ends, slow.ends, atol=1e-6)
        (True, True)
    """
    ws = weight_list(gru) if weights is None else weights
    rows, steps, features = x.shape
    _, _, layers, hidden = stored.shape
    device = x.device
    total = rows * steps
    starts = torch.zeros(rows, steps, dtype=torch.bool, device=device)
    if is_init is not None:
        starts.copy_(is_init)
    starts[:, 0] = True
    starts = starts.reshape(-1)
    start_idx = starts.nonzero().squeeze(1)  # flat index of every trajectory's first step
    n_traj = start_idx.numel()
    traj = starts.cumsum(0) - 1  # trajectory of every flat step
    flat = torch.arange(total, device=device)
    pos = flat - start_idx[traj]  # step within its trajectory
    end_idx = torch.cat((start_idx[1:], start_idx.new_full((1,), total))) - 1
    lengths = end_idx - start_idx + 1
    order = torch.sort(lengths, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n_traj, device=device)
    longest = int(lengths.max())
    # batch_sizes[s]: trajectories longer than s
    counts = torch.bincount(lengths, minlength=longest + 1)
    batch_sizes = n_traj - counts.cumsum(0)[:longest]
    offsets = batch_sizes.cumsum(0) - batch_sizes
    packed_idx = offsets[pos] + rank[traj]  # where flat step i goes in the packed data
    gather_idx = torch.empty_like(packed_idx)
    gather_idx[packed_idx] = flat
    data = x.reshape(total, features).index_select(0, gather_idx)
    if n_traj == rows:
        hx = stored[:, 0]  # one trajectory per row, all of length T: the order is the identity
    else:
        hx = stored.reshape(total, layers, hidden).index_select(0, start_idx[order])
    hx = hx.transpose(0, 1).contiguous()
    y, h_n = _native_packed(gru, ws, data, batch_sizes.cpu(), hx)
    output = y.index_select(0, packed_idx).view(rows, steps, hidden)
    ends = x.new_zeros(total, layers, hidden).index_copy(0, end_idx[order], h_n.transpose(0, 1))
    return SequenceResult(output, None, None, ends.view(rows, steps, layers, hidden))


def _native_packed(gru: nn.Module, ws: list, data: Tensor, batch_sizes: Tensor, hx: Tensor) -> tuple[Tensor, Tensor]:
    flat = flat_weights(gru)
    if isinstance(gru, nn.GRU) and flat is not None and len(flat) == len(ws) and all(a is b for a, b in zip(flat, ws)):
        packed, h_n = gru(nn.utils.rnn.PackedSequence(data, batch_sizes), hx)
        return packed.data, h_n
    params = [w for w in ws if w is not None]
    return native_gru(  # the call nn.GRU makes, with the weights as read now
        data, batch_sizes, hx, params, bias=bool(gru.bias), num_layers=gru.num_layers,
        dropout=float(gru.dropout), training=gru.training,
    )
