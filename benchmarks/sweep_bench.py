"""``python benchmarks/sweep_bench.py [--quick] [--trials 8] [--workers 1,2] [--frames N] [--json FILE]``.

Scaling of a sweep on this machine: the same ``--trials`` cue trials (seeds 0..N-1, a fixed frame
budget each, no stop-when-solved) run by :func:`workbench.sweep.run_sweep` with 1 worker, then with
2 (``--workers``), each in a fresh local Ray; the wall time of the sweep (Ray's start not counted,
the workers' start and imports counted: that is what a sweep pays), the per-trial cost, the
speed-up, and the back-of-the-envelope time of a 1,000-trial sweep on 100 nodes. See
benchmarks/README.md, "Sweeps on Ray".

``--quick`` checks the script on a tiny budget (256 frames per trial) and writes nothing unless
``--json`` is given.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # a checkout without pip install -e

ENV = "workbench/CueMemory-v0"
QUICK = dict(total_frames=256, num_envs=8, frames_per_batch=64, epochs=2, hidden_size=8, head_cells=(8,))


def spec_for(trials: int, frames: int | None, quick: bool):
    """The benchmark's sweep: ``trials`` seeds of the cue task at its defaults (or a tiny budget)."""
    from workbench.sweep import SweepSpec, grid_fields

    base = dict(QUICK) if quick else {}
    if frames is not None:
        base["total_frames"] = frames
    if "solve_return" in grid_fields():  # a fixed budget: every trial trains all its frames
        base["solve_return"] = None
    return SweepSpec(ENV, {}, seeds=trials, base=base, eval_episodes=8 if quick else 20,
                     probe_steps=40 if quick else None)


def run_once(spec, workers: int) -> dict:
    """One sweep in a fresh local Ray with ``workers`` trials at once: its wall time and per-trial seconds."""
    from workbench.cluster import ray_session
    from workbench.sweep import run_sweep

    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as out:
        started = time.perf_counter()
        session = ray_session(num_cpus=workers)  # retries a start that hit Ray's startup timeout
        session.__enter__()
        try:
            ray_s = time.perf_counter() - started
            t0 = time.perf_counter()
            records = run_sweep(spec, out, workers=workers)
            wall = time.perf_counter() - t0
        finally:
            session.__exit__(None, None, None)
    failed = [r for r in records if r["status"] != "ok"]
    if failed:
        raise SystemExit(f"sweep_bench: {len(failed)} trials failed, e.g. {failed[0]['key']}: {failed[0]['error']}")
    trial_s = [r["seconds"] for r in records]
    train_s = [r["metrics"]["train_seconds"] for r in records]
    return {"workers": workers, "wall_s": wall, "ray_start_s": ray_s, "trials": len(records),
            "trial_s_mean": statistics.fmean(trial_s), "trial_s": trial_s,
            "train_s_mean": statistics.fmean(train_s),
            "success_mean": statistics.fmean(r["metrics"]["success"] for r in records)}


def envelope(per_trial_s: float, trials: int = 1000, nodes: int = 100, cpus_per_node: int = 2) -> dict:
    """Time of ``trials`` trials on ``nodes`` nodes, one trial per CPU, in waves of ``nodes × cpus`` trials.

    Examples:
        >>> envelope(30.0, 1000, 100, 2)["seconds"]
        150.0
    """
    slots = nodes * cpus_per_node
    waves = math.ceil(trials / slots)
    return {"trials": trials, "nodes": nodes, "cpus_per_node": cpus_per_node, "slots": slots, "waves": waves,
            "per_trial_s": per_trial_s, "seconds": waves * per_trial_s}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/sweep_bench.py", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8, help="cue trials per sweep (default: %(default)s)")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare (default: %(default)s)")
    parser.add_argument("--frames", type=int, default=None,
                        help="frames per trial (default: the cue task's DEFAULTS; 256 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a tiny budget, to check the script")
    parser.add_argument("--json", default=None,
                        help="write the results here (default: benchmarks/results-sweep.json; none with --quick)")
    parser.add_argument("--node-cpus", type=int, default=None,
                        help="CPUs per node of the 100-node estimate (default: this machine's)")
    args = parser.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",")]
    if args.trials < 1 or min(workers) < 1:
        parser.error("--trials and --workers: expected integers >= 1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from workbench import provenance

    spec = spec_for(args.trials, args.frames, args.quick)
    config = spec.config(spec.trials()[0])
    print(f"{args.trials} trials of {ENV}: {config.total_frames} frames each, hidden {config.hidden_size}; "
          f"workers {workers}", flush=True)
    runs = []
    for n in workers:
        run = run_once(spec, n)
        runs.append(run)
        print(f"  {n} worker(s): {run['wall_s']:.1f} s wall (Ray start {run['ray_start_s']:.1f} s, not counted), "
              f"{run['trial_s_mean']:.1f} s per trial ({run['train_s_mean']:.1f} s of it training), "
              f"success {run['success_mean']:.2f}", flush=True)
    base = runs[0]
    for run in runs[1:]:
        run["speedup"] = base["wall_s"] / run["wall_s"]
        print(f"  speed-up {base['workers']} → {run['workers']} workers: {run['speedup']:.2f}×")
    per_trial = base["wall_s"] / base["trials"] * base["workers"]  # a slot's seconds per trial, pipelined
    estimate = envelope(per_trial, cpus_per_node=args.node_cpus or os.cpu_count() or 1)
    print(f"  1,000 trials on 100 nodes of {estimate['cpus_per_node']} CPUs: {estimate['waves']} waves × "
          f"{per_trial:.1f} s ≈ {estimate['seconds'] / 60:.1f} min (plus the cluster's start)")
    result = {"env_id": ENV, "train_config": config.to_dict(), "cpus": os.cpu_count(), "quick": args.quick,
              "runs": runs, "per_trial_s": per_trial, "estimate": estimate,
              "provenance": provenance.record(command=" ".join(["python", "benchmarks/sweep_bench.py",
                                                                *(argv if argv is not None else sys.argv[1:])]))}
    target = args.json or (None if args.quick else str(Path(__file__).resolve().parent / "results-sweep.json"))
    if target:
        Path(target).write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
