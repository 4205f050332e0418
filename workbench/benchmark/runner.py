"""The benchmark driver: settings, the sections in order, the targets and checks at the end, JSON.

``python -m workbench bench`` (:mod:`workbench.bench_cli`) and ``python benchmarks/gru_bench.py``
both end in :func:`run_args`; :func:`run` is the same from Python.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import warnings
from pathlib import Path

import torch

from .. import measure
from ..bench_cli import GRU_ARGUMENTS as ARGUMENTS
from ..cli import check_device_option
from ..errors import ConfigError, OutputPathError, WorkbenchError
from ..policy import resolve_device
from ..files import atomic_write, check_output_path, save_or_fallback
from .report import Report
from .sections import (SCALING_STEPS, section_python, section_recurrent, section_rollout, section_scaling,
                       section_step)

__all__ = ["SECTIONS", "configure", "run", "check_args", "run_args", "build_parser", "main"]


def configure(quick: bool, device: str) -> dict:
    """The run's settings: rounds, block lengths, shapes and sections, fewer with ``quick``."""
    cuda = torch.device(device).type == "cuda"
    return {
        "device": device,
        "quick": quick,
        "rounds": 5 if quick else 9,
        "block": 0.01 if quick else 0.02,
        "rounds_step": 7 if quick else 25,
        "block_step": 0.01 if quick else 0.02,
        "rounds_rollout": 3 if quick else 7,
        "rollout_steps": 300 if quick else 1000,
        "scaling_steps": (16, 64, 256) if quick else SCALING_STEPS,
        "torchrl_bwd_max_steps": 64 if quick else 256,
        "torchrl_single_shot": not quick,
        "extra_backends": (["workbench:fused", "workbench:packed", "workbench:native"] if cuda
                           else ([] if quick else ["workbench:packed", "workbench:native"])),
        "sections": ["step", "recurrent", "scaling", "python"] + ([] if cuda else ["rollout"]),
    }


SECTIONS = {
    "step": section_step,
    "recurrent": section_recurrent,
    "scaling": section_scaling,
    "python": section_python,
    "rollout": section_rollout,
}


def run(quick: bool = False, device: str = "cpu", threads: int = 1, json_path: str | None = None,
        sections: list[str] | None = None, out=print) -> Report:
    """Runs the benchmark and prints it; returns the :class:`Report` (also written to ``json_path``)."""
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    cfg = configure(quick, device)
    if sections:
        cfg["sections"] = [s for s in sections if s in SECTIONS]
    started = time.perf_counter()
    with measure.threads(threads):
        report = Report(measure.machine(), {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()})
        m = report.machine
        out(f"GRU Workbench benchmark ({'quick' if quick else 'full'}), device {device}, "
            f"{m['torch_threads']} torch thread(s)")
        out(f"machine: {m['cpu']} ({m['cpu_count']} cores available, {m['cpu_capability']}), {m['platform']}")
        out(f"versions: python {m['python']}, torch {m['torch']}, torchrl {m['torchrl']}, "
            f"tensordict {m['tensordict']}, gymnasium {m['gymnasium']}, workbench {m['workbench']}"
            + (f", GPU {m['cuda_device']}, cuDNN {m['cudnn']}" if "cuda_device" in m else ""))
        out("floor = bare torch.nn.GRU / nn.GRUCell on the same data without resets; ×floor = median / floor's "
            "median; torchrl÷ = torchrl's median / this median; medians of interleaved rounds")
        for name in cfg["sections"]:
            section_start = time.perf_counter()
            SECTIONS[name](report, cfg, out)
            took = time.perf_counter() - section_start
            report.config.setdefault("section_s", {})[name] = round(took, 1)
            out(f"({name}: {took:.0f} s)")
    elapsed = time.perf_counter() - started
    report.config["elapsed_s"] = elapsed
    out("")
    out("== Targets ==")
    width = max(len(t.name) for t in report.targets) if report.targets else 10
    for t in report.targets:
        value = "n/a" if t.value is None else f"{t.value:.2f}{t.unit}"
        out(f"  {t.name:<{width}}  {value:>8}  {'≤' if t.op == '<=' else '≥'} {t.limit:.2f}{t.unit}  "
            f"{'met' if t.met else 'NOT MET'}")
    failed_checks = [c for c in report.checks if not c.ok]
    met = sum(t.met for t in report.targets)
    out(f"{met}/{len(report.targets)} targets met; {len(report.checks) - len(failed_checks)}/{len(report.checks)} "
        f"correctness checks passed; {elapsed:.0f} s")
    if json_path:
        data = json.dumps(report.to_json(), indent=2).encode()
        written, failure = save_or_fallback(lambda path: _write_json(path, data), json_path)
        if failure is not None:  # the results stay: in the temp folder, and the error says where
            raise OutputPathError(f"--json: could not write {str(json_path)!r} ({failure.strerror or failure}); "
                                  f"the results are in {str(written)!r} instead")
        out(f"written to {json_path}")
    return report


def _write_json(path: Path, data: bytes) -> Path:
    """Writes ``data`` atomically at ``path``, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, data)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The options of ``python benchmarks/gru_bench.py``: the ``bench`` command's (:data:`workbench.bench_cli.ARGUMENTS`)."""
    import workbench.benchmark

    description = workbench.benchmark.__doc__.splitlines()[0]
    parser = parser or argparse.ArgumentParser(prog="gru_bench", description=description)
    for flags, options in ARGUMENTS:
        parser.add_argument(*flags, **options)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python benchmarks/gru_bench.py``: runs the suite; exit code 1 when a check failed, 2 for bad options."""
    args = build_parser().parse_args(argv)
    try:
        return run_args(args)
    except WorkbenchError as error:
        print(f"gru_bench: error: {error}", file=sys.stderr)
        return 2


def check_args(args: argparse.Namespace) -> list[str] | None:
    """Checks the options before anything runs (one-line :class:`ConfigError`); returns the sections asked for."""
    if args.threads < 1:
        raise ConfigError(f"--threads: expected an integer >= 1; got {args.threads}")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", args.device):
        raise ConfigError(f"--device: expected auto, cpu, cuda or cuda:N; got {args.device!r}")
    check_device_option("--device", args.device)  # CUDA asked for where there is none
    if args.device.startswith("cuda:") and int(args.device[5:]) >= torch.cuda.device_count():
        raise ConfigError(f"--device: expected one of the {torch.cuda.device_count()} CUDA devices; got {args.device!r}")
    sections = None
    if args.sections is not None:
        sections = [s.strip() for s in args.sections.split(",") if s.strip()]
        unknown = [s for s in sections if s not in SECTIONS]
        if unknown or not sections:
            raise ConfigError(f"--sections: expected a comma-separated subset of {','.join(SECTIONS)}; "
                              f"got {args.sections!r}")
    if args.json:
        check_output_path(args.json, what="--json")
    return sections


def run_args(args: argparse.Namespace) -> int:
    """Runs the suite with parsed options (:func:`check_args` first); the exit code is 1 when a correctness check failed."""
    sections = check_args(args)
    device = str(resolve_device(args.device))  # "auto": CUDA when present
    report = run(quick=args.quick, device=device, threads=args.threads, json_path=args.json,
                 sections=sections)
    return 0 if all(c.ok for c in report.checks) else 1
