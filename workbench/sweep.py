"""Sweeps: many trainings (a grid of settings × seeds), each trained, evaluated and probed, as Ray tasks.

A :class:`SweepSpec` names an environment, a grid over :class:`~workbench.train.TrainConfig`
fields (``hidden_size``, ``lr``, ``epochs``, ... and the task's knob ``delay``) and the seeds;
it checks everything before any work. :func:`run_sweep` runs each :class:`Trial` as a Ray
task (:func:`workbench.cluster.ray_session`: an embedded local Ray, or a cluster by address):
train → greedy evaluation → linear probes of the hidden state on a short greedy rollout (when
the task reports ``true_state``) → one record. Records are appended to ``out/trials.jsonl`` as
they arrive, so an interrupted sweep resumes where it stopped; at the end ``out/results.csv``,
``out/results.json`` (trials and the summary over seeds) and ``out/summary.csv`` are written.

Examples:
    >>> spec = SweepSpec("workbench/CueMemory-v0", {"hidden_size": "4,8", "delay": (4, 8)}, seeds=2)
    >>> [t.key for t in spec.trials()][:3]
    ['delay=4,hidden_size=4,seed=0', 'delay=4,hidden_size=4,seed=1', 'delay=8,hidden_size=4,seed=0']
    >>> len(spec.trials()), spec.trials()[0].params
    (8, {'hidden_size': 4, 'delay': 4})
    >>> SweepSpec("workbench/CueMemory-v0", {"hidden_sze": (4, 8)})
    Traceback (most recent call last):
    ...
    workbench.errors.ConfigError: grid: unknown field 'hidden_sze'; expected one of anneal_lr, best_window, clip_epsilon, critic_coeff, delay, entropy_coeff, epochs, eval_episodes, eval_every, frames_per_batch, gamma, head_cells, hidden_size, keep_best, lmbda, lr, max_grad_norm, max_steps, minibatches, num_envs, reward_scale, solve_return, total_frames
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import socket
import statistics
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .errors import Cancelled, ConfigError, OutputPathError
from .jobs import CancelToken, Progress, report

__all__ = ["SweepSpec", "Trial", "SweepInterrupted", "run_sweep", "load_records", "latest_records", "mean_std",
           "results_rows", "summarize", "write_results", "format_summary", "grid_fields", "parse_grid"]

EXCLUDED = {"env_id": "the sweep's env_id", "seed": "the sweep's seeds", "progress": "nothing (trials show no bar)",
            "collectors": "nothing (each trial is one Ray task and collects in it)"}
"""TrainConfig fields a grid or base may not set, and what sets them instead."""
POLICY_ONLY = ("num_layers", "activation", "python_based", "record_gates", "recurrent_backend")
"""PolicySpec fields that :func:`workbench.train.train` does not take (it builds the policy from
``hidden_size`` and ``head_cells``): a grid over them would not change the trained policy."""
OWN_FILES = ("spec.json", "trials.jsonl", "results.csv", "results.json", "summary.csv", "checkpoints")
"""What a sweep writes into its folder."""
PROBE_ENVS = 8
"""Environments of the greedy rollout the probes read."""


def grid_fields() -> dict[str, Any]:
    """``{name: Setting}`` of the fields a grid (or ``base``) may set: TrainConfig's but env_id, seed, progress.

    Examples:
        >>> fields = grid_fields()
        >>> fields["hidden_size"].kind, fields["delay"].optional, "seed" in fields
        ('int', True, False)
    """
    from .specs import settings
    from .train import TrainConfig

    return {name: s for name, s in settings(TrainConfig).items() if name not in EXCLUDED}


def _coerce(where: str, name: str, setting, value: Any) -> Any:
    """``value`` (a Python value or the text of a command line) as the field's type, or a ConfigError."""
    kind, text = setting.kind, value.strip() if isinstance(value, str) else None
    expected = {"int": "an integer", "float": "a number", "bool": "true or false",
                "ints": "sizes such as 32 or 64x64 (a tuple of ints)", "str": "a string"}[kind]
    if setting.optional and (value is None or (text is not None and text.lower() == "none")):
        return None
    bad = ConfigError(f"{where}: {name!r}: expected {expected}" + (" or none" if setting.optional else "")
                      + f"; got {value!r}")
    if kind == "int":
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            if text is None:
                raise bad
            return int(text)
        except ValueError:
            raise bad from None
    if kind == "float":
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return float(value)
        try:
            if text is None:
                raise bad
            return float(text)
        except ValueError:
            raise bad from None
    if kind == "bool":
        if isinstance(value, bool):
            return value
        words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
        if text is not None and text.lower() in words:
            return words[text.lower()]
        raise bad
    if kind == "ints":
        if isinstance(value, int) and not isinstance(value, bool):
            return (value,)
        if isinstance(value, (tuple, list)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return tuple(value)
        if text is not None:
            if text in ("", "()"):
                return ()
            try:
                return tuple(int(part) for part in text.lower().split("x"))
            except ValueError:
                raise bad from None
        raise bad
    return value


def _fmt(value: Any) -> str:
    """A grid value in a trial key: ``4``, ``0.001``, ``true``, ``64x64``, ``none``.

    Examples:
        >>> [_fmt(v) for v in (4, 1e-3, True, (64, 64), (), None)]
        ['4', '0.001', 'true', '64x64', '()', 'none']
    """
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value) if value else "()"
    return repr(value) if isinstance(value, float) else str(value)


