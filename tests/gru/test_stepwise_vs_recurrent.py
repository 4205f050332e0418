"""Self-consistency of workbench.GRUModule.

- Stepping one step at a time (feeding ("next", h) back as step_mdp would, with
  is_init zeroing) equals one recurrent call whose stored hidden is zero at every
  is_init position and whatever the rollout stored elsewhere (hypothesis over reset
  patterns, all backends).
- The Python cell equals the native layer (same weights): outputs and gradients.
- The recorded gates (gates_key) equal r, z, n recomputed by hand from the weights.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensordict import TensorDict
from torchrl.envs.utils import step_mdp

import gru_test_helpers as H
from workbench import GRUModule, set_recurrent_mode

I, HID = 3, 4

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=False,
)


@st.composite
def rollout_cases(draw):
    T = draw(st.integers(1, 12))
    B = draw(st.integers(1, 3))
    layers = draw(st.integers(1, 2))
    cfg = draw(st.sampled_from(H.OUR_BACKENDS))
    dtype = draw(st.sampled_from([torch.float64, torch.float32]))
    # is_init[b, t]; t=0 may be False: the rollout then starts from a non-zero h0
    flags = draw(st.lists(st.lists(st.booleans(), min_size=T, max_size=T), min_size=B, max_size=B))
    seed = draw(st.integers(0, 2**16))
    return T, B, layers, cfg, dtype, torch.tensor(flags, dtype=torch.bool), seed


@SETTINGS
@given(case=rollout_cases())
def test_stepwise_rollout_equals_recurrent_replay(case):
    T, B, layers, (python_based, backend), dtype, is_init, seed = case
    torch.manual_seed(seed)
    module = GRUModule(I, HID, num_layers=layers, python_based=python_based, recurrent_backend=backend,
                       in_keys=["x", "h"], out_keys=["y", ("next", "h")], hidden_trace_key="h_trace",
                       dtype=dtype)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, I, dtype=dtype, generator=gen)
    # What is in the td before the first step: junk where is_init (zeroed by the
    # module), a genuine initial state elsewhere.
    h_carry = torch.randn(B, layers, HID, dtype=dtype, generator=gen)

    ys, next_hs, stored = [], [], []
    for t in range(T):
        td = TensorDict({"x": x[:, t], "h": h_carry, "is_init": is_init[:, t, None]}, [B])
        out = module(td)
        assert out["y"].shape == (B, HID)
        assert out["next", "h"].shape == (B, layers, HID)
        stored.append(h_carry)
        ys.append(out["y"])
        next_hs.append(out["next", "h"])
        h_carry = step_mdp(out)["h"]  # ("next", "h") -> "h", as a rollout does
        assert torch.equal(h_carry, out["next", "h"])
    y_step = torch.stack(ys, 1)
    trace_step = torch.stack(next_hs, 1)
    stored = torch.stack(stored, 1)
    # the primer puts zeros at every reset
    stored = torch.where(is_init[..., None, None], torch.zeros((), dtype=dtype), stored)

    replay = TensorDict({"x": x, "h": stored, "is_init": is_init[..., None]}, [B, T])
    with set_recurrent_mode(True):
        replay = module(replay)
    tol = H.tol(dtype)
    assert replay["h_trace"].shape == (B, T, layers, HID)
    torch.testing.assert_close(replay["y"], y_step, **tol)
    torch.testing.assert_close(replay["h_trace"], trace_step, **tol)
    # ("next", h) keeps the trace only at trajectory ends
    end = torch.ones_like(is_init)
    end[:, :-1] = is_init[:, 1:]
    expected_next = torch.where(end[..., None, None], trace_step, torch.zeros((), dtype=dtype))
    torch.testing.assert_close(replay["next", "h"], expected_next, **tol)
    # and the independent reference agrees
    with torch.no_grad():
        y_ref, trace_ref, _, _ = H.ref_recurrent(module.gru, x, stored, is_init)
    torch.testing.assert_close(replay["y"].detach(), y_ref, **tol)
    torch.testing.assert_close(replay["h_trace"].detach(), trace_ref, **tol)


@SETTINGS
@given(
    batch=st.sampled_from([(5,), (2, 6), (2, 2, 4)]),
    layers=st.integers(1, 3),
    p=st.sampled_from([0.0, 0.2, 0.6, 1.0]),
    first=st.booleans(),
    backend=st.sampled_from(H.CUDNN_BACKENDS),
    dtype=st.sampled_from([torch.float64, torch.float32]),
    seed=st.integers(0, 2**16),
)
def test_python_cell_equals_native(batch, layers, p, first, backend, dtype, seed):
    """Same weights, random data with resets: the Python cell and nn.GRU agree on
    outputs, ("next", h), the hidden trace and all gradients, in both modes."""
    torch.manual_seed(seed)
    native = GRUModule(I, HID, num_layers=layers, python_based=False, recurrent_backend=backend,
                       in_keys=["x", "h"], out_keys=["y", ("next", "h")], dtype=dtype,
                       hidden_trace_key="h_trace")
    python = GRUModule(I, HID, num_layers=layers, python_based=True, recurrent_backend=backend,
                       in_keys=["x", "h"], out_keys=["y", ("next", "h")], dtype=dtype,
                       hidden_trace_key="h_trace")
    python.gru.load_state_dict(native.gru.state_dict())
    gen = torch.Generator().manual_seed(seed)
    is_init = H.random_is_init(batch, p, first=first, generator=gen)
    tol = H.tol(dtype)
    for recurrent in (True, False):
        # recurrent: [*batch] with time last; single step: the same batch without time
        shape = batch if recurrent else batch[:-1]
        flags = is_init if recurrent else is_init[..., 0]
        data, lv = H.make_input(shape, I, HID, layers, dtype, flags, generator=gen)
        proj = {"y": torch.randn(*data.shape, HID, dtype=dtype, generator=gen),
                "nh": torch.randn(*data.shape, layers, HID, dtype=dtype, generator=gen)}
        a = H.run_and_grad(native, data, lv, proj, recurrent)
        b = H.run_and_grad(python, data, lv, proj, recurrent)
        torch.testing.assert_close(b[0], a[0], **tol)
        torch.testing.assert_close(b[1], a[1], **tol)
        for name in a[2]:
            torch.testing.assert_close(b[2][name], a[2][name], **tol,
                                       msg=lambda m, name=name: f"grad {name} (recurrent={recurrent})\n{m}")
        with set_recurrent_mode(recurrent), torch.no_grad():
            ta = native(data.copy())["h_trace"]
            tb = python(data.copy())["h_trace"]
        torch.testing.assert_close(tb, ta, **tol)


def test_make_python_based_and_back_keep_results():
    """Switching the layer in place keeps parameters (same objects) and results."""
    torch.manual_seed(0)
    m = GRUModule(I, HID, num_layers=2, in_keys=["x", "h"], out_keys=["y", ("next", "h")],
                  dtype=torch.float64)
    params = {n: p for n, p in m.gru.named_parameters()}
    gen = torch.Generator().manual_seed(0)
    is_init = H.random_is_init((3, 8), 0.3, generator=gen)
    td, _ = H.make_input((3, 8), I, HID, 2, torch.float64, is_init, requires_grad=False, generator=gen)
    with set_recurrent_mode(True):
        base = m(td.copy())
        assert m.make_python_based() is m
        assert not isinstance(m.gru, torch.nn.GRU)
        for n, p in m.gru.named_parameters():
            assert p is params[n]
        py = m(td.copy())
        assert m.make_cudnn_based() is m
        assert isinstance(m.gru, torch.nn.GRU)
        back = m(td.copy())
    for key in ("y", ("next", "h")):
        torch.testing.assert_close(py[key], base[key], atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(back[key], base[key], atol=1e-10, rtol=1e-10)


def _by_hand(gru, x, h):
    """Gates and new hidden for a stacked GRU step, from the weights, per layer."""
    layer_in = x
    gates, hs = [], []
    for layer in range(gru.num_layers):
        w_ih, w_hh, b_ih, b_hh = H.layer_params(gru, layer)
        hl = h[:, layer]
        Hs = hl.shape[-1]
        gi = layer_in @ w_ih.T + (b_ih if b_ih is not None else 0)
        gh = hl @ w_hh.T + (b_hh if b_hh is not None else 0)
        r = torch.sigmoid(gi[:, :Hs] + gh[:, :Hs])
        z = torch.sigmoid(gi[:, Hs : 2 * Hs] + gh[:, Hs : 2 * Hs])
        n = torch.tanh(gi[:, 2 * Hs :] + r * gh[:, 2 * Hs :])
        h_new = (1 - z) * n + z * hl
        gates.append(torch.stack([r, z, n], -2))
        hs.append(h_new)
        layer_in = h_new
    return torch.stack(gates, -3), torch.stack(hs, -2), layer_in


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("batch", [(), (5,), (2, 3)], ids=lambda s: "x".join(map(str, s)) or "scalar")
def test_gates_single_step_match_hand_computation(batch, layers, bias):
    torch.manual_seed(layers + 2 * bias)
    m = GRUModule(I, HID, num_layers=layers, bias=bias, python_based=True, in_keys=["x", "h"],
                  out_keys=["y", ("next", "h")], gates_key="gates", dtype=torch.float64)
    if bias:
        with torch.no_grad():  # make the biases clearly non-zero and distinct
            for n, p in m.gru.named_parameters():
                if n.startswith("bias"):
                    p.copy_(torch.randn_like(p))
    gen = torch.Generator().manual_seed(1)
    is_init = torch.rand(batch, generator=gen) < 0.4
    td, _ = H.make_input(batch, I, HID, layers, torch.float64, is_init, requires_grad=False, generator=gen)
    out = m(td.copy())
    assert out["gates"].shape == (*batch, layers, 3, HID)
    rows = int(torch.tensor(batch).prod()) if batch else 1
    h_in = torch.where(is_init.reshape(rows, 1, 1), 0.0, td["h"].reshape(rows, layers, HID))
    with torch.no_grad():
        gates, hs, y = _by_hand(m.gru, td["x"].reshape(rows, I), h_in)
    torch.testing.assert_close(out["gates"].reshape(rows, layers, 3, HID), gates, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(out["next", "h"].reshape(rows, layers, HID), hs, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(out["y"].reshape(rows, HID), y, atol=1e-12, rtol=1e-12)
    # gate ranges: r, z in (0, 1), n in (-1, 1)
    g = out["gates"]
    assert torch.all((g[..., :2, :] > 0) & (g[..., :2, :] < 1))
    assert torch.all(g[..., 2, :].abs() < 1)


def test_gates_recurrent_match_reference():
    """Recurrent-mode gates [B, T, L, 3, H] equal the reference loop with resets."""
    torch.manual_seed(4)
    m = GRUModule(I, HID, num_layers=2, python_based=True, in_keys=["x", "h"],
                  out_keys=["y", ("next", "h")], gates_key="gates", hidden_trace_key="h_trace",
                  dtype=torch.float64)
    gen = torch.Generator().manual_seed(4)
    is_init = H.random_is_init((3, 9), 0.3, generator=gen)
    td, _ = H.make_input((3, 9), I, HID, 2, torch.float64, is_init, requires_grad=False, generator=gen)
    with set_recurrent_mode(True):
        out = m(td.copy())
    assert out["gates"].shape == (3, 9, 2, 3, HID)
    with torch.no_grad():
        y, trace, nh, gates = H.ref_recurrent(m.gru, td["x"], td["h"], is_init)
    torch.testing.assert_close(out["gates"], gates, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(out["h_trace"], trace, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(out["y"], y, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(out["next", "h"], nh, atol=1e-12, rtol=1e-12)
