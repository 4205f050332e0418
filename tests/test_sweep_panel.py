"""widgets.sweep_panel, headless: grid controls → SweepSpec, records → table rows and heatmap as they arrive,
a failed trial with its error, Cancel keeps the finished records, bad input is a message, Open in explorer
loads the chosen trial's checkpoint into the app. A stand-in runner follows run_sweep's contract (no Ray);
one test runs the real sweep on a local Ray with a tiny budget."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from widgets.sweep_panel import SweepPanel, TrialCheckpoint, table_html
from workbench.checkpoints import checkpoint_metadata, save_checkpoint
from workbench.envs import EnvSpec
from workbench.errors import Cancelled
from workbench.policy import PolicySpec, build_policy
from workbench.session import policy_io
from workbench.sweep import SweepSpec, load_records

CUE = "workbench/CueMemory-v0"


class FakeRunner:
    """run_sweep's contract without Ray: one record per trial in order, checkpoints written for real (a GRU of the
    trial's hidden size), ``fail`` keys recorded as failed; with ``block_after`` it waits (for Cancel) once that many
    trials finished."""

    def __init__(self, *, fail=(), block_after: int | None = None):
        self.fail, self.block_after = set(fail), block_after
        self.calls: list[dict] = []
        self.arrived = threading.Event()

    def record(self, spec, trial, out: Path) -> dict:
        key = trial.key
        base = {"key": key, "params": trial.params, "seed": trial.seed, "env_id": spec.env_id,
                "provenance": {}, "worker": "test:1", "seconds": 0.1}
        if key in self.fail:
            return {**base, "status": "failed", "error": "RuntimeError: worker died", "metrics": None, "curve": [],
                    "checkpoint": None}
        config = spec.config(trial)
        policy = build_policy(PolicySpec(hidden_size=config.hidden_size), policy_io(config.env_spec()), device="cpu")
        relative = f"checkpoints/{key}.pt"
        save_checkpoint(policy, PolicySpec(hidden_size=config.hidden_size), out / relative,
                        metadata={"env_id": spec.env_id, "env": {"env_id": spec.env_id, "delay": config.delay}})
        success = round(0.5 + config.hidden_size / 100 + trial.seed / 1000, 4)  # distinct per trial
        return {**base, "status": "ok", "error": None, "checkpoint": relative,
                "metrics": {"mean_return": 2 * success - 1, "return_std": 0.1, "success": success, "solved": False,
                            "frames": 576, "train_seconds": 0.05, "probe_r2": None, "probe_r2_by_age": None},
                "curve": [{"frames": 576, "seconds": 0.05, "mean_return": 0.0, "eval_return": None}]}

    def __call__(self, spec, out, *, address=None, workers=None, cancel=None, on_progress=None, on_record=None):
        self.calls.append(dict(spec=spec, out=Path(out), address=address, workers=workers))
        out = Path(out)
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        if not (out / "spec.json").is_file():  # as run_sweep: the folder says which sweep it holds
            (out / "spec.json").write_text(json.dumps(spec.to_dict()))
        trials = spec.trials()
        done_keys = {r["key"] for r in load_records(out) if r["status"] == "ok"}
        records = [r for r in load_records(out) if r["key"] in done_keys]
        for trial in trials:
            if trial.key in done_keys:
                continue
            if self.block_after is not None and len(records) >= self.block_after:
                self.arrived.set()
                while not cancel.cancelled:
                    time.sleep(0.01)
            if cancel is not None and cancel.cancelled:
                raise Cancelled("sweep", done=len(records), total=len(trials), unit="trials", partial=list(records))
            record = self.record(spec, trial, out)
            with open(out / "trials.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")
            records.append(record)
            if on_record is not None:
                on_record(record)
            if on_progress is not None:
                on_progress(len(records), len(trials))
        return records


def panel_for(tmp_path, runner, **kw) -> SweepPanel:
    kw = {"grid": (("delay", "4, 8"), ("hidden_size", "4, 16")), "frames": 576, "out": tmp_path / "sweep", **kw}
    return SweepPanel(runner=runner, **kw)


class TestControls:
    def test_spec_from_controls(self, tmp_path):
        """Two fields' values parsed by type, seeds, the frames budget in base."""
        panel = panel_for(tmp_path, FakeRunner(), seeds=2)
        panel.field_controls[1][0].value = "lr"
        panel.field_controls[1][1].value = "0.001, 3e-4"
        spec = panel.spec()
        assert spec.env_id == CUE and spec.grid == {"delay": (4, 8), "lr": (0.001, 3e-4)}
        assert spec.seeds == (0, 1) and spec.base["total_frames"] == 576
        assert len(spec.trials()) == 8

    @pytest.mark.parametrize("field, text, match", [
        (0, "4, x", r"field 1 \(delay\): expected int values"),
        (1, "", r"field 2 \(hidden_size\): expected at least one value"),
        (0, "4, 4", "each value once"),
        (0, "0", "delay"),
    ])
    def test_bad_input_is_a_message_then_it_runs(self, tmp_path, field, text, match):
        """Bad input: nothing starts, the panel names the field; fixed, the same panel runs."""
        runner = FakeRunner()
        panel = panel_for(tmp_path, runner)
        good = panel.field_controls[field][1].value
        panel.field_controls[field][1].value = text
        assert panel.start() is None
        assert panel.last_error is not None and runner.calls == []
        import re

        assert re.search(match, panel.message), panel.message
        panel.field_controls[field][1].value = good
        panel.run()
        assert panel.last_error is None and len(panel.records) == 4

    def test_same_field_twice_is_refused(self, tmp_path):
        panel = panel_for(tmp_path, FakeRunner())
        panel.field_controls[1][0].value = "delay"
        assert panel.start() is None and "both 'delay'" in panel.message

    def test_bad_constructor_grid_raises(self):
        with pytest.raises(ValueError, match="'grid' field must be one of"):
            SweepPanel(grid=(("delay", "4"), ("nope", "1")))


