"""Shared helpers for the GRUModule differential and integration tests.

Contains:
- a pure-tensor reference GRU (torch.nn.GRU gate convention) with the recurrent-mode
  reset rule (restart from the stored hidden at t=0 and at every ``is_init``),
- builders for (torchrl, ours) module pairs with identical weights,
- random TensorDict builders and gradient helpers,
- the per-dtype "largest difference against torchrl" recorder.
"""
from __future__ import annotations

import json
import os
import threading

import torch
from tensordict import TensorDict
from torchrl.modules import GRUModule as TorchRLGRUModule

IN_KEYS = ["x", "h"]
OUT_KEYS = ["y", ("next", "h")]

def _backend_names():
    """The documented backends ("native", "loop", "auto") plus any extra kernel our
    module declares in ``GRUModule.BACKENDS`` (e.g. "packed", "fused")."""
    names = ["native", "loop", "auto"]
    try:
        from workbench import GRUModule

        names += [b for b in getattr(GRUModule, "BACKENDS", ()) if b not in names]
    except ImportError:  # pragma: no cover - the tests then fail at their own import
        pass
    return names


CUDNN_BACKENDS = _backend_names()
# (python_based, recurrent_backend) combinations of our module that every
# differential test runs. A Python layer runs its own loop whatever the backend
# says, but "native"/"loop"/"auto" are all exercised to make sure of it.
OUR_BACKENDS = [(False, b) for b in CUDNN_BACKENDS] + [(True, b) for b in ("native", "loop", "auto")]


def backend_id(cfg):
    python_based, backend = cfg
    return f"{'python' if python_based else 'cudnn'}-{backend}"