def parse_grid(entries: Sequence[str], *, what: str = "--grid", many: bool = True) -> dict[str, str]:
    """``["hidden_size=4,8", "delay=4"]`` (the command line's ``--grid``) → ``{"hidden_size": "4,8", ...}``.

    Examples:
        >>> parse_grid(["hidden_size=4,8", "delay = 4"])
        {'hidden_size': '4,8', 'delay': '4'}
        >>> parse_grid(["hidden_size"])
        Traceback (most recent call last):
        ...
        workbench.errors.ConfigError: --grid: expected FIELD=VALUE[,VALUE...]; got 'hidden_size'
    """
    grid: dict[str, str] = {}
    for entry in entries:
        name, sep, values = entry.partition("=")
        name = name.strip()
        if not sep or not name or not values.strip():
            raise ConfigError(f"{what}: expected FIELD=VALUE{'[,VALUE...]' if many else ''}; got {entry!r}")
        if name in grid:
            raise ConfigError(f"{what}: {name!r} given twice; put all its values in one {what} {name}=A,B,...")
        grid[name] = values.strip()
    return grid


@dataclass(frozen=True)
class Trial:
    """One training of a sweep: its grid values and seed, and its stable id ``key``."""

    params: dict[str, Any]
    """the grid's values for this trial, by field (in the grid's order)"""
    seed: int
    """the TrainConfig seed"""

    @property
    def key(self) -> str:
        """``"delay=8,hidden_size=16,seed=0"``: fields sorted by name, then the seed."""
        parts = [f"{name}={_fmt(self.params[name])}" for name in sorted(self.params)]
        return ",".join([*parts, f"seed={self.seed}"])

    @property
    def group(self) -> str:
        """The key without the seed: what the summary averages over seeds (``""`` for an empty grid)."""
        return ",".join(f"{name}={_fmt(self.params[name])}" for name in sorted(self.params))


