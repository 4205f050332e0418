"""Regenerates ``assets/memory_probe_r2.png``: what the trained CartPole agent's memory holds.

The shipped velocity-hidden CartPole checkpoint is rolled out on fresh episodes
(16 envs × 1000 steps, episodes cut at 100 steps, seed 2026); linear probes read
the hidden velocities from its GRU state, from the observation alone, from
``[o_t, o_{t-1}]`` and from an untrained GRU of the same size (notebook 6,
section 3). Needs plotly, kaleido and Chromium.

    python assets/make_memory_figure.py
"""

from __future__ import annotations

from pathlib import Path

from workbench.probes import probe_suite
from workbench.replay import replay_hidden
from workbench.envs import EnvSpec, make_env
from workbench.figures import probe_figure
from workbench.checkpoints import load_checkpoint
from workbench.policy import build_policy
from workbench.rollout import rollout
from workbench.session import policy_io

HERE = Path(__file__).resolve().parent
OUT = HERE / "memory_probe_r2.png"
ENV_ID = "workbench/CartPoleNoVel-v1"


def main(seed: int = 2026) -> Path:
    policy, spec = load_checkpoint(HERE / "agents" / "cartpole_novel.pt")
    env = make_env(EnvSpec(ENV_ID, num_envs=16, max_steps=100, seed=seed), policy)
    traj = rollout(policy, env, 1000, seed=seed, progress=False, device="cpu")
    env.close()
    untrained = build_policy(spec, policy_io(EnvSpec(ENV_ID)), device="cpu")
    probes = probe_suite(traj, target=(1, 3), extra={"untrained GRU": replay_hidden(untrained, traj)})
    fig = probe_figure(probes, title="Trained agent, CartPole without velocities: a linear probe reads ẋ and θ̇ "
                                     "from the GRU state", width=1000, height=480)
    fig.update_xaxes(range=[-1, 40])
    fig.write_image(OUT, scale=1)
    for name, r in probes.items():
        print(f"{name:14s} R² {r.r2:.3f}  after 5 steps {r.r2_after(5):.3f}")
    return OUT


if __name__ == "__main__":
    print(main())
