"""EnvSpec validation, make_env for classic-control ids, hidden-velocity variants, seeds, primers."""

from __future__ import annotations

import pytest
import torch

from workbench.envs import VELOCITY_MASKS, EnvSpec, env_spec_of, make_env, observation_names, state_names
from workbench.keys import KEYS
from workbench.policy import PolicySpec, build_policy


class TestEnvSpec:
    @pytest.mark.parametrize(
        "kwargs, pattern",
        [
            ({"env_id": "NoSuchEnv-v9"}, r"'env_id' must be a registered gymnasium id.*got 'NoSuchEnv-v9'"),
            ({"env_id": ""}, r"'env_id' must be a gymnasium id.*got ''"),
            ({"env_id": "LunarLander-v3", "hide_velocity": True}, r"'hide_velocity=True' needs one of .*got env_id="),
            ({"num_envs": 0}, r"'num_envs' must be an int >= 1; got 0"),
            ({"max_steps": 0}, r"'max_steps' must be an int >= 1 or None; got 0"),
            ({"seed": -3}, r"'seed' must be an int >= 0 or None; got -3"),
            ({"parallel": 1}, r"'parallel' must be a bool; got 1"),
        ],
    )
    def test_errors_name_field_and_value(self, kwargs, pattern):
        with pytest.raises(ValueError, match=rf"EnvSpec: {pattern}"):
            EnvSpec(**kwargs)

    def test_round_trip(self):
        spec = EnvSpec("Pendulum-v1", hide_velocity=True, num_envs=3, parallel=True, max_steps=7, seed=None)
        assert EnvSpec.from_dict(spec.to_dict()) == spec

    def test_names(self):
        assert observation_names(EnvSpec("CartPole-v1", hide_velocity=True)) == ("x", "theta")
        assert state_names(EnvSpec("Acrobot-v1"))[-1] == "theta2_dot"
        assert observation_names(EnvSpec("LunarLander-v3")) is None


def _random_rollout(env, steps):
    return env.rollout(steps, break_when_any_done=False)


class TestMakeEnv:
    @pytest.mark.parametrize(
        "env_id, obs_size, hidden_obs_size, action_shape",
        [
            ("CartPole-v1", 4, 2, ()),
            ("Pendulum-v1", 3, 2, (1,)),
            ("Acrobot-v1", 6, 4, ()),
            ("MountainCar-v0", 2, 1, ()),
        ],
    )
    def test_classic_control(self, env_id, obs_size, hidden_obs_size, action_shape):
        """Each id builds, with InitTracker, StepCounter and the true state; the POMDP variant hides entries."""
        full = _random_rollout(make_env(EnvSpec(env_id)), 5)
        assert full[KEYS.observation].shape == (5, obs_size)
        assert full[KEYS.action].shape == (5, *action_shape)
        assert full[KEYS.is_init].flatten().tolist() == [True, False, False, False, False]
        assert full["step_count"].flatten().tolist() == [0, 1, 2, 3, 4]
        torch.testing.assert_close(full[KEYS.true_state], full[KEYS.observation], rtol=0, atol=0)
        hidden = _random_rollout(make_env(EnvSpec(env_id, hide_velocity=True)), 5)
        keep = list(VELOCITY_MASKS[env_id].keep)
        assert hidden[KEYS.observation].shape == (5, hidden_obs_size)
        assert torch.equal(hidden[KEYS.observation], hidden[KEYS.true_state][:, keep])
        assert torch.equal(hidden["next", KEYS.observation], hidden["next", KEYS.true_state][:, keep])

    def test_hidden_velocities_are_in_the_true_state(self):
        """CartPole without velocities: obs [x, theta]; true_state keeps x_dot and theta_dot, which move."""
        td = _random_rollout(make_env(EnvSpec("CartPole-v1", hide_velocity=True, seed=1)), 20)
        state = td[KEYS.true_state]
        assert state.shape == (20, 4)
        assert torch.equal(td[KEYS.observation], state[:, [0, 2]])
        assert state[:, [1, 3]].abs().max() > 0.1
        # inside an episode, the true state at t+1 is the "next" true state at t
        same_episode = ~td[KEYS.is_init][1:, 0]
        assert same_episode.sum() > 10
        assert torch.equal(td[KEYS.true_state][1:][same_episode], td["next", KEYS.true_state][:-1][same_episode])

    def test_true_state_can_be_switched_off(self):
        env = make_env(EnvSpec("CartPole-v1", true_state=False))
        assert KEYS.true_state not in env.reset().keys()

    def test_one_hot_actions(self):
        env = make_env(EnvSpec("CartPole-v1", categorical_actions=False))
        assert env.action_spec.shape == (2,)

    def test_max_steps_truncates(self):
        """StepCounter(max_steps): Pendulum truncates after 4 steps, and the next step is an is_init."""
        td = _random_rollout(make_env(EnvSpec("Pendulum-v1", max_steps=4)), 10)
        assert td["next", "truncated"].flatten().nonzero().flatten().tolist() == [3, 7]
        assert td[KEYS.is_init].flatten().nonzero().flatten().tolist() == [0, 4, 8]

    def test_seeds(self):
        """The same seed gives the same first observation, another seed another; batched envs get distinct seeds."""
        first = lambda spec: make_env(spec).reset()[KEYS.observation]  # noqa: E731
        assert torch.equal(first(EnvSpec(seed=3)), first(EnvSpec(seed=3)))
        assert not torch.equal(first(EnvSpec(seed=3)), first(EnvSpec(seed=4)))
        batched = first(EnvSpec(seed=3, num_envs=2))
        assert torch.equal(batched[0], first(EnvSpec(seed=3)))
        assert not torch.equal(batched[0], batched[1])
        assert torch.equal(batched, first(EnvSpec(seed=3, num_envs=2)))

    def test_primer_from_policy(self):
        """make_env(spec, policy) adds the GRU's hidden state, [num_envs, L, H], zero at reset."""
        spec = EnvSpec("Acrobot-v1", num_envs=3)
        policy = build_policy(PolicySpec(hidden_size=5, num_layers=2), make_env(EnvSpec("Acrobot-v1")), device="cpu")
        assert KEYS.hidden not in make_env(spec).observation_spec.keys()
        env = make_env(spec, policy)
        td = env.reset()
        assert td[KEYS.hidden].shape == (3, 2, 5)
        assert td[KEYS.hidden].abs().max() == 0
        assert env_spec_of(env) == spec

    def test_parallel_env(self):
        """parallel=True runs the envs in 2 worker processes; they match the in-process ones."""
        serial = make_env(EnvSpec("CartPole-v1", num_envs=2, seed=5))
        parallel = make_env(EnvSpec("CartPole-v1", num_envs=2, seed=5, parallel=True))
        try:
            assert type(parallel.base_env).__name__ == "ParallelEnv"
            assert type(serial.base_env).__name__ == "SerialEnv"
            assert torch.equal(parallel.reset()[KEYS.observation], serial.reset()[KEYS.observation])
            assert torch.equal(parallel.reset()[KEYS.true_state], serial.reset()[KEYS.true_state])
        finally:
            parallel.close()
            serial.close()