@dataclass(frozen=True, eq=True)
class SweepSpec:
    """What a sweep trains: a grid over TrainConfig fields × seeds, on one environment.

    Args:
        env_id: a registered gymnasium id (``workbench/CueMemory-v0``, ``workbench/CartPoleNoVel-v1``...).
        grid: ``{field: values}``; a field is any TrainConfig field but ``env_id``, ``seed`` and
            ``progress`` (:func:`grid_fields`), the task's knob ``delay`` included; values a sequence or
            a comma-separated string (``"4,8,16"``; sizes as ``64x64``), coerced to the field's type.
        seeds: a count (``3``: seeds 0, 1, 2) or the seeds themselves.
        base: TrainConfig fields set for every trial (e.g. ``{"total_frames": 20_000}``), over
            :data:`workbench.train.DEFAULTS` for the environment.
        eval_episodes: greedy evaluation episodes per trial.
        probes: probe the hidden state (when the task reports ``true_state``).
        probe_steps: steps per environment of the probes' greedy rollout (None: 128, or 8 episodes
            for a task with a delay, whichever is longer).

    Raises:
        ConfigError: naming the field, what was expected and what came in; every trial's
            TrainConfig is built here, so a combination that does not fit fails before any work.
    """

    env_id: str
    grid: Mapping[str, Any] = field(default_factory=dict)
    seeds: int | tuple[int, ...] = 1
    base: Mapping[str, Any] = field(default_factory=dict)
    eval_episodes: int = 20
    probes: bool = True
    probe_steps: int | None = None

    def __post_init__(self) -> None:
        from .envs import EnvSpec

        try:
            EnvSpec(self.env_id)
        except ConfigError:
            raise ConfigError(f"env_id: expected a registered gymnasium id such as workbench/CueMemory-v0 or "
                              f"workbench/CartPoleNoVel-v1; got {self.env_id!r}") from None
        known = grid_fields()
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731  (frozen)
        set_("grid", self._values("grid", self.grid, known, many=True))
        set_("base", self._values("base", self.base, known, many=False))
        both = sorted(set(self.grid) & set(self.base))
        if both:
            raise ConfigError(f"base: {both[0]!r} is also in the grid; set it in one place")
        set_("seeds", self._seeds(self.seeds))
        for name, low in (("eval_episodes", 1), ("probe_steps", 2)):
            value = getattr(self, name)
            if value is None and name == "probe_steps":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name}: expected an integer >= {low}; got {value!r}")
        if not isinstance(self.probes, bool):
            raise ConfigError(f"probes: expected True or False; got {self.probes!r}")
        for trial in self.trials():  # every combination must make a TrainConfig: fail now, not in a worker
            try:
                self.config(trial)
            except ConfigError as error:
                where = f"trial {trial.key}" if self.grid else "base"
                raise ConfigError(f"{where}: {str(error).removeprefix('TrainConfig: ')}") from None

    @staticmethod
    def _values(where: str, given: Any, known: dict, *, many: bool) -> dict[str, Any]:
        if not isinstance(given, Mapping):
            raise ConfigError(f"{where}: expected a dict of field: value{'s' if many else ''}; got {given!r}")
        checked: dict[str, Any] = {}
        for name, values in given.items():
            if name not in known:
                if name in EXCLUDED:
                    raise ConfigError(f"{where}: {name!r} is set by {EXCLUDED[name]}, not in the {where}")
                if name in POLICY_ONLY:
                    raise ConfigError(
                        f"{where}: {name!r} is a PolicySpec field that training does not take (it builds the "
                        f"policy from hidden_size and head_cells); expected one of {', '.join(sorted(known))}")
                raise ConfigError(f"{where}: unknown field {name!r}; expected one of {', '.join(sorted(known))}")
            if not many:
                checked[name] = _coerce(where, name, known[name], values)
                continue
            if isinstance(values, str):
                values = values.split(",")
            elif not isinstance(values, (list, tuple)) or (known[name].kind == "ints" and values
                                                           and all(isinstance(v, int) for v in values)):
                values = [values]  # one value (head_cells=(64, 64) is one value)
            coerced = tuple(_coerce(where, name, known[name], v) for v in values)
            if not coerced:
                raise ConfigError(f"{where}: {name!r}: expected at least one value; got {values!r}")
            if len(set(map(_fmt, coerced))) != len(coerced):
                raise ConfigError(f"{where}: {name!r}: a value is given twice; got {', '.join(map(_fmt, coerced))}")
            checked[name] = coerced
        return checked

    @staticmethod
    def _seeds(seeds: Any) -> tuple[int, ...]:
        if isinstance(seeds, bool):
            raise ConfigError(f"seeds: expected a count >= 1 or a list of seeds >= 0; got {seeds!r}")
        if isinstance(seeds, int):
            if seeds < 1:
                raise ConfigError(f"seeds: expected a count >= 1 or a list of seeds >= 0; got {seeds!r}")
            return tuple(range(seeds))
        if (isinstance(seeds, (list, tuple)) and seeds
                and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
                and len(set(seeds)) == len(seeds)):
            return tuple(seeds)
        raise ConfigError(f"seeds: expected a count >= 1 or a list of distinct seeds >= 0; got {seeds!r}")

    def trials(self) -> list[Trial]:
        """Every combination of the grid's values × the seeds (the seed varies fastest)."""
        names = list(self.grid)
        return [Trial(dict(zip(names, values)), seed)
                for values in itertools.product(*(self.grid[n] for n in names)) for seed in self.seeds]

    def config(self, trial: Trial):
        """The :class:`~workbench.train.TrainConfig` of ``trial``: the environment's DEFAULTS, ``base``, its values.

        A ``None`` in ``base`` or the grid is a value, not "unset": ``solve_return=None`` trains every frame.

        Examples:
            >>> spec = SweepSpec("workbench/CueMemory-v0", {"hidden_size": [4]}, base={"solve_return": None})
            >>> config = spec.config(spec.trials()[0])
            >>> config.solve_return is None, config.hidden_size, config.total_frames
            (True, 4, 28800)
        """
        from .train import DEFAULTS, TrainConfig

        fields = {**DEFAULTS.get(self.env_id, {}), **self.base, **trial.params, "seed": trial.seed, "progress": False}
        return TrainConfig(env_id=self.env_id, **fields)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (``spec.json``); :meth:`from_dict` inverts it."""
        plain = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731
        return {"env_id": self.env_id, "grid": {k: [plain(v) for v in vs] for k, vs in self.grid.items()},
                "seeds": list(self.seeds), "base": {k: plain(v) for k, v in self.base.items()},
                "eval_episodes": self.eval_episodes, "probes": self.probes, "probe_steps": self.probe_steps}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepSpec:
        """The spec of :meth:`to_dict`."""
        if not isinstance(data, Mapping) or "env_id" not in data:
            raise ConfigError(f"SweepSpec.from_dict: expected a dict with env_id, grid, seeds...; got {data!r}")
        data = dict(data)
        data["seeds"] = tuple(data.get("seeds", (0,)))
        grid = data.get("grid", {})
        if isinstance(grid, Mapping):  # a list value of an "ints" field is one tuple per entry
            data["grid"] = {k: tuple(tuple(v) if isinstance(v, list) else v for v in vs) for k, vs in grid.items()}
        return cls(**data)


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_sweep`: the running trials were stopped; ``records`` are the finished ones."""

    def __init__(self, records: list[dict], total: int, out: Path) -> None:
        self.records, self.total, self.out = records, total, out
        done = sum(r["status"] == "ok" for r in records)
        super().__init__(f"interrupted; kept {done} of {total} trials in {str(out)!r}")


