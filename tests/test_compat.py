"""Each private API of another library that ``workbench._compat`` wraps still works as we use it.

An upgrade that breaks one of these fails here, by name, instead of deep inside a kernel.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from torch import nn

from workbench import _compat as C

ROOT = Path(__file__).resolve().parent.parent


def test_functorch_wrapped_tells_batched_from_plain():
    x = torch.randn(3, 2)
    assert C.functorch_wrapped(x) is False
    seen = torch.vmap(lambda t: torch.tensor(C.functorch_wrapped(t)))(x)
    assert bool(seen.all())
    grad_seen = []
    torch.func.grad(lambda t: (grad_seen.append(C.functorch_wrapped(t)), t.sum())[1])(x)
    assert grad_seen == [True]


def test_native_gru_matches_nn_gru_on_packed_data():
    gru = nn.GRU(3, 4, num_layers=2, batch_first=True)
    x = torch.randn(5, 3)  # one sequence of 5 steps, packed: batch size 1 at every step
    hx = torch.randn(2, 1, 4)
    ref, h_ref = gru(nn.utils.rnn.PackedSequence(x, torch.ones(5, dtype=torch.int64)), hx)
    y, h = C.native_gru(x, torch.ones(5, dtype=torch.int64), hx, list(gru.parameters()), bias=True,
                        num_layers=2, dropout=0.0, training=False)
    torch.testing.assert_close(y, ref.data)
    torch.testing.assert_close(h, h_ref)


def test_flat_weights_are_the_parameters_and_refresh_after_a_swap():
    gru = nn.GRU(3, 4, batch_first=True)
    assert [id(w) for w in C.flat_weights(gru)] == [id(p) for p in gru.parameters()]
    new = nn.Parameter(torch.zeros_like(gru.weight_hh_l0))
    setattr(gru, "weight_hh_l0", new)
    C.refresh_flat_weights(gru)
    assert C.flat_weights(gru)[1] is new
    assert C.flat_weights(nn.Linear(2, 2)) is None


def test_torchrl_recurrent_mode_is_read_and_set():
    from torchrl.modules import recurrent_mode

    assert C.get_torchrl_recurrent_mode() is None
    C.set_torchrl_recurrent_mode(True)
    try:
        assert recurrent_mode() is True and C.get_torchrl_recurrent_mode() is True
    finally:
        C.set_torchrl_recurrent_mode(None)
    assert recurrent_mode() is None


def test_kaleido_server_is_found():
    import kaleido

    server = C.kaleido_server()
    assert server is None or hasattr(server, "is_running")
    assert hasattr(kaleido, "start_sync_server") and hasattr(kaleido, "stop_sync_server")


def test_profiler_memory_events_sum_to_the_allocations():
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        x = torch.empty(1024, 1024)  # 4 MiB
        del x
    events = C.profiler_memory_events(prof)
    sizes = [n for _, n in events]
    assert 4 * 1024 * 1024 in sizes and -4 * 1024 * 1024 in sizes


def _private_uses(path: Path) -> list[str]:
    """Attribute reads ``a._b`` of modules other than our own, in one source file."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = ast.unparse(node.value)
            if base.split(".")[0] in {"torch", "torchrl", "tensordict", "kaleido", "plotly", "prof", "gru", "new"}:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {base}.{node.attr}")
    return found


@pytest.mark.parametrize("package", ["workbench", "widgets"])
def test_no_private_api_outside_compat(package):
    """Every ``torch._x``, ``torchrl._x``, ``kaleido._x``... lives in workbench/_compat.py."""
    uses = []
    for path in sorted((ROOT / package).rglob("*.py")):
        if path.name != "_compat.py":
            uses += _private_uses(path)
    assert uses == []


def test_parameter_dicts_see_swapped_in_parameters():
    gru = nn.GRU(2, 3)
    attrs, params = C.parameter_dicts(gru)
    assert params["weight_hh_l0"] is gru.weight_hh_l0 and "weight_hh_l0" not in attrs
    from tensordict import TensorDict

    swapped = TensorDict.from_module(gru).apply(torch.zeros_like)
    with swapped.to_module(gru):
        attrs, params = C.parameter_dicts(gru)
        value = attrs.get("weight_hh_l0", params["weight_hh_l0"])
        assert torch.equal(value, torch.zeros(9, 3))


def test_rays_exit_hook_leaves_an_uncaught_ctrl_c_its_sigint_exit():
    """Ray's import registers an atexit shutdown that turns an uncaught Ctrl-C's SIGINT exit into code 1."""
    import subprocess
    import sys

    pytest.importorskip("ray")
    code = ("import ray\n"
            "from workbench._compat import guard_ray_exit\n"
            "print(guard_ray_exit(), guard_ray_exit())\n"
            "raise KeyboardInterrupt\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["True", "False"], done.stdout + done.stderr
    assert done.returncode == -2, done.stderr[-1000:]  # Python's exit on an uncaught KeyboardInterrupt
    unguarded = subprocess.run([sys.executable, "-c", "import ray\nraise KeyboardInterrupt\n"],
                               capture_output=True, text=True, timeout=120)
    assert unguarded.returncode == 1  # what it guards against (if Ray fixes it, this test says so)


def test_voilas_file_handler_is_in_its_handler_table():
    """workbench.voila_app swaps Voila's /voila/files/ handler for one behind the login: the class is where
    _compat finds it, serves GET and HEAD, and Voila still builds its handler table in init_handlers."""
    pytest.importorskip("voila")
    import inspect

    from voila.app import Voila

    handler = C.voila_file_handler()
    assert callable(getattr(handler, "get", None)) and callable(getattr(handler, "head", None))
    assert "AllowListFileHandler" in inspect.getsource(Voila.init_handlers)
