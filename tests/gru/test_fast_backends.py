"""The fast recurrent backends (``workbench.gru.fast``) against the slow reference and torchrl.

- kernel level: ``fused_sequence`` and ``packed_sequence`` against ``loop_sequence`` (outputs,
  per-layer trace, trajectory ends and every gradient), layers 1-3, with and without biases,
  resets mid-sequence, float32 and float64; ``FusedGRULayer`` under ``gradcheck``;
- module level: every ``recurrent_backend`` and the Python cell against torchrl's module with
  the same weights, several batch shapes, the lean single-step path, what ``auto`` picks, and
  the fallbacks (``torch.vmap`` over stacked parameters, gate recording).
"""

from __future__ import annotations

import gru_test_helpers as H
import pytest
import torch
from tensordict import TensorDict

from workbench import set_recurrent_mode
from workbench.gru import fast, kernels, packed


def _grads(res, leaves, params, dtype, seed=3):
    gen = torch.Generator().manual_seed(seed)
    py = torch.randn(res.output.shape, generator=gen, dtype=dtype)
    pe = torch.randn(res.ends.shape, generator=gen, dtype=dtype)
    pt = torch.randn(res.trace.shape, generator=gen, dtype=dtype) if res.trace is not None else None
    loss = (res.output * py).sum() + (res.ends * pe).sum()
    if pt is not None:
        loss = loss + (res.trace * pt).sum()
    grads = torch.autograd.grad(loss, [*leaves, *params], allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for g, t in zip(grads, [*leaves, *params])]


def _data(n, t, f, layers, hidden, dtype, p, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, t, f, generator=gen, dtype=dtype, requires_grad=True)
    h = torch.randn(n, t, layers, hidden, generator=gen, dtype=dtype, requires_grad=True)
    is_init = torch.rand(n, t, generator=gen) < p
    is_init[0, 1:] = True  # one row restarting at every step
    if n > 1:
        is_init[1, :] = False  # one row that never restarts, not even at t = 0
    return x, h, is_init


