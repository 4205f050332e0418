"""The headless demo: policy → rollout → diagnostics → analysis → figures → export.

It is what ``python -m workbench demo`` runs, and the quickest way to see the
product without a browser.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

__all__ = ["DemoResult", "run_demo"]


@dataclass
class DemoResult:
    """What :func:`run_demo` produced."""

    paths: list[Path]
    """every file written: figures, then the trajectory and the report"""
    report: object
    """the :class:`~workbench.diagnostics.DiagnosticsReport` of the rollout"""
    probes: dict = field(default_factory=dict)
    """``{name: ProbeResult}`` when the environment exposes its true state"""


def _figures(traj, report, probes) -> dict:
    from . import figures

    figs = {
        "hidden_heatmap": figures.hidden_heatmap(traj),
        "pca_2d": figures.pca_figure(traj, k=2, color="episode", env=None),
        "pca_3d": figures.pca_figure(traj, k=3, color="time"),
        "hidden_norm": figures.norm_figure(traj, env=None),
    }
    from .keys import KEYS

    if KEYS.gates in traj.keys(True):
        figs["gates"] = figures.gates_figure(traj)
    if report.replay is not None:
        figs["replay_divergence"] = figures.divergence_figure(report.replay)
    if probes:
        figs["probe_r2"] = figures.probe_figure(probes)
    return figs


def run_demo(
    env_id: str = "CartPole-v1",
    steps: int = 500,
    out: str | os.PathLike = "demo-out",
    formats: Sequence[str] = ("html",),
    *,
    hidden_size: int = 16,
    num_layers: int = 1,
    num_envs: int = 1,
    hide_velocity: bool = False,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
) -> DemoResult:
    """Builds a policy (Python cell, gates recorded), rolls it out, checks and exports.

    Args:
        env_id: a gymnasium id (``CartPole-v1``, ``Pendulum-v1``, ...).
        steps: rollout length per environment.
        out: the folder to write into (created if needed).
        formats: any of ``html``, ``png``, ``svg``, ``pdf``, ``json``.

    Returns:
        A :class:`DemoResult`: paths written, the diagnostics report, probes.
    """
    from .analysis import probe_suite
    from .diagnostics import diagnose
    from .envs import VELOCITY_MASKS, EnvSpec, make_env
    from .export import _atomic_write, _formats, _prepare_dir, export_figures
    from .keys import KEYS
    from .policy import PolicyIO, PolicySpec, build_policy
    from .provenance import record
    from .rollout import rollout, save_trajectory

    formats = _formats(formats, ("html",))  # bad formats and folders fail now, not after the rollout
    out = _prepare_dir(Path(out))
    torch.manual_seed(seed)
    env_spec = EnvSpec(env_id, hide_velocity=hide_velocity, num_envs=num_envs, seed=seed)
    policy_spec = PolicySpec(
        hidden_size=hidden_size, num_layers=num_layers, python_based=True, record_gates=True, seed=seed
    )
    io = PolicyIO.from_env(make_env(EnvSpec(env_id, hide_velocity=hide_velocity, seed=seed)))
    policy = build_policy(policy_spec, io, device=device)
    env = make_env(env_spec, policy)
    traj = rollout(policy, env, steps, seed=seed, progress=progress, device=device)
    report = diagnose(traj, policy=policy, env=env)
    probes = {}
    mask = VELOCITY_MASKS.get(env_id)
    if mask is not None and KEYS.true_state in traj.keys(True):
        hidden_entries = [i for i in range(len(mask.names)) if i not in mask.keep] if hide_velocity else list(range(len(mask.names)))
        if traj.get(KEYS.is_init)[:, 1:].any():
            probes = probe_suite(traj, target=tuple(hidden_entries))
    env.close()
    metadata = record(env=env_id, hide_velocity=hide_velocity, seed=seed, steps=steps, num_envs=num_envs,
                      policy=policy_spec.to_dict())
    paths = export_figures(_figures(traj, report, probes), out, formats, metadata=metadata)
    paths.append(save_trajectory(traj, out / "trajectory.pt", metadata=metadata))
    paths.append(_atomic_write(out / "diagnostics.txt", (report.summary() + "\n").encode()))
    return DemoResult(paths, report, probes)
