"""The ``bench`` subcommand: ``python -m workbench bench [--quick] [--json FILE] [--device cuda]``.

It runs the benchmark suite of the repository's ``benchmarks/gru_bench.py`` (workbench vs
torchrl's ``GRUModule`` vs bare torch, interleaved, with correctness checks first), loaded by
path so that the suite stays a plain script in ``benchmarks/``. Heavy imports happen when the
command runs, not when the command line is built.

Hooks: :func:`add_parser` and :func:`run` for an ``argparse`` subparser, or :data:`ARGUMENTS`
and :func:`bench` for ``workbench.cli``'s ``command`` registry.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

__all__ = ["ARGUMENTS", "SUITE", "add_parser", "bench", "load_suite", "run"]

SUITE = Path(__file__).resolve().parent.parent / "benchmarks" / "gru_bench.py"
"""The benchmark suite this command runs."""

ARGUMENTS: tuple[tuple[tuple, dict], ...] = (
    (("--quick",), dict(action="store_true", help="fewer rounds and shapes (under a minute)")),
    (("--json",), dict(metavar="FILE", default=None, help="also write the results as JSON to FILE")),
    (("--device",), dict(default="cpu", help="cpu (default) or cuda: cuDNN against the reset-aware paths")),
    (("--threads",), dict(type=int, default=1, help="torch threads for every contestant (default: 1)")),
    (("--sections",), dict(default=None, help="comma-separated subset of step,recurrent,scaling,python,rollout")),
)
"""``(flags, options)`` pairs of the subcommand's arguments."""


def load_suite():
    """Imports ``benchmarks/gru_bench.py`` from the repository (the suite is not part of the wheel)."""
    if not SUITE.is_file():
        raise SystemExit(
            f"workbench bench: the benchmark suite {SUITE} is not there; run the command from a checkout "
            "of the repository (pip install -e .)."
        )
    name = "workbench_gru_bench"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SUITE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Adds ``bench`` to an ``argparse`` subparsers object and returns its parser."""
    doc = (bench.__doc__ or "").strip()
    parser = subparsers.add_parser("bench", help=doc.splitlines()[0], description=doc)
    for flags, options in ARGUMENTS:
        parser.add_argument(*flags, **options)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Runs the suite with the parsed arguments; the exit code is 1 when a correctness check failed."""
    return load_suite().run_args(args)


def bench(args: argparse.Namespace, extra: list[str] | None = None) -> int:
    """Time workbench, torchrl and bare torch GRUs side by side (medians, ratios, peak memory).

    Checks first that the contestants agree (outputs and gradients against torchrl), then
    times them round-robin on one thread and prints a table per case and the list of targets.
    """
    return run(args)
