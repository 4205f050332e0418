"""Partially observed tasks, recurrent PPO training, and the train/evaluate commands."""
from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from workbench import tasks  # noqa: F401  (registers the ids)
from workbench.envs import EnvSpec, make_env, observation_names, state_names
from workbench.tasks import CueMemoryEnv

REPO = Path(__file__).resolve().parent.parent
CHECKPOINTS = REPO / "assets" / "agents"
TASK_IDS = ["workbench/CartPoleNoVel-v1", "workbench/PendulumNoVel-v1", "workbench/CueMemory-v0"]


def run_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


@pytest.mark.parametrize("env_id", TASK_IDS)
def test_tasks_are_registered_and_work_through_make_env(env_id):
    assert env_id in gym.envs.registry
    spec = EnvSpec(env_id, num_envs=2, seed=0)
    env = make_env(spec)
    td = env.rollout(20, break_when_any_done=False)
    obs, state = td["observation"], td["true_state"]
    assert obs.shape[:2] == state.shape[:2] == (2, 20)
    assert obs.shape[-1] == len(observation_names(spec))
    assert state.shape[-1] == len(state_names(spec))
    env.close()


def test_velocity_hidden_tasks_show_positions_and_report_velocities():
    cart = gym.make("workbench/CartPoleNoVel-v1")
    obs, info = cart.reset(seed=3)
    assert obs.shape == (2,) and np.allclose(obs, info["true_state"][[0, 2]])
    obs, _, _, _, info = cart.step(1)
    assert np.allclose(obs, info["true_state"][[0, 2]]) and info["true_state"][1] != 0
    assert cart.spec.max_episode_steps == 500
    pend = gym.make("workbench/PendulumNoVel-v1")
    obs, info = pend.reset(seed=3)
    assert obs.shape == (2,) and np.allclose(obs, info["true_state"][:2])
    assert pend.spec.max_episode_steps == 200


@pytest.mark.parametrize("seed", range(6))
def test_cue_is_visible_only_at_the_start_and_rewarded_at_the_decision(seed):
    env = CueMemoryEnv(delay=8, cue_steps=2)
    obs, info = env.reset(seed=seed)
    cue = obs[0]
    assert cue in (-1.0, 1.0) and info["true_state"][0] == cue
    seen = [obs]
    for _ in range(8):
        obs, reward, terminated, truncated, info = env.step(seed % 2)
        assert reward == 0.0 and not terminated and not truncated
        assert info["true_state"][0] == cue  # the probe target stays
        seen.append(obs)
    seen = np.stack(seen)
    assert (seen[:2, 0] == cue).all() and (seen[2:, 0] == 0).all()
    assert (seen[:-1, 1] == 0).all() and seen[-1, 1] == 1  # the decision flag, last step only
    right = 1 if cue > 0 else 0
    _, reward, terminated, _, info = env.step(right)
    assert reward == 1.0 and terminated and info["correct"] is True
    env.reset(seed=seed)
    for _ in range(8):
        env.step(0)
    _, reward, terminated, _, info = env.step(1 - right)
    assert reward == -1.0 and terminated and info["correct"] is False


def test_cue_task_is_deterministic_under_seed_and_draws_both_cues():
    cues = [gym.make("workbench/CueMemory-v0").reset(seed=s)[0][0] for s in range(20)]
    again = [gym.make("workbench/CueMemory-v0").reset(seed=s)[0][0] for s in range(20)]
    assert cues == again and set(cues) == {-1.0, 1.0}


