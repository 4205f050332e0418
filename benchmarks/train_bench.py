"""Training benchmark: our recurrent PPO to *solved* against sb3-contrib's RecurrentPPO (RL Zoo settings).

``python benchmarks/train_bench.py [--seeds N] [--threads N] [--quick] [--no-sb3] [--json FILE] [--md FILE]``

One run, side by side, seed by seed (ours, then sb3-contrib, then our cue task, so a change of the
machine's load hits both sides alike):

- **ours, CartPoleNoVel**: ``workbench.train.train`` with ``DEFAULTS["workbench/CartPoleNoVel-v1"]``
  from scratch until a greedy evaluation (20 episodes) reaches a mean return of 475; wall time from
  the call to its return (environments built, evaluations included). The saved weights are then
  checked on 20 *other* greedy episodes (``workbench.train.evaluate``, seed 1000).
- **sb3-contrib RecurrentPPO** with the RL Zoo's hyperparameters for CartPoleNoVel-v1
  (``hyperparams/ppo_lstm.yml``: 8 envs, n_steps 32, batch 256, gae_lambda 0.8, gamma 0.98, 20
  epochs, learning rate 1e-3 and clip 0.2 linearly annealed, LSTM 64 with a critic LSTM, net_arch
  pi/vf [64], no orthogonal init, ReLU, VecNormalize) on the same environment
  (``gym.make("workbench/CartPoleNoVel-v1")``) for 1e5 steps; wall time of making and learning; then
  its greedy mean return over 20 episodes with the VecNormalize statistics frozen.
- **ours, CueMemory (delay 8)**: ``DEFAULTS["workbench/CueMemory-v0"]`` until a greedy evaluation
  reaches a mean return of 0.9 (95 % correct decisions); then checked on 200 other episodes.

Both sides run in this process with the same number of torch threads (``--threads``, default 1).
The load average (``os.getloadavg()``) is recorded before and after every run: on a shared machine
the absolute times move with it; the ratios, measured seed by seed, less.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # a checkout without pip install -e

CARTPOLE = "workbench/CartPoleNoVel-v1"
CUE = "workbench/CueMemory-v0"
SB3_STEPS = 100_000
TARGETS = {"cartpole_seconds": 90.0, "cartpole_ratio": 0.4, "cue_seconds": 20.0}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def ours(env_id: str, seed: int, *, quick: bool, check_episodes: int) -> dict:
    """Trains ours to solved (or the frame cap); checks the saved weights on other greedy episodes."""
    import torch

    from workbench.checkpoints import checkpoint_metadata, load_checkpoint
    from workbench.tasks import cue_success_rate
    from workbench.train import _config_for, evaluate, train

    overrides = dict(seed=seed, progress=False)
    if quick:
        overrides.update(total_frames=1024, eval_every=512, eval_episodes=2)
    config = _config_for(env_id, **overrides)
    load_before = _load()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "agent.pt"
        cpu, start = time.process_time(), time.perf_counter()
        history = train(config, path)
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
        meta = checkpoint_metadata(path)
        policy, _ = load_checkpoint(path)
    with torch.no_grad():
        returns = evaluate(policy, env_id, 2 if quick else check_episodes, seed=1000)
    row = {
        "side": "ours", "env_id": env_id, "seed": seed, "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
        "solved": bool(meta["solved"]), "frames": history[-1]["frames"], "solve_return": config.solve_return,
        "eval_return": meta["eval_return"], "check_return": round(statistics.fmean(returns), 3),
        "check_episodes": len(returns), "load_before": load_before, "load_after": _load(),
        "config": config.to_dict(),
    }
    if env_id == CUE:
        row["check_success"] = round(cue_success_rate(returns), 3)
    return row


def sb3(seed: int, *, steps: int, eval_episodes: int) -> dict:
    """sb3-contrib's RecurrentPPO with the RL Zoo's CartPoleNoVel-v1 hyperparameters, ``steps`` steps."""
    import numpy as np
    import torch
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecNormalize

    from workbench.tasks import register_tasks

    register_tasks()  # workbench/CartPoleNoVel-v1 for gym.make

    def linear(value: float):
        return lambda progress_remaining: progress_remaining * value

    load_before = _load()
    cpu, start = time.process_time(), time.perf_counter()
    env = VecNormalize(make_vec_env(CARTPOLE, n_envs=8, seed=seed))
    model = RecurrentPPO(
        "MlpLstmPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
        learning_rate=linear(1e-3), clip_range=linear(0.2), seed=seed, device="cpu", verbose=0,
        policy_kwargs=dict(ortho_init=False, activation_fn=torch.nn.ReLU, lstm_hidden_size=64,
                           enable_critic_lstm=True, net_arch=dict(pi=[64], vf=[64])),
    )
    model.learn(steps)
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    eval_env = VecNormalize(make_vec_env(CARTPOLE, n_envs=1, seed=seed + 1000), training=False, norm_reward=False)
    eval_env.obs_rms = env.obs_rms  # the training statistics, frozen
    returns, _ = evaluate_policy(model, eval_env, n_eval_episodes=eval_episodes, deterministic=True,
                                 return_episode_rewards=True)
    env.close()
    eval_env.close()
    return {"side": "sb3-contrib RecurrentPPO", "env_id": CARTPOLE, "seed": seed, "seconds": round(seconds, 2),
            "cpu_seconds": round(cpu, 2), "steps": steps, "check_return": round(float(np.mean(returns)), 3),
            "check_episodes": len(returns), "load_before": load_before, "load_after": _load()}


def _median(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return round(statistics.median(values), 2) if values else None


def summarize(result: dict) -> dict:
    """Medians over the seeds and the ratios ours / sb3 (per seed and of the medians), against the targets."""
    runs = result["runs"]
    cart = [r for r in runs if r["side"] == "ours" and r["env_id"] == CARTPOLE]
    cue = [r for r in runs if r["side"] == "ours" and r["env_id"] == CUE]
    base = [r for r in runs if r["side"] != "ours"]
    by_seed = {r["seed"]: r for r in base}
    ratios = [round(r["seconds"] / by_seed[r["seed"]]["seconds"], 3) for r in cart if r["seed"] in by_seed]
    summary = {
        "cartpole_seconds_median": _median(cart, "seconds"),
        "cartpole_solved": f"{sum(r['solved'] for r in cart)}/{len(cart)}",
        "cartpole_frames_median": _median(cart, "frames"),
        "sb3_seconds_median": _median(base, "seconds"),
        "sb3_return_median": _median(base, "check_return"),
        "ratio_per_seed": ratios,
        "ratio_of_medians": (round(_median(cart, "seconds") / _median(base, "seconds"), 3)
                             if cart and base else None),
        "cue_seconds_median": _median(cue, "seconds"),
        "cue_solved": f"{sum(r['solved'] for r in cue)}/{len(cue)}",
    }
    summary["targets"] = {
        "cartpole <= 90 s (every seed solved)": bool(cart) and all(r["solved"] and r["seconds"] <= 90 for r in cart),
        "cartpole <= 0.4 x sb3 (every seed)": bool(ratios) and all(x <= TARGETS["cartpole_ratio"] for x in ratios),
        "cue <= 20 s (every seed solved)": bool(cue) and all(r["solved"] and r["seconds"] <= 20 for r in cue),
    }
    return summary


def markdown(result: dict) -> str:
    """The result as markdown: one row per run, then the medians and ratios."""
    lines = [f"Training benchmark ({result['when']}, {result['machine']}, torch threads {result['threads']}"
             f"{', QUICK' if result['quick'] else ''}); load average at start {result['load_start']}, "
             f"at end {result['load_end']}.", "",
             "| run | seed | wall s | CPU s | frames / steps | solved | greedy return (check) | load before |",
             "|---|---|---:|---:|---:|---|---:|---|"]
    for r in result["runs"]:
        name = f"{r['side']}, {r['env_id'].split('/')[-1]}"
        frames = r.get("frames", r.get("steps"))
        solved = {True: "yes", False: "no"}.get(r.get("solved"), "-")
        check = f"{r['check_return']:.2f} ({r['check_episodes']} ep.)"
        if "check_success" in r:
            check += f", {r['check_success']:.0%} correct"
        lines.append(f"| {name} | {r['seed']} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | {frames} | {solved} | "
                     f"{check} | {r['load_before'][0]} |")
    if result.get("sb3_skipped"):
        lines += ["", f"sb3-contrib: skipped ({result['sb3_skipped']})."]
    s = result["summary"]
    lines += ["", "| median over seeds | value |", "|---|---:|",
              f"| ours, CartPoleNoVel to greedy 475: wall s | {s['cartpole_seconds_median']} "
              f"(solved {s['cartpole_solved']}, median frames {s['cartpole_frames_median']}) |",
              f"| sb3-contrib RecurrentPPO, 1e5 steps: wall s | {s['sb3_seconds_median']} "
              f"(greedy return {s['sb3_return_median']}) |",
              f"| ours / sb3, per seed | {', '.join(f'{x:.2f}' for x in s['ratio_per_seed']) or '-'} |",
              f"| ours / sb3, of the medians | {s['ratio_of_medians']} |",
              f"| ours, CueMemory delay 8 to 95 % correct: wall s | {s['cue_seconds_median']} "
              f"(solved {s['cue_solved']}) |", "",
              "Targets: " + "; ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in s["targets"].items()) + "."]
    return "\n".join(lines) + "\n"


def run(seeds: int, *, threads: int = 1, quick: bool = False, with_sb3: bool = True, log=print) -> dict:
    """Runs the benchmark; returns the result (``runs``, ``summary``, the machine and its load)."""
    import torch

    torch.set_num_threads(threads)
    result = {"when": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.node()}, {os.cpu_count()} CPUs",
              "threads": threads, "quick": quick, "seeds": seeds, "load_start": _load(), "runs": []}
    sb3_skipped = None
    if with_sb3:
        import importlib.util

        if importlib.util.find_spec("sb3_contrib") is None:
            sb3_skipped = "sb3_contrib is not installed: pip install 'gru-workbench[bench]'"
    else:
        sb3_skipped = "--no-sb3"
    result["sb3_skipped"] = sb3_skipped
    for seed in range(seeds):
        steps = [("ours", CARTPOLE), ("sb3", CARTPOLE), ("ours", CUE)]
        for side, env_id in steps:
            if side == "sb3":
                if sb3_skipped:
                    continue
                row = sb3(seed, steps=512 if quick else SB3_STEPS, eval_episodes=2 if quick else 20)
            else:
                row = ours(env_id, seed, quick=quick, check_episodes=200 if env_id == CUE else 20)
            result["runs"].append(row)
            log(json.dumps({k: v for k, v in row.items() if k != "config"}))
    result["load_end"] = _load()
    result["summary"] = summarize(result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both sides (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run (seconds), not a measurement")
    parser.add_argument("--no-sb3", action="store_true", help="only our side")
    parser.add_argument("--json", type=Path, default=None, help="write the result as JSON")
    parser.add_argument("--md", type=Path, default=None, help="write the tables as markdown")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.threads < 1:
        parser.error(f"--seeds and --threads must be >= 1; got {args.seeds} and {args.threads}")
    result = run(args.seeds, threads=args.threads, quick=args.quick, with_sb3=not args.no_sb3,
                 log=lambda line: print(line, file=sys.stderr, flush=True))
    text = markdown(result)
    print(text, end="")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.md is not None:
        args.md.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
