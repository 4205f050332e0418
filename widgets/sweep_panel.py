"""Sweeps: a small grid (two fields × seeds) → ``workbench.sweep.run_sweep`` on Ray → a table and a heatmap.

The sweep runs in the background (:mod:`widgets.jobs`): a progress bar over trials and a Cancel button
(Kernel → Interrupt cancels too). Each finished trial's record arrives from the worker thread; the panel
hands it to the kernel's main thread, where the table and the heatmap
(:func:`workbench.figures.sweep_heatmap`) and the learning curves redraw, so they fill in as the trials
end. A failed trial shows in its row with its error; the sweep goes on. Cancel keeps the finished trials
(they are in the output folder's ``trials.jsonl``, and a new run there resumes: finished trials are
skipped). Pick a finished trial and *Open in explorer*: the panel emits ``"open"`` with a
:class:`TrialCheckpoint`, which the app loads into the policy builder, rolls out and shows in the explorer.
"""

from __future__ import annotations

import html
import importlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import ipywidgets as w

from workbench import figures
from workbench.envs import EnvSpec
from workbench.files import free_name
from workbench.tasks import TASKS
from workbench.sweep import grid_fields

from ._panel import Panel, html_table, parse_numbers
from .jobs import kernel_loop

__all__ = ["SweepPanel", "TrialCheckpoint", "SWEEP_FIELDS", "USER_FOLDER", "table_html"]

USER_FOLDER = Path.home() / "gru-workbench" / "sweeps"
"""where the panel proposes a new sweep folder"""

_NOT_SWEPT = ("total_frames", "max_steps", "best_window")
"""grid fields the panel leaves out: the budget has its own control, the others are not for a grid here"""


def _sweep_fields() -> dict[str, type]:
    """The fields a grid may vary here, with the type of their values: the task knob ``delay`` first, then the
    numeric fields of :func:`workbench.sweep.grid_fields` (the budget and the seeds have their own controls)."""
    fields = {name: int if info.kind == "int" else float for name, info in grid_fields().items()
              if name not in _NOT_SWEPT and info.kind in ("int", "float")}
    return {"delay": fields.pop("delay"), **fields}


SWEEP_FIELDS: dict[str, type] = _sweep_fields()
"""grid fields the panel offers, and the type their values are read as"""


@dataclass(frozen=True)
class TrialCheckpoint:
    """What the panel emits on *Open in explorer*: one finished trial's checkpoint and its environment."""

    key: str
    """the trial's key (``"delay=8,hidden_size=16,seed=0"``)"""
    path: Path
    """its checkpoint (absolute)"""
    env_spec: EnvSpec
    """the environment it was trained in (``env_id`` and the task's ``delay``)"""
    record: Mapping[str, Any]
    """its sweep record"""


def _api():
    """:mod:`workbench.sweep`, imported when a sweep starts (it brings Ray)."""
    return importlib.import_module("workbench.sweep")


def _same_sweep(folder: Path, spec) -> bool:
    """Whether ``folder`` holds an earlier run of ``spec`` (its records are shown at once; another sweep's
    folder is refused by ``run_sweep``, and shows nothing)."""
    try:
        return json.loads((folder / "spec.json").read_text()) == spec.to_dict()
    except (OSError, ValueError):
        return False


