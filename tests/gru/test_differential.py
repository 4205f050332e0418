"""Differential tests: workbench.GRUModule against torchrl.modules.GRUModule (0.14.1).

Both modules get the same weights (``ours.gru.load_state_dict(theirs.gru.state_dict())``)
and the same input TensorDict; outputs (``y`` and ``("next", "h")``) and gradients
(w.r.t. every GRU parameter, the input value and the stored hidden states) must agree.
torchrl runs its default backend (``recurrent_backend="pad"``, nn.GRU); ours runs every
(python_based, recurrent_backend) combination.

The largest absolute difference seen per dtype is collected by ``diff_recorder`` and
printed at the end of the session (see conftest.py).
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torchrl.modules import set_recurrent_mode as torchrl_set_recurrent_mode

import gru_test_helpers as H
from workbench import GRUModule, set_recurrent_mode

I, HID = 3, 5

DTYPES = [torch.float32, torch.float64]
LAYERS = [1, 2, 3]
SINGLE_SHAPES = [(), (4,), (2, 3)]
RECURRENT_SHAPES = [(7,), (3, 7), (2, 2, 6)]


def _compare(diff_recorder, dtype, theirs_out, ours_out, tag, grad_tol=None, grad_what="grad"):
    """Assert equality of (y, next_h, grads) and record the largest difference."""
    ty, tnh, tg = theirs_out
    oy, onh, og = ours_out
    t = H.tol(dtype)
    gt = grad_tol or t
    assert oy.dtype == dtype and onh.dtype == dtype
    assert oy.shape == ty.shape, (tag, oy.shape, ty.shape)
    assert onh.shape == tnh.shape, (tag, onh.shape, tnh.shape)
    diff_recorder.record(dtype, "output", oy, ty)
    diff_recorder.record(dtype, "next_hidden", onh, tnh)
    torch.testing.assert_close(oy, ty, **t, msg=lambda m: f"{tag}: y differs\n{m}")
    torch.testing.assert_close(onh, tnh, **t, msg=lambda m: f"{tag}: ('next','h') differs\n{m}")
    assert set(og) == set(tg), (set(og), set(tg))
    for name in tg:
        diff_recorder.record(dtype, grad_what, og[name], tg[name])
        torch.testing.assert_close(
            og[name], tg[name], **gt, msg=lambda m, name=name: f"{tag}: grad {name} differs\n{m}"
        )


def _proj(shape_y, shape_nh, dtype, gen):
    return {
        "y": torch.randn(shape_y, dtype=dtype, generator=gen),
        "nh": torch.randn(shape_nh, dtype=dtype, generator=gen),
    }


@pytest.mark.parametrize("cfg", H.OUR_BACKENDS, ids=H.backend_id)
@pytest.mark.parametrize("batch", SINGLE_SHAPES, ids=lambda s: "x".join(map(str, s)) or "scalar")
@pytest.mark.parametrize("num_layers", LAYERS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_single_step_matches_torchrl(dtype, num_layers, batch, cfg, diff_recorder):
    """Single-step mode: random is_init, random stored hidden (zeroed where is_init)."""
    python_based, backend = cfg
    theirs, ours = H.module_pair(I, HID, num_layers, dtype, python_based, backend, seed=num_layers)
    gen = torch.Generator().manual_seed(1000 + num_layers + 10 * len(batch))
    for trial, with_hidden in enumerate([True, True, False]):
        is_init = torch.rand(batch, generator=gen) < 0.5
        if trial == 1:
            is_init = torch.ones(batch, dtype=torch.bool)  # all positions zeroed
        td, leaves = H.make_input(batch, I, HID, num_layers, dtype, is_init,
                                  with_hidden=with_hidden, generator=gen)
        proj = _proj((*batch, HID), (*batch, num_layers, HID), dtype, gen)
        theirs_out = H.run_and_grad(theirs, td, leaves, proj, recurrent=False)
        ours_out = H.run_and_grad(ours, td, leaves, proj, recurrent=False)
        _compare(diff_recorder, dtype, theirs_out, ours_out,
                 f"single batch={batch} trial={trial} hidden={with_hidden}")
        if with_hidden:
            # positions with is_init=True must not depend on the stored hidden
            g = ours_out[2]["input:h"]
            assert torch.all(g[is_init] == 0)


def _reset_patterns(batch, gen):
    """A few is_init patterns over [*batch] (time is the last dim)."""
    T = batch[-1]
    pats = {}
    pats["random"] = H.random_is_init(batch, 0.3, first=True, generator=gen)
    pats["no_mid_reset"] = H.random_is_init(batch, 0.0, first=True, generator=gen)
    pats["all_init"] = torch.ones(batch, dtype=torch.bool)
    last = torch.zeros(batch, dtype=torch.bool)
    last[..., 0] = True
    last[..., T - 1] = True
    pats["reset_at_last"] = last
    # t=0 is not flagged: the state still starts from the hidden stored at t=0
    pats["first_not_init"] = H.random_is_init(batch, 0.3, first=False, generator=gen)
    pats["never_init"] = torch.zeros(batch, dtype=torch.bool)
    return pats


@pytest.mark.parametrize("cfg", H.OUR_BACKENDS, ids=H.backend_id)
@pytest.mark.parametrize("batch", RECURRENT_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("num_layers", LAYERS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_recurrent_matches_torchrl(dtype, num_layers, batch, cfg, diff_recorder):
    """Recurrent mode with resets: restart from the stored hidden at t=0 and at each is_init."""
    python_based, backend = cfg
    theirs, ours = H.module_pair(I, HID, num_layers, dtype, python_based, backend, seed=num_layers)
    gen = torch.Generator().manual_seed(2000 + num_layers + 10 * len(batch))
    for name, is_init in _reset_patterns(batch, gen).items():
        td, leaves = H.make_input(batch, I, HID, num_layers, dtype, is_init, generator=gen)
        proj = _proj((*batch, HID), (*batch, num_layers, HID), dtype, gen)
        theirs_out = H.run_and_grad(theirs, td, leaves, proj, recurrent=True)
        ours_out = H.run_and_grad(ours, td, leaves, proj, recurrent=True)
        _compare(diff_recorder, dtype, theirs_out, ours_out, f"recurrent batch={batch} pattern={name}")

        # forward without autograd (an "auto" backend may pick another kernel then)
        with torch.no_grad(), set_recurrent_mode(True):
            plain = ours(td.detach().copy())
        t = H.tol(dtype)
        diff_recorder.record(dtype, "output", plain["y"], theirs_out[0])
        torch.testing.assert_close(plain["y"], theirs_out[0], **t)
        torch.testing.assert_close(plain["next", "h"], theirs_out[1], **t)

        # Independent reference (pure tensor loop) for the forward values too.
        T = batch[-1]
        with torch.no_grad():
            y_ref, _, nh_ref, _ = H.ref_recurrent(
                ours.gru,
                td["x"].reshape(-1, T, I),
                td["h"].reshape(-1, T, num_layers, HID),
                is_init.reshape(-1, T),
            )
        t = H.tol(dtype)
        torch.testing.assert_close(ours_out[0], y_ref.reshape(*batch, HID), **t)
        torch.testing.assert_close(ours_out[1], nh_ref.reshape(*batch, num_layers, HID), **t)
        # the stored hidden is read only at t=0 and at is_init positions
        g = ours_out[2]["input:h"]
        used = is_init.clone()
        used[..., 0] = True
        assert torch.all(g[~used] == 0), f"pattern={name}: gradient leaks into unused stored hidden"
        # ("next", h) is zero away from trajectory ends
        end = torch.ones_like(is_init)
        end[..., :-1] = is_init[..., 1:]
        assert torch.all(ours_out[1][~end] == 0)


@pytest.mark.parametrize("cfg", H.OUR_BACKENDS, ids=H.backend_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_recurrent_first_step_uses_stored_hidden(dtype, cfg, diff_recorder):
    """A concrete case: changing the stored hidden at a mid-sequence is_init changes the
    following outputs exactly as torchrl does; changing it elsewhere changes nothing."""
    python_based, backend = cfg
    theirs, ours = H.module_pair(I, HID, 2, dtype, python_based, backend, seed=7)
    gen = torch.Generator().manual_seed(7)
    T = 8
    is_init = torch.zeros(2, T, dtype=torch.bool)
    is_init[:, 0] = True
    is_init[0, 4] = True
    is_init[1, 6] = True
    td, _ = H.make_input((2, T), I, HID, 2, dtype, is_init, requires_grad=False, generator=gen)
    with set_recurrent_mode(True):
        base = ours(td.copy())["y"].clone()
        td2 = td.clone()
        td2["h"][0, 5] += 10.0  # not an is_init position: no effect
        same = ours(td2.copy())["y"]
        td3 = td.clone()
        td3["h"][0, 4] += 1.0  # is_init position: row 0 from t=4 on changes
        changed = ours(td3.copy())
        ref3 = theirs(td3.copy())
    torch.testing.assert_close(same, base, atol=0, rtol=0)
    assert torch.equal(changed["y"][0, :4], base[0, :4])
    assert (changed["y"][0, 4:] - base[0, 4:]).abs().min() > 0
    assert torch.equal(changed["y"][1], base[1])
    t = H.tol(dtype)
    diff_recorder.record(dtype, "output", changed["y"], ref3["y"])
    torch.testing.assert_close(changed["y"], ref3["y"], **t)
    torch.testing.assert_close(changed["next", "h"], ref3["next", "h"], **t)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_default_backend_and_keys_match_torchrl(dtype, diff_recorder):
    """Default backend ("auto"), default hidden key names, in_key/out_key form, and a
    default_recurrent_mode=True module driven by torchrl's own context manager."""
    from torchrl.modules import GRUModule as TorchRLGRUModule

    torch.manual_seed(3)
    theirs = TorchRLGRUModule(input_size=I, hidden_size=HID, num_layers=2, in_key="obs",
                              out_key="feat").to(dtype)
    ours = GRUModule(input_size=I, hidden_size=HID, num_layers=2, in_key="obs", out_key="feat",
                     dtype=dtype)
    assert list(ours.in_keys) == list(theirs.in_keys) == ["obs", "recurrent_state", "is_init"]
    assert list(ours.out_keys) == list(theirs.out_keys) == ["feat", ("next", "recurrent_state")]
    H.copy_weights(ours, theirs)
    gen = torch.Generator().manual_seed(3)
    from tensordict import TensorDict

    B, T = 3, 9
    is_init = H.random_is_init((B, T), 0.25, generator=gen)
    td = TensorDict(
        {
            "obs": torch.randn(B, T, I, dtype=dtype, generator=gen),
            "recurrent_state": torch.randn(B, T, 2, HID, dtype=dtype, generator=gen),
            "is_init": is_init[..., None],
        },
        [B, T],
    )
    t = H.tol(dtype)
    for recurrent in (False, True):
        data = td if recurrent else td[:, 0]
        with torchrl_set_recurrent_mode(recurrent):
            a = theirs(data.copy())
            b = ours(data.copy())
        for key in ("feat", ("next", "recurrent_state")):
            diff_recorder.record(dtype, "output", b[key], a[key])
            torch.testing.assert_close(b[key], a[key], **t)

    ours_rec = GRUModule(input_size=I, hidden_size=HID, num_layers=2, in_key="obs", out_key="feat",
                         dtype=dtype, default_recurrent_mode=True)
    H.copy_weights(ours_rec, theirs)
    assert ours_rec.recurrent_mode is True
    with torchrl_set_recurrent_mode(True):
        a = theirs(td.copy())
    b = ours_rec(td.copy())
    torch.testing.assert_close(b["feat"], a["feat"], **t)
    torch.testing.assert_close(b["next", "recurrent_state"], a["next", "recurrent_state"], **t)


