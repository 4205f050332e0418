"""Command line of the workbench: ``python -m workbench COMMAND``.

Each subcommand is one function registered with :func:`command`; its help text is the first
line of its docstring. Heavy imports (torch, jupyterlab) happen inside the commands, and this
module never imports plotly or ipywidgets.
"""
from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .bench_cli import ARGUMENTS as BENCH_ARGUMENTS, bench  # light: the suite loads when the command runs
from .provenance import workbench_version  # light: no torch

__all__ = ["main", "command", "arg"]

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO_ROOT / "notebooks"


@dataclass(frozen=True)
class _Command:
    """A registered subcommand."""

    run: Callable[[argparse.Namespace, list[str]], int | None]
    arguments: tuple[tuple[tuple, dict], ...]
    passthrough: bool
    """Whether unknown arguments are handed to ``run`` instead of being an error."""


_COMMANDS: dict[str, _Command] = {}


def arg(*flags: str, **options) -> tuple[tuple, dict]:
    """One ``ArgumentParser.add_argument`` call, for :func:`command`."""
    return flags, options


def command(*arguments: tuple[tuple, dict], passthrough: bool = False):
    """Register ``fn(args, extra) -> exit code`` as the subcommand ``fn.__name__``."""

    def register(fn):
        _COMMANDS[fn.__name__.replace("_", "-")] = _Command(fn, arguments, passthrough)
        return fn

    return register


def _at_least(flag: str, value, minimum: int, why: str = "") -> None:
    """Raises :class:`ConfigError` when the integer option ``flag`` is below ``minimum``."""
    from .errors import ConfigError

    if value is not None and value < minimum:
        raise ConfigError(f"{flag}: expected an integer >= {minimum}{why}; got {value}")


def _listen_family(ip: str) -> int:
    """The socket family to listen on ``ip`` with; a one-line error when this machine has no such address."""
    from .errors import ConfigError

    try:
        family, _, _, _, address = socket.getaddrinfo(ip, 0, type=socket.SOCK_STREAM)[0]
        with socket.socket(family) as s:
            s.bind(address)
    except OSError as error:
        raise ConfigError(
            f"--ip: expected an address of this machine to listen on, e.g. 127.0.0.1; got {ip!r} "
            f"({error.strerror or error})"
        ) from None
    return family


def _free_port(ip: str, start: int, tries: int = 50, family: int = socket.AF_INET) -> int:
    """The first port from ``start`` on that nothing listens on at ``ip``."""
    from .errors import ConfigError

    for port in range(start, min(start + tries, 65536)):
        with socket.socket(family) as s:
            try:
                s.bind((ip, port))
            except OSError:
                continue
            return port
    raise ConfigError(f"--port: no free port in {start}..{start + tries - 1} on {ip}; pass --port")


@dataclass(frozen=True)
class _Serve:
    """Where and how a local server listens: checked address, port, a fresh token, the URL to print."""

    ip: str
    port: int
    token: str

    @property
    def host(self) -> str:
        return f"[{self.ip}]" if ":" in self.ip else self.ip

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}?token={self.token}"

    def env(self) -> dict[str, str]:
        """The server's environment: the token goes through JUPYTER_TOKEN, which only this user can read
        (/proc/PID/environ is private); a command line is visible to every user in `ps`."""
        return dict(os.environ, JUPYTER_TOKEN=self.token)


def _serve_options(args: argparse.Namespace, default_port: int) -> _Serve:
    """The checks ``lab`` and ``app`` share: ``--port`` in range, ``--ip`` an address of this machine (one-line
    errors), the first free port from ``default_port`` when none is given, and a random token."""
    from .errors import ConfigError

    if args.port is not None and not 1 <= args.port <= 65535:
        raise ConfigError(f"--port: expected an integer in 1..65535; got {args.port}")
    family = _listen_family(args.ip)
    port = args.port if args.port is not None else _free_port(args.ip, default_port, family=family)
    return _Serve(args.ip, port, secrets.token_hex(24))


def _exec_server(cmd: list[str], serve: _Serve) -> int:
    """Replaces this process by the server (signals such as Ctrl-C reach it directly); a child on Windows."""
    if os.name == "nt":
        import subprocess

        return subprocess.call(cmd, env=serve.env())
    os.execve(sys.executable, cmd, serve.env())