def test_cue_task_takes_a_delay_that_sets_its_episode_length():
    from workbench.envs import EnvSpec, make_env

    for delay in (3, 100):  # 100: past the registered 64-step limit, which follows the delay
        env = make_env(EnvSpec("workbench/CueMemory-v0", delay=delay, seed=0))
        try:
            td = env.rollout(1000, break_when_any_done=True)
        finally:
            env.close()
        assert td.shape[-1] == delay + 1
        assert td["next", "terminated"][-1].all() and td["next", "terminated"].sum() == 1 and not td["next", "truncated"].any()


def test_delay_on_a_task_without_one_is_an_error():
    from workbench.envs import EnvSpec
    from workbench.errors import ConfigError
    from workbench.train import TrainConfig

    with pytest.raises(ConfigError, match=r"^EnvSpec: 'delay' needs an environment with a delay "
                                          r"\(workbench/CueMemory-v0\); got env_id='CartPole-v1'"):
        EnvSpec("CartPole-v1", delay=4)
    with pytest.raises(ConfigError, match=r"^TrainConfig: 'delay' needs an environment with a delay"):
        TrainConfig(delay=4)  # the default env, CartPoleNoVel, has none
    assert TrainConfig(env_id="workbench/CueMemory-v0", delay=5).env_spec().delay == 5


def test_a_checkpoint_trained_with_a_delay_records_it(tmp_path):
    from workbench.checkpoints import checkpoint_metadata, recorded_env
    from workbench.cli import main
    from workbench.train import TrainConfig, train

    config = TrainConfig(env_id="workbench/CueMemory-v0", delay=3, total_frames=32, num_envs=2,
                         frames_per_batch=32, epochs=1, hidden_size=4, head_cells=(4,), progress=False)
    train(config, tmp_path / "cue.pt")
    assert recorded_env(checkpoint_metadata(tmp_path / "cue.pt")) == {"env_id": "workbench/CueMemory-v0", "delay": 3}
    assert main(["evaluate", str(tmp_path / "cue.pt"), "--episodes", "2"]) == 0  # evaluated with delay 3
    assert main(["evaluate", str(tmp_path / "cue.pt"), "--episodes", "2", "--env", "CartPole-v1", "--delay", "3"]) == 2