@pytest.mark.parametrize("alias,python_based", [("pad", False), ("scan", True), ("pad", True)])
def test_torchrl_backend_aliases(alias, python_based):
    """torchrl's backend names are accepted and compute the same values as ours."""
    theirs, ours = H.module_pair(I, HID, 2, torch.float64, python_based, alias, seed=11)
    gen = torch.Generator().manual_seed(11)
    is_init = H.random_is_init((2, 6), 0.3, generator=gen)
    td, _ = H.make_input((2, 6), I, HID, 2, torch.float64, is_init, requires_grad=False, generator=gen)
    with set_recurrent_mode(True):
        a = theirs(td.copy())
        b = ours(td.copy())
    torch.testing.assert_close(b["y"], a["y"], **H.tol(torch.float64))
    torch.testing.assert_close(b["next", "h"], a["next", "h"], **H.tol(torch.float64))


@pytest.mark.parametrize("cfg", H.OUR_BACKENDS, ids=H.backend_id)
def test_non_contiguous_input_matches_torchrl(cfg, diff_recorder):
    """Inputs that are transposed views (non-canonical strides) give the same result."""
    python_based, backend = cfg
    theirs, ours = H.module_pair(I, HID, 2, torch.float32, python_based, backend, seed=5)
    gen = torch.Generator().manual_seed(5)
    from tensordict import TensorDict

    B, T = 3, 6
    x = torch.randn(T, B, I, generator=gen).transpose(0, 1)
    h = torch.randn(T, B, 2, HID, generator=gen).transpose(0, 1)
    is_init = H.random_is_init((B, T), 0.3, generator=gen)
    assert not x.is_contiguous()
    td = TensorDict({"x": x, "h": h, "is_init": is_init[..., None]}, [B, T])
    with set_recurrent_mode(True):
        a = theirs(td.copy())
        b = ours(td.copy())
    diff_recorder.record(torch.float32, "output", b["y"], a["y"])
    torch.testing.assert_close(b["y"], a["y"], **H.tol(torch.float32))
    torch.testing.assert_close(b["next", "h"], a["next", "h"], **H.tol(torch.float32))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.one_of(
        st.tuples(st.integers(1, 10)),
        st.tuples(st.integers(1, 3), st.integers(1, 10)),
        st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 6)),
    ),
    num_layers=st.integers(1, 3),
    cfg=st.sampled_from(H.OUR_BACKENDS),
    dtype=st.sampled_from(DTYPES),
    p=st.sampled_from([0.0, 0.15, 0.5, 0.9]),
    first=st.sampled_from([True, False]),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_recurrent_matches_torchrl_random(batch, num_layers, cfg, dtype, p, first, bias, seed, diff_recorder):
    """Hypothesis over shapes (T down to 1), reset densities, bias, layers and backends."""
    python_based, backend = cfg
    theirs, ours = H.module_pair(I, HID, num_layers, dtype, python_based, backend, seed=seed, bias=bias)
    gen = torch.Generator().manual_seed(seed)
    is_init = H.random_is_init(batch, p, first=first, generator=gen)
    td, leaves = H.make_input(batch, I, HID, num_layers, dtype, is_init, generator=gen)
    proj = _proj((*batch, HID), (*batch, num_layers, HID), dtype, gen)
    theirs_out = H.run_and_grad(theirs, td, leaves, proj, recurrent=True)
    ours_out = H.run_and_grad(ours, td, leaves, proj, recurrent=True)
    _compare(diff_recorder, dtype, theirs_out, ours_out, f"recurrent batch={batch} is_init={is_init.tolist()}")


