"""Resets isolate episodes exactly, for any values; second derivatives are right on every backend.

A reset must *select* the stored state, never multiply the old one by zero: ``inf * 0`` and
``nan * 0`` are NaN, so a multiply would carry one episode's non-finite values into every later
episode of that row, in outputs and in gradients. These tests poison one episode (NaN, +inf or
-inf in its inputs, in the stored state it starts from, and in the gradient of its outputs) and
check that every other episode is exactly what it is on clean data, on every backend, with one
and two layers, in recurrent and in single-step mode.

Second derivatives (``create_graph=True``, ``torch.autograd.functional.hessian``,
``torch.func.hessian``, ``gradgradcheck``) are compared with the plain loop on every backend.
"""
from __future__ import annotations

import gru_test_helpers as H
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensordict import TensorDict

from workbench import set_recurrent_mode

# every (python_based, recurrent_backend) pair, the Python cell's fused path ("auto") included
CONFIGS = H.OUR_BACKENDS
POISONS = (float("nan"), float("inf"), float("-inf"))


def _episodes(is_init: torch.Tensor) -> torch.Tensor:
    """``[N, T]`` index of the episode each step belongs to (unique over rows)."""
    starts = is_init.clone()
    starts[:, 0] = True
    return starts.flatten().cumsum(0).view(is_init.shape) - 1


@st.composite
def poisoned_case(draw):
    rows = draw(st.integers(1, 3))
    steps = draw(st.integers(2, 9))
    pattern = draw(st.lists(st.booleans(), min_size=rows * steps, max_size=rows * steps))
    is_init = torch.tensor(pattern).view(rows, steps)
    is_init[:, 0] = draw(st.booleans())
    # at least one mid-sequence reset, so that there is an episode after the poisoned one
    row = draw(st.integers(0, rows - 1))
    cut = draw(st.integers(1, steps - 1))
    is_init[row, cut] = True
    episodes = _episodes(is_init)
    victim = int(episodes[row, draw(st.integers(0, cut - 1))])
    poison = draw(st.sampled_from(POISONS))
    where = draw(st.sampled_from(("input", "start_state", "both")))
    return is_init, episodes, victim, poison, where


def _run(module, x, h, is_init, grad_weight):
    td = TensorDict({"x": x, "h": h, "is_init": is_init.unsqueeze(-1)}, batch_size=list(is_init.shape))
    with set_recurrent_mode(True):
        out = module(td)
    y = out["y"]
    loss = (y * grad_weight[..., None]).sum()
    gx, gh = torch.autograd.grad(loss, (x, h))
    return y.detach(), gx, gh


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cfg", CONFIGS, ids=H.backend_id)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=poisoned_case(), seed=st.integers(0, 2**16))
def test_non_finite_values_never_cross_a_reset(cfg, layers, case, seed):
    """A NaN/inf in one episode's input, start state or output gradient leaves every other episode
    exactly as it is on clean data: outputs, input gradients and stored-state gradients."""
    is_init, episodes, victim, poison, where = case
    python_based, backend = cfg
    module = H.our_module(3, 4, layers, torch.float64, python_based=python_based, recurrent_backend=backend)
    gen = torch.Generator().manual_seed(seed)
    rows, steps = is_init.shape
    x = torch.randn(rows, steps, 3, dtype=torch.float64, generator=gen)
    h = torch.randn(rows, steps, layers, 4, dtype=torch.float64, generator=gen)
    grad_weight = torch.randn(rows, steps, dtype=torch.float64, generator=gen)
    in_victim = episodes == victim

    x_bad, h_bad, w_bad = x.clone(), h.clone(), grad_weight.clone()
    vr, vt = in_victim.nonzero(as_tuple=True)
    if where in ("input", "both"):
        x_bad[vr[-1], vt[-1], 0] = poison  # the victim's last step: its state after it is poisoned
    if where in ("start_state", "both"):
        x_bad[vr[0], vt[0], 1] = poison
        h_bad[vr[0], vt[0]] = poison  # the stored state the victim episode starts from
    w_bad[in_victim] = poison  # and its outputs' gradient

    clean = _run(module, x.clone().requires_grad_(), h.clone().requires_grad_(), is_init, grad_weight)
    dirty = _run(module, x_bad.requires_grad_(), h_bad.requires_grad_(), is_init, w_bad)
    others = ~in_victim
    y0, gx0, gh0 = clean
    y1, gx1, gh1 = dirty
    assert torch.isfinite(y1[others]).all(), f"{module.last_backend}: a non-finite value crossed a reset"
    assert torch.isfinite(gx1[others]).all(), f"{module.last_backend}: a non-finite gradient crossed a reset"
    torch.testing.assert_close(y1[others], y0[others], rtol=0, atol=1e-12)
    torch.testing.assert_close(gx1[others], gx0[others], rtol=0, atol=1e-12)
    # the stored state is read only at episode starts: its gradient elsewhere is zero, and finite
    assert torch.isfinite(gh1[others]).all()
    torch.testing.assert_close(gh1[others], gh0[others], rtol=0, atol=1e-12)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cfg", CONFIGS, ids=H.backend_id)