def _fmt(mean, std, digits: int = 2) -> str:
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def table_html(records: Sequence[Mapping[str, Any]], fields: Sequence[str] = ()) -> str:
    """The records as an HTML table, one row per grid point (:func:`workbench.figures.sweep_table`): the
    fields' values, finished and failed trials, success and return (mean ± spread over seeds), training
    seconds, and the failed trials' errors.

    Examples:
        >>> rec = {"params": {"delay": 4}, "seed": 0, "status": "failed", "error": "ValueError: boom"}
        >>> t = table_html([rec], ["delay"]); ("seed 0: ValueError: boom" in t, t.count("<tr>"))
        (True, 2)
    """
    rows = figures.sweep_table(records)
    fields = list(fields) or figures.sweep.sweep_fields(records)
    body = []
    for r in rows:
        errors = "<br>".join(f"seed {s}: {html.escape(e)}" for s, e in r["errors"])
        body.append([*(html.escape(str(r["params"].get(f, "–"))) for f in fields), str(r["n"]),
                     f"<span style='color:#c83c3c'>{r['failed']}</span>" if r["failed"] else "0",
                     _fmt(r["success"], r["success_std"]), _fmt(r["mean_return"], r["mean_return_std"]),
                     _fmt(r["train_seconds"], None, 1),
                     f"<span style='color:#c83c3c;font-size:12px'>{errors}</span>" if errors else ""])
    header = [*map(html.escape, fields), "finished", "failed", "success", "return", "train s", "errors"]
    return (f"<div style='max-height:320px;overflow:auto'>"
            f"{html_table(header, body, css='wb-sweep-table', numeric_from=len(fields))}</div>")


