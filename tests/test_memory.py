"""What the shipped agents' memories hold: the targets of notebook 6, measured on fresh episodes.

- CartPole without velocities: a linear probe reads both hidden velocities from the GRU state
  with held-out R² >= 0.9 once 5 steps have passed since the reset, better than every baseline.
- Cue task: the cue stays decodable along the corridor, and a replay without ``is_init`` (the
  training-time leak) drops the decisions a loss would see towards chance.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from workbench.hidden import pca
from workbench.probes import probe_suite
from workbench.replay import replay_hidden, replay_policy
from workbench.envs import EnvSpec, make_env
from workbench.keys import KEYS
from workbench.checkpoints import load_checkpoint
from workbench.policy import build_policy
from workbench.rollout import rollout
from workbench.tasks import cue_decisions

CHECKPOINTS = Path(__file__).resolve().parent.parent / "assets" / "agents"
SEED = 2026  # the notebook's: not used in training or in the shipped evaluations


@pytest.fixture(scope="module")
def cartpole():
    policy, spec = load_checkpoint(CHECKPOINTS / "cartpole_novel.pt")
    env = make_env(EnvSpec("workbench/CartPoleNoVel-v1", num_envs=16, max_steps=100, seed=SEED), policy)
    traj = rollout(policy, env, 1000, seed=SEED, progress=False, device="cpu")
    env.close()
    return policy, spec, traj


@pytest.fixture(scope="module")
def cue():
    policy, _ = load_checkpoint(CHECKPOINTS / "cue_memory.pt")
    env = make_env(EnvSpec("workbench/CueMemory-v0", num_envs=16, seed=SEED), policy)
    traj = rollout(policy, env, 117, seed=SEED, deterministic=True, progress=False, device="cpu")
    env.close()
    return policy, traj


def test_probe_reads_the_hidden_velocities_after_five_steps(cartpole):
    policy, spec, traj = cartpole
    untrained = build_policy(spec, make_env(EnvSpec("workbench/CartPoleNoVel-v1")), device="cpu")
    probes = probe_suite(traj, target=(1, 3), extra={"untrained GRU": replay_hidden(untrained, traj)})
    after = {name: r.r2_after(5) for name, r in probes.items()}
    assert probes["hidden"].test_episodes >= 30
    assert after["hidden"] >= 0.9, after
    assert min(probes["hidden"].r2_per_target.tolist()) >= 0.85, probes["hidden"].r2_per_target  # both velocities
    assert after["observation"] < 0.3, after  # positions alone hold no velocity
    assert after["hidden"] > after["obs+prev"] and after["hidden"] > after["untrained GRU"], after
    assert probes["hidden"].curve[0] < after["hidden"]  # nothing to remember at the reset itself


def test_cue_stays_in_memory_along_the_corridor(cue):
    policy, traj = cue
    assert cue_decisions(traj).float().mean() >= 0.95
    probes = probe_suite(traj, target=0)
    assert float(probes["hidden"].curve[2:].min()) > 0.95  # after the cue is gone
    assert float(probes["observation"].curve[2:].max()) < 0.1
    # PCA: at the decision the first component alone tells the cues apart
    decision = traj[KEYS.observation][..., 1] == 1
    pc1 = pca(traj[KEYS.next_hidden][..., -1, :], k=2).coords[..., 0][decision]
    cue_sign = traj[KEYS.true_state][..., 0][decision] > 0
    agree = ((pc1 > 0) == cue_sign).float().mean()
    assert max(agree, 1 - agree) == 1.0


def test_dropping_is_init_leaks_memory_into_the_decisions(cue):
    policy, traj = cue
    honest = cue_decisions(traj, replay_policy(policy, traj)[KEYS.action]).float().mean()
    leaking = cue_decisions(traj, replay_policy(policy, traj, resets=False)[KEYS.action]).float().mean()
    assert honest == 1.0
    assert leaking < 0.8, leaking