@pytest.mark.parametrize("python_based", [False, True], ids=["cudnn", "python"])
def test_dropout_module_in_eval_mode_matches_torchrl(python_based, diff_recorder):
    """dropout > 0 is inactive in eval mode: same values as torchrl (also in eval mode)."""
    theirs, ours = H.module_pair(I, HID, 3, torch.float64, python_based, "auto", seed=9, dropout=0.4)
    theirs.eval()
    ours.eval()
    gen = torch.Generator().manual_seed(9)
    is_init = H.random_is_init((2, 7), 0.3, generator=gen)
    td, _ = H.make_input((2, 7), I, HID, 3, torch.float64, is_init, requires_grad=False, generator=gen)
    for recurrent, data in ((True, td), (False, td[:, 2])):
        with set_recurrent_mode(recurrent):
            a = theirs(data.copy())
            b = ours(data.copy())
        diff_recorder.record(torch.float64, "output", b["y"], a["y"])
        torch.testing.assert_close(b["y"], a["y"], **H.tol(torch.float64))
        torch.testing.assert_close(b["next", "h"], a["next", "h"], **H.tol(torch.float64))


@pytest.mark.parametrize("cfg", H.OUR_BACKENDS, ids=H.backend_id)
def test_empty_single_step_batch(cfg):
    """Ours accepts an empty single-step batch (torchrl 0.14.1 crashes on it)."""
    python_based, backend = cfg
    ours = H.our_module(I, HID, 2, python_based=python_based, recurrent_backend=backend)
    from tensordict import TensorDict

    for with_hidden in (True, False):
        fields = {"x": torch.zeros(0, I), "is_init": torch.zeros(0, 1, dtype=torch.bool)}
        if with_hidden:
            fields["h"] = torch.zeros(0, 2, HID)
        out = ours(TensorDict(fields, [0]))
        assert out["y"].shape == (0, HID)
        assert out["next", "h"].shape == (0, 2, HID)


