"""The fused reset-aware kernel: a lean step loop with a hand-written backward.

It is the backend :class:`~workbench.gru.module.GRUModule` picks on CPU
(``recurrent_backend="fused"`` or ``"auto"``). The simple
:func:`~workbench.gru.kernels.loop_sequence` stays the reference they are tested
against.

- :func:`fused_sequence` runs the reset-aware step loop with few ops per step:
  the input projection of a block of steps in one matmul, one matmul and four
  elementwise ops per step (``tanh`` through ``sigmoid``, the state carried as
  ``(h + 1) / 2``; see :func:`_prepared_weights`), and a restart only at the
  columns where some row restarts. Its hand-written backward
  (:class:`FusedGRULayer`) runs one matmul per step for the hidden-state
  gradient and computes the weight and input gradients per block of steps in
  large matmuls. It needs no compiled extension and serves both
  ``torch.nn.GRU`` and :class:`~workbench.gru.cell.PythonGRU` parameters.

Neither :class:`FusedGRULayer` nor the packed call
(:mod:`workbench.gru.packed`) runs under ``torch.func`` transforms (``vmap``,
``grad``) or records gates: :func:`can_fuse` tells the module when to fall back
to the plain loop.
"""

from __future__ import annotations

import bisect

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._compat import functorch_wrapped
from .kernels import SequenceResult, dropout_between_layers, gru_cell, reset_columns, trajectory_end_mask, weight_list

__all__ = [
    "FusedGRULayer",
    "can_fuse",
    "fused_sequence",
]

def can_fuse(*tensors: Tensor | None) -> bool:
    """Whether the fused kernels may run on these tensors.

    ``False`` under ``torch.func`` transforms (a batched or grad-tracking
    wrapper among the tensors, e.g. parameters stacked for an ensemble and
    ``torch.vmap``), for ``meta`` tensors (no data) and while
    ``torch.compile`` traces: the fused kernels use in-place ops and
    data-dependent Python loops that only eager tensors with data take.

    Examples:
        >>> x = torch.randn(3, 2)
        >>> can_fuse(x), torch.vmap(lambda t: torch.tensor(can_fuse(t)))(x).all().item()
        (True, False)
    """
    if torch.compiler.is_compiling():
        return False
    return not any(t is not None and (functorch_wrapped(t) or t.is_meta) for t in tensors)


# ---------------------------------------------------------------------------- fused loop
# Steps per block of the input projection (forward) and of the vectorised gate
# coefficients and weight gradients (backward): large enough that the per-block
# ops are a few percent of the work, small enough that the block buffers stay a
# small fraction of the saved activations.
_BLOCK_ELEMENTS = 1 << 19