_SERVE_ARGUMENTS = (
    arg("--headless", action="store_true", help="do not open a browser; just print the URL"),
    arg("--ip", default="127.0.0.1", help="address to listen on (default: %(default)s)"),
)


@command(
    *_SERVE_ARGUMENTS,
    arg("--port", type=int, default=None,
        help="port to serve on (default: the first free one from 8888)"),
    arg("--notebook-dir", type=Path, default=None,
        help="folder to serve (default: the repository, opened on notebooks/; else the current folder)"),
    passthrough=True,
)
def lab(args: argparse.Namespace, extra: list[str]) -> int:
    """Start JupyterLab on the notebooks; other arguments go to jupyterlab.

    Lab serves the whole repository and opens on ``notebooks/`` (``/lab/tree/notebooks``, and it is Lab's
    preferred folder), so its file browser also reaches ``assets/`` (the shipped agents, the figures);
    the notebooks still run from ``notebooks/``.
    """
    from .errors import ConfigError

    if args.notebook_dir is not None and not args.notebook_dir.is_dir():
        raise ConfigError(f"--notebook-dir: expected an existing folder; got {str(args.notebook_dir)!r}")
    serve = _serve_options(args, 8888)
    in_repo = args.notebook_dir is None and NOTEBOOKS.is_dir()
    root = args.notebook_dir or (REPO_ROOT if in_repo else Path.cwd())
    cmd = [
        sys.executable, "-m", "jupyterlab",
        f"--ServerApp.root_dir={root.resolve()}",
        f"--ServerApp.ip={serve.ip}",
        f"--ServerApp.port={serve.port}",
        "--ServerApp.port_retries=0",  # the printed URL must be the real one
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if in_repo:
        cmd.append(f"--ContentsManager.preferred_dir={NOTEBOOKS.name}")  # the file browser starts there
    if args.headless:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # jupyter refuses to run as root otherwise
    cmd += extra
    print(f"JupyterLab on {root}" + (f", opened on {NOTEBOOKS.name}/" if in_repo else ""), flush=True)
    print(f"URL: {serve.url('/lab' + ('/tree/' + NOTEBOOKS.name if in_repo else ''))}", flush=True)
    return _exec_server(cmd, serve)


APP_NOTEBOOK = NOTEBOOKS / "app.ipynb"
"""the notebook ``python -m workbench app`` serves: the app, without tutorial text"""


@command(
    *_SERVE_ARGUMENTS,
    arg("--port", type=int, default=None,
        help="port to serve on (default: the first free one from 8866)"),
    arg("--notebook", type=Path, default=None,
        help="notebook to serve (default: the repository's notebooks/app.ipynb)"),
    passthrough=True,
)
def app(args: argparse.Namespace, extra: list[str]) -> int:
    """Serve the app (notebooks/app.ipynb) with Voila: the widgets, no code; other arguments go to voila.

    Same rules as ``lab``: 127.0.0.1 unless ``--ip`` says otherwise, a random token (passed
    through the environment, printed in the URL), the first free port from 8866. Exported
    figures and reports (html, png, svg, pdf, json, csv) under the notebook's folder are served
    to the token's holder, so the app's download links work; nothing is served without it.
    """
    from .errors import ConfigError

    notebook = args.notebook if args.notebook is not None else APP_NOTEBOOK
    if notebook.suffix != ".ipynb" or not notebook.is_file():
        raise ConfigError(f"--notebook: expected an existing .ipynb file; got {str(notebook)!r}")
    import importlib.util

    if importlib.util.find_spec("voila") is None:
        raise ConfigError("app: Voila is not installed; install the lab extra: pip install -e '.[lab]'")
    serve = _serve_options(args, 8866)
    cmd = [
        sys.executable, "-m", "workbench.voila_app", str(notebook.resolve()),
        f"--Voila.ip={serve.ip}",
        f"--Voila.port={serve.port}",
        "--Voila.port_retries=0",  # the printed URL must be the real one
        "--Voila.auto_token=True",  # the token: JUPYTER_TOKEN from the environment
    ]
    if args.headless:
        cmd.append("--no-browser")
    cmd += extra
    print(f"Voila app: {notebook}", flush=True)
    print(f"URL: {serve.url('/')}", flush=True)
    return _exec_server(cmd, serve)


@command()
def info(args: argparse.Namespace, extra: list[str]) -> int:
    """Print the versions of Python and the libraries, the default device and torch threads."""
    import torch

    from .provenance import versions

    found = versions(("python", "torch", "tensordict", "torchrl", "gymnasium"))
    rows = [("gru-workbench", found.pop("workbench"))]
    rows += [(name, value or "not installed") for name, value in found.items()]
    rows += [
        ("device", "cuda" if torch.cuda.is_available() else "cpu"),
        ("torch threads", str(torch.get_num_threads())),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def _check_env_id(flag: str, env_id: str) -> None:
    """Raises :class:`ConfigError` unless ``env_id`` is a registered gymnasium id (workbench/ ids included)."""
    import gymnasium as gym

    from . import tasks  # noqa: F401  (registers the workbench/ ids)
    from .errors import ConfigError

    try:
        gym.spec(env_id)
    except Exception:  # gymnasium raises several NameNotFound/VersionNotFound types
        raise ConfigError(
            f"{flag}: expected a registered gymnasium id such as CartPole-v1, Pendulum-v1 or "
            f"workbench/CartPoleNoVel-v1; got {env_id!r}"
        ) from None


def check_device_option(flag: str, device: str) -> None:
    """The one device rule (:func:`workbench.policy.resolve_device`) for a command-line option: its error,
    named after ``flag`` (e.g. CUDA asked for where there is none)."""
    from .errors import ConfigError
    from .policy import resolve_device

    try:
        resolve_device(device)
    except ConfigError as error:
        raise type(error)(f"{flag}: {str(error).removeprefix('device: ')}") from None


@command(
    arg("--env", default="CartPole-v1", help="gymnasium id (default: %(default)s)"),
    arg("--steps", type=int, default=500, help="rollout steps per environment, >= 3 (default: %(default)s)"),
    arg("--out", default="demo-out", help="folder to write into (default: %(default)s)"),
    arg("--formats", default="html", help="comma-separated: html,png,svg,pdf,json (default: %(default)s)"),
    arg("--hidden-size", type=int, default=16, help="GRU hidden size, >= 3 (default: %(default)s)"),
    arg("--num-envs", type=int, default=1, help="environments side by side (default: %(default)s)"),
    arg("--hide-velocity", action="store_true", help="the partially observed variant: velocities hidden"),
    arg("--seed", type=int, default=0, help="seed (default: %(default)s)"),
    arg("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where the policy runs"),
)
def demo(args: argparse.Namespace, extra: list[str]) -> int:
    """Run policy, rollout, diagnostics, analysis, figures and export headless; print what was written."""
    from .demo import run_demo
    from .envs import VELOCITY_MASKS
    from .errors import ConfigError
    from .export import FORMATS

    _at_least("--steps", args.steps, 3, " (the 3-D PCA needs 3 time steps)")
    _at_least("--hidden-size", args.hidden_size, 3, " (the 3-D PCA needs 3 hidden units)")
    _at_least("--num-envs", args.num_envs, 1)
    _at_least("--seed", args.seed, 0)
    formats = tuple(f.strip().lower().lstrip(".") for f in args.formats.split(",") if f.strip())
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ConfigError(f"--formats: expected a comma-separated list of {','.join(FORMATS)}; got {args.formats!r}")
    _check_env_id("--env", args.env)
    if args.hide_velocity and args.env not in VELOCITY_MASKS:
        raise ConfigError(f"--hide-velocity: expected --env to be one of {', '.join(sorted(VELOCITY_MASKS))}; "
                          f"got {args.env!r}")
    check_device_option("--device", args.device)
    from .files import check_output_folder

    check_output_folder(args.out, what="--out")
    try:
        result = run_demo(
            args.env, args.steps, args.out, formats, hidden_size=args.hidden_size, num_envs=args.num_envs,
            hide_velocity=args.hide_velocity, seed=args.seed, device=args.device,
        )
    except (ValueError, KeyError, RuntimeError, OSError) as error:  # bad input: say what, not a traceback
        print(f"workbench demo: error: {_one_line(error)}", file=sys.stderr)
        return 2
    print(f"wrote {len(result.paths)} files:")
    for path in result.paths:
        print(f"  {path}")
    if result.probes:
        scores = ", ".join(f"{name} R²={res.r2:.2f}" for name, res in result.probes.items())
        print(f"linear probes of the environment state (probe_r2): {scores}")
    print("diagnostics:")
    print(result.report.summary())
    return 0 if result.report.ok else 1


_TRAIN_FLAGS = {"total_frames": "--steps", "num_envs": "--num-envs", "frames_per_batch": "--frames-per-batch",
                "epochs": "--epochs", "hidden_size": "--hidden-size", "lr": "--lr", "seed": "--seed",
                "delay": "--delay", "collectors": "--collectors"}
"""TrainConfig fields the ``train`` command sets, by option."""


@command(
    arg("--env", default="workbench/CartPoleNoVel-v1",
        help="environment id, e.g. workbench/CartPoleNoVel-v1, workbench/CueMemory-v0 (default: %(default)s)"),
    arg("--out", required=True, help="checkpoint file to write (an existing file needs --overwrite)"),
    arg("--overwrite", action="store_true", help="replace --out if it exists"),
    arg("--steps", type=int, default=None, help="total environment frames (default: per environment)"),
    arg("--seed", type=int, default=0, help="seed (default: %(default)s)"),
    arg("--num-envs", type=int, default=None, help="environments collected side by side"),
    arg("--frames-per-batch", type=int, default=None, help="frames per PPO batch (a multiple of --num-envs)"),
    arg("--epochs", type=int, default=None, help="PPO epochs per batch"),
    arg("--hidden-size", type=int, default=None, help="GRU hidden size"),
    arg("--lr", type=float, default=None, help="Adam learning rate"),
    arg("--delay", type=int, default=None,
        help="memory length of workbench/CueMemory-v0: steps from the cue to the decision (default: 8)"),
    arg("--collectors", type=int, default=None,
        help="collect on Ray with this many remote collectors, each stepping --num-envs / N environments "
             "(default: collect in this process)"),
    arg("--address", default=None,
        help="with --collectors: the Ray cluster to collect on ('auto', 'host:port' or 'ray://host:port'; "
             "default: a local Ray started for this run)"),
    arg("--no-progress", action="store_true", help="no progress bar"),
)
def train(args: argparse.Namespace, extra: list[str]) -> int:
    """Train a recurrent PPO agent (GRU actor and critic, torchrl) and save its checkpoint.

    Ctrl-C stops it: the weights after the last finished batch go to ``OUT.partial.pt``
    (never to ``--out``), and the one line on stderr says so; exit code 130.

    ``--collectors N`` steps the environments in N remote collectors on Ray (torchrl's
    ``RayCollector``, each with ``--num-envs / N`` environments): a local Ray started for the
    run, or the cluster at ``--address`` (where every node has the workbench installed).
    """
    import math

    from .errors import ConfigError, OutputPathError, WorkbenchError
    from .files import check_output_path
    from .train import TrainingInterrupted, _config_for, train as run_train

    try:
        try:
            config = _config_for(args.env, total_frames=args.steps, seed=args.seed, num_envs=args.num_envs,
                                 frames_per_batch=args.frames_per_batch, epochs=args.epochs,
                                 hidden_size=args.hidden_size, lr=args.lr, delay=args.delay,
                                 collectors=args.collectors, progress=not args.no_progress)
        except ConfigError as error:  # TrainConfig names its fields; the user typed options
            message = str(error).removeprefix("TrainConfig: ")
            for field, flag in _TRAIN_FLAGS.items():
                message = message.replace(f"'{field}'", flag)
            raise ConfigError(message) from None
        _check_env_id("--env", args.env)
        if args.address is not None:
            if not config.collectors:
                raise ConfigError(f"--address: needs --collectors N (N >= 1) to collect on a Ray cluster; "
                                  f"got --address {args.address!r} without it")
            from .cluster import parse_address

            parse_address(args.address, what="--address")
        if not args.overwrite and os.path.isfile(args.out):
            raise OutputPathError(f"--out: {args.out!r} exists; pass --overwrite to replace it, or choose another name")
        check_output_path(args.out, what="--out")
        try:
            history = run_train(config, args.out, address=args.address)
        except (ValueError, KeyError, OSError) as error:
            if isinstance(error, WorkbenchError):
                raise
            print(f"workbench train: error: {_one_line(error)}", file=sys.stderr)
            return 2
    except TrainingInterrupted as stop:
        print(f"workbench train: {stop}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("workbench train: interrupted before training started; no checkpoint written", file=sys.stderr)
        return 130
    last = next((h for h in reversed(history) if not math.isnan(h["mean_return"])), None)
    seconds = history[-1]["seconds"] if history else 0.0
    print(f"trained {config.env_id} for {history[-1]['frames'] if history else 0} frames in {seconds:.1f} s")
    if last is not None:
        print(f"last batch mean_return={last['mean_return']:.2f}")
    solved = next((h for h in history if h.get("solved")), None)
    if solved is not None:
        print(f"solved at {solved['frames']} frames ({solved['seconds']:.1f} s): greedy mean return "
              f"{solved['eval_return']:.2f} >= {config.solve_return:g}")
    elif config.solve_return is not None:
        evaluated = next((h["eval_return"] for h in reversed(history) if not math.isnan(h.get("eval_return", math.nan))),
                         None)
        seen = f"; last greedy mean return {evaluated:.2f}" if evaluated is not None else ""
        print(f"not solved: the greedy mean return did not reach {config.solve_return:g} in "
              f"{config.total_frames} frames{seen}")
    print(f"wrote {args.out}")
    return 0


@command(
    arg("checkpoint", help="a checkpoint written by `train`"),
    arg("--episodes", type=int, default=20, help="episodes to run (default: %(default)s)"),
    arg("--env", default=None, help="environment id (default: the one the checkpoint was trained on)"),
    arg("--seed", type=int, default=1000, help="seed of the evaluation environments (default: %(default)s)"),
    arg("--sample", action="store_true", help="sample actions instead of the greedy ones"),
    arg("--delay", type=int, default=None,
        help="memory length of workbench/CueMemory-v0 (default: the one the checkpoint was trained with)"),
)
def evaluate(args: argparse.Namespace, extra: list[str]) -> int:
    """Evaluate a checkpoint: mean and std of the episode return (last line: mean_return=<x>)."""
    import statistics

    from .errors import ConfigError, EnvMismatchError, WorkbenchError
    from .checkpoints import checkpoint_metadata, load_checkpoint, recorded_env
    from .tasks import cue_success_rate
    from .train import evaluate as run_evaluate

    _at_least("--episodes", args.episodes, 1)
    _at_least("--seed", args.seed, 0)
    _at_least("--delay", args.delay, 1)
    if args.env is not None:
        _check_env_id("--env", args.env)
    try:
        policy, _ = load_checkpoint(args.checkpoint)
        recorded = recorded_env(checkpoint_metadata(args.checkpoint))
        env_id = args.env or (recorded or {}).get("env_id")
        if not env_id:
            raise ConfigError(f"--env: {args.checkpoint!r} names no environment; pass --env")
        delay = args.delay if args.delay is not None else (
            (recorded or {}).get("delay") if env_id == (recorded or {}).get("env_id") else None)
        if delay is not None:
            from .envs import EnvSpec

            try:
                EnvSpec(env_id, delay=delay)
            except ConfigError as error:
                raise ConfigError(f"--delay: {str(error).removeprefix('EnvSpec: ')}") from None
        try:
            returns = run_evaluate(policy, env_id, args.episodes, seed=args.seed, deterministic=not args.sample,
                                   delay=delay)
        except EnvMismatchError as error:
            where = "--env" if args.env else "the checkpoint's environment (pass --env)"
            raise EnvMismatchError(f"{where}: {error}") from None
    except (ValueError, KeyError, OSError) as error:
        if isinstance(error, WorkbenchError):
            raise
        print(f"workbench evaluate: error: {_one_line(error)}", file=sys.stderr)
        return 2
    mean = statistics.fmean(returns)
    std = statistics.pstdev(returns)
    print(f"env={env_id} episodes={len(returns)}")
    print(f"return: mean {mean:.2f} std {std:.2f} min {min(returns):.2f} max {max(returns):.2f}")
    if env_id.startswith("workbench/CueMemory"):
        print(f"correct_decisions={cue_success_rate(returns):.3f}")
    print(f"mean_return={mean:.4f}")
    return 0


_SWEEP_NAMES = {"grid": "--grid", "base": "--set", "seeds": "--seeds", "env_id": "--env", "out": "--out",
                "workers": "--workers", "address": "--address", "eval_episodes": "--eval-episodes"}
"""The arguments of :class:`workbench.sweep.SweepSpec` and :func:`~workbench.sweep.run_sweep` by option."""


def _sweep_option(error):
    """``error`` with its leading argument name (``grid: ...``) as the option's (``--grid: ...``)."""
    message = str(error)
    name, sep, rest = message.partition(": ")
    if sep and name in _SWEEP_NAMES:
        return type(error)(f"{_SWEEP_NAMES[name]}: {rest}")
    if message.startswith("trial "):  # a combination of the grid's values that makes no TrainConfig
        return type(error)(f"--grid: {message}")
    return error


@command(
    arg("--env", default="workbench/CueMemory-v0", help="environment id (default: %(default)s)"),
    arg("--grid", action="append", default=[], metavar="FIELD=V1,V2,...",
        help="a TrainConfig field (hidden_size, lr, epochs, ... or the task's delay) and its values; repeat "
             "for more fields (sizes such as head_cells as 64x64)"),
    arg("--seeds", default="1", help="how many seeds (3: seeds 0,1,2), or the seeds (0,5,9) (default: %(default)s)"),
    arg("--out", required=True, help="folder of the sweep: new, or an earlier run of the same sweep (it resumes)"),
    arg("--address", default=None,
        help="Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default: a local Ray started for the sweep)"),
    arg("--workers", type=int, default=None, help="trials at once (default: the cluster's CPUs)"),
    arg("--steps", type=int, default=None, help="total environment frames per trial (default: per environment)"),
    arg("--set", action="append", default=[], metavar="FIELD=VALUE",
        help="a TrainConfig field for every trial, e.g. --set epochs=4; repeatable"),
    arg("--eval-episodes", type=int, default=20, help="greedy evaluation episodes per trial (default: %(default)s)"),
    arg("--no-probes", action="store_true", help="skip the linear probes of the hidden state"),
)
def sweep(args: argparse.Namespace, extra: list[str]) -> int:
    """Run a sweep (grid × seeds of train → evaluate → probes) on Ray; print and write the results table.

    Each trial's record is appended to ``OUT/trials.jsonl`` as it finishes; at the end
    ``OUT/results.csv`` (one row per trial), ``OUT/summary.csv`` (mean ± std over seeds) and
    ``OUT/results.json`` are written, and the checkpoints are in ``OUT/checkpoints/``. Ctrl-C
    stops the running trials and keeps the finished ones (exit 130); the same command resumes.
    Exit code 1 when a trial failed (its error is in the table and the records).
    """
    from .errors import ConfigError, WorkbenchError
    from .sweep import SweepInterrupted, SweepSpec, format_summary, parse_grid, run_sweep

    _at_least("--steps", args.steps, 1)
    _at_least("--workers", args.workers, 1)
    _at_least("--eval-episodes", args.eval_episodes, 1)
    text = args.seeds.strip()
    try:
        seeds = int(text) if text.isdigit() else tuple(int(s) for s in text.split(","))
    except ValueError:
        raise ConfigError(f"--seeds: expected a count such as 3 or seeds such as 0,5,9; got {args.seeds!r}") from None
    base = parse_grid(args.set, what="--set", many=False)
    if args.steps is not None:
        if "total_frames" in base:
            raise ConfigError("--steps: total_frames is also given with --set; give it once")
        base["total_frames"] = args.steps
    try:
        spec = SweepSpec(args.env, parse_grid(args.grid), seeds=seeds, base=base,
                         eval_episodes=args.eval_episodes, probes=not args.no_probes)
    except WorkbenchError as error:
        raise _sweep_option(error) from None
    from tqdm.auto import tqdm

    bars = []  # the bar appears with the first report, once Ray is up (an unreachable address is one line)

    def progress(done: int, total: int | None) -> None:
        if not bars:
            bars.append(tqdm(total=total, desc="sweep", unit="trial", dynamic_ncols=True))
        bars[0].n = done
        bars[0].refresh()

    def record(rec: dict) -> None:
        bars[0].set_postfix_str(f"{rec['key']} {rec['status']}", refresh=False)
        if rec["status"] != "ok":
            bars[0].write(f"failed: {rec['key']}: {rec['error']}")

    try:
        try:
            records = run_sweep(spec, args.out, address=args.address, workers=args.workers,
                                on_progress=progress, on_record=record)
        finally:
            for bar in bars:
                bar.close()
    except WorkbenchError as error:
        raise _sweep_option(error) from None
    except SweepInterrupted as stop:
        kept = sum(r["status"] == "ok" for r in stop.records)
        print(f"workbench sweep: interrupted; kept {kept} of {stop.total} trials in {str(args.out)!r}; "
              "run the same command to resume", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("workbench sweep: interrupted before any trial ran; run the same command to start again",
              file=sys.stderr)
        return 130
    print(format_summary(records))
    failed = [r for r in records if r["status"] != "ok"]
    for r in failed:
        print(f"failed: {r['key']}: {r['error']}")
    out = Path(args.out)
    print(f"{len(records) - len(failed)} of {len(records)} trials ok; wrote {out / 'results.csv'}, "
          f"{out / 'summary.csv'}, {out / 'results.json'}")
    return 1 if failed else 0


@command(
    arg("--device", default="cuda",
        help="cuda (default) or cuda:N; cpu: a dry run of the same steps on a tiny budget"),
    arg("--budget", type=float, default=300.0, help="seconds for the whole check (default: %(default)s)"),
)
def check_gpu(args: argparse.Namespace, extra: list[str]) -> int:
    """Run the GPU checks (gpu tests, a rollout on CUDA, bench --quick); one summary line."""
    import math
    import re
    import time

    from .errors import ConfigError
    from .gpu_check import cuda_unavailable_reason, run_checks, summary

    if not re.fullmatch(r"cpu|cuda(:\d+)?", args.device):
        raise ConfigError(f"--device: expected cuda, cuda:N or cpu (a dry run); got {args.device!r}")
    if not (math.isfinite(args.budget) and args.budget > 0):
        raise ConfigError(f"--budget: expected a number of seconds > 0; got {args.budget}")
    if args.device != "cpu":
        reason = cuda_unavailable_reason()
        if reason is not None:
            print(f"check-gpu: CUDA is not available ({reason}); nothing to check, nothing run")
            return 0
    start = time.perf_counter()
    results = run_checks(args.device, budget_s=args.budget)
    print(summary(args.device, results, time.perf_counter() - start))
    return 0 if all(r.ok for r in results) else 1


command(*BENCH_ARGUMENTS)(bench)  # registered here: listed after check-gpu


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subparser per registered command."""
    parser = argparse.ArgumentParser(
        prog="python -m workbench",
        description="GRU Workbench: an interactive workbench for recurrent RL policies.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {workbench_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, cmd in _COMMANDS.items():
        doc = (cmd.run.__doc__ or "").strip()
        p = sub.add_parser(name, help=doc.splitlines()[0] if doc else None, description=doc,
                           allow_abbrev=False)  # so pass-through options are never taken for ours
        for flags, options in cmd.arguments:
            p.add_argument(*flags, **options)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not _COMMANDS[args.command].passthrough:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return _COMMANDS[args.command].run(args, extra) or 0
    except KeyboardInterrupt:
        print(f"workbench {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one line for the workbench's own errors; a traceback for bugs
        from .errors import WorkbenchError

        if not isinstance(error, WorkbenchError):
            raise
        print(f"workbench {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2


def _one_line(error: BaseException) -> str:
    """An error's message on one line (a multi-line message joined with '; ')."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(lines) or type(error).__name__
