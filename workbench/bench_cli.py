"""The ``bench`` subcommand: ``python -m workbench bench [--quick] [--json FILE] [--device cuda]``.

It runs the benchmark suite :mod:`workbench.benchmark` (workbench vs torchrl's ``GRUModule``
vs bare torch, interleaved, with correctness checks first); ``benchmarks/gru_bench.py`` is the
same suite as a script. This module only describes the command: the suite (and torch) is
imported when the command runs, not when the command line is built.

Examples:
    >>> sorted(flags[0] for flags, _ in ARGUMENTS)
    ['--device', '--json', '--quick', '--sections', '--threads']
"""

from __future__ import annotations

import argparse

__all__ = ["ARGUMENTS", "bench"]

ARGUMENTS: tuple[tuple[tuple, dict], ...] = (
    (("--quick",), dict(action="store_true", help="fewer rounds and shapes (under a minute)")),
    (("--json",), dict(metavar="FILE", default=None, help="also write the results as JSON to FILE")),
    (("--device",), dict(default="cpu", help="cpu (default), cuda (cuDNN against the reset-aware paths) or auto (cuda when present)")),
    (("--threads",), dict(type=int, default=1, help="torch threads for every contestant (default: 1)")),
    (("--sections",), dict(default=None, help="comma-separated subset of step,recurrent,scaling,python,rollout")),
)
"""``(flags, options)`` pairs of the subcommand's arguments (also ``benchmarks/gru_bench.py``'s)."""


def bench(args: argparse.Namespace, extra: list[str] | None = None) -> int:
    """Time workbench, torchrl and bare torch GRUs side by side (medians, ratios, peak memory).

    Checks first that the contestants agree (outputs and gradients against torchrl), then
    times them round-robin on one thread and prints a table per case and the list of targets.
    """
    from .benchmark.runner import run_args

    return run_args(args)