def _block_steps(steps: int, rows: int, hidden: int) -> int:
    return max(1, min(steps, _BLOCK_ELEMENTS // max(1, rows * 4 * hidden)))


def _prepared_weights(w_ih, w_hh, b_ih, b_hh, hidden):
    """The layer's weights rearranged for the loop, which carries ``g = (h + 1) / 2``.

    Two identities save elementwise ops on every step:

    - ``tanh(a) = 2 sigmoid(2 a) - 1`` (``sigmoid`` is several times faster
      than ``tanh`` on CPU), so the n rows are doubled;
    - with ``s = sigmoid(2 a) = (n + 1) / 2`` and ``g = (h + 1) / 2``, the
      update ``h' = n + z (h - n)`` becomes ``g' = s + z (g - s)``: one
      ``lerp``, no ``2 s - 1``. The recurrent matmuls then read ``g``:
      ``W h + b = 2 W g + (b - W 1)``.

    The r, z part of the recurrent bias is folded into the input projection's
    bias (it adds to the same pre-activation). Returns ``w_in``, ``b_in`` (the
    input projection, n rows doubled), ``w_rz``, ``w_n``, ``b_n`` (the
    recurrent matmuls on ``g``; the n part gives ``2 (W_hn h + b_hn)``).
    """
    h2 = 2 * hidden
    w_in = torch.cat((w_ih[:h2], w_ih[h2:] * 2)).t()
    row_sum = w_hh.sum(1)
    w_rz, w_n = (w_hh[:h2] * 2).t(), (w_hh[h2:] * 4).t()
    if b_ih is None:
        b_in = torch.cat((-row_sum[:h2], row_sum.new_zeros(hidden)))
        b_n = row_sum[h2:] * -2
    else:
        b_in = torch.cat((b_ih[:h2] + b_hh[:h2] - row_sum[:h2], b_ih[h2:] * 2))
        b_n = (b_hh[h2:] - row_sum[h2:]) * 2
    return w_in, b_in, w_rz, w_n, b_n


def _layer_forward(x, starts, is_init, cols, w_ih, w_hh, b_ih, b_hh, save, out=None):
    """The step loop of one layer, without autograd.

    ``x`` ``[T, N, F]`` (time-major); ``starts`` ``[N, C, H]``: the state
    before the first step, then the stored state of every restart column
    ``cols[j - 1]`` (rows restart where ``is_init[:, t]``). Returns the hidden
    state after every step, ``[T, N, H]``, and with ``save`` what the backward
    needs: the gate buffer (r | z | ``2 (W_hn h + b_hn)``), ``s = (n + 1) / 2``
    and the state every restart column started from. ``out``: an optional
    contiguous ``[T, N, H]`` buffer to write the states into (the forward-only
    path gives every layer a slice of one trace buffer). See
    :func:`_prepared_weights` for the ``g``-space loop.
    """
    steps, rows, features = x.shape
    hidden = starts.shape[-1]
    h2, h3 = 2 * hidden, 3 * hidden
    w_in, b_in, w_rz, w_n, b_n = _prepared_weights(w_ih, w_hh, b_ih, b_hh, hidden)
    w_all = torch.cat((w_rz, w_n), 1)  # [H, 3H]
    if out is None:
        out = x.new_empty(steps, rows, hidden)
    block = _block_steps(steps, rows, hidden)
    # per step: r | z | 2 (W_hn h + b_hn); it first holds the input projection (the n part
    # replaced by the n bias), and the recurrent matmul adds into it in place
    gate_buf = x.new_empty(steps if save else block, rows, h3)
    s_buf = x.new_empty(steps if save else 1, rows, hidden)
    s_t, out_t = s_buf.unbind(0), out.unbind(0)
    g_starts = torch.add(starts, 1).mul_(0.5)  # [N, C, H] in g-space
    g = g_starts[:, 0]
    col_index = {t: j for j, t in enumerate(cols)}
    if not save:
        hot = x.new_empty(rows, h3)
        hot_rz, hot_r, hot_z, hot_n = hot[:, :h2], hot[:, :hidden], hot[:, hidden:h2], hot[:, h2:]
        s_one = s_t[0]
    if cols:
        restart_t = is_init[:, list(cols)].t().unsqueeze(-1).unbind(0)  # [N, 1] bool per restart column
        g_starts_t = g_starts[:, 1:].unbind(1)
        restarted = [] if save else None
    for t0 in range(0, steps, block):
        t1 = min(steps, t0 + block)
        gates = gate_buf[t0:t1] if save else gate_buf[: t1 - t0]
        torch.addmm(b_in, x[t0:t1].reshape(-1, features), w_in, out=gates.view(-1, h3))
        gi_n_t = gates[..., h2:].clone().unbind(0)
        gates[..., h2:] = b_n
        if not save:
            # forward only: each step's gates go to one small buffer with fixed views (one matmul with the
            # block's input projection as its bias), fewer views per step than the saving loop below
            gate_t = gates.unbind(0)
            for t in range(t0, t1):
                i = t - t0
                j = col_index.get(t)
                if j is not None:
                    g = torch.where(restart_t[j], g_starts_t[j], g)  # select: nothing crosses, not even NaN
                torch.addmm(gate_t[i], g, w_all, out=hot)
                hot_rz.sigmoid_()
                s = torch.addcmul(gi_n_t[i], hot_r, hot_n, out=s_one).sigmoid_()
                g = torch.lerp(s, g, hot_z, out=out_t[t])
            continue
        gate_t, rz_t = gates.unbind(0), gates[..., :h2].unbind(0)
        r_t, z_t, ghn_t = gates[..., :hidden].unbind(0), gates[..., hidden:h2].unbind(0), gates[..., h2:].unbind(0)
        for t in range(t0, t1):
            i = t - t0
            j = col_index.get(t)
            if j is not None:
                # restart the rows where is_init by selection (a lerp with weight 1 would carry a NaN or inf
                # of the previous episode into the next one: inf * 0 is NaN)
                g = torch.where(restart_t[j], g_starts_t[j], g)
                if save:
                    restarted.append(g)
            gate_t[i].addmm_(g, w_all)
            rz_t[i].sigmoid_()
            s = torch.addcmul(gi_n_t[i], r_t[i], ghn_t[i], out=s_t[t if save else 0]).sigmoid_()
            g = torch.lerp(s, g, z_t[i], out=out_t[t])
    out.mul_(2).sub_(1)  # g back to h
    if not save:
        return out, None
    h_restarted = torch.stack(restarted).mul_(2).sub_(1) if cols else None  # [C - 1, N, H]
    return out, (gate_buf, s_buf, h_restarted)


class FusedGRULayer(torch.autograd.Function):
    """One reset-aware GRU layer with a hand-written backward.

    ``apply(x, starts, is_init, cols, w_ih, w_hh, b_ih, b_hh)``:

    - ``x``: the layer's input, time-major ``[T, N, F]``;
    - ``starts``: ``[N, C, H]``; the layer starts from ``starts[:, 0]`` and,
      at restart column ``cols[j - 1]``, the rows where ``is_init`` is set
      restart from ``starts[:, j]`` (``C = 1 + len(cols)``);
    - ``is_init``: ``[N, T]`` booleans (``None`` without restarts); ``cols``
      the sorted columns ``t >= 1`` where some row restarts (a tuple of ints);
    - ``w_ih``, ``w_hh``, ``b_ih``, ``b_hh``: the layer's parameters (biases
      may be ``None``).

    Returns the hidden state after every step, time-major ``[T, N, H]``.

    The forward saves the r, z, n gates and ``W_hn h + b_hn`` of every step
    (4 H numbers per step and row, fewer than autograd through ATen's loop).
    The backward runs one matmul per step for the hidden-state gradient; the
    gate coefficients and the weight and input gradients are computed per
    block of steps with large matmuls. Gradients reach ``starts`` only where a
    row (re)starts. Under ``create_graph=True`` (double backward, Hessians)
    the backward recomputes the layer with differentiable ops instead, so
    second derivatives are exact too.
    """

    @staticmethod
    def forward(ctx, x, starts, is_init, cols, w_ih, w_hh, b_ih, b_hh):
        out, (gates, s, h_restarted) = _layer_forward(x, starts, is_init, cols, w_ih, w_hh, b_ih, b_hh, save=True)
        ctx.save_for_backward(x, starts, is_init, w_ih, w_hh, b_ih, b_hh, out, gates, s, h_restarted)
        ctx.cols = cols
        ctx.starts_shape = starts.shape
        ctx.has_bias = b_ih is not None
        return out

    @staticmethod
    def backward(ctx, grad_out):
        if torch.is_grad_enabled():
            # create_graph=True (double backward, Hessians): the hand-written backward is not itself
            # differentiable, so recompute the layer with differentiable ops and differentiate that
            return _recomputed_backward(ctx, grad_out)
        return _fused_backward(ctx, grad_out)


def _layer_reference(x, starts, is_init, cols, w_ih, w_hh, b_ih, b_hh) -> Tensor:
    """The same layer as :func:`_layer_forward` in plain differentiable ops (time-major ``[T, N, H]``)."""
    gi_t = F.linear(x, w_ih, b_ih).unbind(0)
    col_index = {t: j for j, t in enumerate(cols)}
    h, outs = starts[:, 0], []
    for t, gi in enumerate(gi_t):
        j = col_index.get(t)
        if j is not None:
            h = torch.where(is_init[:, t, None], starts[:, j + 1], h)
        h, _ = gru_cell(gi, h, w_hh, b_hh)
        outs.append(h)
    return torch.stack(outs)


def _recomputed_backward(ctx, grad_out):
    """Gradients with a graph (for ``create_graph=True``): autograd through :func:`_layer_reference`."""
    x, starts, is_init, w_ih, w_hh, b_ih, b_hh = ctx.saved_tensors[:7]
    inputs = (x, starts, None, None, w_ih, w_hh, b_ih, b_hh)
    wanted = [i for i, (need, t) in enumerate(zip(ctx.needs_input_grad, inputs)) if need and t is not None]
    with torch.enable_grad():
        out = _layer_reference(x, starts, is_init, ctx.cols, w_ih, w_hh, b_ih, b_hh)
        grads = torch.autograd.grad(out, [inputs[i] for i in wanted], grad_out, create_graph=True, allow_unused=True)
    result = [None] * len(inputs)
    for i, grad in zip(wanted, grads):
        result[i] = torch.zeros_like(inputs[i]) if grad is None else grad
    return tuple(result)


def _fused_backward(ctx, grad_out):
    """The hand-written backward of :class:`FusedGRULayer` (first order, no graph)."""
    x, starts, is_init, w_ih, w_hh, _, _, out, gate_all, s_all, h_restarted = ctx.saved_tensors
    h0 = starts[:, 0]
    need_x, need_starts, _, _, need_w_ih, need_w_hh, need_b_ih, need_b_hh = ctx.needs_input_grad
    cols = ctx.cols
    steps, rows, features = x.shape
    hidden = out.shape[-1]
    h2, h3 = 2 * hidden, 3 * hidden
    col_index = {t: j for j, t in enumerate(cols)}
    if cols:
        restart_t = is_init[:, list(cols)].t().unsqueeze(-1).unbind(0)  # [N, 1] bool per restart column
    zero = x.new_zeros(())
    g_t = grad_out.unbind(0)
    d_x = x.new_empty(steps, rows, features) if need_x else None
    d_starts = x.new_zeros(ctx.starts_shape) if need_starts else None
    d_starts_t = d_starts.unbind(1) if need_starts else None
    d_w_ih = w_ih.new_zeros(h3, features) if need_w_ih else None
    d_w_hh = w_hh.new_zeros(h3, hidden) if need_w_hh else None
    d_b_ih = w_ih.new_zeros(h3) if (ctx.has_bias and need_b_ih) else None
    d_b_hh = w_hh.new_zeros(h3) if (ctx.has_bias and need_b_hh) else None
    block = _block_steps(steps, rows, hidden)
    coef_buf = x.new_empty(block, rows, 3, hidden)  # d h_t / d (r, z, W_hn h + b_hn pre-activations)
    grad_buf = x.new_empty(block, rows, 3, hidden)  # d loss / d (W_hh h + b_hh), per step
    d_buf = x.new_empty(block, rows, hidden)  # d loss / d h_t, per step
    d = g_t[steps - 1]
    for t1 in range(steps, 0, -block):
        t0 = max(0, t1 - block)
        nb = t1 - t0
        r, z = gate_all[t0:t1, :, :hidden], gate_all[t0:t1, :, hidden:h2]
        n, ghn2 = torch.mul(s_all[t0:t1], 2).sub_(1), gate_all[t0:t1, :, h2:]
        # the hidden state each step of the block started from (after restarts)
        if t0 == 0:
            h_prev = torch.cat((h0.unsqueeze(0), out[: t1 - 1]))
        else:
            h_prev = out[t0 - 1 : t1 - 1]
        lo, hi = bisect.bisect_left(cols, t0), bisect.bisect_left(cols, t1)
        if hi > lo:
            if t0 > 0:
                h_prev = h_prev.clone()
            for j in range(lo, hi):
                h_prev[cols[j] - t0] = h_restarted[j]
        # d h_t / d (pre-activations): r, z, the n part of W_hh h + b_hh; and n
        coef = coef_buf[:nb]
        one_minus_z = 1 - z
        coef_n = torch.mul(n, n).neg_().add_(1).mul_(one_minus_z)
        torch.mul(coef_n, r, out=coef[:, :, 2])
        torch.sub(h_prev, n, out=coef[:, :, 1]).mul_(z).mul_(one_minus_z)
        torch.mul(r, r, out=coef[:, :, 0]).neg_().add_(r).mul_(ghn2).mul_(coef_n).mul_(0.5)
        del one_minus_z, n
        grads, ds = grad_buf[:nb], d_buf[:nb]
        coef_t, grad3_t, grad_t = coef.unbind(0), grads.unbind(0), grads.view(nb, rows, h3).unbind(0)
        d_t, d_col_t = ds.unbind(0), ds.unsqueeze(2).unbind(0)
        z_t = z.unbind(0)
        d_t[nb - 1].copy_(d)
        for i in range(nb - 1, -1, -1):
            t = t0 + i
            d = d_t[i]
            torch.mul(coef_t[i], d_col_t[i], out=grad3_t[i])
            if t == 0:
                if d_starts is not None:
                    torch.mul(d, z_t[i], out=d_starts_t[0]).addmm_(grad_t[i], w_hh)
                continue
            slot = d_t[i - 1] if i else x.new_empty(rows, hidden)
            j = col_index.get(t)
            if j is None:
                d = torch.addcmul(g_t[t - 1], d, z_t[i], out=slot).addmm_(grad_t[i], w_hh)
            else:
                d_prev = torch.mul(d, z_t[i]).addmm_(grad_t[i], w_hh)
                # split by selection: a restarting row's gradient goes to its stored state only (a NaN
                # of the later episode must not reach the earlier one through a multiply by zero)
                if d_starts is not None:
                    torch.where(restart_t[j], d_prev, zero, out=d_starts_t[j + 1])
                d = torch.add(g_t[t - 1], torch.where(restart_t[j], zero, d_prev), out=slot)
        # weight, bias and input gradients of the block, in large matmuls
        d_gh = grads.view(nb * rows, h3)
        d_gi_rz = d_gh[:, :h2]
        d_gi_n = coef_n.mul_(ds).view(nb * rows, hidden)
        if d_w_hh is not None:
            d_w_hh.addmm_(d_gh.t(), h_prev.reshape(nb * rows, hidden))
        if d_b_hh is not None:
            d_b_hh += d_gh.sum(0)
        if d_w_ih is not None or d_x is not None:
            x_block = x[t0:t1].reshape(nb * rows, features)
            if d_w_ih is not None:
                d_w_ih[:h2].addmm_(d_gi_rz.t(), x_block)
                d_w_ih[h2:].addmm_(d_gi_n.t(), x_block)
            if d_x is not None:
                dx_block = d_x[t0:t1].view(nb * rows, features)
                torch.mm(d_gi_rz, w_ih[:h2], out=dx_block).addmm_(d_gi_n, w_ih[h2:])
        if d_b_ih is not None:
            d_b_ih[:h2] += d_gi_rz.sum(0)
            d_b_ih[h2:] += d_gi_n.sum(0)
    return d_x, d_starts, None, None, d_w_ih, d_w_hh, d_b_ih, d_b_hh


def _needs_autograd(tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def fused_sequence(
    gru: nn.Module,
    x: Tensor,
    stored: Tensor,
    is_init: Tensor | None = None,
    *,
    weights: list[Tensor | None] | None = None,
) -> SequenceResult:
    """Reset-aware GRU over a sequence through :class:`FusedGRULayer`, layer by layer.

    The kernel contract of :mod:`workbench.gru.kernels` (without gates):
    ``x`` ``[N, T, F]``, ``stored`` ``[N, T, L, H]``, ``is_init`` ``[N, T]``.
    Returns the output, the trace of every layer and the trajectory-end
    states. Not for ``torch.func`` transforms (see :func:`can_fuse`).

    Examples:
        >>> from workbench.gru.kernels import loop_sequence
        >>> gru = torch.nn.GRU(2, 3, num_layers=2, batch_first=True)
        >>> x, h = torch.randn(4, 6, 2), torch.randn(4, 6, 2, 3)
        >>> is_init = torch.rand(4, 6) < 0.3
        >>> fast = fused_sequence(gru, x, h, is_init)
        >>> slow = loop_sequence(gru, x, h, is_init)
        >>> torch.allclose(fast.output, slow.output, atol=1e-6), torch.allclose(fast.ends, slow.ends, atol=1e-6)
        (True, True)
    """
    ws = weight_list(gru) if weights is None else weights
    layers = len(ws) // 4
    cols: tuple[int, ...] = tuple(reset_columns(is_init)) if is_init is not None else ()
    # the states rows (re)start from, [N, C, L, H]: step 0's, then those of the restart columns
    starts = stored.index_select(1, torch.tensor((0, *cols), device=x.device)) if cols else stored[:, :1]
    hidden = stored.shape[-1]
    use_function = _needs_autograd([x, stored, *ws])
    layer_input = x.transpose(0, 1)  # time-major inside
    traces = []
    # forward only: every layer writes into its slice of one [L, T, N, H] buffer (no stacking)
    trace_buf = None if use_function else x.new_empty(layers, x.shape[1], x.shape[0], hidden)
    for layer in range(layers):
        w_ih, w_hh, b_ih, b_hh = ws[4 * layer : 4 * layer + 4]
        layer_starts = starts[:, :, layer]
        if use_function:
            out = FusedGRULayer.apply(layer_input, layer_starts, is_init if cols else None, cols, w_ih, w_hh, b_ih, b_hh)
        else:
            with torch.no_grad():
                out, _ = _layer_forward(
                    layer_input, layer_starts, is_init, cols, w_ih, w_hh, b_ih, b_hh, save=False, out=trace_buf[layer]
                )
        traces.append(out)
        layer_input = dropout_between_layers(gru, out, layer)
    if trace_buf is not None:
        trace_tm = trace_buf.permute(1, 2, 0, 3)  # [T, N, L, H], a view
    else:
        trace_tm = traces[0].unsqueeze(2) if layers == 1 else torch.stack(traces, 2)  # [T, N, L, H]
    return SequenceResult(traces[-1].transpose(0, 1), trace_tm.transpose(0, 1), None, _ends(trace_tm, is_init))


def _ends(trace_tm: Tensor, is_init: Tensor | None) -> Tensor:
    """``[N, T, L, H]``: the time-major trace at trajectory ends, zeros elsewhere.

    Gathers the few end steps into zeros (a ``torch.where`` over the whole
    trace costs several times more).
    """
    steps, rows = trace_tm.shape[:2]
    if is_init is None:
        is_init = torch.zeros(rows, steps, dtype=torch.bool, device=trace_tm.device)
    n, t = trajectory_end_mask(is_init).nonzero(as_tuple=True)
    ends = trace_tm.new_zeros(rows, steps, *trace_tm.shape[2:])
    ends[n, t] = trace_tm[t, n]
    return ends