@pytest.mark.parametrize("cfg", H.OUR_BACKENDS, ids=H.backend_id)
@pytest.mark.parametrize("needs", ["params", "x", "h", "x+h"])
def test_partial_requires_grad_matches_torchrl(needs, cfg, diff_recorder):
    """Only some of (parameters, input value, stored hidden) require gradients: the
    gradients that exist match torchrl's (kernels with a hand-written backward must
    handle each combination)."""
    python_based, backend = cfg
    dtype = torch.float64
    theirs, ours = H.module_pair(I, HID, 2, dtype, python_based, backend, seed=13)
    if needs != "params":
        for m in (theirs, ours):
            m.gru.requires_grad_(False)
    gen = torch.Generator().manual_seed(13)
    B, T = 3, 8
    is_init = H.random_is_init((B, T), 0.3, generator=gen)
    td, _ = H.make_input((B, T), I, HID, 2, dtype, is_init, requires_grad=False, generator=gen)
    leaves = {k: td[k].requires_grad_() for k in needs.split("+") if k in ("x", "h")}
    proj = _proj((B, T, HID), (B, T, 2, HID), dtype, gen)
    results = []
    for m in (theirs, ours):
        with set_recurrent_mode(True):
            out = m(td.copy())
        loss = (out["y"] * proj["y"]).sum() + (out["next", "h"] * proj["nh"]).sum()
        wrt = [p for p in m.gru.parameters() if p.requires_grad] + list(leaves.values())
        assert wrt
        results.append((out["y"].detach(), torch.autograd.grad(loss, wrt)))
    (ty, tg), (oy, og) = results
    t = H.tol(dtype)
    torch.testing.assert_close(oy, ty, **t)
    assert len(og) == len(tg)
    for a, b in zip(og, tg):
        diff_recorder.record(dtype, "grad", a, b)
        torch.testing.assert_close(a, b, **t)