class TestRunning:
    def test_records_fill_the_table_and_heatmap_as_they_arrive(self, tmp_path):
        """Each record redraws table and heatmap (on_record from the worker); the final rows match the records."""
        runner = FakeRunner(fail={"delay=8,hidden_size=4,seed=0"})
        panel = panel_for(tmp_path, runner, workers=2, address=None)
        seen = []
        panel.on_record(lambda r: seen.append((r["key"], len(panel.records),
                                               panel.figures["sweep_heatmap"].data[0].text)))
        panel.run()
        assert runner.calls[0]["workers"] == 2 and runner.calls[0]["out"] == (tmp_path / "sweep").resolve()
        assert [k for k, _, _ in seen] == [t.key for t in panel.spec().trials()]
        assert [n for _, n, _ in seen] == [1, 2, 3, 4]
        first_text = [list(row) for row in seen[0][2]]
        assert first_text == [["0.54<br>n=1", ""], ["", ""]]  # one cell filled after the first trial
        rows = panel.rows
        assert [(r["key"], r["n"], r["failed"]) for r in rows] == [
            ("delay=4,hidden_size=4", 1, 0), ("delay=4,hidden_size=16", 1, 0),
            ("delay=8,hidden_size=4", 0, 1), ("delay=8,hidden_size=16", 1, 0)]
        z = np.array(panel.figures["sweep_heatmap"].data[0].z, dtype=float)
        np.testing.assert_allclose(z, [[0.54, np.nan], [0.66, 0.66]])
        assert panel.figures["sweep_heatmap"].data[0].text[0][1] == "failed (1)"
        assert "seed 0: RuntimeError: worker died" in panel.table.value
        assert panel.message.startswith("Sweep done: 3 of 4 trial(s) finished, 1 failed")
        # the failed trial cannot be opened; the finished ones can
        assert [k for _, k in panel.trial.options] == ["delay=4,hidden_size=4,seed=0", "delay=4,hidden_size=16,seed=0",
                                                       "delay=8,hidden_size=16,seed=0"]
        assert not panel.open_button.disabled
        assert set(panel.figures) == {"sweep_heatmap", "sweep_curves"}

    def test_cancel_keeps_the_finished_records_and_a_rerun_resumes(self, tmp_path):
        runner = FakeRunner(block_after=2)
        panel = panel_for(tmp_path, runner)
        job = panel.start()
        assert runner.arrived.wait(60)
        assert panel.running and panel.open_button.disabled
        panel.cancel("test")
        panel.wait()
        assert job.state == "cancelled"
        assert [r["key"] for r in panel.records] == ["delay=4,hidden_size=4,seed=0", "delay=4,hidden_size=16,seed=0"]
        assert "Sweep cancelled (test) after 2 of 4 trial(s): the finished ones are kept" in panel.message
        assert len(panel.rows) == 2 and not panel.open_button.disabled
        # a new run in the same folder shows the kept trials at once and runs only the others
        runner.block_after = None
        panel.run()
        assert [r["key"] for r in panel.records][:2] == ["delay=4,hidden_size=4,seed=0",
                                                         "delay=4,hidden_size=16,seed=0"]
        assert len(panel.records) == 4 and panel.message.startswith("Sweep done: 4 of 4")

    def test_another_sweeps_folder_shows_none_of_its_records(self, tmp_path):
        """Records of a folder are shown at start only when it holds the same sweep."""
        panel = panel_for(tmp_path, FakeRunner())
        panel.run()
        other = panel_for(tmp_path, lambda *a, **k: [], seeds=2)  # same folder, another spec
        other.run()
        assert other.records == [] and other.table.value == ""

    def test_a_failing_runner_is_shown_and_the_panel_keeps_working(self, tmp_path):
        def broken(*args, **kwargs):
            raise RuntimeError("Ray could not start")

        panel = panel_for(tmp_path, broken)
        panel.run()
        assert panel.message == "RuntimeError: Ray could not start"
        panel.runner = FakeRunner()
        panel.run()
        assert len(panel.records) == 4 and panel.last_error is None

    def test_table_html_lists_fields_counts_and_errors(self):
        recs = [{"key": "delay=4,hidden_size=4,seed=0", "params": {"delay": 4, "hidden_size": 4}, "seed": 0,
                 "status": "ok", "metrics": {"success": 0.75, "mean_return": 0.5, "train_seconds": 1.25}},
                {"key": "delay=4,hidden_size=4,seed=1", "params": {"delay": 4, "hidden_size": 4}, "seed": 1,
                 "status": "failed", "error": "ValueError: <bad>"}]
        html = table_html(recs, ["delay", "hidden_size"])
        assert ">0.75<" in html and ">0.50<" in html and ">1.2<" in html
        assert "seed 1: ValueError: &lt;bad&gt;" in html