# ---------------------------------------------------------------------------------------------- the out folder
def _check_out(spec: SweepSpec, out: str | os.PathLike) -> Path:
    """``out`` is new, empty, or a folder of the same sweep; a folder of another sweep or of other files is refused."""
    from .files import check_output_folder

    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"out: expected a folder for the sweep; {str(out)!r} is a file")
    check_output_folder(path, what="out")
    if not path.is_dir():
        return path
    stored = path / "spec.json"
    if stored.is_file():
        try:
            previous = json.loads(stored.read_text())
        except (OSError, ValueError) as error:
            raise OutputPathError(f"out: {str(stored)!r} is not a sweep's spec ({error}); choose another folder") \
                from None
        mine = spec.to_dict()
        if previous != mine:
            differs = sorted(k for k in set(mine) | set(previous) if previous.get(k) != mine.get(k))
            raise OutputPathError(
                f"out: {str(out)!r} holds a sweep of another spec (its {', '.join(differs)} differ"
                f"{'s' if len(differs) == 1 else ''}); choose another folder, or run that sweep's own command to "
                "resume it")
        return path
    others = sorted(p.name for p in path.iterdir())
    if others:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        raise OutputPathError(f"out: {str(out)!r} holds files that are not a sweep's ({shown}); "
                              "choose a new or empty folder")
    return path


def _open_out(spec: SweepSpec, path: Path) -> None:
    from .files import atomic_write

    (path / "checkpoints").mkdir(parents=True, exist_ok=True)
    if not (path / "spec.json").is_file():
        atomic_write(path / "spec.json", (json.dumps(spec.to_dict(), indent=1) + "\n").encode(), what="out")


