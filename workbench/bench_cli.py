"""The ``bench`` subcommand: ``python -m workbench bench [--quick] [--json FILE] [--device cuda]``.

It runs the benchmark suite :mod:`workbench.benchmark` (workbench vs torchrl's ``GRUModule``
vs bare torch, interleaved, with correctness checks first); ``benchmarks/gru_bench.py`` is the
same suite as a script. With ``--ui`` it runs the UI benchmark instead
(:mod:`workbench.benchmark.ui`: the app of notebook 05 in JupyterLab and a headless Chromium;
``benchmarks/ui_bench.py`` as a script). This module only describes the command: the suites (and
torch, Playwright) are imported when the command runs, not when the command line is built.

Examples:
    >>> sorted(flags[0] for flags, _ in GRU_ARGUMENTS)
    ['--device', '--json', '--quick', '--sections', '--threads']
    >>> sorted(flags[0] for flags, _ in UI_ARGUMENTS)
    ['--envs', '--hidden', '--md', '--screenshots', '--steps', '--ui']
"""

from __future__ import annotations

import argparse

__all__ = ["ARGUMENTS", "GRU_ARGUMENTS", "UI_ARGUMENTS", "bench"]

GRU_ARGUMENTS: tuple[tuple[tuple, dict], ...] = (
    (("--quick",), dict(action="store_true", help="fewer rounds and shapes (under a minute)")),
    (("--json",), dict(metavar="FILE", default=None, help="also write the results as JSON to FILE")),
    (("--device",), dict(default="cpu", help="cpu (default), cuda (cuDNN against the reset-aware paths) or auto (cuda when present)")),
    (("--threads",), dict(type=int, default=1, help="torch threads for every contestant (default: 1)")),
    (("--sections",), dict(default=None, help="comma-separated subset of step,recurrent,scaling,python,rollout")),
)
"""``(flags, options)`` pairs of the GRU suite's arguments (also ``benchmarks/gru_bench.py``'s)."""

UI_ARGUMENTS: tuple[tuple[tuple, dict], ...] = (
    (("--ui",), dict(action="store_true", help="the UI benchmark instead: notebook 05's app in JupyterLab, driven by "
                                               "a headless Chromium (--quick: only envs x 2000 steps; --device: "
                                               "where its rollouts run)")),
    (("--steps",), dict(type=int, default=None, metavar="N",
                        help="--ui: steps per env of the large size (default 100000; envs x 2000 runs first)")),
    (("--envs",), dict(type=int, default=None, metavar="N", help="--ui: envs (default 2)")),
    (("--hidden",), dict(type=int, default=None, metavar="N", help="--ui: GRU hidden size, 1 layer (default 128)")),
    (("--md",), dict(metavar="FILE", default=None, help="--ui: also write the table as Markdown to FILE")),
    (("--screenshots",), dict(metavar="DIR", default=None, help="--ui: save screenshots of the explorer into DIR")),
)
"""``(flags, options)`` pairs of the UI benchmark's arguments (``--ui`` and the options only it takes)."""

ARGUMENTS: tuple[tuple[tuple, dict], ...] = GRU_ARGUMENTS + UI_ARGUMENTS
"""every argument of the ``bench`` subcommand"""


def bench(args: argparse.Namespace, extra: list[str] | None = None) -> int:
    """Time workbench, torchrl and bare torch GRUs side by side (medians, ratios, peak memory).

    Checks first that the contestants agree (outputs and gradients against torchrl), then
    times them round-robin on one thread and prints a table per case and the list of targets.
    With --ui: time the app in JupyterLab and a headless Chromium instead (rollout memory, first
    paint, cursor, Play, zoom, JS heap, Cancel, saved notebook size; see benchmarks/README.md).
    """
    from .errors import ConfigError

    if getattr(args, "ui", False):
        if args.sections is not None:
            raise ConfigError(f"--sections: the GRU suite's option, not --ui's; got {args.sections!r}")
        from .benchmark.ui import run_args as run_ui

        return run_ui(args)
    for flags, _ in UI_ARGUMENTS[1:]:
        name = flags[0].lstrip("-")
        if getattr(args, name, None) is not None:
            raise ConfigError(f"{flags[0]}: an option of --ui (the UI benchmark); got {getattr(args, name)!r} without --ui")
    from .benchmark.runner import run_args

    return run_args(args)
