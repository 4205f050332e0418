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
    from .envs import EnvSpec
    from .export import check_formats, prepare_folder
    from .policy import PolicySpec
    from .session import Session

    formats = check_formats(formats, ("html",))  # bad formats and folders fail now, not after the rollout
    out = prepare_folder(Path(out))
    torch.manual_seed(seed)
    env_spec = EnvSpec(env_id, hide_velocity=hide_velocity, num_envs=num_envs, seed=seed)
    policy_spec = PolicySpec(
        hidden_size=hidden_size, num_layers=num_layers, python_based=True, record_gates=True, seed=seed
    )
    with Session(env_spec, policy_spec, device=device) as session:  # the env is closed on every path
        session.rollout(steps, seed=seed, progress=progress)
    report = session.diagnose()
    probes = session.probe()
    return DemoResult(session.export(out, formats), report, probes)