def load_records(out: str | os.PathLike) -> list[dict]:
    """The records of ``out/trials.jsonl`` in the order they were written (``[]`` when there are none).

    A line that cannot be read (a record cut short when the machine stopped) is skipped with a warning.
    """
    path = Path(out).expanduser() / "trials.jsonl"
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            warnings.warn(f"{path}: line {number} is not a record (cut short?); skipped", stacklevel=2)
            continue
        if isinstance(record, dict) and "key" in record:
            records.append(record)
    return records


def _append(path: Path, record: dict) -> None:
    """One JSON line, flushed and fsynced (after a newline if a cut-short line ends the file)."""
    line = json.dumps(_finite(record), allow_nan=False) + "\n"
    with open(path, "a+b") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() > 0:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                fh.write(b"\n")
        fh.write(line.encode())
        fh.flush()
        os.fsync(fh.fileno())


def _finite(value: Any) -> Any:
    """NaN and infinities as None (JSON null), recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def latest_records(records: Sequence[dict], trials: Sequence[Trial] | None = None) -> list[dict]:
    """The last record of each key (a re-run failed trial replaces its failure), in ``trials`` order if given."""
    last: dict[str, dict] = {}
    for record in records:
        last[record["key"]] = record
    if trials is None:
        return list(last.values())
    return [last[t.key] for t in trials if t.key in last]


# ---------------------------------------------------------------------------------------------- one trial
def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {'; '.join(lines)}" if lines else type(error).__name__


def _run_trial(spec_data: dict, params: dict, seed: int) -> tuple[dict, bytes | None]:
    """The Ray task: train → evaluate → probes; returns the record (without its checkpoint path) and the
    checkpoint's bytes (the driver writes them: workers need no shared filesystem)."""
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    spec = SweepSpec.from_dict(spec_data)
    trial = Trial(dict(params), seed)
    record: dict[str, Any] = {
        "key": trial.key, "params": trial.params, "seed": seed, "env_id": spec.env_id, "status": "ok",
        "error": None, "metrics": None, "curve": [], "seconds": None, "checkpoint": None, "provenance": None,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }
    data = None
    try:
        record["metrics"], record["curve"], record["provenance"], data = _train_evaluate_probe(spec, trial)
    except Exception as error:  # the sweep goes on: this trial is recorded with its error
        record.update(status="failed", error=_one_line(error), metrics=None)
    record["seconds"] = time.perf_counter() - start
    return _finite(record), data


def _train_evaluate_probe(spec: SweepSpec, trial: Trial):
    import tempfile

    from . import provenance
    from .checkpoints import load_checkpoint
    from .tasks import cue_success_rate
    from .train import evaluate, train

    config = spec.config(trial)
    with tempfile.TemporaryDirectory(prefix="wbsweep-") as tmp:
        path = Path(tmp) / "policy.pt"
        history = train(config, path)
        data = path.read_bytes()
        policy, _ = load_checkpoint(path)
    returns = evaluate(policy, config.env_id, spec.eval_episodes, deterministic=True, max_steps=config.max_steps,
                       delay=config.delay)
    mean = statistics.fmean(returns)
    target = getattr(config, "solve_return", None)
    if target is None:
        import gymnasium as gym

        target = gym.spec(config.env_id).reward_threshold
    last = history[-1] if history else {}
    metrics = {
        "mean_return": mean,
        "return_std": statistics.pstdev(returns),
        "success": cue_success_rate(returns) if config.env_id.startswith("workbench/CueMemory") else None,
        "solved": bool(target is not None and mean >= target),
        "frames": int(last.get("frames", 0)),
        "train_seconds": float(last.get("seconds", 0.0)),
        "probe_r2": None,
        "probe_r2_by_age": None,
    }
    if spec.probes:
        metrics["probe_r2"], metrics["probe_r2_by_age"] = _probe(policy, config, spec.probe_steps)
    curve = [{"frames": int(row["frames"]), "seconds": float(row["seconds"]),
              "mean_return": row.get("mean_return"), "eval_return": row.get("eval_return")} for row in history]
    made = provenance.record(env_id=config.env_id, train_config=config.to_dict(), sweep_key=trial.key,
                             evaluation={"episodes": spec.eval_episodes, "deterministic": True, "seed": 1000})
    return metrics, curve, made, data