def test_tiny_training_run_writes_a_checkpoint_that_evaluates(tmp_path):
    from workbench.checkpoints import checkpoint_metadata, load_checkpoint
    from workbench.train import TrainConfig, evaluate, train

    rows = []
    cfg = TrainConfig(env_id="workbench/CueMemory-v0", total_frames=256, num_envs=4, frames_per_batch=128,
                      epochs=2, minibatches=2, hidden_size=8, head_cells=(8,), progress=False)
    history = train(cfg, tmp_path / "cue.pt", callback=rows.append)
    assert rows == history and [h["frames"] for h in history] == [128, 256]
    assert all(math.isfinite(h["loss_objective"]) and math.isfinite(h["loss_critic"]) for h in history)
    assert history[0]["episodes"] > 0  # 9-step episodes: many end in 32 steps
    policy, spec = load_checkpoint(tmp_path / "cue.pt")
    assert spec.hidden_size == 8
    meta = checkpoint_metadata(tmp_path / "cue.pt")
    assert meta["env_id"] == "workbench/CueMemory-v0" and meta["frames"] == 256
    returns = evaluate(policy, "workbench/CueMemory-v0", 6)
    assert len(returns) == 6 and set(returns) <= {-1.0, 1.0}


MEAN_LINE = re.compile(r"^mean_return=(-?\d+(\.\d+)?)$")


