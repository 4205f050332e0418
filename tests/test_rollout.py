"""rollout(): trajectory layout, hidden states carried and restarted (single, Serial and Parallel envs),
determinism, gates, devices, the wiring check, and trajectories on disk."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from workbench.envs import EnvSpec, make_env
from workbench.keys import KEYS
from workbench.policy import PolicySpec, recurrent_modules
from workbench.replay import replay_check
from workbench.rollout import METADATA_KEY, load_trajectory, rollout, save_trajectory, trajectory_metadata
from workbench.testing import policy_and_env
from workbench.wiring import WiringError


def recompute_next_hidden(policy, traj) -> torch.Tensor:
    """The next hidden state of every step, recomputed with a plain torch.nn.GRU, zeroed at every is_init."""
    (gru,) = recurrent_modules(policy)
    ref = nn.GRU(gru.input_size, gru.hidden_size, gru.num_layers, batch_first=True)
    ref.load_state_dict(gru.gru.state_dict())
    envs, steps = traj.batch_size
    out = torch.empty(envs, steps, gru.num_layers, gru.hidden_size)
    with torch.no_grad():
        for e in range(envs):
            h = torch.zeros(gru.num_layers, 1, gru.hidden_size)
            for t in range(steps):
                if traj[KEYS.is_init][e, t, 0]:
                    h = torch.zeros_like(h)
                _, h = ref(traj[KEYS.observation][e, t].view(1, 1, -1), h)
                out[e, t] = h[:, 0]
    return out


def assert_hidden_carried(policy, traj):
    """Hidden read = 0 at resets, = previous next hidden elsewhere; next hidden = an independent recomputation."""
    hidden, next_hidden = traj[KEYS.hidden], traj[KEYS.next_hidden]
    is_init = traj[KEYS.is_init][..., 0]
    assert hidden[is_init].abs().max() == 0
    mid = ~is_init[:, 1:]
    assert torch.equal(hidden[:, 1:][mid], next_hidden[:, :-1][mid])
    assert (hidden[:, 1:][mid].abs().amax((-1, -2)) > 0).all()  # non-zero after the first step
    torch.testing.assert_close(next_hidden, recompute_next_hidden(policy, traj), atol=1e-5, rtol=1e-5)


class TestRollout:
    def test_single_env_layout(self):
        """One env gets a leading dim of 1; every KEYS entry is there with its documented shape."""
        policy, env = policy_and_env(EnvSpec("CartPole-v1", hide_velocity=True, max_steps=10))
        traj = rollout(policy, env, 25, seed=0, progress=False, device="cpu")
        assert traj.batch_size == (1, 25)
        assert traj[KEYS.observation].shape == (1, 25, 2)
        assert traj[KEYS.true_state].shape == (1, 25, 4)
        assert traj[KEYS.hidden].shape == traj[KEYS.next_hidden].shape == (1, 25, 1, 8)
        assert traj[KEYS.reward].shape == traj[KEYS.done].shape == (1, 25, 1)
        assert traj[KEYS.is_init][0, :, 0].nonzero().flatten().tolist() == [0, 10, 20]
        assert traj[KEYS.episode][0].tolist() == [0] * 10 + [1] * 10 + [2] * 5
        assert traj[KEYS.step][0].tolist() == list(range(10)) * 2 + list(range(5))
        assert torch.equal(traj[KEYS.step], traj["step_count"][..., 0])
        assert KEYS.gates not in traj.keys()
        assert_hidden_carried(policy, traj)

    def test_episodes_end_and_restart(self):
        """CartPole episodes terminate on their own inside the rollout; is_init follows every done."""
        policy, env = policy_and_env(EnvSpec("CartPole-v1", seed=2))
        traj = rollout(policy, env, 120, seed=2, progress=False, device="cpu")
        done = traj[KEYS.done][0, :-1, 0]
        assert done.sum() >= 2
        assert torch.equal(done, traj[KEYS.is_init][0, 1:, 0])
        assert int(traj[KEYS.episode][0, -1]) == int(done.sum())
        assert_hidden_carried(policy, traj)

    def test_serial_envs(self):
        policy, env = policy_and_env(EnvSpec("Pendulum-v1", hide_velocity=True, num_envs=3, max_steps=7))
        traj = rollout(policy, env, 20, seed=1, progress=False, device="cpu")
        assert traj.batch_size == (3, 20)
        assert traj[KEYS.action].abs().max() <= 2.0
        assert_hidden_carried(policy, traj)
        assert replay_check(policy, traj).passed

    def test_parallel_env_two_workers(self):
        """The hidden state is carried through worker processes (torchrl #1406: it was zeroed there)."""
        policy, env = policy_and_env(EnvSpec("CartPole-v1", hide_velocity=True, num_envs=2, parallel=True, max_steps=15))
        try:
            traj = rollout(policy, env, 40, seed=0, progress=False, device="cpu")
        finally:
            env.close()
        assert traj.batch_size == (2, 40)
        assert_hidden_carried(policy, traj)
        assert replay_check(policy, traj).passed
        serial_policy, serial_env = policy_and_env(EnvSpec("CartPole-v1", hide_velocity=True, num_envs=2, max_steps=15))
        serial = rollout(serial_policy, serial_env, 40, seed=0, progress=False, device="cpu")
        assert torch.equal(serial[KEYS.observation], traj[KEYS.observation])
        assert torch.equal(serial[KEYS.next_hidden], traj[KEYS.next_hidden])

    def test_two_layers_and_gates(self):
        """With the Python cell recording gates: gates [E, T, L, 3, H]; z in [0, 1]; hidden carried per layer."""
        spec = PolicySpec(hidden_size=4, num_layers=2, python_based=True, record_gates=True)
        policy, env = policy_and_env(EnvSpec("Acrobot-v1", num_envs=2, max_steps=9), spec)
        traj = rollout(policy, env, 20, seed=0, progress=False, device="cpu")
        assert traj[KEYS.gates].shape == (2, 20, 2, 3, 4)
        z = traj[KEYS.gates][:, :, :, 1]
        assert z.min() >= 0 and z.max() <= 1
        assert_hidden_carried(policy, traj)

    def test_seeded_rollouts_repeat(self):
        policy, env = policy_and_env(EnvSpec("CartPole-v1", num_envs=2))
        a = rollout(policy, env, 30, seed=7, progress=False, device="cpu")
        b = rollout(policy, env, 30, seed=7, progress=False, device="cpu")
        c = rollout(policy, env, 30, seed=8, progress=False, device="cpu")
        assert torch.equal(a[KEYS.action], b[KEYS.action])
        assert torch.equal(a[KEYS.next_hidden], b[KEYS.next_hidden])
        assert not torch.equal(a[KEYS.observation], c[KEYS.observation])

    def test_deterministic_actions_are_greedy(self):
        policy, env = policy_and_env(EnvSpec("MountainCar-v0"))
        traj = rollout(policy, env, 30, seed=0, progress=False, deterministic=True, device="cpu")
        assert torch.equal(traj[KEYS.action], traj["logits"].argmax(-1))
        sampled = rollout(policy, env, 30, seed=0, progress=False, device="cpu")
        assert not torch.equal(sampled[KEYS.action], sampled["logits"].argmax(-1))

    def test_metadata(self):
        policy, env = policy_and_env(EnvSpec("CartPole-v1", hide_velocity=True))
        traj = rollout(policy, env, 5, seed=3, progress=False, device="cpu", metadata={"note": "x"})
        meta = trajectory_metadata(traj)
        assert meta["env_id"] == "CartPole-v1" and meta["seed"] == 3 and meta["steps"] == 5
        assert meta["env"]["hide_velocity"] is True
        assert meta["policy"]["hidden_size"] == 8
        assert meta["module"]["hidden_size"] == 8 and meta["module"]["python_based"] is False
        assert meta["observation_names"] == ["x", "theta"]
        assert meta["note"] == "x"

    def test_progress_bar(self, capsys):
        policy, env = policy_and_env()
        rollout(policy, env, 3, seed=0, progress=True, device="cpu")
        assert "rollout" in capsys.readouterr().err

    def test_other_hidden_key_is_renamed_to_keys(self):
        """A GRU that keeps its memory under "rs" still gives KEYS.hidden / KEYS.next_hidden in the trajectory."""
        from tensordict.nn import TensorDictModule, TensorDictSequential
        from torchrl.modules import ProbabilisticActor

        from workbench import GRUModule

        gru = GRUModule(4, 3, in_keys=[KEYS.observation, "rs"], out_keys=["features", ("next", "rs")])
        head = TensorDictModule(nn.Linear(3, 2), ["features"], ["logits"])
        env = make_env(EnvSpec(max_steps=5), gru)
        policy = ProbabilisticActor(TensorDictSequential(gru, head), in_keys=["logits"], spec=env.action_spec,
                                    distribution_class=torch.distributions.Categorical)
        traj = rollout(policy, env, 12, seed=0, progress=False, device="cpu")
        assert "rs" not in traj.keys() and ("next", "rs") not in traj.keys(True)
        assert traj[KEYS.hidden].shape == (1, 12, 1, 3)
        assert_hidden_carried(policy, traj)

    def test_bad_steps(self):
        policy, env = policy_and_env()
        with pytest.raises(ValueError, match="'steps' must be an int >= 1; got 0"):
            rollout(policy, env, 0, progress=False, device="cpu")


class TestWiringCheckedFirst:
    def test_no_primer_raises_before_any_step(self):
        policy, _ = policy_and_env()
        env = make_env(EnvSpec())  # no policy: no primer
        with pytest.raises(WiringError, match="No primer for 'recurrent_state'"):
            rollout(policy, env, 5, progress=False, device="cpu")

    def test_no_init_tracker_raises_before_any_step(self):
        from torchrl.envs import GymEnv, TransformedEnv

        policy, _ = policy_and_env()
        env = TransformedEnv(GymEnv("CartPole-v1"), recurrent_modules(policy)[0].make_tensordict_primer())
        with pytest.raises(WiringError, match="No is_init in the environment"):
            rollout(policy, env, 5, progress=False, device="cpu")

    def test_check_false_records_zero_hidden(self):
        """Without a primer and check=False the rollout runs; the hidden read is recorded as zeros."""
        policy, _ = policy_and_env()
        traj = rollout(policy, make_env(EnvSpec()), 6, seed=0, progress=False, device="cpu", check=False)
        assert traj[KEYS.hidden].abs().max() == 0
        assert traj[KEYS.next_hidden].abs().max() > 0


class TestDevices:
    @pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
    def test_cuda_unavailable(self):
        policy, env = policy_and_env()
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            rollout(policy, env, 3, progress=False, device="cuda")

    @pytest.mark.gpu
    @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: the policy on GPU, the env on CPU")
    def test_policy_on_cuda_env_on_cpu(self):
        policy, env = policy_and_env(EnvSpec("CartPole-v1", num_envs=2, max_steps=10))
        traj = rollout(policy, env, 25, seed=0, progress=False, device="cuda")
        assert next(policy.parameters()).device.type == "cuda"
        assert traj[KEYS.next_hidden].device.type == "cpu"
        assert_hidden_carried(policy.to("cpu"), traj)


class TestTrajectoryFiles:
    def test_round_trip_is_lossless(self, tmp_path):
        """Every leaf comes back bit for bit, with its dtype; the metadata too."""
        policy, env = policy_and_env(
            EnvSpec("CartPole-v1", hide_velocity=True, num_envs=2, max_steps=8),
            PolicySpec(hidden_size=4, python_based=True, record_gates=True),
        )
        traj = rollout(policy, env, 20, seed=0, progress=False, device="cpu")
        path = save_trajectory(traj, tmp_path / "runs" / "traj.pt", metadata={"label": "demo"})
        assert os.listdir(tmp_path / "runs") == ["traj.pt"]
        back = load_trajectory(path)
        assert back.batch_size == traj.batch_size
        keys = set(traj.keys(True, True))
        assert set(back.keys(True, True)) == keys
        for key in keys:
            assert back[key].dtype == traj[key].dtype and torch.equal(back[key], traj[key]), key
        assert trajectory_metadata(back) == {**trajectory_metadata(traj), "label": "demo"}
        assert METADATA_KEY in back.keys()

    def test_not_a_trajectory(self, tmp_path):
        torch.save([1, 2], tmp_path / "x.pt")
        with pytest.raises(ValueError, match="not a GRU Workbench trajectory"):
            load_trajectory(tmp_path / "x.pt")