def _probe(policy, config, steps: int | None) -> tuple[dict | None, dict | None]:
    """Held-out R² of a linear probe from the hidden state to each true-state entry, overall and by steps since
    reset, on a greedy rollout; ``(None, None)`` when the task reports no true state or too few episodes."""
    from .envs import make_env, state_names
    from .errors import AnalysisError
    from .episodes import as_bool_init
    from .hidden import hidden_states
    from .keys import KEYS
    from .probes import linear_probe, split_episodes
    from .rollout import rollout
    from .workers import close_env

    if steps is None:
        steps = max(128, 8 * (config.delay + 1)) if config.delay is not None else 128
    env_spec = config.env_spec(num_envs=PROBE_ENVS, seed=2000 + config.seed)
    env = make_env(env_spec, policy)
    try:
        traj = rollout(policy, env, steps, seed=2000 + config.seed, progress=False, deterministic=True,
                       device="cpu")
    finally:
        close_env(env)
    if KEYS.true_state not in traj.keys(True):
        return None, None
    state = traj.get(KEYS.true_state).double()
    names = list(state_names(env_spec) or ())
    names += [f"state_{i}" for i in range(len(names), state.shape[-1])]
    try:
        init = as_bool_init(traj.get(KEYS.is_init))
        test = split_episodes(init, seed=0)
        hidden = hidden_states(traj).double()
        results = {name: linear_probe(hidden, state[..., i], init, name=name, test=test)
                   for i, name in enumerate(names[: state.shape[-1]])}
    except AnalysisError:
        return None, None
    r2 = {name: _num(res.r2) for name, res in results.items()}
    by_age = {name: [_num(v) for v in res.curve.tolist()] for name, res in results.items()}
    return r2, by_age