def test_train_and_evaluate_commands(tmp_path):
    out = tmp_path / "cart.pt"
    done = run_cli("train", "--env", "workbench/CartPoleNoVel-v1", "--out", str(out), "--steps", "256",
                   "--num-envs", "2", "--frames-per-batch", "128", "--epochs", "1", "--hidden-size", "8",
                   "--no-progress")
    assert done.returncode == 0, done.stderr
    assert out.is_file() and "wrote" in done.stdout
    result = run_cli("evaluate", str(out), "--episodes", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert "std" in result.stdout
    match = MEAN_LINE.match(lines[-1])
    assert match, lines[-1]
    assert 1 <= float(match.group(1)) <= 500


def test_evaluate_reports_errors_without_a_traceback(tmp_path):
    result = run_cli("evaluate", str(tmp_path / "missing.pt"))
    assert result.returncode == 2 and "workbench evaluate: error" in result.stderr


@pytest.mark.skipif(not (CHECKPOINTS / "cue_memory.pt").is_file(), reason="no shipped cue checkpoint")
def test_shipped_cue_checkpoint_decides_correctly():
    result = run_cli("evaluate", str(CHECKPOINTS / "cue_memory.pt"), "--episodes", "200")
    assert result.returncode == 0, result.stderr
    rate = float(re.search(r"correct_decisions=([\d.]+)", result.stdout).group(1))
    assert rate >= 0.95, result.stdout


@pytest.mark.skipif(not (CHECKPOINTS / "cartpole_novel.pt").is_file(), reason="no shipped CartPole checkpoint")
def test_shipped_cartpole_checkpoint_balances():
    result = run_cli("evaluate", str(CHECKPOINTS / "cartpole_novel.pt"), "--episodes", "20", timeout=300)
    assert result.returncode == 0, result.stderr
    mean = float(MEAN_LINE.match(result.stdout.strip().splitlines()[-1]).group(1))
    assert mean >= 475, result.stdout


def test_tiny_training_run_with_continuous_actions(tmp_path):
    from workbench.checkpoints import load_checkpoint
    from workbench.train import TrainConfig, evaluate, train

    cfg = TrainConfig(env_id="workbench/PendulumNoVel-v1", total_frames=256, num_envs=2, frames_per_batch=256,
                      epochs=1, hidden_size=8, head_cells=(8,), progress=False)
    history = train(cfg, tmp_path / "pendulum.pt")
    assert math.isfinite(history[-1]["loss_objective"]) and history[-1]["episodes"] == 0  # 200-step episodes
    policy, _ = load_checkpoint(tmp_path / "pendulum.pt")
    returns = evaluate(policy, "workbench/PendulumNoVel-v1", 2)
    assert len(returns) == 2 and all(r < 0 for r in returns)


def test_cue_decisions_judges_each_decision():
    import torch
    from tensordict import TensorDict

    from workbench.tasks import cue_decisions

    env = CueMemoryEnv(delay=2, cue_steps=1)
    obs, states, actions = [], [], []
    for seed, act in ((0, 1), (1, 1), (2, 0)):
        o, info = env.reset(seed=seed)
        for step in range(3):
            obs.append(o)
            states.append(info["true_state"])
            actions.append(act if step == 2 else 0)
            o, _, _, _, info = env.step(actions[-1])
    td = TensorDict({"observation": torch.tensor(np.array(obs))[None], "true_state": torch.tensor(np.array(states))[None],
                     "action": torch.tensor(actions)[None]}, [1, 9])
    cues = td["true_state"][0, ::3, 0]
    expected = [(a == 1) == (c > 0) for a, c in zip((1, 1, 0), cues.tolist())]
    assert expected == [True, False, False]  # cues +1, -1, +1 under seeds 0, 1, 2
    assert cue_decisions(td).tolist() == expected
    one_hot = torch.nn.functional.one_hot(td["action"], 2)
    assert cue_decisions(td, one_hot).tolist() == expected
    with pytest.raises(ValueError, match=r"'action' must be \[E, T\] like the trajectory \(1, 9\).*got \(9,\)"):
        cue_decisions(td, td["action"][0])


def _tiny_cue_config(**overrides):
    from workbench.train import TrainConfig

    base = dict(env_id="workbench/CueMemory-v0", total_frames=384, num_envs=4, frames_per_batch=128, epochs=1,
                hidden_size=8, head_cells=(8,), progress=False)
    return TrainConfig(**{**base, **overrides})


def test_cancel_between_batches_keeps_the_history_and_the_weights(tmp_path):
    from workbench.checkpoints import checkpoint_metadata, load_checkpoint
    from workbench.errors import Cancelled
    from workbench.jobs import CancelToken
    from workbench.train import train

    token, rows, progress = CancelToken(), [], []

    def on_progress(done, total):
        progress.append((done, total))
        token.cancel("test")
    with pytest.raises(Cancelled) as info:
        train(_tiny_cue_config(), tmp_path / "cue.pt", callback=rows.append, cancel=token, on_progress=on_progress)
    err = info.value
    assert (err.what, err.done, err.total, err.unit) == ("train", 128, 384, "frames")
    assert str(err) == "train: cancelled after 128 of 384 frames"
    assert progress == [(128, 384)] and err.partial == rows and [r["frames"] for r in rows] == [128]
    assert err.checkpoint == tmp_path / "cue.partial.pt" and not (tmp_path / "cue.pt").exists()
    meta = checkpoint_metadata(err.checkpoint)
    assert meta["frames"] == 128 and meta["interrupted"] is True
    assert load_checkpoint(err.checkpoint)[1].hidden_size == 8


def test_cancel_before_the_first_batch_and_inside_an_update(tmp_path, monkeypatch):
    from workbench import ppo
    from workbench.checkpoints import checkpoint_metadata
    from workbench.errors import Cancelled
    from workbench.jobs import CancelToken
    from workbench.train import train

    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled, match="cancelled after 0 of 384 frames") as info:
        train(_tiny_cue_config(), tmp_path / "a.pt", cancel=token)
    assert info.value.partial == [] and info.value.checkpoint is None and list(tmp_path.iterdir()) == []

    token, update = CancelToken(), ppo.PPOUpdate.__call__

    def cancel_in_second_update(self, data, index, **kwargs):
        if index == 1:
            token.cancel("during the update")
        return update(self, data, index, **kwargs)
    monkeypatch.setattr(ppo.PPOUpdate, "__call__", cancel_in_second_update)
    with pytest.raises(Cancelled) as info:
        train(_tiny_cue_config(epochs=2), tmp_path / "b.pt", cancel=token)
    assert info.value.done == 128 and [r["frames"] for r in info.value.partial] == [128]  # batch 2 did not count
    assert checkpoint_metadata(info.value.checkpoint)["frames"] == 128


