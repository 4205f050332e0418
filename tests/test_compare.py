"""Comparing two runs: values (workbench.compare) and the panel (widgets.compare_panel)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from workbench.compare import compare, load_run, rollout_like, toy_run
from workbench.envs import EnvSpec
from workbench.errors import Cancelled, ConfigError
from workbench.keys import KEYS
from workbench.policy import PolicySpec, build_policy, recurrent_modules
from workbench.rollout import save_trajectory
from workbench.session import Session, policy_io
from widgets.compare_panel import ComparePanel

ENV = EnvSpec("CartPole-v1", hide_velocity=True, num_envs=2, seed=5)
STEPS = 40


@pytest.fixture(scope="module")
def reference():
    """A GRU 8 (nn.GRU) rolled out for 40 steps on 2 envs, seed 5: ``(session, trajectory)``."""
    session = Session(ENV, PolicySpec(hidden_size=8), device="cpu")
    with session:
        traj = session.rollout(STEPS, seed=5, progress=False)
    return session, traj


def _policy(hidden_size: int = 8, **spec):
    return build_policy(PolicySpec(hidden_size=hidden_size, **spec), policy_io(ENV), device="cpu")


# ---------------------------------------------------------------------------- values
def test_same_policy_same_seeds_is_zero_difference(reference):
    session, ref = reference
    again = rollout_like(session.policy, ref)
    assert again.batch_size == ref.batch_size
    for env in (0, 1):
        c = compare(ref, again, env=env)
        assert c.same_size and c.max_abs_diff == 0.0
        assert c.first_divergence is None and c.first_action_difference is None
        assert np.all(c.distance == 0)
        assert c.a.resets == c.b.resets and c.a.finished == c.b.finished


def test_python_cell_and_nn_gru_with_the_same_weights_agree(reference):
    _, ref = reference
    python = _policy(8)  # the same spec and seed: the same weights
    gru = recurrent_modules(python)[0]
    gru.make_python_based()
    assert type(gru.gru).__name__ != "GRU"
    other = rollout_like(python, ref)
    c = compare(ref, other, tolerance=1e-5)
    assert c.max_abs_diff < 1e-5, c.max_abs_diff
    assert c.first_divergence is None
    # and the weights do matter: another seed diverges at once
    c2 = compare(ref, rollout_like(_policy(8, seed=1), ref))
    assert c2.first_divergence == 0 and c2.max_abs_diff > 1e-3


def test_a_perturbed_weight_diverges_where_expected(reference):
    _, ref = reference
    perturbed = _policy(8)
    with torch.no_grad():
        recurrent_modules(perturbed)[0].gru.weight_hh_l0[3, 2] += 0.5
    c = compare(ref, rollout_like(perturbed, ref))
    # h_0 = 0, so a recurrent weight first matters at the second state (step 1), never at step 0
    assert c.first_divergence == 1, c.first_divergence
    assert c.distance[0] == 0 and c.distance[1] > 0
    # a perturbation made at a known step of a hand-made run
    h = np.tanh(np.random.default_rng(0).normal(size=(30, 4))).astype(np.float32)
    h2 = h.copy()
    h2[17:, 1] += 1e-3
    c = compare(toy_run(h), toy_run(h2), tolerance=1e-4)
    assert c.first_divergence == 17 and c.max_abs_diff == pytest.approx(1e-3, rel=1e-3)
    assert compare(toy_run(h), toy_run(h2), tolerance=2e-3).first_divergence is None


def test_actions_resets_and_returns():
    a = toy_run([[0.0]] * 6, actions=[0, 1, 1, 0, 0, 1], resets=[0, 3], rewards=[1, 1, 1, 2, 2, 2])
    b = toy_run([[0.0]] * 6, actions=[0, 1, 1, 0, 1, 1], resets=[0], rewards=[1] * 6)
    c = compare(a, b)
    assert c.first_action_difference == 4
    assert (c.a.resets, c.a.finished, c.a.mean_return, c.a.total_reward) == (1, 1, 3.0, 9.0)
    assert (c.b.resets, c.b.finished, c.b.total_reward) == (0, 0, 6.0)
    assert c.resets_a.tolist() == [3] and c.resets_b.tolist() == []


def test_different_lengths_use_the_common_steps():
    c = compare(toy_run([[0.1]] * 10), toy_run([[0.1]] * 7))
    assert c.steps == 7 and c.a.steps == 10 and "first 7 steps" in c.notes[0]


def test_shared_colour_scale():
    c = compare(toy_run([[3.0, 0.0], [0.0, 0.0]]), toy_run([[0.5, 0.0], [0.0, 0.2]]))
    assert c.zmax == 3.0 and c.norm_range[1] == pytest.approx(3.0 * 1.05)


@pytest.mark.parametrize("bad, message", [
    (dict(b=TensorDict({}, [4])), "'b' must have batch size [envs, T]; got [4]"),
    (dict(b=TensorDict({KEYS.next_hidden: torch.zeros(1, 3, 1, 2)}, [1, 3])), "'b' lacks the entries"),
    (dict(env=1), "'env' must be in 0..0 (run A has 1 env(s)); got 1"),
    (dict(layer=2), "'layer' must be in 0..0 (run A has 1 layer(s)); got 2"),
    (dict(tolerance=-1.0), "'tolerance' must be a number >= 0; got -1.0"),
    (dict(b=[1, 2]), "'b' must be a trajectory TensorDict [envs, T]"),
])
def test_bad_inputs_name_the_argument(bad, message):
    args = dict(a=toy_run([[0.0, 1.0]] * 3), b=toy_run([[0.0, 1.0]] * 3))
    options = {k: v for k, v in bad.items() if k not in args}
    args.update({k: v for k, v in bad.items() if k in args})
    with pytest.raises(ConfigError) as err:
        compare(args["a"], args["b"], **options)
    assert message in str(err.value)


def test_load_run_and_rollout_like_refuse_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_run(tmp_path / "missing.pt")
    with pytest.raises(ConfigError, match="must carry the metadata"):
        rollout_like(_policy(8), toy_run([[0.0]]))


def test_trajectory_files_and_memmap_folders_are_sources(reference, tmp_path):
    session, ref = reference
    back = load_run(save_trajectory(ref, tmp_path / "traj.pt"))
    assert compare(ref, back).max_abs_diff == 0.0
    with session:
        mm = session.rollout(STEPS, seed=5, progress=False, storage="memmap", memmap_folder=tmp_path / "mm")
    assert compare(ref, load_run(tmp_path / "mm")).max_abs_diff == 0.0
    assert compare(ref, mm).first_divergence is None


def test_rollout_like_a_checkpoint_reproduces_the_reference(reference, tmp_path):
    session, ref = reference
    path = session.save_checkpoint(tmp_path / "policy.pt")
    again = rollout_like(str(path), ref)
    c = compare(ref, again)
    assert c.max_abs_diff == 0.0 and c.first_action_difference is None
    assert again.get_non_tensor("metadata")["checkpoint"]["path"].endswith("policy.pt")


def test_rollout_like_cancels_with_what_it_finished(reference):
    session, ref = reference
    from workbench.jobs import CancelToken

    token = CancelToken()

    def stop(done, total):
        if done == 5:
            token.cancel("test")

    with pytest.raises(Cancelled) as err:
        rollout_like(session.policy, ref, cancel=token, on_progress=stop)
    assert err.value.partial.batch_size == torch.Size([2, 5])


# ---------------------------------------------------------------------------- panel
def _heatmap(fig):
    return next(d for d in fig.data if d.type == "heatmap")


def test_panel_same_runs_zero_difference_and_figures(reference):
    _, ref = reference
    panel = ComparePanel()
    panel.show_runs(ref, ref, labels=("A", "A again"))
    assert panel.last_error is None, panel.message
    assert sorted(panel.figures) == ["difference", "run_a", "run_b"]
    assert panel.comparison.first_divergence is None and panel.comparison.max_abs_diff == 0
    diff = _heatmap(panel.figure("diff"))
    assert np.abs(np.asarray(diff.z)).max() == 0 and diff.zmid == 0 and diff.colorscale is not None
    assert "never differ" in panel.summary.value
    assert [o for _, o in panel.env.options] == [0, 1]
    panel.env.value = 1  # another env redraws
    assert panel.comparison.env == 1 and panel.last_error is None


def test_panel_shared_colour_scale_on_both_figures():
    panel = ComparePanel()
    panel.show_runs(toy_run([[3.0, 0.0], [0.0, 0.0]]), toy_run([[0.5, 0.0], [0.0, 0.2]]))
    za, zb = _heatmap(panel.figures["run_a"]), _heatmap(panel.figures["run_b"])
    assert (za.zmin, za.zmax) == (zb.zmin, zb.zmax) == (-3.0, 3.0)
    la, lb = _heatmap(panel.figure("a")), _heatmap(panel.figure("b"))
    assert (la.zmin, la.zmax) == (lb.zmin, lb.zmax) == (-3.0, 3.0)
    # the norm rows share their range too
    assert panel.figures["run_a"].layout.yaxis2.range == panel.figures["run_b"].layout.yaxis2.range


def test_panel_different_hidden_sizes_say_so(reference):
    _, ref = reference
    big = rollout_like(_policy(64), ref)
    panel = ComparePanel()
    panel.show_runs(ref, big, labels=("GRU 8", "GRU 64"))
    assert panel.last_error is None, panel.message
    assert "difference" not in panel.figures and "norms" in panel.figures
    assert "different sizes (GRU 8: 8 units, GRU 64: 64 units)" in panel.notice.value
    names = [d.name for d in panel.figure("diff").data]
    assert names == ["GRU 8", "GRU 64"] and all(d.type == "scatter" for d in panel.figure("diff").data)


def test_panel_linked_cursor_moves_every_figure(reference):
    _, ref = reference
    panel = ComparePanel()
    panel.show_runs(ref, rollout_like(_policy(8, seed=2), ref))
    panel.cursor.value = 12
    assert panel.view.cursor == {"t": 12, "a": [12.0], "b": [12.0], "diff": [12.0]}
    for fig in panel.figures.values():
        assert [s.x0 for s in fig.layout.shapes if s.name == "cursor"] == [12]
    # a click on any figure moves the one cursor (and every mark) there
    panel.view.clicked = {"figure": "b", "t": 30, "n": 1}
    assert panel.cursor.value == 30
    assert panel.view.cursor == {"t": 30, "a": [30.0], "b": [30.0], "diff": [30.0]}
    panel.view.clicked = {"figure": "diff", "t": 999, "n": 2}  # clamped to the last step
    assert panel.cursor.value == STEPS - 1
    # the live figures carry a cursor image each, where the view's cursor puts it
    for name in ("a", "b", "diff"):
        assert [im.name for im in panel.figure(name).layout.images] == ["cursor"]
    assert f"step {STEPS - 1}" in panel.cursor_info.value


def test_panel_checkpoint_on_the_current_seeds_reproduces_it(reference, tmp_path):
    session, ref = reference
    path = session.save_checkpoint(tmp_path / "same.pt")
    panel = ComparePanel()
    panel.set_current(ref)
    panel.source_a.kind.value = "current"
    panel.source_b.kind.value = "checkpoint"
    panel.source_b.path.value = str(path)
    panel.run()
    assert panel.last_error is None, panel.message
    c = panel.comparison
    assert c.max_abs_diff == 0.0 and c.first_divergence is None and c.first_action_difference is None
    assert "same.pt" in c.b.label and "Compared" in panel.message
    assert panel.job.state == "done" and not panel.compare_button.disabled


def test_panel_python_cell_vs_gru_by_file(reference, tmp_path):
    """nn.GRU saved as a trajectory file vs its Python cell, same weights: the difference is ~0."""
    _, ref = reference
    file = save_trajectory(ref, tmp_path / "gru.pt")
    python = _policy(8)
    recurrent_modules(python)[0].make_python_based()
    panel = ComparePanel()
    panel.set_current(rollout_like(python, ref))
    panel.source_a.kind.value = "file"
    panel.source_a.path.value = str(file)
    panel.source_b.kind.value = "current"
    panel.run()
    assert panel.last_error is None, panel.message
    assert panel.comparison.max_abs_diff < 1e-5
    assert "Python cell" in panel.comparison.b.label and "nn.GRU" in panel.comparison.a.label
    assert np.abs(np.asarray(_heatmap(panel.figures["difference"]).z)).max() < 1e-5


def test_panel_bad_inputs_are_shown_and_it_keeps_working(reference, tmp_path):
    _, ref = reference
    panel = ComparePanel()
    panel.run()  # no current rollout yet
    assert isinstance(panel.last_error, ConfigError)
    assert "run A: 'current rollout' was chosen but there is none yet" in panel.message
    panel.set_current(ref)
    panel.source_b.path.value = ""  # checkpoint without a path: refused before any work
    panel.run()
    assert "run B: 'path' must name a checkpoint; got an empty path" in panel.message and panel.job is None
    panel.source_b.kind.value = "file"
    panel.source_b.path.value = str(tmp_path / "nope.pt")
    panel.run()
    assert "no such file" in panel.message
    panel.source_b.path.value = str(tmp_path)  # a folder that holds no trajectory
    panel.run()
    assert panel.last_error is not None and "Error" in type(panel.last_error).__name__
    panel.show_runs(ref, TensorDict({}, [3]))
    assert "'b' must have batch size [envs, T]; got [3]" in panel.message
    assert panel.comparison is None and panel.figures == {}
    # a checkpoint that does not fit the environment: the rollout's error in the panel
    other = Session(EnvSpec("Pendulum-v1"), PolicySpec(hidden_size=4), device="cpu")
    panel.source_b.kind.value = "checkpoint"
    panel.source_b.path.value = str(other.save_checkpoint(tmp_path / "pendulum.pt"))
    panel.run()
    assert panel.last_error is not None and panel.job.state == "failed"
    assert not panel.compare_button.disabled
    # and then it works
    panel.source_b.kind.value = "current"
    panel.run()
    assert panel.last_error is None and sorted(panel.figures) == ["difference", "run_a", "run_b"]


def test_panel_cancel_keeps_the_previous_comparison(reference, tmp_path):
    session, ref = reference
    panel = ComparePanel()
    panel.show_runs(ref, ref)
    before = panel.comparison
    panel.set_current(ref)
    panel.source_b.path.value = str(session.save_checkpoint(tmp_path / "p.pt"))
    job = panel.compare()
    assert job is not None
    panel.cancel("test")
    panel.wait()
    if job.state == "cancelled":  # a fast machine may finish 40 steps first: then it simply compared
        assert "Comparison cancelled (test)" in panel.message and panel.comparison is before
    else:
        assert job.state == "done"
    assert not panel.compare_button.disabled


def test_app_feeds_the_compare_panel():
    from widgets.app import WorkbenchApp

    app = WorkbenchApp(PolicySpec(hidden_size=8), EnvSpec("CartPole-v1", hide_velocity=True, num_envs=2),
                       steps=20, device="cpu")
    assert app.panels["compare"] is app.compare_panel and "compare" in app.export_panel.sources
    app.build()
    app.run()
    assert app.compare_panel.current is app.trajectory
    app.compare_panel.source_b.kind.value = "current"
    app.compare_panel.run()
    assert app.compare_panel.comparison.max_abs_diff == 0
    assert "compare · difference" in [label for label, _ in app.export_panel.figure.options]