def tol(dtype):
    """Tolerances (atol, rtol) used against torchrl / references."""
    if dtype == torch.float64:
        return dict(atol=1e-10, rtol=1e-10)
    return dict(atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- reference GRU
def layer_params(gru, layer):
    """(w_ih, w_hh, b_ih, b_hh) for one layer of an nn.GRU-named module."""
    w_ih = getattr(gru, f"weight_ih_l{layer}")
    w_hh = getattr(gru, f"weight_hh_l{layer}")
    if getattr(gru, "bias", True) and hasattr(gru, f"bias_ih_l{layer}"):
        b_ih = getattr(gru, f"bias_ih_l{layer}")
        b_hh = getattr(gru, f"bias_hh_l{layer}")
    else:
        b_ih = b_hh = None
    return w_ih, w_hh, b_ih, b_hh


def ref_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    """One GRU cell step written out by hand (torch.nn.GRU convention).

    r = σ(W_ir x + b_ir + W_hr h + b_hr)
    z = σ(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
    h' = (1 − z) ⊙ n + z ⊙ h
    Returns (h', r, z, n).
    """
    H = h.shape[-1]
    W_ir, W_iz, W_in = w_ih[:H], w_ih[H : 2 * H], w_ih[2 * H :]
    W_hr, W_hz, W_hn = w_hh[:H], w_hh[H : 2 * H], w_hh[2 * H :]
    if b_ih is None:
        b_ih = torch.zeros(3 * H, dtype=x.dtype, device=x.device)
        b_hh = torch.zeros(3 * H, dtype=x.dtype, device=x.device)
    b_ir, b_iz, b_in = b_ih[:H], b_ih[H : 2 * H], b_ih[2 * H :]
    b_hr, b_hz, b_hn = b_hh[:H], b_hh[H : 2 * H], b_hh[2 * H :]
    r = torch.sigmoid(x @ W_ir.T + b_ir + h @ W_hr.T + b_hr)
    z = torch.sigmoid(x @ W_iz.T + b_iz + h @ W_hz.T + b_hz)
    n = torch.tanh(x @ W_in.T + b_in + r * (h @ W_hn.T + b_hn))
    h_new = (1 - z) * n + z * h
    return h_new, r, z, n


def ref_step(gru, x, h):
    """Stacked GRU step. x: [N, I]; h: [N, L, H] -> y [N, H], h' [N, L, H], gates [N, L, 3, H]."""
    layer_in = x
    hs, gates = [], []
    for layer in range(gru.num_layers):
        h_new, r, z, n = ref_cell(layer_in, h[:, layer], *layer_params(gru, layer))
        hs.append(h_new)
        gates.append(torch.stack([r, z, n], -2))
        layer_in = h_new
    return layer_in, torch.stack(hs, -2), torch.stack(gates, -3)


def ref_recurrent(gru, x, stored, is_init):
    """Reference recurrent-mode pass with torchrl's reset rule.

    x: [N, T, I]; stored: [N, T, L, H]; is_init: [N, T] (bool).
    At t=0 and wherever is_init is True the state restarts from ``stored`` at that
    position (no zeroing).
    Returns y [N, T, H], trace [N, T, L, H] (hidden after every step),
    next_h [N, T, L, H] (trace kept only at trajectory ends, zeros elsewhere) and
    gates [N, T, L, 3, H].
    """
    N, T = x.shape[:2]
    ys, trace, gates = [], [], []
    h = stored[:, 0]
    for t in range(T):
        if t > 0:
            h = torch.where(is_init[:, t, None, None], stored[:, t], h)
        y, h, g = ref_step(gru, x[:, t], h)
        ys.append(y)
        trace.append(h)
        gates.append(g)
    y = torch.stack(ys, 1)
    trace = torch.stack(trace, 1)
    end = torch.ones_like(is_init)
    end[:, :-1] = is_init[:, 1:]
    next_h = torch.where(end[..., None, None], trace, torch.zeros_like(trace))
    return y, trace, next_h, torch.stack(gates, 1)


# ---------------------------------------------------------------- module builders
def torchrl_module(input_size, hidden_size, num_layers, dtype=torch.float32, seed=0, **kwargs):
    torch.manual_seed(seed)
    kwargs.setdefault("in_keys", list(IN_KEYS))
    kwargs.setdefault("out_keys", list(OUT_KEYS))
    m = TorchRLGRUModule(
        input_size=input_size, hidden_size=hidden_size, num_layers=num_layers, **kwargs
    )
    return m.to(dtype)


def our_module(input_size, hidden_size, num_layers, dtype=torch.float32, **kwargs):
    from workbench import GRUModule

    kwargs.setdefault("in_keys", list(IN_KEYS))
    kwargs.setdefault("out_keys", list(OUT_KEYS))
    return GRUModule(
        input_size=input_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        dtype=dtype,
        **kwargs,
    )


def copy_weights(dst, src):
    """ours.gru.load_state_dict(theirs.gru.state_dict()) and check it took."""
    dst.gru.load_state_dict(src.gru.state_dict())
    for name, p in src.gru.named_parameters():
        q = dict(dst.gru.named_parameters())[name]
        assert q.dtype == p.dtype, (name, q.dtype, p.dtype)
        assert torch.equal(q.detach(), p.detach()), name
    return dst


def module_pair(input_size, hidden_size, num_layers, dtype, python_based, backend, seed=0, **kw):
    theirs = torchrl_module(input_size, hidden_size, num_layers, dtype=dtype, seed=seed, **kw)
    ours = our_module(
        input_size,
        hidden_size,
        num_layers,
        dtype=dtype,
        python_based=python_based,
        recurrent_backend=backend,
        **kw,
    )
    copy_weights(ours, theirs)
    return theirs, ours


# ---------------------------------------------------------------- data
def random_is_init(shape, p, first=True, generator=None):
    """Bool [*shape] with random resets; time is the last dim; t=0 forced to ``first``."""
    is_init = torch.rand(shape, generator=generator) < p
    if len(shape) and shape[-1] > 0 and first is not None:
        is_init[..., 0] = first
    return is_init


def make_input(batch, input_size, hidden_size, num_layers, dtype, is_init, with_hidden=True,
               requires_grad=True, generator=None):
    """Input td with requires_grad leaves: x [*batch, I], h [*batch, L, H], is_init [*batch, 1]."""
    x = torch.randn(*batch, input_size, dtype=dtype, generator=generator)
    leaves = {"x": x.requires_grad_(requires_grad)}
    fields = {"x": x, "is_init": is_init.reshape(*batch, 1)}
    if with_hidden:
        h = torch.randn(*batch, num_layers, hidden_size, dtype=dtype, generator=generator)
        h.requires_grad_(requires_grad)
        leaves["h"] = h
        fields["h"] = h
    return TensorDict(fields, batch_size=list(batch)), leaves


def run_and_grad(module, td, leaves, proj, recurrent):
    """Run ``module`` on a shallow copy of td and differentiate a random projection of
    (y, ("next", h)) w.r.t. module parameters and the input leaves."""
    if isinstance(module, TorchRLGRUModule):  # the oracle is driven by torchrl's own switch
        from torchrl.modules import set_recurrent_mode
    else:
        from workbench import set_recurrent_mode

    with set_recurrent_mode(recurrent):
        out = module(td.copy())
    y = out["y"]
    nh = out["next", "h"]
    loss = (y * proj["y"]).sum() + (nh * proj["nh"]).sum()
    names = [n for n, _ in module.gru.named_parameters()]
    params = [p for _, p in module.gru.named_parameters()]
    leaf_names = sorted(leaves)
    grads = torch.autograd.grad(
        loss, params + [leaves[k] for k in leaf_names], allow_unused=True
    )
    g = {}
    for n, gr, t in zip(names + [f"input:{k}" for k in leaf_names], grads,
                        params + [leaves[k] for k in leaf_names]):
        g[n] = torch.zeros_like(t) if gr is None else gr
    return y.detach(), nh.detach(), g


# ---------------------------------------------------------------- diff recorder
class DiffRecorder:
    """Keeps the largest absolute difference against torchrl per dtype and quantity."""

    def __init__(self):
        self._lock = threading.Lock()
        self.data: dict[str, dict[str, float]] = {}

    def record(self, dtype, what, a, b):
        d = (a.detach() - b.detach()).abs().max().item() if a.numel() else 0.0
        key = str(dtype).replace("torch.", "")
        with self._lock:
            slot = self.data.setdefault(key, {})
            slot[what] = max(slot.get(what, 0.0), d)
            slot["all"] = max(slot.get("all", 0.0), d)
        return d

    def merge(self, other: dict):
        with self._lock:
            for k, v in other.items():
                slot = self.data.setdefault(k, {})
                for what, d in v.items():
                    slot[what] = max(slot.get(what, 0.0), d)

    def summary_lines(self):
        lines = ["largest absolute difference against torchrl.modules.GRUModule:"]
        for k in sorted(self.data):
            parts = ", ".join(f"{w}={d:.3e}" for w, d in sorted(self.data[k].items()) if w != "all")
            lines.append(f"  {k}: {self.data[k].get('all', 0.0):.3e}  ({parts})")
        return lines


RECORDER = DiffRecorder()


def write_report(path, run_id):
    """Merge RECORDER into the JSON report at ``path`` (safe under pytest-xdist)."""
    import fcntl

    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        try:
            existing = json.loads(f.read() or "{}")
        except json.JSONDecodeError:
            existing = {}
        if existing.get("run_id") != run_id:
            existing = {"run_id": run_id, "max_abs_diff": {}}
        merged = DiffRecorder()
        merged.merge(existing.get("max_abs_diff", {}))
        merged.merge(RECORDER.data)
        existing["max_abs_diff"] = merged.data
        f.seek(0)
        f.truncate()
        json.dump(existing, f, indent=2, sort_keys=True)
        fcntl.flock(f, fcntl.LOCK_UN)


REPORT_ENV = "WORKBENCH_DIFF_REPORT"


def report_path():
    return os.environ.get(REPORT_ENV)
