"""The panels, headless: build them, click their buttons, check the figures' data and the messages.

No kernel and no browser: outside a kernel widgets get a dummy comm, ``btn.click()`` runs the
callbacks and figures land in ``Output.outputs`` (see RECIPES-jupyter.md §5).
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import ipywidgets as w
import plotly.graph_objects as go
import pytest
import torch
from tensordict import TensorDict

from widgets._panel import Panel
from workbench.episodes import episode_summary
from widgets.app import WorkbenchApp
from widgets.explorer_panel import ExplorerPanel
from widgets.export_panel import ExportPanel
from widgets.policy_panel import PolicyPanel
from widgets.rollout_panel import RolloutPanel
from widgets.timing_panel import TimingPanel
from workbench import timing
from workbench.episodes import episode_and_step
from workbench.envs import EnvSpec
from workbench.errors import ConfigError
from workbench.embedded_metadata import read_metadata
from workbench.keys import KEYS
from workbench.policy import PolicySpec

PLOTLY_MIME = "application/vnd.plotly.v1+json"
SPEC = PolicySpec(hidden_size=8, python_based=True, record_gates=True)
ENV = EnvSpec("CartPole-v1", hide_velocity=True, num_envs=2, max_steps=25, seed=0)
STEPS = 60


def shown(panel: Panel, name: str) -> dict:
    """The plotly figure dict the view ``name`` displays now."""
    outputs = panel.views[name].outputs
    assert len(outputs) == 1, f"view {name!r} shows {len(outputs)} outputs"
    return outputs[0]["data"][PLOTLY_MIME]


def shapes(fig: go.Figure, name: str) -> list:
    return [s for s in fig.layout.shapes if s.name == name]


def reset_lines(fig: go.Figure) -> list:
    """The x of the reset lines drawn by every ``"resets"`` trace of ``fig`` (NaN-separated segments)."""
    xs = [x for d in fig.data if d.name == "resets" for x in d.x[::3]]
    return [float(x) for x in xs]


@pytest.fixture
def built_app() -> WorkbenchApp:
    app = WorkbenchApp(SPEC, ENV, steps=STEPS, device="cpu", timing=dict(rounds=2, block_s=0.0005))
    app.build()
    return app


@pytest.fixture(scope="module")
def toy() -> TensorDict:
    """2 envs × 12 steps × 4 units with known values: resets at t = 0, 5 (env 0) and 0, 7 (env 1).

    unit 0: 0.9 always; unit 1: 0.8 at steps 2..4, 0.1 elsewhere; unit 2: -0.95 always; unit 3: 0.
    """
    e, t, h = 2, 12, 4
    hidden = torch.zeros(e, t, 1, h)
    hidden[..., 0] = 0.9
    hidden[..., 1] = 0.1
    hidden[:, 2:5, 0, 1] = 0.8
    hidden[..., 2] = -0.95
    hidden += torch.arange(t).view(1, t, 1, 1) * 1e-3  # distinct values along time
    is_init = torch.zeros(e, t, dtype=torch.bool)
    is_init[:, 0] = True
    is_init[0, 5] = is_init[1, 7] = True
    done = torch.zeros(e, t, dtype=torch.bool)
    done[0, 4] = done[1, 6] = True
    episode, step = episode_and_step(is_init)
    return TensorDict({
        KEYS.next_hidden: hidden, KEYS.hidden: hidden, KEYS.is_init: is_init.unsqueeze(-1),
        KEYS.done: done.unsqueeze(-1), KEYS.reward: torch.ones(e, t, 1), KEYS.episode: episode, KEYS.step: step,
    }, [e, t])


# ---------------------------------------------------------------------------------------------- base
class TestPanel:
    def test_busy_shows_the_error_and_reenables_buttons(self):
        """An exception inside busy() is shown (message + collapsed traceback); the button works again."""
        panel, button = Panel(title="t"), w.Button()
        panel.buttons.append(button)
        with panel.busy("working"):
            assert button.disabled
            raise ValueError("hidden size must be positive")
        assert not button.disabled
        assert panel.message == "ValueError: hidden size must be positive"
        assert "<details" in panel.status.value and "Traceback" in panel.status.value
        with panel.busy("working"):
            pass
        assert panel.last_error is None and panel.message.startswith("Done in")

    def test_failing_listener_is_reported_and_others_still_run(self):
        """A listener that raises shows up in the emitting panel; later listeners are still called."""
        panel, seen = Panel(), []
        panel.on("figures", lambda _: 1 / 0)
        panel.on("figures", seen.append)
        panel.emit("figures", {"a": 1})
        assert seen == [{"a": 1}] and panel.message.startswith("ZeroDivisionError")
        with pytest.raises(ValueError, match="unknown event 'nope'"):
            panel.on("nope", print)

    def test_show_figure_replaces_the_output(self):
        """show_figure stores the figure and puts exactly one static plotly bundle in its view."""
        panel, events = Panel(), []
        panel.add_view("f")
        panel.on_figures(lambda figs: events.append(sorted(figs)))
        for n in (3, 5):
            panel.show_figure("f", go.Figure(go.Scatter(y=list(range(n)))))
        assert list(shown(panel, "f")["data"][0]["y"]) == [0, 1, 2, 3, 4]
        assert events == [["f"], ["f"]]


@pytest.mark.parametrize("name", ["widgets._panel", "widgets.app"])
def test_docstring_examples(name):
    """The examples in the widgets' docstrings run."""
    result = doctest.testmod(importlib.import_module(name),
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


# ---------------------------------------------------------------------------------------------- policy
class TestPolicyPanel:
    def test_build_shows_module_keys_primer_and_parameter_count(self):
        """Build emits the policy; the summary names its keys, primer shape and parameter count."""
        panel, got = PolicyPanel(SPEC, ENV), []
        panel.on_policy(got.append)
        panel.build_button.click()
        assert panel.last_error is None, panel.message
        assert len(got) == 1 and got[0].spec == SPEC and got[0].env_spec.env_id == "CartPole-v1"
        n_params = sum(p.numel() for p in got[0].policy.parameters())
        text = panel.summary.value
        assert f"{n_params:,}" in text and "<code>recurrent_state</code>" in text and "[1, 8]" in text
        assert "<code>is_init</code>" in text and "ProbabilisticActor" in text
        assert not panel.save_button.disabled

    @pytest.mark.parametrize("field, value, match", [
        ("hidden_size", 0, "'hidden_size' must be an int >= 1; got 0"),
        ("num_layers", -1, "'num_layers' must be an int >= 1"),
        ("head_cells", "32, x", "head cells: expected int values"),
    ])
    def test_invalid_input_shows_the_error_then_builds(self, field, value, match):
        """An invalid control is reported in the panel; the button is enabled and the next build works."""
        panel = PolicyPanel(SPEC, ENV)
        old = getattr(panel, field).value
        getattr(panel, field).value = value
        panel.build_button.click()
        assert match in panel.message and panel.built is None
        assert not panel.build_button.disabled and panel.save_button.disabled
        getattr(panel, field).value = old
        panel.build_button.click()
        assert panel.last_error is None and panel.built is not None

    def test_gates_need_the_python_cell(self):
        """Choosing torch.nn.GRU unticks and disables 'record gates' (the spec would reject it)."""
        panel = PolicyPanel(SPEC, ENV)
        panel.python_based.value = False
        assert panel.record_gates.disabled and not panel.record_gates.value
        assert panel.policy_spec().python_based is False

    def test_save_and_load_round_trip(self, tmp_path):
        """Save writes a checkpoint; Load rebuilds the same weights and sets the controls from its spec."""
        panel = PolicyPanel(SPEC, ENV)
        panel.build_button.click()
        panel.path.value = str(tmp_path / "ckpt" / "policy.pt")
        panel.save_button.click()
        assert Path(panel.path.value).is_file() and "Saved to" in panel.message
        original = panel.built.policy.state_dict()
        panel.hidden_size.value = 32
        panel.load_button.click()
        assert panel.last_error is None, panel.message
        assert panel.hidden_size.value == 8 and panel.built.source == panel.path.value
        assert all(torch.equal(v, panel.built.policy.state_dict()[k]) for k, v in original.items())

    def test_registered_tasks_are_offered_and_a_trained_checkpoint_picks_its_env(self):
        """The workbench/ tasks are in the list (velocities already hidden: the option is off and
        disabled); loading a shipped checkpoint selects the environment it was trained on."""
        panel = PolicyPanel(SPEC, ENV)
        assert {"workbench/CartPoleNoVel-v1", "workbench/CueMemory-v0"} <= set(panel.env_id.options)
        panel.env_id.value = "workbench/CueMemory-v0"
        assert panel.hide_velocity.disabled and not panel.hide_velocity.value
        panel.env_id.value = "CartPole-v1"
        assert not panel.hide_velocity.disabled
        panel.path.value = str(Path(__file__).resolve().parent.parent / "assets" / "agents" / "cue_memory.pt")
        panel.load_button.click()
        assert panel.last_error is None, panel.message
        assert panel.env_id.value == "workbench/CueMemory-v0" and panel.hidden_size.value == 32
        assert panel.built.env_spec.env_id == "workbench/CueMemory-v0"

    def test_load_errors(self, tmp_path):
        """A missing file, or a checkpoint for another environment, is explained in the panel."""
        panel = PolicyPanel(SPEC, ENV)
        panel.path.value = str(tmp_path / "missing.pt")
        panel.load_button.click()
        assert panel.message.startswith("FileNotFoundError: No checkpoint at")
        panel.build_button.click()
        panel.path.value = str(tmp_path / "p.pt")
        panel.save_button.click()
        panel.env_id.value = "Pendulum-v1"
        panel.load_button.click()
        assert "Select the environment it was built for" in panel.message
        assert not panel.load_button.disabled


# ---------------------------------------------------------------------------------------------- rollout
class TestRolloutPanel:
    def test_rollout_without_policy_then_with(self):
        """No policy: an error in the panel and the button stays usable; with one, the rollout runs."""
        panel, got = RolloutPanel(steps=STEPS, env_spec=ENV, device="cpu"), []
        panel.on_rollout(got.append)
        panel.run_button.click()
        panel.wait()  # the button runs it in the background
        assert "No policy to run" in panel.message and not panel.run_button.disabled and got == []
        policy_panel = PolicyPanel(SPEC, ENV)
        policy_panel.on_policy(panel.set_policy)
        policy_panel.build_button.click()
        panel.run_button.click()
        panel.wait()  # the button runs it in the background
        assert panel.last_error is None, panel.message
        traj = panel.trajectory
        assert traj.batch_size == torch.Size([2, STEPS]) and got[0].trajectory is traj
        assert traj.get(KEYS.is_init)[:, 1:].any(), "max_steps=25 must produce resets"
        assert "All checks passed" in panel.banner.value and "Replay matches the rollout" in panel.banner.value
        assert panel.summary.value.count("<tr>") == 1 + 2  # header + one row per env
        assert shown(panel, "replay_divergence")["data"]

    def test_worker_advice_is_shown_with_the_choice(self):
        """The advice (in-process is faster on a small machine, the measured 71.9 s vs 106.7 s) sits right under
        the worker-processes checkbox, in the same column, and is its tooltip too."""
        from widgets.rollout_panel import PARALLEL_ADVICE

        panel = RolloutPanel(steps=STEPS, env_spec=ENV, device="cpu")
        def parent(root, widget):
            for child in getattr(root, "children", ()):
                if child is widget:
                    return root
                found = parent(child, widget)
                if found is not None:
                    return found
            return None

        kids = list(parent(panel, panel.parallel).children)
        assert kids[kids.index(panel.parallel) + 1] is panel.parallel_advice
        assert "in-process is faster" in PARALLEL_ADVICE and "71.9 s" in PARALLEL_ADVICE
        assert "106.7 s" in PARALLEL_ADVICE and "env step is expensive" in PARALLEL_ADVICE
        assert "in-process is faster" in panel.parallel_advice.value and panel.parallel.tooltip == PARALLEL_ADVICE

    def test_new_policy_or_env_settings_mark_the_shown_rollout_stale(self):
        """After a rollout, a new policy marks its summary and diagnostics stale; the next rollout clears it.
        Changing the envs or seed marks it too, and changing it back clears it. The summary gives both reset
        counts (is_init steps = env starts + resets)."""
        panel = RolloutPanel(steps=STEPS, env_spec=ENV, device="cpu")
        policy_panel = PolicyPanel(SPEC, ENV)
        policy_panel.on_policy(panel.set_policy)
        policy_panel.build_button.click()
        assert panel.stale == "" and panel._stale_note not in panel.children  # nothing shown yet: nothing stale
        panel.run()
        assert panel.stale == ""
        counts = panel.trajectory.get(KEYS.is_init)
        n_init, n_start = int(counts.sum()), int(counts[:, 0].sum())
        assert (f"Episode starts: {n_init} is_init steps = {n_start} env starts (t = 0) + {n_init - n_start} "
                f"resets after an episode ended.") in panel.summary.value
        policy_panel.build_button.click()  # a new policy
        assert panel.stale.startswith("the summary, diagnostics and replay figure below are from the previous")
        assert "Stale:" in panel._stale_note.value and panel._stale_note.layout.display is None
        assert panel.children[list(panel.children).index(panel.header) + 1] is panel._stale_note
        panel.run()
        assert panel.stale == "" and panel._stale_note.layout.display == "none"
        panel.seed.value = 5
        assert "seed 0 → 5" in panel.stale
        panel.num_envs.value = 3
        assert "envs 2 → 3" in panel.stale and "seed 0 → 5" in panel.stale
        panel.seed.value, panel.num_envs.value = 0, 2
        assert panel.stale == ""

    def test_store_on_disk_writes_a_memmap_folder_the_explorer_reads(self, tmp_path):
        """A folder in *store on disk in*: the trajectory is written there as it runs and reopens equal;
        a folder with files in it is refused before any work, untouched, and the panel keeps working."""
        from workbench.rollout import load_trajectory

        panel = RolloutPanel(steps=STEPS, env_spec=ENV, device="cpu")
        policy_panel = PolicyPanel(SPEC, ENV)
        policy_panel.on_policy(panel.set_policy)
        policy_panel.build_button.click()
        explorer = ExplorerPanel()
        panel.on_rollout(explorer.set_trajectory)
        busy = tmp_path / "busy"
        busy.mkdir()
        (busy / "notes.txt").write_text("mine")
        panel.disk_folder.value = str(busy)
        panel.run_button.click()
        panel.wait()
        assert "busy" in panel.message and panel.trajectory is None and not panel.run_button.disabled
        assert [p.name for p in busy.iterdir()] == ["notes.txt"]
        panel.disk_folder.value = str(tmp_path / "run")
        panel.run_button.click()
        panel.wait()
        assert panel.last_error is None, panel.message
        back = load_trajectory(tmp_path / "run")
        assert torch.equal(back.get(KEYS.next_hidden), panel.trajectory.get(KEYS.next_hidden))
        assert explorer.trajectory is panel.trajectory and explorer.figures["hidden_heatmap"].data

    def test_invalid_steps_then_valid(self):
        """steps = 0 is rejected by the library and shown; the next click works."""
        panel = RolloutPanel(steps=0, env_spec=ENV, device="cpu")
        policy_panel = PolicyPanel(SPEC, ENV)
        policy_panel.on_policy(panel.set_policy)
        policy_panel.build_button.click()
        panel.run_button.click()
        panel.wait()  # the button runs it in the background
        assert "'steps' must be an int >= 1; got 0" in panel.message
        panel.steps.value = 20
        panel.run_button.click()
        panel.wait()  # the button runs it in the background
        assert panel.last_error is None and panel.trajectory.batch_size[1] == 20

    def test_device_choices_follow_torch(self):
        """CUDA is offered exactly when torch sees it."""
        values = [v for _, v in RolloutPanel().device.options]
        assert values[:2] == ["auto", "cpu"]
        assert ("cuda" in values) == torch.cuda.is_available()


def test_episode_summary_matches_the_trajectory(toy):
    """Finished episodes, returns (reward 1 per step) and the open episode's length."""
    rows = episode_summary(toy)
    assert rows[0] == {"env": 0, "finished": 1, "mean_return": 5.0, "best_return": 5.0, "mean_length": 5.0,
                       "open_steps": 7}
    assert rows[1]["finished"] == 1 and rows[1]["mean_length"] == 7.0 and rows[1]["open_steps"] == 5


# ---------------------------------------------------------------------------------------------- explorer
class TestExplorerPanel:
    def test_figures_show_the_trajectory_and_its_resets(self, toy):
        """Heatmap is unit × time of env 0, resets are marked, the norm is ‖h‖₂ (every step: 12 < columns)."""
        panel = ExplorerPanel()
        panel.set_trajectory(toy)
        assert panel.last_error is None, panel.message
        heat = panel.figures["hidden_heatmap"]
        assert heat.data[0].z.shape == (4, 12)
        assert torch.allclose(torch.as_tensor(heat.data[0].z), toy[KEYS.next_hidden][0, :, 0].T)
        assert reset_lines(heat) == [4.5]
        norm = panel.figures["hidden_norm"]
        expected = toy[KEYS.next_hidden][0, :, 0].norm(dim=-1)
        assert torch.allclose(torch.as_tensor(norm.data[0].y, dtype=torch.float32), expected)
        assert "gates" not in panel.figures and [d.name for d in panel.timeline.data] == ["hidden", "resets", "norm",
                                                                                          "resets"]
        assert [o for o in panel.episode.options] == [("all episodes", -1), ("episode 0: steps 0–4", 0),
                                                      ("episode 1: steps 5–11", 1)]
        assert panel.timeline.data[0].type == "heatmap" and reset_lines(panel.timeline) == [4.5, 4.5]
        assert panel.pca_view.data[0].type == "scattergl" and len(panel.pca_view.data[0].x) == 12

    def test_cursor_moves_on_every_figure(self, toy):
        """The cursor is a vertical line on the timeline (all rows) and a ring on the PCA point, live and static."""
        panel = ExplorerPanel()
        panel.set_trajectory(toy)
        panel.cursor.value = 7
        for fig in (panel.figures["hidden_heatmap"], panel.figures["hidden_norm"]):
            assert [(s.x0, s.x1, s.yref) for s in shapes(fig, "cursor")] == [(7, 7, "paper")]
        (ring,) = shapes(panel.figures["hidden_pca"], "cursor")
        pca = panel.pca_view  # live: the browser moves its "cursor" images to the view's cursor
        assert (ring.xanchor, ring.yanchor) == pytest.approx((pca.data[0].x[7], pca.data[0].y[7]))
        assert panel.view.cursor["t"] == 7 and panel.view.cursor["timeline"] == [7]
        assert panel.view.cursor["pca"] == pytest.approx([pca.data[0].x[7], pca.data[0].y[7]])
        timeline_marks = [i.name for i in panel.timeline.layout.images if i.name != "band"]  # band: the step range
        assert timeline_marks == [i.name for i in pca.layout.images] == ["cursor"]
        assert "step 7" in panel.cursor_info.value and "episode 1" in panel.cursor_info.value
        assert "2 steps since reset" in panel.cursor_info.value
        panel.cursor.value = 5
        assert "reset (is_init)" in panel.cursor_info.value
        assert [s.x0 for s in shapes(panel.figures["hidden_heatmap"], "cursor")] == [5]

    def test_env_episode_and_pca_3d(self, toy):
        """The env switch redraws env 1; an episode zooms the time axis, bounds the cursor and picks its PCA
        points; 3D PCA has a cursor trace."""
        panel = ExplorerPanel()
        panel.set_trajectory(toy)
        panel.env.value = 1
        assert reset_lines(panel.figures["hidden_heatmap"]) == [6.5]
        panel.episode.value = 1
        assert (panel.cursor.min, panel.cursor.max, panel.cursor.value) == (7, 11, 7)
        assert list(panel.timeline.layout.xaxis.range) == [6.5, 11.5]
        assert list(panel.figures["hidden_norm"].layout.xaxis.range) == [6.5, 11.5]
        assert list(panel.pca_view.data[0].customdata) == [7, 8, 9, 10, 11]
        panel.episode.value = -1
        assert (panel.cursor.min, panel.cursor.max) == (0, 11) and len(panel.pca_view.data[0].x) == 12
        panel.pca_dims.value = 3
        cursor = next(panel.figures["hidden_pca"].select_traces(selector=dict(name="cursor")))
        assert cursor.type == "scatter3d" and len(cursor.z) == 1
        live = next(panel.pca_view.select_traces(selector=dict(name="cursor")))
        assert live.type == "scatter3d" and not panel.pca_view.layout.images and len(panel.view.cursor["pca"]) == 3
        assert panel.last_error is None

    @pytest.mark.parametrize("absolute, expected", [(True, [0, 1, 2]), (False, [0, 1])])
    def test_select_units_by_threshold_over_a_range(self, toy, absolute, expected):
        """Units above the threshold at every step of the range are outlined and drawn aligned on resets."""
        panel = ExplorerPanel()
        panel.set_trajectory(toy)
        panel.threshold.value, panel.time_range.value, panel.absolute.value = 0.5, (2, 4), absolute
        panel.select_button.click()
        assert panel.selected_units == expected, panel.message
        for heat in (panel.figures["hidden_heatmap"], panel.timeline):
            outlines = shapes(heat, "selection")
            assert sorted(s.y0 + 0.5 for s in outlines) == expected
            assert {(s.x0, s.x1) for s in outlines} == {(1.5, 4.5)}
        fig = panel.figures["units_aligned"]
        assert [d.name for d in fig.data][:2] == [f"unit {expected[0]} (episodes)", f"unit {expected[0]} (mean)"]
        assert len(fig.data) == 2 * len(expected)
        mean_unit0 = fig.data[1].y  # episodes from resets: (0, t0), (0, t5), (1, t0), (1, t7)
        assert mean_unit0[0] == pytest.approx(0.9 + (0 + 5 + 0 + 7) / 4 * 1e-3)
        assert panel.select_units(threshold=0.99) == [] and "No unit with" in panel.units_info.value
        assert "units_aligned" not in panel.figures  # no empty figure

    def test_bad_trajectory_is_reported_and_the_old_one_kept(self, toy):
        """A wrong input shows an error in the explorer; what it showed before stays usable."""
        panel = ExplorerPanel()
        panel.set_trajectory(toy)
        panel.set_trajectory(TensorDict({"x": torch.zeros(3)}, [3]))
        assert "The explorer needs a trajectory" in panel.message
        assert panel.trajectory is toy and not panel.select_button.disabled
        panel.cursor.value = 3
        assert [s.x0 for s in shapes(panel.figures["hidden_heatmap"], "cursor")] == [3]


# ---------------------------------------------------------------------------------------------- timing
class TestTimingPanel:
    def test_runs_the_grid_and_draws_chart_and_table(self):
        """Every (case, backend, pass) is measured; the chart has a line per backend and pass."""
        panel = TimingPanel(backends=("torch", "workbench:loop"), batch=(2,), steps=(4, 8), hidden=(4,),
                            reset_rate=(0.25,), rounds=2, block_s=0.0005)
        panel.run_button.click()
        panel.wait()  # the button runs it in the background
        assert panel.last_error is None, panel.message
        assert len(panel.records) == 2 * 2 * len(timing.PASSES)
        fig = panel.figures["timing"]
        assert len(fig.data) == 2 * len(timing.PASSES) and list(fig.data[0].x) == [4, 8]
        assert panel.table.value.count("<tr>") == 1 + len(panel.records)
        assert panel.progress.bar.value == panel.progress.bar.max == 2  # cases
        assert panel.progress.text.startswith("2 / 2 cases") and panel.progress.layout.display == "none"
        panel.x_axis.value = "batch"
        assert list(panel.figures["timing"].data[0].x) == [2]
        ratio = panel.figures["timing_ratio"]  # one facet per shape (T 4, T 8), one bar per backend in each
        assert [a.text for a in ratio.layout.annotations] == ["T 4", "T 8"]
        assert [(d.legendgroup, d.xaxis) for d in ratio.data] == [("torch", "x"), ("workbench:loop", "x"),
                                                                  ("torch", "x2"), ("workbench:loop", "x2")]
        assert [float(c[3]) for c in ratio.data[0].customdata] == [1.0, 1.0]  # the floor is 1, exactly
        assert shown(panel, "timing_ratio")["data"]

    def test_line_chart_takes_an_axis_with_several_values(self):
        """One T and two hidden sizes: after the run the time-per-call chart has hidden on x (T alone would
        draw every point at one x)."""
        panel = TimingPanel(backends=("torch",), batch=(2,), steps=(4,), hidden=(4, 8), reset_rate=(0.0,),
                            passes=("forward",), rounds=2, block_s=0.0005)
        panel.run()
        assert panel.x_axis.value == "hidden" and list(panel.figures["timing"].data[0].x) == [4, 8]
        assert [a.text for a in panel.figures["timing_ratio"].layout.annotations] == ["H 4", "H 8"]

    def test_floor_sentence_and_lesson_are_shown(self):
        """The floor in one sentence above the ratio chart; the measured lesson (why the Python cell beats
        nn.GRU on the CPU) under it."""
        from widgets.timing_panel import LESSON

        panel = TimingPanel()
        kids = list(panel.children)
        ratio_view = panel.views["timing_ratio"]
        assert kids.index(panel.floor_note) + 1 == kids.index(ratio_view) == kids.index(panel.lesson) - 1
        assert "The floor is bare torch.nn.GRU" in panel.floor_note.value and "ignoring the resets" in panel.floor_note.value
        assert timing.FLOOR_TEXT.count(". ") == 0  # one sentence
        assert "beats nn.GRU" in panel.lesson.value and "0.63×" in LESSON and "1.43×" in LESSON
        assert "torchrl's Python cell" in panel.lesson.value

    def test_bad_grid_is_reported_then_runs(self):
        """A non-numeric value is named in the error; the button works again after fixing it."""
        panel = TimingPanel(backends=("workbench:loop",), batch=(2,), steps=(4,), hidden=(4,), reset_rate=(0.0,),
                            passes=("forward",), rounds=2, block_s=0.0005)
        panel.steps.value = "4, many"
        panel.run_button.click()
        panel.wait()  # the button runs it in the background
        assert "T (steps): expected int values" in panel.message and not panel.run_button.disabled
        panel.steps.value = "4"
        panel.run_button.click()
        panel.wait()  # the button runs it in the background
        assert panel.last_error is None and len(panel.records) == 1

    @pytest.mark.parametrize("control, bad, message", [
        ("batch", "2, 0", "TimingConfig: 'batch' values must be ints >= 1; got 0 in (2, 0)."),
        ("hidden", "0", "TimingConfig: 'hidden' values must be ints >= 1; got 0 in (0,)."),
        ("steps", "-3", "TimingConfig: 'steps' values must be ints >= 1; got -3 in (-3,)."),
        ("reset_rate", "0, 2", "TimingConfig: 'reset_rate' values must be numbers in [0, 1]; got 2.0 in (0.0, 2.0)."),
    ])
    def test_out_of_range_value_is_shown_then_runs(self, control, bad, message):
        """batch 0, hidden 0, T < 1, reset rate 2: the config's message in the panel, nothing timed; the
        button works again once the value is fixed."""
        panel = TimingPanel(backends=("workbench:loop",), batch=(2,), steps=(4,), hidden=(4,), reset_rate=(0.0,),
                            passes=("forward",), rounds=2, block_s=0.0005)
        good = getattr(panel, control).value
        getattr(panel, control).value = bad
        panel.run_button.click()
        panel.wait()  # the button runs it in the background
        assert panel.message == f"ConfigError: {message}"
        assert panel.records == [] and not panel.run_button.disabled
        getattr(panel, control).value = good
        panel.run_button.click()
        panel.wait()  # the button runs it in the background
        assert panel.last_error is None and len(panel.records) == 1

    def test_rounds_control_has_the_config_bounds(self):
        """The rounds control is bounded by TimingConfig.LIMITS (0 becomes 1); a bad argument raises at once."""
        panel = TimingPanel(rounds=2)
        low, high = timing.TimingConfig.LIMITS["rounds"]
        assert (panel.rounds.min, panel.rounds.max) == (low, high) == (1, 1000)
        panel.rounds.value = 0
        assert panel.rounds.value == 1 and panel.config().rounds == 1
        with pytest.raises(ConfigError, match=r"'rounds' must be an int in \[1, 1000\]; got 0"):
            TimingPanel(rounds=0)
        with pytest.raises(ConfigError, match=r"'reset_rate' values must be numbers in \[0, 1\]; got 2"):
            TimingPanel(reset_rate=(2,))


class TestTimingPanelDevice:
    """The timing panel follows the library's device rule (``resolve_device``), like the rollout panel: an
    explicit 'cuda' without CUDA selects 'cpu' and says why. CUDA's absence is simulated."""

    @pytest.fixture
    def no_cuda(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def test_cuda_without_cuda_selects_cpu_and_says_why(self, no_cuda):
        """The warning names the missing CUDA; a run then measures on the CPU."""
        panel = TimingPanel(backends=("workbench:loop",), batch=(2,), steps=(4,), hidden=(4,), reset_rate=(0.0,),
                            passes=("forward",), rounds=2, block_s=0.0005, device="cuda")
        assert panel.device.value == "cpu"
        assert panel.device_warning.startswith("device: 'cuda' was asked for but CUDA is not available")
        assert "This panel runs on 'cpu' instead." in panel.device_warning
        assert "wb-msg-warning" in panel.device_info.value
        panel.run_button.click()
        panel.wait()  # the button runs it in the background
        assert panel.last_error is None and [r["device"] for r in panel.records] == ["cpu"]

    def test_auto_without_cuda_is_cpu_without_warning(self, no_cuda):
        panel = TimingPanel(device="auto")
        assert panel.device.value == "auto" and panel.device_warning == ""
        assert "wb-msg-warning" not in panel.device_info.value
        assert panel.config().device == torch.device("cpu")

    def test_unknown_device_is_refused(self):
        with pytest.raises(ConfigError, match=r"^device: expected 'auto', 'cpu', 'cuda' or 'cuda:N'; got 'gpu'"):
            TimingPanel(device="gpu")

    def test_app_passes_its_device(self, no_cuda):
        """WorkbenchApp(device=...) reaches the timing panel too; a device in ``timing`` wins."""
        app = WorkbenchApp(SPEC, ENV, steps=STEPS, device="cuda")
        assert app.timing_panel.device.value == "cpu" and app.timing_panel.device_warning
        assert WorkbenchApp(SPEC, ENV, device="auto").timing_panel.device.value == "auto"
        assert WorkbenchApp(SPEC, ENV, device="auto", timing=dict(device="cpu")).timing_panel.device.value == "cpu"

    def test_controls_come_from_the_config_settings(self):
        """Labels, choices and bounds are TimingConfig's field settings."""
        from workbench.specs import settings

        panel = TimingPanel()
        known = settings(timing.TimingConfig)
        assert [v for _, v in panel.backends.options] == list(known["backends"].choices) == list(timing.BACKENDS)
        assert panel.steps.description == known["steps"].label == "T (steps)"
        assert panel.reset_rate.description == "reset rate" and panel.reset_rate.value == "0, 0.05"
        assert (panel.rounds.min, panel.rounds.max) == (known["rounds"].low, known["rounds"].high)


# ---------------------------------------------------------------------------------------------- export
class TestExportPanel:
    @pytest.fixture
    def panel(self):
        source = Panel()
        source.show_figure("line", go.Figure(go.Scatter(y=[1, 3, 2]), layout=dict(title=dict(text="A line"))))
        panel = ExportPanel()
        panel.add_source("demo", source)
        panel.set_metadata({"env_id": "CartPole-v1", "seed": 3})
        return panel

    def test_exports_the_chosen_formats(self, panel, tmp_path):
        """HTML and JSON are written with the metadata inside; the panel lists the paths."""
        panel.folder.value, panel.name.value = str(tmp_path / "figs"), "my-line"
        panel.format_boxes["json"].value = True
        panel.export_button.click()
        panel.wait()  # the button starts a background job
        assert panel.last_error is None, panel.message
        assert [p.name for p in panel.paths] == ["my-line.html", "my-line.json"]
        assert all(p.is_file() for p in panel.paths)
        assert read_metadata(panel.paths[1])["env_id"] == "CartPole-v1" and read_metadata(panel.paths[0])["seed"] == 3
        assert "download='my-line.html'" in panel.links_html  # a download link, named after the file
        assert f"title='{panel.paths[0].resolve()}'" in panel.links_html

    def test_unwritable_folder_shows_the_error_then_exports(self, panel, tmp_path):
        """A folder that cannot be created is named in the error; a good folder works on the next click."""
        blocker = tmp_path / "a-file"
        blocker.write_text("not a folder")
        panel.folder.value = str(blocker / "figs")
        panel.export_button.click()
        panel.wait()  # the button starts a background job
        assert panel.message.startswith("ExportError:") and "is a file" in panel.message
        assert panel.paths == [] and not panel.export_button.disabled
        panel.folder.value = str(tmp_path / "ok")
        panel.export_button.click()
        panel.wait()  # the button starts a background job
        assert panel.last_error is None and panel.paths[0].name == "line.html"

    def test_nothing_to_export(self):
        """Without figures the button explains what to do."""
        panel = ExportPanel()
        panel.export_button.click()
        panel.wait()  # the button starts a background job
        assert "No figure to export yet" in panel.message and not panel.export_button.disabled


# ---------------------------------------------------------------------------------------------- app
class TestApp:
    def test_policy_flows_to_rollout_explorer_and_export(self, built_app, tmp_path):
        """Build → rollout → explorer figures → export of an explorer figure with the rollout's metadata."""
        app = built_app
        assert app.rollout_panel.built is app.policy_panel.built
        app.run()
        assert app.errors == {}, app.errors
        assert app.explorer_panel.trajectory is app.trajectory
        assert app.explorer_panel.figures["hidden_heatmap"].data[0].z.shape == (8, STEPS)
        assert "gates" in app.explorer_panel.figures
        values = [v for _, v in app.export_panel.figure.options]
        assert {"rollout:replay_divergence", "explorer:hidden_heatmap", "explorer:hidden_pca"} <= set(values)
        app.export_panel.figure.value = "explorer:hidden_heatmap"
        app.export_panel.folder.value = str(tmp_path)
        app.export_panel.export_button.click()
        app.export_panel.wait()  # the button starts a background job
        meta = read_metadata(tmp_path / "hidden_heatmap.html")
        assert meta["env_id"] == "CartPole-v1" and meta["panel"] == "explorer" and meta["steps"] == STEPS

    def test_a_failing_callback_leaves_the_app_working(self, built_app):
        """A bad build fails in the policy panel only; the rollout still runs with the last good policy."""
        app = built_app
        good = app.policy
        app.policy_panel.hidden_size.value = -4
        app.build()
        assert set(app.errors) == {"policy"} and app.policy is good
        app.run()
        assert app.rollout_panel.last_error is None and app.explorer_panel.trajectory is app.trajectory
        app.policy_panel.hidden_size.value = 4
        app.build()
        app.run()
        assert app.errors == {} and app.explorer_panel.figures["hidden_heatmap"].data[0].z.shape == (4, STEPS)

    def test_new_policy_marks_rollout_and_explorer_stale_until_the_next_rollout(self, built_app):
        """Through the app: a new policy marks the rollout panel and the explorer stale (and the comparison
        view when the app has one); the next rollout clears them all."""
        app = built_app
        app.build()  # before any rollout: nothing to mark
        assert app.rollout_panel.stale == app.explorer_panel.stale == ""
        app.run()
        app.policy_panel.hidden_size.value = 4
        app.build()
        panels = [app.rollout_panel, app.explorer_panel] + (
            [app.compare_panel] if getattr(app, "compare_panel", None) is not None else [])
        for panel in panels:
            assert "previous policy" in panel.stale, type(panel).__name__
            assert panel._stale_note in panel.children and "Stale:" in panel._stale_note.value
        assert "GRU 8 in CartPole-v1" in app.explorer_panel.stale
        app.run()
        assert [p.stale for p in panels] == [""] * len(panels) and app.errors == {}

    def test_rollout_before_build_is_explained(self):
        """Clicking Run before Build shows what to do, and the app recovers after a build."""
        app = WorkbenchApp(SPEC, ENV, steps=20, device="cpu")
        app.run()
        assert "click 'Build policy'" in app.rollout_panel.message
        app.build()
        app.run()
        assert app.errors == {} and app.trajectory.batch_size == torch.Size([2, 20])


def test_training_curve_is_a_train_callback_that_redraws():
    """TrainingCurve keeps every row and redraws the curve; outside a kernel it prints nothing."""
    from widgets.live import LiveFigure, TrainingCurve

    curve = TrainingCurve(target=1.0)
    assert curve.figure.data[0].x == ()
    for i, ret in enumerate([0.0, float("nan"), 1.0], start=1):
        curve({"frames": 100 * i, "mean_return": ret})
    assert len(curve.history) == 3
    assert curve.figure.data[0].x == (100, 300) and curve.figure.data[1].y == (0.0, 0.5)
    live = LiveFigure(go.Figure())
    live.update(go.Figure(go.Bar(y=[3])))
    assert live.figure.data[0].y == (3,)


def test_training_curve_redraws_in_place_in_a_kernel(tmp_path):
    """In a real kernel: one output whose content is replaced, not a new display per batch; when the cell
    ends (also by an error) it is a static plotly figure holding every batch, and no widget view is left
    (a reopened notebook would read "model not found" there)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from widgets import TrainingCurve\n"
        "curve = TrainingCurve(target=2.0)\n"
        "for i in range(5):\n"
        "    curve({'frames': i + 1, 'mean_return': float(i)})\n"
        "print(curve.live)"
    ), nbformat.v4.new_code_cell(
        "failing = TrainingCurve(target=2.0)\n"
        "failing({'frames': 1, 'mean_return': 0.5})\n"
        "raise RuntimeError('training failed')"
    ), nbformat.v4.new_code_cell("print(curve.live, failing.live)")])
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    first, failed, after = (c.outputs for c in nb.cells)
    assert [o.get("text") for o in first if o["output_type"] == "stream"] == ["True\n"]  # live while the cell ran
    figures = [o for o in first if o["output_type"] == "display_data"]
    assert len(figures) == 1 and "application/vnd.jupyter.widget-view+json" not in figures[0]["data"], figures
    assert figures[0]["data"]["application/vnd.plotly.v1+json"]["data"][0]["x"] == [1, 2, 3, 4, 5]
    shown = [o for o in failed if o["output_type"] == "display_data"]
    assert len(shown) == 1 and shown[0]["data"]["application/vnd.plotly.v1+json"]["data"][0]["x"] == [1]
    assert failed[-1]["output_type"] == "error"
    assert after[0]["text"] == "False False\n"
