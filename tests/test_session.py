"""Session: one owner for a run's sizes, policy, env, trajectory, report and provenance."""

from __future__ import annotations

import hashlib

import pytest
import torch

import workbench.wiring as wiring_module
import workbench.session as session_module
from workbench.envs import EnvSpec
from workbench.workers import _OPEN_PARALLEL_ENVS
from workbench.errors import ConfigError, EnvMismatchError, WorkbenchError
from workbench.keys import KEYS
from workbench.policy import PolicySpec, policy_spec_of
from workbench.session import Session, SessionError, policy_io

SMALL = PolicySpec(hidden_size=8, head_cells=(8,))


@pytest.fixture
def envs_made(monkeypatch):
    """Counts the environments the session module makes."""
    made = []
    real = session_module.make_env

    def counting(spec, policy=None):
        made.append(spec)
        return real(spec, policy)

    monkeypatch.setattr(session_module, "make_env", counting)
    return made


def open_parallel() -> int:
    return sum(1 for env in _OPEN_PARALLEL_ENVS if not env.is_closed)


class TestState:
    def test_state_before_and_after_each_call(self, envs_made):
        """Attributes are None until the call that makes them; repr says the same."""
        session = Session(EnvSpec("CartPole-v1", max_steps=8), SMALL, device="cpu")
        assert len(envs_made) == 1  # the sizes, read once
        assert session.trajectory is session.report is session.probes is session.wiring is None
        assert "env: not made" in repr(session) and "trajectory: none" in repr(session)
        with session:
            traj = session.rollout(20, seed=1, progress=False)
            assert "env: open" in repr(session)
        assert len(envs_made) == 2  # and the one the rollout runs in
        assert session.trajectory is traj and traj.batch_size == (1, 20)
        assert session.seed == 1 and session.report is None
        assert "env: closed" in repr(session) and "trajectory: [1, 20]" in repr(session)
        report = session.diagnose()
        assert session.report is report and report.ok and report.replay.passed
        assert "report: 0 errors" in repr(session)
        assert session.probe() != {} and "probes: 3" in repr(session)
        replayed = session.replay()
        assert replayed.batch_size == traj.batch_size and "action" in replayed.keys()
        session.rollout(10, seed=2, progress=False)  # a new trajectory: its report and probes are not made yet
        assert session.report is None and session.probes is None and len(envs_made) == 3
        session.close()

    def test_calls_before_the_rollout_say_what_to_do(self):
        session = Session(EnvSpec(), SMALL, device="cpu")
        for call in (session.diagnose, session.replay, session.probe, session.figures):
            with pytest.raises(SessionError, match=r"no trajectory yet; call \.rollout\(steps\) first"):
                call()
        assert isinstance(SessionError("x"), WorkbenchError)

    @pytest.mark.parametrize("kwargs, pattern", [
        (dict(env_spec=EnvSpec()), r"exactly one of 'policy_spec' and 'checkpoint'; got neither"),
        (dict(env_spec=EnvSpec(), policy_spec=SMALL, checkpoint="x.pt"), r"got both"),
        (dict(env_spec="CartPole-v1", policy_spec=SMALL), r"'env_spec' must be an EnvSpec or None; got str"),
        (dict(env_spec=None, policy_spec=SMALL), r"'env_spec' is needed"),
        (dict(env_spec=EnvSpec(), policy_spec={"hidden_size": 8}), r"'policy_spec' must be a PolicySpec; got dict"),
        (dict(env_spec=EnvSpec(), policy_spec=SMALL, device="tpu"), r"device: expected"),
    ])
    def test_bad_arguments_name_the_argument(self, kwargs, pattern):
        with pytest.raises(ConfigError, match=pattern):
            Session(**kwargs)


class TestEnvLifecycle:
    def test_parallel_env_closed_on_exit(self):
        before = open_parallel()
        with Session(EnvSpec("CartPole-v1", num_envs=2, parallel=True, max_steps=6), SMALL, device="cpu") as session:
            assert open_parallel() == before  # nothing started yet
            session.rollout(8, seed=0, progress=False)
            assert open_parallel() == before + 1
        assert open_parallel() == before
        assert session.trajectory.batch_size == (2, 8)

    def test_parallel_env_closed_on_error(self):
        before = open_parallel()
        session = Session(EnvSpec("CartPole-v1", num_envs=2, parallel=True), SMALL, device="cpu")
        with pytest.raises(ValueError, match="'steps' must be an int >= 1"):
            session.rollout(0, progress=False)
        assert open_parallel() == before and session.trajectory is None

    def test_in_process_env_closed_on_exit_and_on_error(self):
        with Session(EnvSpec(), SMALL, device="cpu") as session:
            env = session.env
            assert not env.is_closed and session.env is env  # made once
        assert env.is_closed
        second = session.env  # made again after close
        with pytest.raises(ValueError):
            session.rollout(-3)
        assert second.is_closed and "env: closed" in repr(session)

    def test_policy_io_leaves_nothing_open(self, envs_made):
        before = open_parallel()
        io = policy_io(EnvSpec("Pendulum-v1", hide_velocity=True, num_envs=3, parallel=True))
        assert (io.observation_size, io.action_kind) == (2, "continuous")
        assert open_parallel() == before and envs_made[0].num_envs == 1 and not envs_made[0].parallel