def test_a_solve_return_reached_at_once_stops_after_the_first_evaluation(tmp_path):
    """-1 is the cue task's lowest return: the first greedy evaluation solves it, and training stops there."""
    from workbench.checkpoints import checkpoint_metadata, load_checkpoint
    from workbench.train import GreedyEvaluation, train

    config = _tiny_cue_config(solve_return=-1.0, eval_every=128, eval_episodes=6)
    rows = []
    history = train(config, tmp_path / "cue.pt", callback=rows.append)
    assert rows == history and [h["frames"] for h in history] == [128]
    row = history[-1]
    assert row["solved"] is True and -1.0 <= row["eval_return"] <= 1.0
    meta = checkpoint_metadata(tmp_path / "cue.pt")
    assert meta["solved"] is True and meta["solved_frames"] == meta["frames"] == 128
    assert meta["solve_return"] == -1.0 and meta["eval_return"] == row["eval_return"]
    assert 0 <= meta["solved_seconds"] <= row["seconds"] + 0.1
    policy, _ = load_checkpoint(tmp_path / "cue.pt")  # the saved weights are the ones that were evaluated
    greedy = GreedyEvaluation(policy, config)
    try:
        assert greedy.mean_return() == row["eval_return"]
    finally:
        greedy.close()


def test_an_unreached_solve_return_trains_every_frame_and_evaluates_on_schedule(tmp_path):
    from workbench.checkpoints import checkpoint_metadata
    from workbench.train import train

    config = _tiny_cue_config(solve_return=2.0, eval_every=256, eval_episodes=4)  # the cue task pays at most 1
    history = train(config, tmp_path / "cue.pt")
    assert [h["frames"] for h in history] == [128, 256, 384]
    evaluated = [not math.isnan(h["eval_return"]) for h in history]
    assert evaluated == [False, True, True]  # at the multiple of eval_every, and after the last batch
    assert not any(h["solved"] for h in history)
    assert all(h["eval_return"] in {-1.0, -0.5, 0.0, 0.5, 1.0} for h in history[1:])  # means of 4 returns of ±1
    meta = checkpoint_metadata(tmp_path / "cue.pt")
    assert meta["solved"] is False and meta["solved_frames"] is None and meta["frames"] == 384
    assert meta["eval_return"] == history[-1]["eval_return"]
    plain = train(_tiny_cue_config())  # no evaluation asked: none runs
    assert all(math.isnan(h["eval_return"]) and h["solved"] is False for h in plain)


def test_solve_return_needs_evaluations():
    from workbench.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^TrainConfig: 'eval_every': expected frames between evaluations "
                                          r"\(>= 1\) when 'solve_return' is set \(475\); got 0$"):
        _tiny_cue_config(solve_return=475)
    with pytest.raises(ConfigError, match=r"'eval_episodes': expected an integer >= 1; got 0"):
        _tiny_cue_config(eval_every=128, eval_episodes=0)


def test_greedy_evaluation_runs_one_greedy_episode_per_environment():
    """The in-training evaluation agrees with a hand-run greedy rollout of the same starts."""
    from workbench.policy import PolicySpec, build_policy
    from workbench.session import policy_io
    from workbench.train import GreedyEvaluation

    config = _tiny_cue_config(delay=3, eval_every=32, eval_episodes=5)
    actor = build_policy(PolicySpec(hidden_size=4, seed=3), policy_io(config.env_spec()))
    greedy = GreedyEvaluation(actor, config)
    try:
        returns = greedy.returns()
    finally:
        greedy.close()
    assert len(returns) == 5 and set(returns) <= {-1.0, 1.0}
    import torch
    from torchrl.envs.utils import ExplorationType, set_exploration_type

    from workbench.ppo import make_train_env

    env = make_train_env(config.env_spec(num_envs=5, seed=GreedyEvaluation.EVAL_SEED + config.seed), actor)
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        env.set_seed(GreedyEvaluation.EVAL_SEED + config.seed)
        td = env.rollout(4, actor, break_when_any_done=False)  # delay 3: 4-step episodes
    env.close()
    assert td["next", "done"][:, -1].all() and not td["next", "done"][:, :-1].any()
    assert td["next", "reward"].sum(dim=(1, 2)).tolist() == returns
