"""``workbench.timing`` returns well-formed data, and the benchmark runner runs (no timing assertions)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from workbench import timing


def test_interleaved_returns_medians_and_rounds():
    calls = {"a": 0, "b": 0}

    def a():
        calls["a"] += 1

    def b():
        calls["b"] += 1

    m = timing.interleaved({"a": a, "b": b}, rounds=4, block_s=0.0005, warmup=1)
    assert set(m) == {"a", "b"}
    for name, meas in m.items():
        assert isinstance(meas, timing.Measurement) and meas.name == name
        assert len(meas.times) == 4 and meas.number >= 1
        assert 0 < meas.q1 <= meas.median <= meas.q3
        assert calls[name] >= 1 + 4 * meas.number


def test_peak_memory_counts_allocations():
    assert timing.peak_memory(lambda: torch.ones(256, 1024).sum()) >= 256 * 1024 * 4
    assert timing.peak_memory(lambda: None) == 0


def test_threads_context_restores():
    before = torch.get_num_threads()
    with timing.threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_machine_describes_versions():
    info = timing.machine()
    for key in ("python", "torch", "torchrl", "tensordict", "torch_threads", "cpu", "workbench"):
        assert key in info
    json.dumps(info)


def test_make_case_is_reproducible():
    a = timing.make_case(batch=3, steps=5, input_size=2, hidden=4, layers=2, reset_rate=0.5, seed=7)
    b = timing.make_case(batch=3, steps=5, input_size=2, hidden=4, layers=2, reset_rate=0.5, seed=7)
    assert torch.equal(a.x, b.x) and torch.equal(a.is_init, b.is_init)
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    assert a.is_init[:, 0].all() and tuple(a.h.shape) == (3, 5, 2, 4)


def test_time_backends_grid_is_well_formed():
    backends = ("torch", "torchrl", "workbench", "workbench:loop", "workbench:python")
    rows = timing.time_backends(
        backends=backends, batch=(2,), steps=(3, 4), hidden=(4,), reset_rate=(0.0, 0.5),
        input_size=3, rounds=2, block_s=0.0005, memory=True,
    )
    assert len(rows) == len(backends) * len(timing.PASSES) * 2 * 2
    keys = {"backend", "pass", "batch", "steps", "hidden", "layers", "input_size", "reset_rate", "device", "dtype",
            "median_s", "q1_s", "q3_s", "per_step_s", "ratio_to_floor", "peak_bytes", "last_backend"}
    for row in rows:
        assert set(row) == keys
        assert row["backend"] in backends and row["pass"] in timing.PASSES
        assert row["median_s"] > 0 and math.isfinite(row["ratio_to_floor"])
        assert row["peak_bytes"] is None or row["peak_bytes"] >= 0
        if row["pass"] == "forward":
            assert row["peak_bytes"] is not None
    picked = {(r["backend"], r["pass"]): r["last_backend"] for r in rows}
    assert picked[("workbench", "forward")] == "fused"
    assert picked[("workbench:python", "forward+backward")] == "python"
    assert picked[("workbench:loop", "forward")] == "loop"
    json.dumps(rows)


def test_unknown_backend_is_refused():
    case = timing.make_case(batch=1, steps=2, input_size=2, hidden=3)
    with pytest.raises(ValueError, match="unknown backend"):
        timing.contestants(case, ["cudnn"])


def test_check_case_agrees_with_torchrl():
    case = timing.make_case(batch=3, steps=6, input_size=2, hidden=4, layers=2, reset_rate=0.3, dtype=torch.float64)
    diffs = timing.check_case(case, ["torch", "workbench", "workbench:packed", "workbench:native"])
    assert set(diffs) == {"workbench", "workbench:packed", "workbench:native"}
    assert all(d["ok"] and d["max_abs_diff"] < 1e-10 for d in diffs.values())


# ---------------------------------------------------------------------------- the runner
@pytest.fixture
def tiny_suite(monkeypatch):
    from workbench.benchmark import runner as suite, sections

    monkeypatch.setattr(sections, "MAIN", dict(batch=2, steps=6, input_size=3, hidden=4, reset_rate=0.3))
    monkeypatch.setattr(sections, "STEP_CASES", (((), 4), ((2,), 4)))
    real = suite.configure

    def configure(quick, device):
        cfg = real(quick, device)
        cfg.update(rounds=2, block=0.0005, rounds_step=2, block_step=0.0005, scaling_steps=(4, 8),
                   torchrl_bwd_max_steps=4, torchrl_single_shot=True, extra_backends=["workbench:packed"])
        return cfg

    monkeypatch.setattr(suite, "configure", configure)
    return suite


def test_runner_tiny_run_reports_targets_and_checks(tiny_suite, tmp_path):
    lines = []
    path = tmp_path / "bench.json"
    report = tiny_suite.run(quick=True, json_path=str(path), sections=["step", "recurrent", "scaling", "python"],
                            out=lines.append)
    text = "\n".join(lines)
    assert "== Targets ==" in text and "torch (floor)" in text and "machine:" in text
    assert report.checks and all(c.ok for c in report.checks)
    names = [t.name for t in report.targets]
    assert any("single step" in n for n in names) and any("peak memory" in n for n in names)
    assert any("scaling" in n for n in names) and any("python cell" in n for n in names)
    data = json.loads(path.read_text())
    assert {"machine", "config", "rows", "targets", "checks"} <= set(data)
    assert all(isinstance(r["median_s"], float) for r in data["rows"])


def test_bench_command_is_registered():
    from workbench import bench_cli, cli

    parser = cli.build_parser()
    args, extra = parser.parse_known_args(["bench", "--quick", "--json", "out.json"])
    assert args.command == "bench" and args.quick and args.json == "out.json" and not extra
    ns = parser.parse_args(["bench", "--device", "cuda", "--threads", "2"])
    assert ns.device == "cuda" and ns.threads == 2 and cli._COMMANDS["bench"].run is bench_cli.bench