class TestWiring:
    def test_wiring_checked_once(self, monkeypatch):
        """The rollout checks once; diagnose() and later rollouts reuse the findings."""
        calls = []
        real = wiring_module.check_wiring

        def counting(*args, **kwargs):
            calls.append(kwargs.get("strict"))
            return real(*args, **kwargs)

        monkeypatch.setattr(wiring_module, "check_wiring", counting)
        with Session(EnvSpec(max_steps=5), SMALL, device="cpu") as session:
            session.rollout(12, seed=0, progress=False)
            report = session.diagnose()
            session.rollout(6, progress=False)
            session.diagnose()
        assert calls == [True]
        assert [f.title for f in report.findings if f.title == "Policy and environment are wired"]
        assert "wiring: ok" in repr(session)


class TestCheckpoint:
    def test_checkpoint_session_makes_no_env_until_rollout(self, tmp_path, envs_made):
        with Session(EnvSpec("CartPole-v1", hide_velocity=True, max_steps=9), SMALL, device="cpu") as first:
            path = first.save_checkpoint(tmp_path / "policy.pt")
            expected = first.rollout(15, seed=3, progress=False)
        made = len(envs_made)
        session = Session(checkpoint=path, device="cpu")
        assert len(envs_made) == made  # sizes from the file
        assert session.env_spec == first.env_spec and session.policy_spec == SMALL
        assert policy_spec_of(session.policy)[1] == session.io == first.io
        assert f"from {path}" in repr(session)
        with session:
            traj = session.rollout(15, seed=3, progress=False)
        assert len(envs_made) == made + 1
        assert (traj[KEYS.next_hidden] == expected[KEYS.next_hidden]).all()

    def test_checkpoint_for_another_env_is_refused_at_rollout(self, tmp_path):
        path = Session(EnvSpec("CartPole-v1"), SMALL, device="cpu").save_checkpoint(tmp_path / "p.pt")
        session = Session(EnvSpec("Pendulum-v1"), checkpoint=path, device="cpu")
        before = open_parallel()
        with pytest.raises(EnvMismatchError, match="'Pendulum-v1' does not fit the policy"):
            session.rollout(5, progress=False)
        assert open_parallel() == before and session._env is None

    def test_checkpoint_without_env_and_no_env_spec(self, tmp_path):
        from workbench.checkpoints import save_checkpoint
        from workbench.policy import build_policy

        policy = build_policy(SMALL, policy_io(EnvSpec()), device="cpu")
        path = save_checkpoint(policy, SMALL, tmp_path / "bare.pt")
        with pytest.raises(ConfigError, match="records no environment"):
            Session(checkpoint=path)


class TestProvenance:
    def test_contents(self, tmp_path):
        with Session(EnvSpec("CartPole-v1", max_steps=5, seed=4), SMALL, device="cpu") as session:
            built = session.provenance
            session.rollout(10, seed=7, progress=False)
        meta = session.provenance
        assert built["checkpoint"] is None and "steps" not in built and built["seeds"]["rollout"] is None
        assert meta["env"] == "CartPole-v1" and EnvSpec.from_dict(meta["env_spec"]) == session.env_spec
        assert PolicySpec.from_dict(meta["policy"]) == SMALL
        assert meta["seeds"] == {"env": 4, "policy": 0, "rollout": 7}
        assert (meta["steps"], meta["num_envs"], meta["seed"]) == (10, 1, 7)
        assert meta["module"]["hidden_size"] == 8 and meta["module"]["class"] == "GRUModule"
        assert {"workbench", "torch", "torchrl", "tensordict"} <= set(meta["versions"])
        path = session.save_checkpoint(tmp_path / "p.pt")
        loaded = Session(checkpoint=path, device="cpu").provenance["checkpoint"]
        assert loaded == {"path": str(path.resolve()), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}

    def test_export_through_the_session(self, tmp_path):
        from workbench.embedded_metadata import read_metadata
        from workbench.rollout import load_trajectory, trajectory_metadata

        spec = PolicySpec(hidden_size=8, python_based=True, record_gates=True)
        with Session(EnvSpec("CartPole-v1", max_steps=6), spec, device="cpu") as session:
            session.rollout(20, seed=0, progress=False)
        session.diagnose()
        paths = session.export(tmp_path / "out", ("json",))
        names = [p.name for p in paths]
        assert names[-2:] == ["trajectory.pt", "diagnostics.txt"]
        assert {"hidden_heatmap.json", "gates.json", "replay_divergence.json"} <= set(names)
        meta = read_metadata(tmp_path / "out" / "pca_2d.json")
        assert meta["env"] == "CartPole-v1" and meta["policy"] == spec.to_dict() and meta["seeds"]["rollout"] == 0
        back = load_trajectory(tmp_path / "out" / "trajectory.pt")
        assert trajectory_metadata(back)["policy_io"] == session.io.to_dict()
        assert (tmp_path / "out" / "diagnostics.txt").read_text().startswith("0 errors")


def test_of_policy_wraps_a_built_policy_and_refuses_a_foreign_one():
    from workbench.policy import build_policy
    from workbench.session import policy_io

    env_spec = EnvSpec("CartPole-v1", max_steps=5)
    policy = build_policy(SMALL, policy_io(env_spec), device="cpu")
    with Session.of_policy(env_spec, policy, device="cpu") as session:
        session.rollout(8, seed=0, progress=False)
        assert session.policy is policy and session.policy_spec == SMALL
        assert session.diagnose().ok
    assert "env: closed" in repr(session)
    with pytest.raises(ConfigError, match="'policy' must come from workbench.policy.build_policy"):
        Session.of_policy(env_spec, torch.nn.Linear(2, 2))