@pytest.mark.parametrize("cfg", H.OUR_BACKENDS, ids=H.backend_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_medium_size_recurrent_matches_torchrl(dtype, cfg, diff_recorder):
    """A larger batch (B=48, T=24, H=64, 2 layers, resets in most rows): big enough that
    kernels which work on blocks of time steps run several blocks, with restarts and
    gradients crossing block boundaries.

    Weight gradients here are sums over B*T = 1152 terms, so float32 rounding alone
    reaches ~2e-5 between any two correct implementations (torchrl's own Python GRU vs
    its nn.GRU included): float32 gradients get atol=rtol=1e-4 and are recorded
    separately as "grad_B48xT24". float64 keeps 1e-10 everywhere."""
    python_based, backend = cfg
    B, T, HB, L = 48, 24, 64, 2
    theirs, ours = H.module_pair(I, HB, L, dtype, python_based, backend, seed=17)
    gen = torch.Generator().manual_seed(17)
    is_init = H.random_is_init((B, T), 0.08, generator=gen)
    is_init[0, 1:] = True  # one row restarting at every step
    is_init[1, 1:] = False  # and one never restarting
    td, leaves = H.make_input((B, T), I, HB, L, dtype, is_init, generator=gen)
    proj = _proj((B, T, HB), (B, T, L, HB), dtype, gen)
    theirs_out = H.run_and_grad(theirs, td, leaves, proj, recurrent=True)
    ours_out = H.run_and_grad(ours, td, leaves, proj, recurrent=True)
    grad_tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else None
    _compare(diff_recorder, dtype, theirs_out, ours_out, f"medium B={B} T={T} H={HB}",
             grad_tol=grad_tol, grad_what="grad_B48xT24")
