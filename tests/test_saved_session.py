"""A saved session: policy, environment, trajectory and view in one file, reopened in the app.

The library (:mod:`workbench.saved_session`) round-trips each part bit for bit, refuses what it cannot
read with one error naming the file, and writes safely; the app's *Save session* / *Open session*
(:mod:`widgets.session_bar`) put every part back where it came from, the explorer's view included.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from widgets.app import WorkbenchApp
from widgets.explorer_panel import ExplorerPanel
from workbench.checkpoints import checkpoint_of, save_checkpoint
from workbench.envs import EnvSpec, make_env
from workbench.errors import Cancelled, CheckpointError, ConfigError, OutputPathError
from workbench.jobs import CancelToken
from workbench.policy import PolicySpec, build_policy
from workbench.rollout import METADATA_KEY, rollout
from workbench.saved_session import SESSION_VERSION, load_session, read_manifest, save_session

ENV = EnvSpec("CartPole-v1", hide_velocity=True, num_envs=2, max_steps=20, seed=3)
SPEC = PolicySpec(hidden_size=8, python_based=True, record_gates=True)


@pytest.fixture(scope="module")
def run():
    """A small policy and its 2 × 60-step trajectory (with gates and several resets)."""
    policy = build_policy(SPEC, make_env(EnvSpec("CartPole-v1", hide_velocity=True)), device="cpu")
    traj = rollout(policy, make_env(ENV, policy), 60, seed=1, progress=False, device="cpu")
    return policy, traj


def save(path, run, **kw):
    policy, traj = run
    kw.setdefault("trajectory", traj)
    return save_session(path, policy=policy, policy_spec=SPEC, env_spec=ENV, **kw)


def same_tensors(a, b) -> bool:
    a, b = a.exclude(METADATA_KEY), b.exclude(METADATA_KEY)
    keys = set(a.keys(True, True))
    return keys == set(b.keys(True, True)) and all(torch.equal(a.get(k), b.get(k)) for k in keys)


class TestRoundTrip:
    def test_every_part_comes_back_bit_for_bit(self, run, tmp_path):
        """Weights, env spec, trajectory (every entry and its metadata) and view state are what was saved."""
        policy, traj = run
        path = save(tmp_path / "run.zip", run, view={"cursor": 17, "selected_units": [1, 4]},
                    metadata={"note": "lesson 3"})
        opened = load_session(path)
        saved, back = policy.state_dict(), opened.policy.state_dict()
        assert saved.keys() == back.keys() and all(torch.equal(saved[k], back[k]) for k in saved)
        assert opened.policy_spec == SPEC and opened.env_spec == ENV
        assert same_tensors(opened.trajectory, traj)
        assert opened.trajectory.get_non_tensor(METADATA_KEY) == traj.get_non_tensor(METADATA_KEY)
        assert opened.view == {"cursor": 17, "selected_units": [1, 4]}
        assert opened.metadata["note"] == "lesson 3" and opened.metadata["env"] == ENV.to_dict()
        manifest = read_manifest(path)
        assert manifest["format_version"] == SESSION_VERSION and manifest["contents"]["trajectory"]["kind"] == "embedded"
        with zipfile.ZipFile(path) as zf:  # a plain zip: the checkpoint inside loads on its own
            assert sorted(zf.namelist()) == ["env.json", "manifest.json", "policy.pt", "trajectory.pt", "view.json"]
            policy_bytes = zf.read("policy.pt")
        # provenance names the session's member (the temporary copy it was loaded from is gone)
        origin = checkpoint_of(opened.policy)
        assert origin == {"path": f"{path.resolve()}!policy.pt", "sha256": hashlib.sha256(policy_bytes).hexdigest()}

    def test_without_a_trajectory_policy_and_env_only(self, run, tmp_path):
        opened = load_session(save(tmp_path / "p.zip", run, trajectory=None))
        assert opened.trajectory is None and opened.view == {} and opened.env_spec == ENV
        assert "trajectory" not in read_manifest(tmp_path / "p.zip")["contents"]

    def test_a_memmap_trajectory_is_referenced_and_a_moved_folder_is_named(self, run, tmp_path):
        """A trajectory in a rollout's memmap folder is not copied; if the folder moves, opening says where
        it was expected and what to do."""
        policy, _ = run
        folder = tmp_path / "traj"
        traj = rollout(policy, make_env(ENV, policy), 30, seed=2, progress=False, device="cpu",
                       storage="memmap", memmap_folder=folder)
        path = save(tmp_path / "ref.zip", run, trajectory=traj)
        assert read_manifest(path)["contents"]["trajectory"] == {"kind": "folder", "folder": str(folder.resolve()),
                                                                 "batch_size": [2, 30]}
        assert path.stat().st_size < 200_000  # the policy only, not the trajectory
        opened = load_session(path)
        assert opened.trajectory_folder == folder.resolve() and same_tensors(opened.trajectory, traj)
        shutil.move(folder, tmp_path / "elsewhere")
        with pytest.raises(CheckpointError, match=r"expected its trajectory in the folder '.*traj'.*no such folder.*"
                                                  r"moved or deleted"):
            load_session(path)

    def test_embed_true_copies_a_memmap_trajectory(self, run, tmp_path):
        policy, _ = run
        traj = rollout(policy, make_env(ENV, policy), 10, seed=2, progress=False, device="cpu",
                       storage="memmap", memmap_folder=tmp_path / "t")
        path = save(tmp_path / "e.zip", run, trajectory=traj, embed=True)
        shutil.rmtree(tmp_path / "t")
        assert same_tensors(load_session(path).trajectory, traj[:, :10])


class TestSafety:
    def test_refuses_to_overwrite_unless_asked(self, run, tmp_path):
        path = save(tmp_path / "s.zip", run, view={"cursor": 1})
        with pytest.raises(OutputPathError, match="exists and would be overwritten"):
            save(path, run, view={"cursor": 2})
        assert load_session(path).view == {"cursor": 1}
        save(path, run, view={"cursor": 2}, overwrite=True)
        assert load_session(path).view == {"cursor": 2}

    def test_writes_through_a_symlink(self, run, tmp_path):
        real = tmp_path / "real.zip"
        link = tmp_path / "link.zip"
        link.symlink_to(real)  # dangling until written
        save(link, run, view={"cursor": 5}, overwrite=True)
        assert link.is_symlink() and real.is_file() and load_session(link).view == {"cursor": 5}

    def test_the_output_path_is_checked_before_any_work(self, run, tmp_path, monkeypatch):
        import workbench.checkpoints as checkpoints

        monkeypatch.setattr(checkpoints, "save_checkpoint", lambda *a, **k: pytest.fail("work before the check"))
        (tmp_path / "folder.zip").mkdir()
        with pytest.raises(OutputPathError, match="is a folder"):
            save(tmp_path / "folder.zip", run)

    def test_cancel_writes_nothing(self, run, tmp_path):
        token = CancelToken()
        token.cancel("test")
        with pytest.raises(Cancelled):
            save(tmp_path / "c.zip", run, cancel=token)
        assert list(tmp_path.iterdir()) == []

    def test_bad_arguments_are_named(self, run, tmp_path):
        with pytest.raises(ConfigError, match="'view' must hold JSON-able values"):
            save(tmp_path / "v.zip", run, view={"f": object()})
        with pytest.raises(ConfigError, match="embed=False .* in memory"):
            save(tmp_path / "v.zip", run, embed=False)


class TestCorruptFiles:
    def bad(self, tmp_path, name: str, data: bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        return path

    @pytest.mark.parametrize("data, match", [
        (b"", "the file is empty"),
        (b"hello, not a session", "the file is text"),
        (b"\x00\x01\x02binary", "not a zip archive"),
    ])
    def test_not_a_zip(self, tmp_path, data, match):
        with pytest.raises(CheckpointError, match=f"open_session: '.*x.zip': expected a GRU Workbench session.*{match}"):
            load_session(self.bad(tmp_path, "x.zip", data))

    def test_missing_file(self, tmp_path):
        with pytest.raises(CheckpointError, match="no such file"):
            load_session(tmp_path / "nothing.zip")

    def test_a_truncated_session(self, run, tmp_path):
        data = save(tmp_path / "s.zip", run).read_bytes()
        with pytest.raises(CheckpointError, match="truncated or damaged"):
            load_session(self.bad(tmp_path, "cut.zip", data[: len(data) // 2]))

    def test_a_foreign_zip_and_a_checkpoint(self, run, tmp_path):
        foreign = tmp_path / "photos.zip"
        with zipfile.ZipFile(foreign, "w") as zf:
            zf.writestr("cat.jpg", b"\xff\xd8")
        with pytest.raises(CheckpointError, match=r"with manifest.json; the zip archive holds \['cat.jpg'\]"):
            load_session(foreign)
        ckpt = save_checkpoint(run[0], SPEC, tmp_path / "policy.pt")
        with pytest.raises(CheckpointError, match="looks like a policy checkpoint"):
            load_session(ckpt)

    def rewrite(self, src: Path, dst: Path, **replace: bytes) -> Path:
        with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
            for name in zin.namelist():
                zout.writestr(name, replace.get(name.replace(".", "_"), zin.read(name)))
        return dst

    def test_a_newer_version_a_foreign_manifest_and_bad_entries(self, run, tmp_path):
        src = save(tmp_path / "s.zip", run)
        manifest = json.loads(zipfile.ZipFile(src).read("manifest.json"))
        newer = self.rewrite(src, tmp_path / "new.zip", manifest_json=json.dumps({**manifest, "format_version": 99}).encode())
        with pytest.raises(CheckpointError, match="format version 99; this workbench reads up to 1"):
            load_session(newer)
        foreign = self.rewrite(src, tmp_path / "f.zip", manifest_json=json.dumps({**manifest, "format": "x"}).encode())
        with pytest.raises(CheckpointError, match="expected a manifest with format 'gru-workbench-session'; got 'x'"):
            load_session(foreign)
        env = self.rewrite(src, tmp_path / "env.zip", env_json=b'{"env_id": "CartPole-v1", "num_envs": 0}')
        with pytest.raises(CheckpointError, match="env.json is not a valid environment spec.*'num_envs'"):
            load_session(env)
        policy = self.rewrite(src, tmp_path / "pol.zip", policy_pt=b"not a checkpoint")
        with pytest.raises(CheckpointError, match="its policy.pt is not a readable policy checkpoint"):
            load_session(policy)
        view = self.rewrite(src, tmp_path / "view.zip", view_json=b"[1, 2]")
        with pytest.raises(CheckpointError, match="view.json must hold a JSON object; got list"):
            load_session(view)


# ---------------------------------------------------------------------------- the explorer's view state
class TestExplorerViewState:
    def test_view_state_restores_into_a_fresh_explorer(self, run):
        _, traj = run
        first = ExplorerPanel()
        first.set_trajectory(traj)
        first.env.value = 1
        first.pca_dims.value = 3
        first.color.value = "episode"
        first.cursor.value = 33
        units = first.select_units(threshold=0.05, steps=(30, 34))
        assert units, "the test needs a selection"
        state = first.view_state()
        assert json.loads(json.dumps(state)) == state
        fresh = ExplorerPanel()
        fresh.set_trajectory(traj)
        fresh.restore_view_state(state)
        assert (fresh.env.value, fresh.cursor.value, fresh.pca_dims.value, fresh.color.value) == (1, 33, 3, "episode")
        assert fresh.selected_units == units and fresh.time_range.value == (30, 34)
        assert fresh.last_error is None and fresh.message.startswith("View restored: step 33")

    def test_an_episode_and_a_zoom(self, run):
        _, traj = run
        first = ExplorerPanel()
        first.set_trajectory(traj)
        episode = [v for _, v in first.episode.options][2]
        first.episode.value = episode
        first.cursor.value = first.cursor.max
        state = first.view_state()
        fresh = ExplorerPanel()
        fresh.set_trajectory(traj)
        fresh.restore_view_state(state)
        assert fresh.episode.value == episode and fresh.cursor.value == first.cursor.value
        assert (fresh.cursor.min, fresh.cursor.max) == (first.cursor.min, first.cursor.max)

    def test_what_does_not_fit_is_clamped_or_left_out_and_said(self, run):
        _, traj = run
        panel = ExplorerPanel()
        panel.set_trajectory(traj)
        panel.restore_view_state({"env": 7, "cursor": 10_000, "threshold": 3.0, "time_range": [50, 500],
                                  "color": "rainbow", "layer": "x"})
        assert panel.env.value == 0 and panel.cursor.value == 59 and panel.threshold.value == 1.0
        assert panel.time_range.value == (50, 59)
        for words in ("env=7", "cursor 10000 (clamped into 0–59)", "threshold 3 (clamped", "steps 50–500",
                      "color='rainbow'", "layer='x'"):
            assert words in panel.message, (words, panel.message)

    def test_hand_picked_units_come_back_as_they_were(self, run):
        _, traj = run
        panel = ExplorerPanel()
        panel.set_trajectory(traj)
        panel.toggle_unit(3)
        panel.toggle_unit(1)
        state = panel.view_state()
        assert state["selected_units"] == [1, 3]
        fresh = ExplorerPanel()
        fresh.set_trajectory(traj)
        fresh.restore_view_state(dict(state, selected_units=[1, 3, 99]))
        assert fresh.selected_units == [1, 3]  # not what the threshold selects over the range
        assert "units [99] (layer 0 has" in fresh.message, fresh.message


# ---------------------------------------------------------------------------- the app
@pytest.fixture
def app(run):
    app = WorkbenchApp(SPEC, ENV, steps=40, device="cpu", export_dir="exports")
    app.build()
    app.run()
    assert app.errors == {}, app.errors
    return app


def test_app_save_then_open_in_a_fresh_app(app, tmp_path):
    """Save session in one app, Open session in another: same weights, env, trajectory, cursor, selection."""
    explorer = app.explorer_panel
    explorer.env.value = 1
    explorer.cursor.value = 21
    units = explorer.select_units(threshold=0.02, steps=(18, 22))
    path = app.save_session(tmp_path / "lesson.zip")
    assert "Saved session to" in app.session_bar.message
    with pytest.raises(OutputPathError, match="exists: nothing was saved"):
        app.save_session(tmp_path / "lesson.zip")
    assert app.session_bar.save_as_button.layout.display == ""  # the conflict UI: a proposal and the tick

    fresh = WorkbenchApp(PolicySpec(hidden_size=4), EnvSpec("CartPole-v1"), steps=5, device="cpu")
    opened = fresh.open_session(path)
    assert fresh.errors == {}, fresh.errors
    saved, back = app.policy.state_dict(), fresh.policy.state_dict()
    assert all(torch.equal(saved[k], back[k]) for k in saved)
    assert fresh.policy_panel.hidden_size.value == 8 and fresh.policy_panel.hide_velocity.value is True
    assert fresh.rollout_panel.num_envs.value == 2 and fresh.rollout_panel.steps.value == 40
    assert fresh.trajectory is opened.trajectory and same_tensors(fresh.trajectory, app.trajectory)
    fx = fresh.explorer_panel
    assert fx.trajectory is opened.trajectory
    assert (fx.env.value, fx.cursor.value, fx.selected_units) == (1, 21, units)
    assert "step 21" in fx.cursor_info.value
    assert "Opened" in fresh.session_bar.message and "view restored" in fresh.session_bar.message
    fresh.run()  # the restored policy runs in the restored environment
    assert fresh.errors == {} and fresh.trajectory.batch_size == (2, 40)


def test_app_saves_policy_and_env_only_before_a_rollout(tmp_path):
    app = WorkbenchApp(SPEC, ENV, steps=5, device="cpu")
    app.build()
    app.save_session(tmp_path / "p.zip")
    assert "no rollout yet" in app.session_bar.message
    fresh = WorkbenchApp(device="cpu")
    fresh.open_session(tmp_path / "p.zip")
    assert fresh.errors == {} and fresh.trajectory is None and fresh.policy_panel.built is not None
    assert "holds no trajectory" in fresh.session_bar.message


def test_app_open_errors_show_in_the_bar_and_raise(tmp_path):
    app = WorkbenchApp(device="cpu")
    (tmp_path / "x.zip").write_text("hello")
    with pytest.raises(CheckpointError, match="the file is text"):
        app.open_session(tmp_path / "x.zip")
    assert "the file is text" in app.session_bar.message and app.trajectory is None
    with pytest.raises(RuntimeError, match="build or load a policy first"):
        app.save_session(tmp_path / "y.zip")