class TestOpenInExplorer:
    def test_trial_checkpoint_is_the_chosen_trials(self, tmp_path):
        panel = panel_for(tmp_path, FakeRunner())
        panel.run()
        panel.trial.value = "delay=8,hidden_size=16,seed=0"
        trial = panel.trial_checkpoint()
        assert isinstance(trial, TrialCheckpoint)
        assert trial.path == (tmp_path / "sweep" / "checkpoints" / "delay=8,hidden_size=16,seed=0.pt").resolve()
        assert trial.env_spec == EnvSpec(CUE, delay=8)
        with pytest.raises(ValueError, match="no trial 'nope'"):
            panel.trial_checkpoint("nope")

    def test_app_loads_the_trial_rolls_it_out_and_shows_it(self, tmp_path):
        """Open in explorer: the policy builder holds that trial's checkpoint (its hidden size), the rollout runs
        with its delay, the explorer draws it."""
        from widgets import WorkbenchApp

        app = WorkbenchApp(steps=30, sweep=dict(runner=FakeRunner(), frames=576, out=tmp_path / "sweep",
                                                grid=(("delay", "4, 6"), ("hidden_size", "4, 16"))))
        panel = app.sweep_panel
        panel.run()
        key = "delay=6,hidden_size=4,seed=0"
        panel.trial.value = key
        panel.open_button.click()
        app.rollout_panel.wait()
        assert panel.last_error is None, panel.message
        built = app.policy_panel.built
        path = (tmp_path / "sweep" / "checkpoints" / f"{key}.pt").resolve()
        assert built.source == str(path) and built.spec.hidden_size == 4
        assert checkpoint_metadata(path)["env"]["delay"] == 6
        assert built.env_spec.env_id == CUE and built.env_spec.delay == 6
        result = app.rollout_panel.result
        assert result.env_spec.delay == 6 and result.built is built
        assert app.trajectory.batch_size[1] == 30
        assert app.trajectory["next", "recurrent_state"].shape[-1] == 4
        # every decision comes at step 6 since reset: the rollout ran with the trial's delay
        from workbench.episodes import steps_since_reset
        from workbench.keys import KEYS

        obs = app.trajectory[KEYS.observation]
        since = steps_since_reset(app.trajectory[KEYS.is_init])
        assert set(since[obs[..., 1] == 1].tolist()) == {6}
        assert "hidden_heatmap" in app.explorer_panel.figures
        assert panel.message.startswith(f"Opened {key}")

    def test_a_missing_checkpoint_is_a_message(self, tmp_path):
        panel = panel_for(tmp_path, FakeRunner())
        panel.run()
        key = panel.trial.value
        (tmp_path / "sweep" / "checkpoints" / f"{key}.pt").unlink()
        opened = []
        panel.on_open(opened.append)
        panel.open_trial()
        assert opened == [] and "is not there" in panel.message


@pytest.mark.slow
def test_real_sweep_on_local_ray(tmp_path):
    """The panel's default runner: workbench.sweep.run_sweep on an embedded Ray, 2 trials of 1 batch each; the
    records fill the table and the folder holds them."""
    panel = SweepPanel(grid=(("delay", "4"), ("hidden_size", "4, 8")), frames=576, workers=2,
                       out=tmp_path / "real", eval_episodes=4)
    panel.run()
    assert panel.last_error is None, panel.message
    assert sorted(r["key"] for r in panel.records) == ["delay=4,hidden_size=4,seed=0", "delay=4,hidden_size=8,seed=0"]
    assert all(r["status"] == "ok" for r in panel.records), [r.get("error") for r in panel.records]
    assert [(r["n"], r["failed"]) for r in panel.rows] == [(1, 0), (1, 0)]
    assert len(load_records(tmp_path / "real")) == 2
    assert panel.trial_checkpoint("delay=4,hidden_size=8,seed=0").path.is_file()
    text = [list(row) for row in panel.figures["sweep_heatmap"].data[0].text]
    assert all(t[0].endswith("n=1") for t in text)


def test_spec_matches_workbench_sweep(tmp_path):
    """The panel's spec is workbench.sweep's (its checks apply)."""
    panel = panel_for(tmp_path, FakeRunner())
    assert isinstance(panel.spec(), SweepSpec)
