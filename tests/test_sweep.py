"""workbench.sweep: the spec is checked before any work; trials run on a real local Ray; resume, failures, cancel.

The Ray tests share one local Ray (module fixture): ``run_sweep`` uses an initialised Ray as it is.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from workbench.errors import Cancelled, ConfigError, OutputPathError
from workbench.jobs import CancelToken
from workbench.sweep import (SweepSpec, Trial, _append, format_summary, latest_records, load_records, run_sweep,
                             summarize)

CUE = "workbench/CueMemory-v0"
TINY = dict(total_frames=256, num_envs=8, frames_per_batch=64, epochs=2, head_cells=(8,))
"""A trial of a few seconds: 4 batches of 64 frames."""


def tiny(grid=None, **options) -> SweepSpec:
    options.setdefault("eval_episodes", 8)
    options.setdefault("probe_steps", 40)
    return SweepSpec(CUE, grid or {}, base=TINY, **options)


# ------------------------------------------------------------------------------------------ the spec
def test_trials_are_the_grid_times_the_seeds_with_stable_keys():
    spec = SweepSpec(CUE, {"hidden_size": "4, 8", "lr": [1e-3], "head_cells": ["64x64", "()"]}, seeds=(3, 7))
    keys = [t.key for t in spec.trials()]
    assert len(keys) == 2 * 1 * 2 * 2 == len(set(keys))
    assert keys[0] == "head_cells=64x64,hidden_size=4,lr=0.001,seed=3"
    assert keys[1] == "head_cells=64x64,hidden_size=4,lr=0.001,seed=7"
    assert spec.trials()[0].params == {"hidden_size": 4, "lr": 0.001, "head_cells": (64, 64)}
    config = spec.config(spec.trials()[-1])
    assert (config.hidden_size, config.head_cells, config.seed, config.progress) == (8, (), 7, False)
    assert config.total_frames == 28_800  # the environment's DEFAULTS under the grid
    assert SweepSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_seeds_count_and_base():
    spec = SweepSpec(CUE, {"delay": (4,)}, seeds=3, base={"total_frames": "640", "anneal_lr": "false"})
    assert [t.seed for t in spec.trials()] == [0, 1, 2]
    config = spec.config(spec.trials()[0])
    assert (config.total_frames, config.anneal_lr, config.delay) == (640, False, 4)
    assert [t.key for t in SweepSpec(CUE).trials()] == ["seed=0"]  # no grid: one trial per seed
    assert Trial({"delay": 4, "hidden_size": 8}, 1).group == "delay=4,hidden_size=8"


@pytest.mark.parametrize("kwargs, message", [
    (dict(grid={"hidden_sze": (4,)}), "grid: unknown field 'hidden_sze'; expected one of anneal_lr, best_window"),
    (dict(grid={"hidden_size": "4,x"}), "grid: 'hidden_size': expected an integer; got 'x'"),
    (dict(grid={"hidden_size": (4, 4)}), "grid: 'hidden_size': a value is given twice; got 4, 4"),
    (dict(grid={"lr": (1e-3, -1.0)}), "trial lr=-1.0,seed=0: 'lr': expected a finite number > 0; got -1.0"),
    (dict(grid={"anneal_lr": "maybe"}), "grid: 'anneal_lr': expected true or false; got 'maybe'"),
    (dict(grid={"seed": (1, 2)}), "grid: 'seed' is set by the sweep's seeds"),
    (dict(grid={"num_layers": (1, 2)}), "grid: 'num_layers' is a PolicySpec field that training does not take"),
    (dict(grid={"frames_per_batch": (100,)}),
     "trial frames_per_batch=100,seed=0: 'frames_per_batch': expected a multiple of 'num_envs' (8); got 100"),
    (dict(grid={"hidden_size": (4,)}, base={"hidden_size": 8}), "base: 'hidden_size' is also in the grid"),
    (dict(base={"epochs": 0}), "base: 'epochs': expected an integer >= 1; got 0"),
    (dict(seeds=0), "seeds: expected a count >= 1 or a list of seeds >= 0; got 0"),
    (dict(seeds=(1, 1)), "seeds: expected a count >= 1 or a list of distinct seeds >= 0; got (1, 1)"),
    (dict(eval_episodes=0), "eval_episodes: expected an integer >= 1; got 0"),
])
def test_bad_specs_name_the_field_and_what_came_in(kwargs, message):
    with pytest.raises(ConfigError) as caught:
        SweepSpec(CUE, **kwargs)
    assert str(caught.value).startswith(message), str(caught.value)


def test_unknown_env_and_a_knob_the_task_lacks():
    with pytest.raises(ConfigError, match=r"^env_id: expected a registered gymnasium id .*; got 'NoSuch-v0'$"):
        SweepSpec("NoSuch-v0", {"hidden_size": (4,)})
    with pytest.raises(ConfigError, match=r"^trial delay=4,seed=0: 'delay' needs an environment with a delay"):
        SweepSpec("workbench/CartPoleNoVel-v1", {"delay": (4,)})


# ------------------------------------------------------------------------------------------ the folder
def test_a_folder_of_another_sweep_or_of_other_files_is_refused_untouched(tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / "spec.json").write_text(json.dumps(tiny({"hidden_size": (4,)}).to_dict()))
    (used / "trials.jsonl").write_text('{"key": "hidden_size=4,seed=0", "status": "ok"}\n')
    before = {p.name: p.read_bytes() for p in used.iterdir()}
    with pytest.raises(OutputPathError, match=r"^out: .* holds a sweep of another spec \(its grid differs\)"):
        run_sweep(tiny({"hidden_size": (8,)}), used)
    assert {p.name: p.read_bytes() for p in used.iterdir()} == before

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(OutputPathError, match=r"holds files that are not a sweep's \(notes.txt\)"):
        run_sweep(tiny(), other)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    with pytest.raises(OutputPathError, match=r"is a file"):
        run_sweep(tiny(), other / "notes.txt")
    with pytest.raises(ConfigError, match=r"^workers: expected an integer >= 1; got 0$"):
        run_sweep(tiny(), tmp_path / "new", workers=0)
    assert not (tmp_path / "new").exists()


def test_records_survive_a_line_cut_short(tmp_path):
    (tmp_path / "trials.jsonl").write_text('{"key": "a", "status": "ok"}\n{"key": "b", "sta')
    with pytest.warns(UserWarning, match="line 2 is not a record"):
        assert [r["key"] for r in load_records(tmp_path)] == ["a"]
    _append(tmp_path / "trials.jsonl", {"key": "c", "status": "ok", "x": float("nan")})
    with pytest.warns(UserWarning):
        records = load_records(tmp_path)
    assert [r["key"] for r in records] == ["a", "c"] and records[1]["x"] is None
    assert load_records(tmp_path / "nothing-here") == []


def test_summary_over_seeds():
    records = [{"key": f"hidden_size=4,seed={s}", "params": {"hidden_size": 4}, "seed": s, "status": "ok",
                "metrics": {"mean_return": r, "success": (r + 1) / 2}} for s, r in enumerate([0.0, 1.0, 0.5])]
    records.append({"key": "hidden_size=4,seed=9", "params": {"hidden_size": 4}, "seed": 9, "status": "failed",
                    "metrics": None, "error": "RuntimeError: boom"})
    (row,) = summarize(records)
    assert (row["trials"], row["ok"], row["failed"]) == (4, 3, 1)
    assert row["return_mean"] == pytest.approx(0.5) and row["return_std"] == pytest.approx(0.5)
    assert row["success_mean"] == pytest.approx(0.75) and row["success_std"] == pytest.approx(0.25)
    assert "hidden_size=4  3/4        0.75 ± 0.25  0.50 ± 0.50" in format_summary(records)
    rerun = dict(records[-1], status="ok", metrics={"mean_return": 1.0, "success": 1.0})
    assert latest_records(records + [rerun])[-1]["status"] == "ok"


# ------------------------------------------------------------------------------------------ on Ray
@pytest.fixture(scope="module")
def local_ray():
    pytest.importorskip("ray")
    yield from shared_ray()


def shared_ray():
    """A local Ray for a test module (``ray_session`` retries a start that hit Ray's startup timeout)."""
    from workbench.cluster import ray_session

    with ray_session(num_cpus=2):
        yield


@pytest.mark.slow
def test_a_2x2_sweep_records_every_trial_with_metrics_probes_and_checkpoints(local_ray, tmp_path):
    from workbench.checkpoints import checkpoint_metadata, load_checkpoint

    spec = tiny({"hidden_size": (4, 8), "delay": (2, 4)})
    progress, seen = [], []
    records = run_sweep(spec, tmp_path, workers=2, on_progress=lambda d, t: progress.append((d, t)),
                        on_record=seen.append)
    keys = [t.key for t in spec.trials()]
    assert [r["key"] for r in records] == keys
    assert sorted(r["key"] for r in seen) == sorted(keys)
    assert progress[0] == (0, 4) and progress[-1] == (4, 4)
    for record in records:
        assert record["status"] == "ok", record["error"]
        metrics, delay = record["metrics"], record["params"]["delay"]
        assert metrics["frames"] == 256 and len(record["curve"]) == 4
        assert [c["frames"] for c in record["curve"]] == [64, 128, 192, 256]
        assert 0.0 <= metrics["success"] <= 1.0 and -1.0 <= metrics["mean_return"] <= 1.0
        assert metrics["success"] == pytest.approx((metrics["mean_return"] + 1) / 2)  # ±1 per episode
        assert set(metrics["probe_r2"]) == {"cue", "time"}
        assert len(metrics["probe_r2_by_age"]["cue"]) == delay + 1  # one point per step of an episode
        policy, policy_spec = load_checkpoint(tmp_path / record["checkpoint"])
        assert policy_spec.hidden_size == record["params"]["hidden_size"]
        assert checkpoint_metadata(tmp_path / record["checkpoint"])["env"]["delay"] == delay
        assert record["provenance"]["train_config"]["delay"] == delay and record["worker"]
    by_key = lambda r: r["key"]  # noqa: E731  (records come back in trial order, lines in finishing order)
    assert sorted(load_records(tmp_path), key=by_key) == sorted(records, key=by_key)  # what was appended
    table = json.loads((tmp_path / "results.json").read_text())
    assert [row["key"] for row in table["trials"]] == keys and len(table["summary"]) == 4
    assert (tmp_path / "results.csv").read_text().count("\n") == 5
    assert json.loads((tmp_path / "spec.json").read_text()) == spec.to_dict()


@pytest.mark.slow
def test_a_cancelled_sweep_keeps_its_records_and_resumes_with_the_missing_trials(local_ray, tmp_path):
    spec = tiny(seeds=3)
    token = CancelToken()
    with pytest.raises(Cancelled) as caught:
        run_sweep(spec, tmp_path, workers=2, cancel=token, on_record=lambda r: token.cancel("test"))
    kept = caught.value.partial
    assert 1 <= len(kept) <= 2 and all(r["status"] == "ok" for r in kept)
    assert [r["key"] for r in load_records(tmp_path)] == [r["key"] for r in kept]
    assert (tmp_path / "results.csv").read_text().count("\n") == 1 + len(kept)  # the tables are written too

    ran = []
    records = run_sweep(spec, tmp_path, workers=2, on_record=lambda r: ran.append(r["key"]))
    all_keys = [t.key for t in spec.trials()]
    assert sorted(ran) == sorted(set(all_keys) - {r["key"] for r in kept})  # only the missing ones ran
    assert [r["key"] for r in records] == all_keys and all(r["status"] == "ok" for r in records)
    assert len(load_records(tmp_path)) == 3  # no trial recorded twice
    assert len(os.listdir(tmp_path / "checkpoints")) == 3

    again = []
    assert run_sweep(spec, tmp_path, on_record=again.append) == records and again == []  # nothing left to run


@pytest.mark.slow
def test_a_failing_trial_is_recorded_and_the_others_go_on_and_it_runs_again_on_resume(local_ray, tmp_path):
    spec = tiny({"lr": (1e-3, 1e300)})  # 1e300 passes the checks but overflows in the optimiser
    records = {r["key"]: r for r in run_sweep(spec, tmp_path, workers=2)}
    good, bad = records["lr=0.001,seed=0"], records["lr=1e+300,seed=0"]
    assert good["status"] == "ok" and good["error"] is None and Path(tmp_path / good["checkpoint"]).is_file()
    assert bad["status"] == "failed" and bad["metrics"] is None and bad["checkpoint"] is None
    assert bad["error"].startswith("RuntimeError: ") and "\n" not in bad["error"]
    assert "failed" in (tmp_path / "results.csv").read_text()

    ran = []
    run_sweep(spec, tmp_path, workers=2, on_record=lambda r: ran.append(r["key"]))
    assert ran == ["lr=1e+300,seed=0"]  # finished trials are skipped, failed ones run again
    lines = load_records(tmp_path)
    assert sorted(r["key"] for r in lines) == ["lr=0.001,seed=0", "lr=1e+300,seed=0", "lr=1e+300,seed=0"]
    assert lines[-1]["key"] == "lr=1e+300,seed=0" and lines[-1]["status"] == "failed"