def _num(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _failed(trial: Trial, env_id: str, error: BaseException, seconds: float | None) -> dict:
    """The record of a trial whose task did not come back (its worker died, it was lost...)."""
    cause = getattr(error, "cause", None)
    return {"key": trial.key, "params": trial.params, "seed": trial.seed, "env_id": env_id, "status": "failed",
            "error": _one_line(cause if isinstance(cause, BaseException) else error), "metrics": None,
            "curve": [], "seconds": seconds, "checkpoint": None, "provenance": None, "worker": None}


# ---------------------------------------------------------------------------------------------- the sweep
def run_sweep(
    spec: SweepSpec,
    out: str | os.PathLike,
    *,
    address: str | None = None,
    workers: int | None = None,
    cancel: CancelToken | None = None,
    on_progress: Progress | None = None,
    on_record: Callable[[dict], None] | None = None,
    cpus_per_trial: float = 1,
    gpus_per_trial: float = 0,
) -> list[dict]:
    """Runs the trials of ``spec`` not yet finished in ``out`` as Ray tasks; returns the record of every trial run so far.

    Args:
        spec: the sweep.
        out: its folder: new, empty, or the folder of an earlier run of the same spec (its finished
            trials are skipped, failed ones run again).

    Keyword Args:
        address: None: a local Ray started here; ``"auto"``, ``"host:port"``, ``"ray://host:port"``: a cluster
            (:func:`workbench.cluster.ray_session`).
        workers: trials running at once (default: the cluster's CPUs / ``cpus_per_trial``).
        cancel: stops the running trials (their workers are killed) and keeps the finished records.
        on_progress: ``on_progress(done, total)`` with the trials finished (ok or failed) and planned.
        on_record: called with each new record as it is written.
        cpus_per_trial, gpus_per_trial: the Ray resources each trial declares. Training runs on the CPU
            (``train`` builds its policy there), so no GPU is asked for by default: a GPU per trial would
            only limit how many run at once.

    Returns:
        The latest record of each trial of ``spec`` found in ``out`` (in trial order), including failed ones.

    Raises:
        ConfigError: a bad ``workers``; ClusterError: Ray could not start or the address cannot be reached;
        OutputPathError: ``out`` holds another sweep or other files (nothing in it is touched).
        Cancelled: ``cancel`` was set (``partial``: the records, ``done``/``total``: finished trials).
        SweepInterrupted: Ctrl-C (a ``KeyboardInterrupt``; ``records``: the records).
    """
    from .cluster import cluster_cpus, ray_session

    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"workers: expected an integer >= 1; got {workers!r}")
    for name, value, low in (("cpus_per_trial", cpus_per_trial, 0.0), ("gpus_per_trial", gpus_per_trial, 0.0)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low:
            raise ConfigError(f"{name}: expected a number >= {low:g}; got {value!r}")
    path = _check_out(spec, out)
    trials = spec.trials()
    total = len(trials)
    finished = {r["key"] for r in latest_records(load_records(path), trials) if r["status"] == "ok"}
    todo = [t for t in trials if t.key not in finished]
    done = total - len(todo)
    if not todo:
        records = latest_records(load_records(path), trials)
        write_results(path, spec, records)
        report(on_progress, done, total)
        return records
    if cancel is not None and cancel.cancelled:
        raise Cancelled("sweep", done=done, total=total, unit="trials",
                        partial=latest_records(load_records(path), trials))

    spec_data = spec.to_dict()
    stopped: BaseException | None = None
    with ray_session(address, what="address"):
        import ray

        _open_out(spec, path)
        report(on_progress, done, total)  # Ray is up: the first report
        in_flight = workers or max(1, int(cluster_cpus() // max(cpus_per_trial, 1e-9)))
        task = ray.remote(_run_trial).options(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, max_retries=0)
        pending: dict[Any, tuple[Trial, float]] = {}
        queue = list(todo)
        try:
            while queue or pending:
                if cancel is not None and cancel.cancelled:
                    stopped = Cancelled("sweep", done=done, total=total, unit="trials")
                    break
                while queue and len(pending) < in_flight:
                    trial = queue.pop(0)
                    pending[task.remote(spec_data, trial.params, trial.seed)] = (trial, time.perf_counter())
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.2)
                for ref in ready:
                    trial, started = pending.pop(ref)
                    try:
                        record, data = ray.get(ref)
                    except ray.exceptions.RayError as error:  # the worker died, the task was lost...
                        record, data = _failed(trial, spec.env_id, error, time.perf_counter() - started), None
                    _store(path, record, data)
                    done += 1
                    if on_record is not None:
                        on_record(record)
                    report(on_progress, done, total)
        except KeyboardInterrupt:
            stopped = KeyboardInterrupt()
        finally:
            for ref in pending:  # stop what runs: its worker is killed, nothing of it is kept
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # already finished or gone
                    pass
    records = latest_records(load_records(path), trials)
    write_results(path, spec, records)
    if isinstance(stopped, Cancelled):
        raise Cancelled("sweep", done=sum(r["status"] == "ok" for r in records), total=total, unit="trials",
                        partial=records)
    if stopped is not None:
        raise SweepInterrupted(records, total, path)
    return records


def _store(path: Path, record: dict, data: bytes | None) -> None:
    """Writes the trial's checkpoint (if any) and appends its record."""
    from .files import atomic_write

    if data is not None:
        relative = f"checkpoints/{record['key']}.pt"
        atomic_write(path / relative, data, what="out")
        record["checkpoint"] = relative
    _append(path / "trials.jsonl", record)


# ---------------------------------------------------------------------------------------------- the tables
METRIC_COLUMNS = ("mean_return", "return_std", "success", "solved", "frames", "train_seconds")


def results_rows(records: Sequence[dict]) -> list[dict]:
    """One flat row per record: key, the grid's values, seed, status, the main metrics, seconds, probe R², error.

    Examples:
        >>> rows = results_rows([{"key": "hidden_size=4,seed=0", "params": {"hidden_size": 4}, "seed": 0,
        ...                       "status": "ok", "error": None, "seconds": 3.0, "checkpoint": "c.pt",
        ...                       "metrics": {"mean_return": 0.5, "success": 0.75, "probe_r2": {"cue": 0.9}}}])
        >>> rows[0]["hidden_size"], rows[0]["success"], rows[0]["probe_r2.cue"]
        (4, 0.75, 0.9)
    """
    rows = []
    for record in records:
        metrics = record.get("metrics") or {}
        row: dict[str, Any] = {"key": record["key"], **record.get("params", {}), "seed": record.get("seed"),
                               "status": record.get("status")}
        row.update({name: metrics.get(name) for name in METRIC_COLUMNS})
        row["seconds"] = record.get("seconds")
        for name, value in (metrics.get("probe_r2") or {}).items():
            row[f"probe_r2.{name}"] = value
        row["checkpoint"] = record.get("checkpoint")
        row["error"] = record.get("error")
        rows.append(row)
    return rows


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """The mean over seeds and the sample standard deviation (``None`` with fewer than two values).

    Examples:
        >>> mean_std([0.5, 1.0])[0], mean_std([1.0]), mean_std([])
        (0.75, (1.0, None), (None, None))
    """
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def summarize(records: Sequence[dict]) -> list[dict]:
    """One row per grid point over its seeds: trials ok and failed, mean and std (sample, over seeds) of the
    success rate and of the mean return (the std is None with fewer than two finished seeds).

    Examples:
        >>> recs = [{"key": f"hidden_size=4,seed={s}", "params": {"hidden_size": 4}, "seed": s, "status": "ok",
        ...          "metrics": {"mean_return": r, "success": (r + 1) / 2}} for s, r in enumerate([0.5, 1.0])]
        >>> row = summarize(recs)[0]
        >>> row["group"], row["ok"], row["return_mean"], round(row["return_std"], 4), row["success_mean"]
        ('hidden_size=4', 2, 0.75, 0.3536, 0.875)
    """
    groups: dict[str, list[dict]] = {}
    for record in records:
        groups.setdefault(Trial(record.get("params", {}), record.get("seed", 0)).group, []).append(record)
    rows = []
    for group, members in groups.items():
        ok = [m for m in members if m.get("status") == "ok" and m.get("metrics")]
        success = [m["metrics"]["success"] for m in ok if _is_number(m["metrics"].get("success"))]
        returns = [m["metrics"]["mean_return"] for m in ok if _is_number(m["metrics"].get("mean_return"))]
        s_mean, s_std = mean_std(success)
        r_mean, r_std = mean_std(returns)
        rows.append({"group": group, "params": dict(members[0].get("params", {})), "trials": len(members),
                     "ok": len(ok), "failed": len(members) - len(ok), "success_mean": s_mean, "success_std": s_std,
                     "return_mean": r_mean, "return_std": r_std})
    return rows


def _csv(rows: Sequence[dict]) -> bytes:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else _fmt(v) if isinstance(v, (tuple, list, bool)) else v)
                         for k, v in row.items() if not isinstance(v, dict)})
    return buffer.getvalue().encode()