@pytest.mark.parametrize("poison", POISONS, ids=str)
def test_single_step_reset_drops_a_non_finite_state(cfg, layers, poison):
    """Single-step mode: where is_init is set, a NaN/inf stored state is replaced by zeros, not
    multiplied by zero; rows without a reset keep (and show) their own state."""
    python_based, backend = cfg
    module = H.our_module(3, 4, layers, torch.float64, python_based=python_based, recurrent_backend=backend)
    x = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    h = torch.randn(3, layers, 4, dtype=torch.float64)
    h[0] = poison  # row 0 restarts, rows 1 and 2 carry on (row 2 from a non-finite state)
    h[2] = poison
    is_init = torch.tensor([[True], [False], [False]])
    out = module(TensorDict({"x": x, "h": h, "is_init": is_init}, [3]))
    expected = module(TensorDict({"x": x, "h": torch.zeros(3, layers, 4, dtype=torch.float64),
                                  "is_init": torch.ones(3, 1, dtype=torch.bool)}, [3]))
    torch.testing.assert_close(out["y"][0], expected["y"][0], rtol=0, atol=0)
    assert torch.isfinite(out["next", "h"][0]).all()
    (grad,) = torch.autograd.grad(out["y"][0].sum(), x)
    assert torch.isfinite(grad[0]).all() and grad[0].abs().sum() > 0  # the restarted row
    assert not torch.isfinite(out["y"][2]).all()  # no reset: the state is carried, as it should be


# ---------------------------------------------------------------------------- second derivatives
def _seq_input(rows=2, steps=5, layers=1, seed=0):
    gen = torch.Generator().manual_seed(seed)
    is_init = torch.tensor([[True, False, True, False, False], [False, False, False, True, False]])[:rows, :steps]
    x = torch.randn(rows, steps, 3, dtype=torch.float64, generator=gen)
    h = torch.randn(rows, steps, layers, 4, dtype=torch.float64, generator=gen)
    return x, h, is_init


def _sequence_fn(module, is_init):
    def fn(x, h):
        td = TensorDict({"x": x, "h": h, "is_init": is_init.unsqueeze(-1)}, batch_size=list(is_init.shape))
        with set_recurrent_mode(True):
            out = module(td)
        return out["y"], out["next", "h"]

    return fn


def _loop_twin(module):
    twin = H.our_module(3, 4, module.num_layers, torch.float64, recurrent_backend="loop")
    twin.gru.load_state_dict(module.gru.state_dict())
    return twin


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cfg", CONFIGS, ids=H.backend_id)
def test_gradgradcheck_with_resets(cfg, layers):
    python_based, backend = cfg
    module = H.our_module(3, 4, layers, torch.float64, python_based=python_based, recurrent_backend=backend)
    x, h, is_init = _seq_input(layers=layers)
    fn = _sequence_fn(module, is_init)
    inputs = (x.requires_grad_(), h.requires_grad_())
    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)


@pytest.mark.parametrize("cfg", CONFIGS, ids=H.backend_id)
def test_create_graph_gradients_match_the_loop(cfg):
    """torch.autograd.grad(create_graph=True) then a gradient of the gradient (e.g. a gradient
    penalty) through the weights: the same numbers as the plain loop, and not zero."""
    python_based, backend = cfg
    module = H.our_module(3, 4, 2, torch.float64, python_based=python_based, recurrent_backend=backend)
    reference = _loop_twin(module)
    x, h, is_init = _seq_input(layers=2)
    results = []
    for m in (module, reference):
        xi = x.clone().requires_grad_()
        y, _ = _sequence_fn(m, is_init)(xi, h)
        (gx,) = torch.autograd.grad((y**2).sum(), xi, create_graph=True)
        penalty = (gx**2).sum()
        grads = torch.autograd.grad(penalty, [xi, *m.gru.parameters()])
        results.append(grads)
    for ours, ref in zip(*results):
        assert ref.abs().sum() > 0
        torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("cfg", CONFIGS, ids=H.backend_id)
def test_hessians_match_the_loop(cfg):
    """torch.autograd.functional.hessian and torch.func.hessian of a loss of the inputs."""
    python_based, backend = cfg
    module = H.our_module(3, 4, 1, torch.float64, python_based=python_based, recurrent_backend=backend)
    reference = _loop_twin(module)
    x, h, is_init = _seq_input(rows=2, steps=4)

    def loss_of(m):
        fn = _sequence_fn(m, is_init)
        return lambda xi: (fn(xi, h)[0] ** 2).sum()

    expected = torch.autograd.functional.hessian(loss_of(reference), x)
    assert expected.abs().sum() > 0
    torch.testing.assert_close(torch.autograd.functional.hessian(loss_of(module), x), expected,
                               rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(torch.func.hessian(loss_of(module))(x), expected, rtol=1e-9, atol=1e-10)