def _tol(dtype):
    return dict(atol=1e-10, rtol=1e-10) if dtype == torch.float64 else dict(atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("kernel", ["fused", "packed"])
def test_kernel_matches_loop_reference(kernel, bias, layers, dtype):
    n, t, f, hidden = 5, 11, 3, 4
    torch.manual_seed(layers)
    gru = torch.nn.GRU(f, hidden, num_layers=layers, bias=bias, batch_first=True, dtype=dtype)
    x, h, is_init = _data(n, t, f, layers, hidden, dtype, 0.25, seed=layers)
    params = list(gru.parameters())
    fn = fast.fused_sequence if kernel == "fused" else packed.packed_sequence
    got = fn(gru, x, h, is_init)
    ref = kernels.loop_sequence(gru, x, h, is_init)
    tol = _tol(dtype)
    torch.testing.assert_close(got.output, ref.output, **tol)
    torch.testing.assert_close(got.ends, ref.ends, **tol)
    if got.trace is not None:
        torch.testing.assert_close(got.trace, ref.trace, **tol)
    else:
        ref = ref._replace(trace=None)
    for a, b in zip(_grads(got, [x, h], params, dtype), _grads(ref, [x, h], params, dtype)):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("kernel", ["fused", "packed"])
def test_kernel_without_resets_reads_only_the_first_state(kernel):
    """No is_init at all: only stored[:, 0] is read, so h0.unsqueeze(1) will do (the contract)."""
    dtype = torch.float64
    gru = torch.nn.GRU(3, 4, num_layers=2, batch_first=True, dtype=dtype)
    x, h, is_init = _data(4, 6, 3, 2, 4, dtype, 0.3)
    h0 = torch.randn(4, 2, 4, dtype=dtype, requires_grad=True)
    fn = fast.fused_sequence if kernel == "fused" else packed.packed_sequence
    for args in ((x, h0.unsqueeze(1)), (x, h, is_init)):
        got, ref = fn(gru, *args), kernels.loop_sequence(gru, *args)
        torch.testing.assert_close(got.output, ref.output, **_tol(dtype))
        torch.testing.assert_close(got.ends, ref.ends, **_tol(dtype))
        leaves = [x, h0] if len(args) == 2 else [x, h]
        got_g = _grads(got._replace(trace=None), leaves, list(gru.parameters()), dtype)
        ref_g = _grads(ref._replace(trace=None), leaves, list(gru.parameters()), dtype)
        for a, b in zip(got_g, ref_g):
            torch.testing.assert_close(a, b, **_tol(dtype))


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("blocks", ["one-block", "many-blocks"])
def test_fused_layer_gradcheck(bias, blocks, monkeypatch):
    if blocks == "many-blocks":
        monkeypatch.setattr(fast, "_BLOCK_ELEMENTS", 3 * 4 * 3 * 2)  # 2 steps per block
    dtype = torch.float64
    gen = torch.Generator().manual_seed(1)
    steps, rows, f, hidden = 7, 3, 2, 3
    is_init = torch.rand(rows, steps, generator=gen) < 0.4
    is_init[0, 2] = is_init[1, 6] = is_init[2, 1] = True
    cols = tuple((is_init[:, 1:].any(0).nonzero().flatten() + 1).tolist())
    x = torch.randn(steps, rows, f, generator=gen, dtype=dtype, requires_grad=True)
    starts = torch.randn(rows, 1 + len(cols), hidden, generator=gen, dtype=dtype, requires_grad=True)
    w_ih = torch.randn(3 * hidden, f, generator=gen, dtype=dtype, requires_grad=True)
    w_hh = torch.randn(3 * hidden, hidden, generator=gen, dtype=dtype, requires_grad=True)
    biases = [torch.randn(3 * hidden, generator=gen, dtype=dtype, requires_grad=True) for _ in range(2)] if bias else []

    def layer(x, starts, w_ih, w_hh, *b):
        b_ih, b_hh = b if b else (None, None)
        return fast.FusedGRULayer.apply(x, starts, is_init, cols, w_ih, w_hh, b_ih, b_hh)

    assert torch.autograd.gradcheck(layer, (x, starts, w_ih, w_hh, *biases))


def test_fused_backward_twice_with_retain_graph():
    """The backward must not modify what it saved: a second backward gives the same gradients."""
    gru = torch.nn.GRU(3, 4, batch_first=True)
    x, h, is_init = _data(3, 8, 3, 1, 4, torch.float32, 0.3)
    res = fast.fused_sequence(gru, x, h, is_init)
    loss = res.output.square().sum() + res.ends.sum()
    first = torch.autograd.grad(loss, [x, h, *gru.parameters()], retain_graph=True)
    second = torch.autograd.grad(loss, [x, h, *gru.parameters()])
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_fused_only_needed_gradients():
    """Inputs that do not require grad get none; the forward without grad builds no graph."""
    gru = torch.nn.GRU(3, 4, batch_first=True)
    x = torch.randn(2, 5, 3)
    h = torch.randn(2, 5, 1, 4)
    is_init = torch.tensor([[1, 0, 1, 0, 0], [0, 0, 0, 1, 0]], dtype=torch.bool)
    res = fast.fused_sequence(gru, x, h, is_init)
    res.output.sum().backward()
    assert all(p.grad is not None for p in gru.parameters())
    with torch.no_grad():
        assert fast.fused_sequence(gru, x, h, is_init).output.grad_fn is None


# ---------------------------------------------------------------------------- module level
BACKENDS = [(False, "fused"), (False, "packed"), (False, "native"), (False, "auto"), (True, "auto")]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("cfg", BACKENDS, ids=lambda c: f"{'python' if c[0] else 'cudnn'}-{c[1]}")
def test_module_matches_torchrl_with_resets(cfg, layers, dtype, diff_recorder):
    python_based, backend = cfg
    batch, f, hidden = (4, 13), 3, 5
    theirs, ours = H.module_pair(f, hidden, layers, dtype, python_based, backend, seed=layers)
    gen = torch.Generator().manual_seed(layers)
    is_init = H.random_is_init(batch, 0.2, generator=gen)
    is_init[1, 1:] = True
    td, leaves = H.make_input(batch, f, hidden, layers, dtype, is_init, generator=gen)
    proj = {"y": torch.randn(*batch, hidden, generator=gen, dtype=dtype),
            "nh": torch.randn(*batch, layers, hidden, generator=gen, dtype=dtype)}
    y0, nh0, g0 = H.run_and_grad(theirs, td, leaves, proj, recurrent=True)
    y1, nh1, g1 = H.run_and_grad(ours, td, leaves, proj, recurrent=True)
    tol = H.tol(dtype) if dtype == torch.float64 else dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y1, y0, **tol)
    torch.testing.assert_close(nh1, nh0, **tol)
    diff_recorder.record(dtype, "output", y1, y0)
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], **tol, msg=lambda m: f"{name}: {m}")
        diff_recorder.record(dtype, "grad", g1[name], g0[name])
    expected = "fused" if python_based else {"packed": "packed", "native": "native"}.get(backend, "fused")
    assert ours.last_backend == expected