def write_results(out: str | os.PathLike, spec: SweepSpec, records: Sequence[dict]) -> dict[str, Path]:
    """Writes ``results.csv`` (one row per trial), ``summary.csv`` (one per grid point) and ``results.json``
    (the spec, the trial rows, the summary) into ``out``; returns their paths."""
    from .files import atomic_write

    path = Path(out).expanduser()
    rows, summary = results_rows(records), summarize(records)
    written = {"results.csv": _csv(rows), "summary.csv": _csv([{k: v for k, v in r.items() if k != "params"}
                                                               for r in summary])}
    written["results.json"] = (json.dumps(_finite({"spec": spec.to_dict(), "trials": rows, "summary": summary}),
                                          indent=1, allow_nan=False) + "\n").encode()
    return {name: atomic_write(path / name, data, what="out") for name, data in written.items()}


def format_summary(records: Sequence[dict]) -> str:
    """The summary as a text table (the command line prints it).

    Examples:
        >>> recs = [{"key": "hidden_size=4,seed=0", "params": {"hidden_size": 4}, "seed": 0, "status": "ok",
        ...          "metrics": {"mean_return": 1.0, "success": 1.0}}]
        >>> print(format_summary(recs))
        params         ok/trials  success      return
        hidden_size=4  1/1        1.00         1.00
    """
    def cell(mean, std):
        if mean is None:
            return "-"
        return f"{mean:.2f}" + (f" ± {std:.2f}" if std is not None else "")

    table = [("params", "ok/trials", "success", "return")]
    for row in summarize(records):
        table.append((row["group"] or "(no grid)", f"{row['ok']}/{row['trials']}",
                      cell(row["success_mean"], row["success_std"]), cell(row["return_mean"], row["return_std"])))
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    widths[2] = max(widths[2], 11)
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table)