class SweepPanel(Panel):
    """Defines a small sweep, runs it in the background on Ray, and shows its trials as they finish.

    Public: ``spec()`` (the controls read as a ``SweepSpec``), ``start()`` (the *Run sweep* button),
    ``run()`` (start and wait), ``cancel()``, ``wait()``, ``records`` (the trials so far, by arrival),
    ``rows`` (:func:`workbench.figures.sweep_table` of them), ``open_trial(key)`` (the *Open in explorer*
    button), ``on_open(cb)``.

    Keyword Args:
        env_id: the task.
        grid: two ``(field, "values")`` pairs, the grid's starting fields and values.
        seeds: seeds per grid point.
        frames: the training budget of each trial (``total_frames``).
        workers: trials at the same time (``None``/0: one per CPU).
        out: the sweep's folder (default: a new one under :data:`USER_FOLDER`); a folder with a
            ``trials.jsonl`` resumes (finished trials are skipped).
        address: a Ray cluster to join (``"auto"``, ``"ray://host:port"``); empty: Ray in this kernel.
        base: more :class:`~workbench.train.TrainConfig` overrides for every trial.
        eval_episodes: greedy episodes that score each trial (``None``: the sweep's default).
        runner: the function that runs the sweep (default :func:`workbench.sweep.run_sweep`; tests
            pass their own).
    """

    EVENTS = ("figures", "record", "open")

    def __init__(self, *, env_id: str = "workbench/CueMemory-v0",
                 grid: Sequence[tuple[str, str]] = (("delay", "4, 8"), ("hidden_size", "4, 16")),
                 seeds: int = 1, frames: int = 28_800, workers: int | None = None,
                 out: str | Path | None = None, address: str | None = None,
                 base: Mapping[str, Any] | None = None, eval_episodes: int | None = None,
                 runner: Callable[..., list] | None = None):
        super().__init__(title="Sweeps", css="wb-sweep")
        if len(grid) != 2:
            raise ValueError(f"SweepPanel: 'grid' must be two (field, values) pairs; got {list(grid)!r}.")
        for field, _ in grid:
            if field not in SWEEP_FIELDS:
                raise ValueError(f"SweepPanel: 'grid' field must be one of {list(SWEEP_FIELDS)}; got {field!r}.")
        style = {"description_width": "110px"}
        wide = w.Layout(width="280px")
        env_ids = sorted(TASKS) + ([env_id] if env_id not in TASKS else [])
        self.env_id = w.Dropdown(options=env_ids, value=env_id, description="environment", style=style, layout=wide)
        self.seeds = w.BoundedIntText(value=seeds, min=1, max=1000, description="seeds", style=style, layout=wide)
        self.frames = w.IntText(value=frames, description="frames / trial", style=style, layout=wide,
                                tooltip="the training budget of each trial (TrainConfig.total_frames)")
        self.workers = w.IntText(value=workers or 0, description="workers", style=style, layout=wide,
                                 tooltip="trials at the same time; 0: one per CPU")
        options = list(SWEEP_FIELDS)
        self.field_controls = []
        for i, (field, values) in enumerate(grid):
            name = w.Dropdown(options=options, value=field, description=f"field {i + 1}",
                              style={"description_width": "60px"}, layout=w.Layout(width="220px"))
            text = w.Text(value=values, placeholder="values, e.g. 4, 8, 16", layout=w.Layout(width="200px"))
            self.field_controls.append((name, text))
        self.out = w.Text(value=str(out) if out is not None else str(free_name(USER_FOLDER / "sweep")),
                          description="folder", style={"description_width": "60px"}, layout=w.Layout(width="424px"),
                          tooltip="where trials.jsonl, results.csv/json and the checkpoints go; a folder of an "
                                  "earlier sweep resumes it")
        self.address = w.Text(value=address or "", description="Ray address", placeholder="empty: Ray in this kernel",
                              style={"description_width": "80px"}, layout=w.Layout(width="424px"))
        self.base = dict(base or {})
        self.eval_episodes = eval_episodes
        self.runner = runner
        self.run_button = w.Button(description="Run sweep", button_style="primary", icon="th")
        self.progress = self.job_controls
        self.table = w.HTML()
        self.trial = w.Dropdown(options=[], description="trial", style={"description_width": "40px"},
                                layout=w.Layout(width="480px"))
        self.open_button = w.Button(description="Open in explorer", icon="search", disabled=True,
                                    tooltip="load the trial's checkpoint into the policy builder, roll it out and "
                                            "show it in the explorer")
        self.buttons += [self.run_button, self.open_button]
        self.records: list[dict] = []
        """the trials of the folder so far (earlier runs' included), in the order they arrived"""
        self.folder: Path | None = None
        """the folder of the last sweep started"""
        self._axes: tuple[str, str] = tuple(f for f, _ in grid)
        self._grid: dict[str, tuple] = {}
        self._lock = threading.Lock()
        self._pending: list[dict] = []
        self._loop = None
        self.run_button.on_click(lambda _: self.start())
        self.open_button.on_click(lambda _: self.open_trial())
        self.trial.observe(lambda _: self.refresh_controls(), "value")
        self.children = [
            self.header,
            w.HBox([w.VBox([self.env_id, self.seeds, self.frames, self.workers]),
                    w.VBox([*(w.HBox(list(pair)) for pair in self.field_controls), self.out, self.address])]),
            self.run_button,
            self.progress,
            self.status,
            self.add_view("sweep_heatmap", 0),
            self.table,
            w.HBox([self.trial, self.open_button]),
            self.add_view("sweep_curves", 0),
        ]

    # ------------------------------------------------------------------ controls → spec
    def grid(self) -> dict[str, tuple]:
        """The two fields and their values, parsed and checked (a message names the bad one)."""
        grid: dict[str, tuple] = {}
        for i, (name, text) in enumerate(self.field_controls):
            field = name.value
            values = parse_numbers(text.value, SWEEP_FIELDS[field], name=f"field {i + 1} ({field})")
            if not values:
                raise ValueError(f"field {i + 1} ({field}): expected at least one value, e.g. '4, 8'; got "
                                 f"{text.value!r}.")
            if len(set(values)) != len(values):
                raise ValueError(f"field {i + 1} ({field}): each value once; got {text.value!r}.")
            if field in grid:
                raise ValueError(f"field 1 and field 2 are both {field!r}: pick two different fields.")
            grid[field] = values
        return grid

    def spec(self):
        """The controls read as a :class:`workbench.sweep.SweepSpec` (it checks the fields and values)."""
        if self.frames.value < 1:
            raise ValueError(f"frames / trial: expected an int >= 1; got {self.frames.value}.")
        if self.workers.value < 0:
            raise ValueError(f"workers: expected an int >= 0 (0: one per CPU); got {self.workers.value}.")
        kwargs = {} if self.eval_episodes is None else {"eval_episodes": self.eval_episodes}
        return _api().SweepSpec(self.env_id.value, self.grid(), seeds=self.seeds.value,
                                base={**self.base, "total_frames": self.frames.value}, **kwargs)

    # ------------------------------------------------------------------ running
    def start(self):
        """Starts the sweep in the background (the *Run sweep* button); returns the
        :class:`~widgets.jobs.Job`, or ``None`` when nothing started (bad input, a job still running: the
        panel says why). The table and the heatmap fill in as trials finish."""
        if self.refuse_if_running():
            return None
        self.last_error = None
        with self.guard():
            spec = self.spec()
            api = _api()
            folder = Path(self.out.value.strip() or ".").expanduser().resolve()
            if folder.exists() and not folder.is_dir():
                raise ValueError(f"folder: {folder} is a file; give a new folder, or the folder of a sweep.")
            earlier = api.load_records(folder) if _same_sweep(folder, spec) else []
            trials = spec.trials()
            keys = {t.key for t in trials}
            done = sum(1 for r in earlier if r.get("key") in keys)
            run = self.runner or api.run_sweep
            address = self.address.value.strip() or None
            workers = self.workers.value or None
            self.folder, self._axes, self._grid = folder, tuple(spec.grid), dict(spec.grid)
            self.records = [dict(r) for r in earlier]
            self._pending = []
            self._redraw()
            self._loop = kernel_loop()  # on the main thread: where the records are drawn

            def work(cancel, on_progress):
                return run(spec, folder, address=address, workers=workers, cancel=cancel,
                           on_progress=on_progress, on_record=self._arrived)

            def on_end(job) -> None:
                self._drain()
                outcome = job.result if job.state == "done" else (job.partial or [])
                self._merge(outcome)
                self._redraw()
                ok = sum(1 for r in self.records if r.get("key") in keys and r.get("status") == "ok")
                failed = sum(1 for r in self.records if r.get("key") in keys and r.get("status") != "ok")
                where = f"in {folder}"
                if job.state == "done":
                    self.show_message(f"Sweep done: {ok} of {len(trials)} trial(s) finished, {failed} failed, "
                                      f"{where}.", "warning" if failed else "ok")
                else:
                    self.show_message(
                        f"Sweep cancelled ({job.token.reason or 'cancelled'}) after {ok + failed} of {len(trials)} "
                        f"trial(s): the finished ones are kept {where} (run it again to resume: they are skipped).",
                        "warning")

            resume = f" ({done} already in the folder: skipped)" if done else ""
            return self.start_job(work, name="sweep", on_end=on_end, unit="trials",
                                  message=f"Running {len(trials)} trial(s){resume} on Ray "
                                          f"({address or 'in this kernel'})…")
        return None

    def run(self) -> None:
        """Runs the sweep and returns when it ended (Ctrl-C cancels it, keeping the finished trials)."""
        if self.start() is not None:
            self.wait()

    def _arrived(self, record: dict) -> None:
        """``on_record`` of ``run_sweep`` (in the worker thread): queue the record, draw it on the main thread."""
        with self._lock:
            self._pending.append(dict(record))
        loop = self._loop
        if loop is not None:
            try:
                loop.add_callback(self._drain)
                return
            except Exception:  # the kernel's loop is gone: draw here
                pass
        self._drain()

    def _drain(self) -> None:
        """Draws the records that arrived since the last call (main thread in a kernel)."""
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return
        self._merge(pending)
        with self.guard():
            self._redraw()
        for record in pending:
            self.emit("record", record)

    def _merge(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Adds records, a trial's newer record replacing its older one (by ``key``)."""
        with self._lock:
            index = {r.get("key"): i for i, r in enumerate(self.records)}
            for r in records:
                i = index.get(r.get("key"))
                if i is None:
                    index[r.get("key")] = len(self.records)
                    self.records.append(dict(r))
                else:
                    self.records[i] = dict(r)

    @property
    def rows(self) -> list[dict]:
        """The records by grid point (:func:`workbench.figures.sweep_table`)."""
        return figures.sweep_table(self.records)

    def _redraw(self) -> None:
        records = list(self.records)
        x, y = self._axes
        shown = [r for r in records if set((r.get("params") or {})) == {x, y}]  # the folder may hold other grids
        self.table.value = table_html(shown, [x, y]) if shown else ""
        if shown:
            self.show_figure("sweep_heatmap", figures.sweep_heatmap(shown, x=x, y=y, grid=self._grid, height=380), emit=False)
            self.show_figure("sweep_curves", figures.sweep_curves_figure(shown, color=y, height=320))
        else:
            self.drop_figure("sweep_heatmap", emit=False)
            self.drop_figure("sweep_curves")
        options = [(self._label(r), r["key"]) for r in records if r.get("status") == "ok" and r.get("checkpoint")]
        current = self.trial.value
        self.trial.options = options
        keys = [k for _, k in options]
        if keys:
            self.trial.value = current if current in keys else keys[0]
        self.refresh_controls()

    @staticmethod
    def _label(record: Mapping[str, Any]) -> str:
        m = record.get("metrics") or {}
        if m.get("success") is not None:
            return f"{record['key']} · success {m['success']:.2f}"
        if m.get("mean_return") is not None:
            return f"{record['key']} · return {m['mean_return']:.2f}"
        return str(record["key"])

    def refresh_controls(self) -> None:
        self.open_button.disabled = self.running or not self.trial.value

    # ------------------------------------------------------------------ open in explorer
    def trial_checkpoint(self, key: str | None = None) -> TrialCheckpoint:
        """The checkpoint of trial ``key`` (default: the chosen one), checked to exist."""
        key = key if key is not None else self.trial.value
        record = next((r for r in self.records if r.get("key") == key), None)
        if record is None:
            known = [r.get("key") for r in self.records]
            raise ValueError(f"trial: no trial {key!r} in this sweep; it has {known}.")
        if record.get("status") != "ok" or not record.get("checkpoint"):
            raise ValueError(f"trial {key!r} has no checkpoint: it {record.get('status')} "
                             f"({record.get('error') or 'no checkpoint written'}).")
        path = Path(record["checkpoint"])
        path = path if path.is_absolute() else (self.folder or Path(".")) / path
        if not path.is_file():
            raise FileNotFoundError(f"trial {key!r}: its checkpoint {path} is not there (moved or deleted?).")
        params = record.get("params") or {}
        env_id = record.get("env_id") or self.env_id.value
        delay = params.get("delay", self.base.get("delay"))
        return TrialCheckpoint(key, path.resolve(), EnvSpec(env_id, delay=delay), record)

    def open_trial(self, key: str | None = None) -> None:
        """Emits ``"open"`` with the chosen trial's :class:`TrialCheckpoint` (the *Open in explorer* button;
        the app loads it into the policy builder, rolls it out and shows it in the explorer)."""
        with self.busy("Opening the trial…"):
            trial = self.trial_checkpoint(key)
            self.emit("open", trial)
            if self.last_error is None:
                self.show_message(f"Opened {trial.key}: {trial.path}", "ok")

    def on_open(self, callback: Callable[[TrialCheckpoint], Any], remove: bool = False) -> None:
        """``callback(trial)`` on *Open in explorer*."""
        self.on("open", callback, remove)

    def on_record(self, callback: Callable[[dict], Any], remove: bool = False) -> None:
        """``callback(record)`` for every trial that finishes (on the kernel's main thread)."""
        self.on("record", callback, remove)