@pytest.mark.parametrize("batch", [(9,), (2, 3, 7)], ids=["T", "AxBxT"])
@pytest.mark.parametrize("backend", ["fused", "packed"])
def test_module_batch_shapes(backend, batch):
    """Recurrent mode on 1-d (one row) and 3-d batches, against the loop reference."""
    dtype = torch.float64
    fast_m = H.our_module(3, 4, 2, dtype=dtype, recurrent_backend=backend, hidden_trace_key="trace")
    ref_m = H.our_module(3, 4, 2, dtype=dtype, recurrent_backend="loop", hidden_trace_key="trace")
    ref_m.gru.load_state_dict(fast_m.gru.state_dict())
    gen = torch.Generator().manual_seed(0)
    is_init = H.random_is_init(batch, 0.3, generator=gen)
    td, _ = H.make_input(batch, 3, 4, 2, dtype, is_init, requires_grad=False, generator=gen)
    with set_recurrent_mode(True):
        a, b = fast_m(td.clone()), ref_m(td.clone())
    for key in ("y", ("next", "h"), "trace"):
        torch.testing.assert_close(a[key], b[key], **H.tol(dtype))
    assert fast_m.last_backend == "fused"  # packed cannot give a multi-layer trace


def test_module_noncontiguous_inputs():
    dtype = torch.float64
    module = H.our_module(3, 4, 1, dtype=dtype, recurrent_backend="fused")
    ref = H.our_module(3, 4, 1, dtype=dtype, recurrent_backend="loop")
    ref.gru.load_state_dict(module.gru.state_dict())
    x = torch.randn(8, 5, 3, dtype=dtype).transpose(0, 1)  # [5, 8, 3], not contiguous
    h = torch.randn(1, 4, 8, 5, dtype=dtype).permute(3, 2, 0, 1)  # [5, 8, 1, 4]
    is_init = (torch.rand(8, 5) < 0.3).t().unsqueeze(-1)
    td = TensorDict({"x": x, "h": h, "is_init": is_init}, [5, 8])
    with set_recurrent_mode(True):
        a, b = module(td.clone()), ref(td.clone())
    torch.testing.assert_close(a["y"], b["y"], **H.tol(dtype))
    torch.testing.assert_close(a["next", "h"], b["next", "h"], **H.tol(dtype))


def test_dropout_training_runs_and_eval_matches():
    module = H.our_module(3, 4, 2, dropout=0.5, recurrent_backend="fused")
    ref = H.our_module(3, 4, 2, dropout=0.5, recurrent_backend="loop")
    ref.gru.load_state_dict(module.gru.state_dict())
    gen = torch.Generator().manual_seed(0)
    is_init = H.random_is_init((3, 6), 0.3, generator=gen)
    td, leaves = H.make_input((3, 6), 3, 4, 2, torch.float32, is_init, generator=gen)
    with set_recurrent_mode(True):
        out = module(td.copy())
        out["y"].sum().backward()
        assert all(torch.isfinite(p.grad).all() for p in module.gru.parameters())
        module.eval(), ref.eval()
        torch.testing.assert_close(module(td.copy())["y"], ref(td.copy())["y"], atol=1e-5, rtol=1e-5)


