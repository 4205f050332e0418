"""``workbench.timing`` and ``workbench.measure`` return well-formed data, check the settings, and the benchmark runner runs (no timing assertions)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench import measure, timing
from workbench.errors import ConfigError


def test_interleaved_returns_medians_and_rounds():
    calls = {"a": 0, "b": 0}

    def a():
        calls["a"] += 1

    def b():
        calls["b"] += 1

    m = measure.interleaved({"a": a, "b": b}, rounds=4, block_s=0.0005, warmup=1)
    assert set(m) == {"a", "b"}
    for name, meas in m.items():
        assert isinstance(meas, measure.Measurement) and meas.name == name
        assert len(meas.times) == 4 and meas.number >= 1
        assert 0 < meas.q1 <= meas.median <= meas.q3
        assert calls[name] >= 1 + 4 * meas.number


def test_peak_memory_counts_allocations():
    assert measure.peak_memory(lambda: torch.ones(256, 1024).sum()) >= 256 * 1024 * 4
    assert measure.peak_memory(lambda: None) == 0


def test_threads_context_restores():
    before = torch.get_num_threads()
    with measure.threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_machine_describes_versions():
    info = measure.machine()
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
    assert picked[("workbench:python", "forward+backward")] == "fused"  # the Python layer's fused loop
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


# ---------------------------------------------------------------------------- the checked settings
INT_AXES = ("batch", "steps", "hidden")
SCALARS = ("layers", "input_size", "rounds", "num_threads", "seed")


def _out_of(name: str):
    """Ints outside ``TimingConfig.LIMITS[name]``."""
    low, high = timing.TimingConfig.LIMITS[name]
    below = st.integers(max_value=low - 1)
    return below if high is None else st.one_of(below, st.integers(min_value=high + 1))


class TestTimingConfig:
    @settings(max_examples=40, deadline=None)
    @given(name=st.sampled_from(INT_AXES), data=st.data())
    def test_int_axis_out_of_range_is_named(self, name, data):
        """An axis value < 1 (the batch 0, hidden 0 that crashed in torch) is a ConfigError naming field, range, value."""
        bad = data.draw(_out_of(name))
        good = data.draw(st.lists(st.integers(1, 512), max_size=3))
        values = (*good, bad)
        with pytest.raises(ConfigError) as err:
            timing.TimingConfig(**{name: values})
        assert err.value.args[0] == (f"TimingConfig: '{name}' values must be ints >= 1; got {bad!r} in {values!r}.")

    @settings(max_examples=40, deadline=None)
    @given(rate=st.one_of(st.floats(allow_nan=True).filter(lambda p: not 0 <= p <= 1),
                          st.integers().filter(lambda p: not 0 <= p <= 1)))
    def test_reset_rate_outside_unit_interval_is_refused(self, rate):
        """reset rate 2 (or -0.1, nan, inf) is refused with the range [0, 1] in the message."""
        with pytest.raises(ConfigError, match=r"'reset_rate' values must be numbers in \[0, 1\]; got "):
            timing.TimingConfig(reset_rate=(0.0, rate))

    @settings(max_examples=40, deadline=None)
    @given(name=st.sampled_from(SCALARS), data=st.data())
    def test_scalar_out_of_range_is_named(self, name, data):
        """rounds 0, layers 0, ... raise with the field, its range and the value."""
        bad = data.draw(_out_of(name))
        low, high = timing.TimingConfig.LIMITS[name]
        expected = f">= {low}" if high is None else f"in [{low}, {high}]"
        with pytest.raises(ConfigError) as err:
            timing.TimingConfig(**{name: bad})
        assert err.value.args[0] == f"TimingConfig: '{name}' must be an int {expected}; got {bad!r}."

    @settings(max_examples=40, deadline=None)
    @given(batch=st.lists(st.integers(1, 4096), min_size=1, max_size=3),
           steps=st.lists(st.integers(1, 4096), min_size=1, max_size=3),
           hidden=st.lists(st.integers(1, 4096), min_size=1, max_size=3),
           reset_rate=st.lists(st.floats(0, 1), min_size=1, max_size=3),
           rounds=st.integers(1, 1000), backends=st.lists(st.sampled_from(timing.BACKENDS), min_size=1, max_size=3),
           passes=st.lists(st.sampled_from(timing.PASSES), min_size=1, max_size=2))
    def test_values_in_range_are_kept_as_tuples(self, batch, steps, hidden, reset_rate, rounds, backends, passes):
        """In-range values are accepted as given, stored as tuples; cases() is their product, in order."""
        cfg = timing.TimingConfig(backends=backends, batch=batch, steps=steps, hidden=hidden, reset_rate=reset_rate,
                                  rounds=rounds, passes=passes)
        assert (cfg.batch, cfg.steps, cfg.hidden, cfg.reset_rate) == tuple(map(tuple, (batch, steps, hidden, reset_rate)))
        assert cfg.backends == tuple(backends) and cfg.passes == tuple(passes) and cfg.rounds == rounds
        cases = cfg.cases()
        assert len(cases) == len(batch) * len(steps) * len(hidden) * len(reset_rate)
        assert cases[0] == (batch[0], steps[0], hidden[0], reset_rate[0])
        assert cases[-1] == (batch[-1], steps[-1], hidden[-1], reset_rate[-1])
        assert timing.TimingConfig(**cfg.as_kwargs()) == cfg

    @pytest.mark.parametrize("kwargs, match", [
        (dict(batch=()), r"'batch' must hold at least one value \(ints >= 1\); got \(\)"),
        (dict(batch=(2.5,)), r"'batch' values must be ints >= 1; got 2.5 in \(2.5,\)"),
        (dict(steps=(True,)), r"'steps' values must be ints >= 1; got True"),
        (dict(backends=()), r"'backends' must hold at least one of \["),
        (dict(backends=("torch", "cudnn")), r"'backends' must be some of \[.*\]; got 'cudnn' in \('torch', 'cudnn'\)"),
        (dict(passes=("backward",)), r"'passes' must be some of \['forward', 'forward\+backward'\]; got 'backward'"),
        (dict(block_s=0.0), r"'block_s' must be a number in \[1e-06, 60\]; got 0.0"),
        (dict(memory="yes"), r"'memory' must be a bool; got 'yes'"),
        (dict(dtype=torch.int64), r"'dtype' must be a floating-point torch.dtype, e.g. torch.float32; got torch.int64"),
        (dict(device="gpu0"), r"'device' must name a torch device, e.g. 'cpu' or 'cuda'; got 'gpu0'"),
    ])
    def test_other_fields_are_checked(self, kwargs, match):
        """Empty axes, unknown choices, wrong types: each names its field."""
        with pytest.raises(ConfigError, match=match):
            timing.TimingConfig(**kwargs)

    def test_single_values_become_one_value_axes(self):
        """batch=8 means (8,); backends="torch" means ("torch",), not its letters."""
        cfg = timing.TimingConfig(backends="torch", batch=8, reset_rate=0, passes="forward")
        assert (cfg.backends, cfg.batch, cfg.reset_rate, cfg.passes) == (("torch",), (8,), (0,), ("forward",))

    @pytest.mark.parametrize("kwargs, message", [
        (dict(batch=0), "make_case: 'batch' must be an int >= 1; got 0."),
        (dict(hidden=0), "make_case: 'hidden' must be an int >= 1; got 0."),
        (dict(steps=0), "make_case: 'steps' must be an int >= 1; got 0."),
        (dict(reset_rate=2), "make_case: 'reset_rate' must be a number in [0, 1]; got 2."),
        (dict(reset_rate=float("nan")), "make_case: 'reset_rate' must be a number in [0, 1]; got nan."),
    ])
    def test_make_case_checks_its_sizes(self, kwargs, message):
        """make_case refuses the sizes torch would crash on (hidden 0: a division by zero) or misread."""
        with pytest.raises(ConfigError) as err:
            timing.make_case(**{**dict(batch=2, steps=3, input_size=2, hidden=4), **kwargs})
        assert err.value.args[0] == message

    @pytest.mark.parametrize("kwargs, name", [(dict(batch=(2, 0)), "batch"), (dict(hidden=(0,)), "hidden"),
                                              (dict(rounds=0), "rounds"), (dict(reset_rate=(2,)), "reset_rate")])
    def test_time_backends_checks_before_timing(self, kwargs, name, monkeypatch):
        """The first bad argument is a ConfigError before any case is built or timed."""
        monkeypatch.setattr(timing, "make_case", lambda *a, **k: pytest.fail("a case was built"))
        with pytest.raises(ConfigError, match=f"TimingConfig: '{name}'"):
            timing.time_backends(**{**dict(backends=("torch",), batch=(2,), steps=(3,), hidden=(4,),
                                           reset_rate=(0.0,), rounds=2, block_s=0.0005), **kwargs})


def test_floor_ratios_agree_with_the_records_and_fall_back_to_the_fastest():
    """With torch measured, floor_ratios is each record's ratio_to_floor (torch exactly 1); without it, the
    fastest backend of each shape and pass is the floor."""
    rows = timing.time_backends(backends=("torch", "workbench:loop"), batch=(2,), steps=(3, 5), hidden=(4,),
                                reset_rate=(0.0,), input_size=3, rounds=2, block_s=0.0005, memory=False)
    ratios = timing.floor_ratios(rows)
    assert [q["floor"] for q in ratios] == ["torch"] * len(rows)
    for row, q in zip(rows, ratios):
        assert q["ratio"] == pytest.approx(row["ratio_to_floor"], rel=1e-12)
        if row["backend"] == "torch":
            assert q["ratio"] == 1.0 and q["floor_s"] == row["median_s"]
    loop = [r for r in rows if r["backend"] == "workbench:loop"]
    assert [q["ratio"] for q in timing.floor_ratios(loop)] == [1.0] * len(loop)  # alone: its own floor
    assert timing.FLOOR in timing.FLOOR_TEXT.replace("torch.nn.GRU", "torch")