def test_auto_choices():
    td = TensorDict({"x": torch.randn(2, 5, 3), "is_init": torch.rand(2, 5, 1) < 0.5}, [2, 5])
    picks = {}
    for name, kwargs in {
        "native-auto": dict(),
        "python": dict(python_based=True),
        "python-gates": dict(python_based=True, gates_key="gates"),
        "packed-trace": dict(recurrent_backend="packed", num_layers=2, hidden_trace_key="trace"),
    }.items():
        module = H.our_module(3, 4, kwargs.pop("num_layers", 1), **kwargs)
        with set_recurrent_mode(True):
            module(td.clone())
            with torch.no_grad():
                module(td.clone())
        picks[name] = module.last_backend
    assert picks == {"native-auto": "fused", "python": "fused", "python-gates": "loop", "packed-trace": "fused"}


def test_vmap_over_stacked_parameters_falls_back():
    """torch.vmap over an ensemble of parameters (as torchrl losses do) runs the plain loop."""
    from tensordict import TensorDict as TD

    module = H.our_module(3, 4, 1, python_based=True, dtype=torch.float64)
    members = [H.our_module(3, 4, 1, python_based=True, dtype=torch.float64) for _ in range(3)]
    stacked = torch.stack([TD.from_module(m) for m in members], 0)
    gen = torch.Generator().manual_seed(0)
    is_init = H.random_is_init((2, 6), 0.3, generator=gen)
    td, _ = H.make_input((2, 6), 3, 4, 1, torch.float64, is_init, requires_grad=False, generator=gen)

    def call(params, data):
        with params.to_module(module):
            with set_recurrent_mode(True):
                return module(data)["y"]

    with set_recurrent_mode(True):
        ys = torch.vmap(call, (0, None))(stacked, td.clone())
        assert module.last_backend == "loop"
        for i, member in enumerate(members):
            torch.testing.assert_close(ys[i], member(td.clone())["y"], **H.tol(torch.float64))
    assert members[0].last_backend == "fused"


# ---------------------------------------------------------------------------- single step
@pytest.mark.parametrize("python_based", [False, True], ids=["cudnn", "python"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("batch", [(), (4,), (2, 3)], ids=["scalar", "B", "AxB"])
def test_single_step_matches_torchrl(batch, layers, python_based):
    dtype = torch.float64
    theirs, ours = H.module_pair(3, 4, layers, dtype, python_based, "auto", seed=1)
    gen = torch.Generator().manual_seed(2)
    is_init = torch.rand(batch, generator=gen) < 0.5 if batch else torch.tensor(True)
    td, leaves = H.make_input(batch, 3, 4, layers, dtype, is_init, generator=gen)
    proj = {"y": torch.randn(*batch, 4, generator=gen, dtype=dtype),
            "nh": torch.randn(*batch, layers, 4, generator=gen, dtype=dtype)}
    y0, nh0, g0 = H.run_and_grad(theirs, td, leaves, proj, recurrent=False)
    y1, nh1, g1 = H.run_and_grad(ours, td, leaves, proj, recurrent=False)
    torch.testing.assert_close(y1, y0, **H.tol(dtype))
    torch.testing.assert_close(nh1, nh0, **H.tol(dtype))
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], **H.tol(dtype), msg=lambda m: f"{name}: {m}")


def test_single_step_errors_still_explained():
    module = H.our_module(3, 4, 1)
    with pytest.raises(ValueError, match="must have shape"):
        module(TensorDict({"x": torch.randn(2, 5), "is_init": torch.zeros(2, 1, dtype=torch.bool)}, [2]))
    with pytest.raises(TypeError, match="dtype"):
        module(TensorDict({"x": torch.randn(2, 3, dtype=torch.float64), "is_init": torch.zeros(2, 1, dtype=torch.bool)}, [2]))
    with pytest.raises(KeyError, match="is_init"):
        module(TensorDict({"x": torch.randn(2, 3)}, [2]))
    out = module(TensorDict({"x": torch.randn(2, 3), "is_init": torch.zeros(2, dtype=torch.bool)}, [2]))
    assert out["next", "h"].shape == (2, 1, 4)
