"""Rollout: steps, envs, device, seed → a :class:`workbench.session.Session` → summary and diagnostics.

The rollout and its diagnostics run in the background (:mod:`widgets.jobs`): a progress bar with
the rate and the time left, and a Cancel button (Kernel → Interrupt cancels too). Then an episode
summary and the diagnostics banner (wiring, reset audit, replay check) in plain words, with the
replay's divergence figure. Emits ``"rollout"`` with a :class:`RolloutResult`; a cancelled rollout
emits the steps it finished (without diagnostics) and says so.
"""

from __future__ import annotations

import html
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import ipywidgets as w

from workbench import figures
from workbench.diagnostics import DiagnosticsReport
from workbench.envs import EnvSpec
from workbench.episodes import episode_summary, reset_counts, trajectory_is_init
from workbench.jobs import check
from workbench.keys import KEYS
from workbench.rollout import trajectory_metadata
from workbench.session import Session

from ._panel import Panel, box, device_choice, device_info_html, device_options, html_table
from .policy_panel import BuiltPolicy

__all__ = ["RolloutPanel", "RolloutResult", "diagnostics_html", "PARALLEL_ADVICE"]

PARALLEL_ADVICE = (
    "On a small machine or with a cheap env (CartPole, Pendulum), in-process is faster: on a 2-core machine "
    "2 envs × 20,000 steps took 71.9 s in-process and 106.7 s with worker processes (2 × 3,000 steps: 6 s and "
    "36 s), which pay to start and to pass every step between processes. Workers pay off when one env step "
    "is expensive (physics, rendering) and cores are free."
)
"""the advice shown next to the *worker processes* choice (measured on the project's 2-core machine)"""

_MARKS = {"ok": ("✔", "#3c9a3c"), "warning": ("⚠", "#c08000"), "error": ("✖", "#c83c3c")}


@dataclass
class RolloutResult:
    """What the rollout panel emits."""

    trajectory: Any
    """the ``[envs, T]`` trajectory TensorDict (on CPU)"""
    report: DiagnosticsReport | None
    """wiring, reset audit and replay check (``None`` for a cancelled rollout: not diagnosed)"""
    built: BuiltPolicy
    """the policy that acted"""
    env_spec: EnvSpec
    """the environment it acted in"""
    device: str
    """where the policy ran"""
    seconds: float
    """wall time of the rollout"""
    cancelled: bool = False
    """whether the rollout was cancelled (``trajectory`` then holds the steps it finished)"""


def diagnostics_html(report: DiagnosticsReport) -> tuple[str, str]:
    """The report as a banner: ``(html, kind)``, problems first with their fix, passed checks after."""
    kind = "error" if report.errors else "warning" if report.warnings else "ok"
    n_ok = len(report.findings) - len(report.errors) - len(report.warnings)
    head = ("All checks passed" if kind == "ok" else
            f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)") + f" ({n_ok} ok)"
    items = []
    for f in sorted(report.findings, key=lambda f: ("error", "warning", "ok").index(f.severity)):
        mark, color = _MARKS[f.severity]
        fix = f"<br><i>Fix:</i> {html.escape(f.fix)}" if f.fix and f.severity != "ok" else ""
        items.append(f"<li style='list-style:none'><span style='color:{color}'>{mark}</span> "
                     f"<b>{html.escape(f.title)}</b>: {html.escape(f.explanation)}{fix}</li>")
    body = f"<b>Diagnostics: {head}</b><ul style='margin:2px 0;padding-left:6px'>{''.join(items)}</ul>"
    return box(body, kind), kind


def _summary_html(trajectory, result_device: str, seconds: float) -> str:
    e_count, t = trajectory.batch_size[:2]
    num = lambda v: "–" if math.isnan(v) else f"{v:.1f}"  # noqa: E731
    rows = [[str(r["env"]), str(r["finished"]), num(r["mean_return"]), num(r["best_return"]), num(r["mean_length"]),
             str(r["open_steps"])] for r in episode_summary(trajectory)]
    table = html_table(["env", "finished episodes", "mean return", "best return", "mean length",
                        "steps of the open episode"], rows, css="wb-episodes")
    starts = ""
    is_init = trajectory_is_init(trajectory)
    if is_init is not None:
        done = trajectory.get(KEYS.done, None)
        counts = reset_counts(is_init, None if done is None else done.reshape(e_count, t))
        starts = f" Episode starts: {html.escape(counts.describe())}."
    return (f"<div style='font-size:13px'><b>{e_count} env(s) × {t} steps</b> on {html.escape(result_device)} "
            f"in {seconds:.2f} s.{starts}{table}</div>")


class RolloutPanel(Panel):
    """Runs the built policy in its environment; ``set_policy(built)`` gives it the policy.

    Public: ``start()`` (the button: in the background), ``run()`` (start and wait: for code),
    ``cancel()``, ``wait()``, ``result`` (the last :class:`RolloutResult`), ``trajectory``, ``report``,
    ``on_rollout(cb)``.
    """

    EVENTS = ("figures", "rollout")

    def __init__(self, *, steps: int = 200, env_spec: EnvSpec | None = None, device: str = "auto",
                 deterministic: bool = False):
        super().__init__(title="Rollout", css="wb-rollout")
        env = env_spec or EnvSpec(num_envs=2)
        style = dict(style={"description_width": "130px"}, layout=w.Layout(width="270px"))
        self.steps = w.IntText(value=steps, description="steps per env", **style)
        self.num_envs = w.IntText(value=env.num_envs, description="envs", **style)
        self.parallel = w.Checkbox(value=env.parallel, description="worker processes (ParallelEnv)", indent=False,
                                   tooltip=PARALLEL_ADVICE)
        self.parallel_advice = w.HTML(f"<div class='wb-parallel-advice' style='font-size:11px;line-height:1.3;"
                                      f"color:#555;max-width:270px'>{html.escape(PARALLEL_ADVICE)}</div>")
        self.max_steps = w.IntText(value=env.max_steps or 0, description="max episode steps",
                                   tooltip="0: the environment's own limit", **style)
        self.seed = w.IntText(value=env.seed if env.seed is not None else 0, description="seed", **style)
        self.deterministic = w.Checkbox(value=deterministic, description="greedy actions", indent=False)
        self.disk_folder = w.Text(value="", description="store on disk in", placeholder="empty: keep it in memory",
                                  tooltip="a new (or empty) folder: the trajectory is written there as it runs "
                                          "(memory-mapped), for runs larger than RAM; the explorer reads it from disk",
                                  style={"description_width": "130px"}, layout=w.Layout(width="100%", max_width="540px"))
        choice, self.device_warning = device_choice(device)
        self.device = w.Dropdown(options=device_options(), value=choice, description="device", **style)
        self.run_button = w.Button(description="Run rollout", button_style="primary", icon="play")
        self.policy_info = w.HTML(box("No policy yet: build one in the Policy builder.", "warning"))
        self.progress = self.job_controls  # bar, rate, time left, Cancel: one area, reused by every run
        self.summary = w.HTML()
        self.banner = w.HTML()
        self.buttons.append(self.run_button)
        self.built: BuiltPolicy | None = None
        self.result: RolloutResult | None = None
        self.run_button.on_click(lambda _: self.start())
        self.device_info = w.HTML(device_info_html(self.device_warning))
        for control in (self.num_envs, self.max_steps, self.seed):
            control.observe(lambda _: self._update_stale(), "value")
        self.children = [
            self.header,
            self.policy_info,
            # two columns that wrap into one when the panel is narrow (half of a small screen)
            w.HBox([w.VBox([self.steps, self.num_envs, self.max_steps]),
                    w.VBox([self.seed, self.device, self.parallel, self.parallel_advice, self.deterministic])],
                   layout=w.Layout(flex_flow="row wrap")),
            self.disk_folder,
            self.device_info,
            self.run_button,
            self.progress,
            self.status,
            self.summary,
            self.banner,
            self.add_view("replay_divergence", 260),
        ]

    @property
    def trajectory(self):
        return None if self.result is None else self.result.trajectory

    @property
    def report(self) -> DiagnosticsReport | None:
        return None if self.result is None else self.result.report

    def set_policy(self, built: BuiltPolicy) -> None:
        """Takes the policy to run (the app wires the policy panel's ``"policy"`` event here)."""
        self.built = built
        env = built.env_spec
        self.policy_info.value = box(
            f"Policy ready for <b>{html.escape(env.env_id)}</b>{' (velocities hidden)' if env.hide_velocity else ''}"
            f"{'' if env.delay is None else f' (delay {env.delay})'}"
            f": GRU {built.spec.hidden_size} × {built.spec.num_layers} ({html.escape(built.source)}).", "ok")
        self._update_stale()

    def stale_reason(self) -> str:
        """Why the rollout shown no longer matches the policy and environment settings (empty: it does)."""
        result = self.result
        if result is None:
            return ""
        if self.built is not result.built:
            env = result.env_spec
            return (f"the summary, diagnostics and replay figure below are from the previous policy's rollout "
                    f"(GRU {result.built.spec.hidden_size} in {env.env_id}): run the rollout again for this one.")
        shown = result.env_spec
        now = dict(envs=(shown.num_envs, self.num_envs.value), seed=(shown.seed, self.seed.value),
                   **{"max episode steps": (shown.max_steps or 0, self.max_steps.value or 0)})
        changed = [f"{name} {a} → {b}" for name, (a, b) in now.items() if a != b]
        if changed:
            return (f"the summary and diagnostics below are from a rollout with other environment settings "
                    f"({', '.join(changed)}): run the rollout again.")
        return ""

    def _update_stale(self) -> None:
        reason = self.stale_reason()
        if reason:
            self.mark_stale(reason)
        else:
            self.clear_stale()

    def env_spec(self) -> EnvSpec:
        """The controls (and the policy's environment) read as an :class:`EnvSpec`."""
        if self.built is None:
            raise RuntimeError("No policy to run: click 'Build policy' in the Policy builder first.")
        return EnvSpec(self.built.env_spec.env_id, hide_velocity=self.built.env_spec.hide_velocity,
                       num_envs=self.num_envs.value, parallel=self.parallel.value,
                       max_steps=self.max_steps.value or None, seed=self.seed.value, delay=self.built.env_spec.delay)

    def storage(self) -> dict[str, Any]:
        """Where the trajectory goes, from *store on disk in*: ``{"storage": "memory"}``, or a memory-mapped folder
        (checked now, before any work: it must be new or empty)."""
        folder = self.disk_folder.value.strip()
        if not folder:
            return {"storage": "memory"}
        from workbench.storage import check_storage

        path = check_storage("memmap", Path(folder).expanduser(), owner="Rollout", folder_arg="store on disk in")
        return {"storage": "memmap", "memmap_folder": path}

    def start(self):
        """Starts the rollout and its diagnostics in the background (the *Run rollout* button).

        Returns the :class:`~widgets.jobs.Job`, or ``None`` when nothing started (no policy, a job still
        running: the panel says why). When it ends the panel shows the result and emits ``"rollout"``.
        """
        if self.refuse_if_running():
            return None
        self.last_error = None
        with self.guard():
            env_spec, steps, built = self.env_spec(), self.steps.value, self.built
            seed, deterministic, device = self.seed.value, self.deterministic.value, self.device.value
            storage = self.storage()
            checkpoint = None if built.source == "built" else built.source
            where: dict[str, Any] = {}

            def work(cancel, on_progress):
                session = Session.of_policy(env_spec, built.policy, device=device, checkpoint=checkpoint)
                where["device"] = str(session.device)
                with session:  # the environment (and its workers) closed on every path, Cancel included
                    traj = session.rollout(steps, seed=seed, progress=False, deterministic=deterministic,
                                           cancel=cancel, on_progress=on_progress, **storage)
                    seconds = time.perf_counter() - started
                    check(cancel, "rollout", done=steps, total=steps, partial=traj)  # before the diagnostics
                    report = session.diagnose()
                return traj, report, seconds

            def on_end(job) -> None:
                if job.state == "cancelled":
                    self._show_cancelled(job, built, env_spec, where.get("device", device))
                else:
                    self._show(RolloutResult(job.result[0], job.result[1], built, env_spec,
                                             where.get("device", device), job.result[2]), steps)

            started = time.perf_counter()
            return self.start_job(work, name="rollout", on_end=on_end, unit="steps",
                                  message=f"Running the rollout: {env_spec.num_envs} env(s) × {steps:,} steps…")
        return None

    def run(self) -> None:
        """Rolls the policy out, diagnoses the trajectory, shows both and emits ``"rollout"``; returns when done.

        The same work as the button, waited for: Ctrl-C or Kernel → Interrupt cancels it (the panel
        says what was kept) and the ``KeyboardInterrupt`` goes on to the caller.
        """
        if self.start() is not None:
            self.wait()

    def _show(self, result: RolloutResult, steps: int) -> None:
        traj, report = result.trajectory, result.report
        device = trajectory_metadata(traj).get("device", result.device)
        self.result = result
        self._update_stale()  # cleared, unless the controls moved while it ran
        self.summary.value = _summary_html(traj, device, result.seconds)
        self.banner.value, _ = diagnostics_html(report)
        if report.replay is not None:
            self.show_figure("replay_divergence", figures.divergence_figure(report.replay, height=260))
        else:
            self.drop_figure("replay_divergence")
        self.show_message(f"Rollout done: {traj.batch_size[0]} env(s) × {steps:,} steps on {device}.", "ok")
        self.emit("rollout", self.result)

    def _show_cancelled(self, job, built: BuiltPolicy, env_spec: EnvSpec, device: str) -> None:
        """A cancelled rollout: the steps it finished are kept, shown and emitted (not diagnosed), or nothing."""
        err, traj = job.error, job.partial
        steps = 0 if traj is None or traj.batch_dims < 2 else int(traj.batch_size[1])
        done = steps if err.done is None else err.done
        of = "" if err.total is None else f" of {err.total:,}"
        head = f"Rollout cancelled ({job.token.reason or 'cancelled'}) after {done:,}{of} steps"
        if steps == 0:
            self.show_message(f"{head}: nothing kept; the explorer keeps the previous rollout.", "warning")
            return
        self.result = RolloutResult(traj, None, built, env_spec, device, job.seconds, cancelled=True)
        self._update_stale()  # the steps kept are of this policy, but the controls may have moved since
        self.summary.value = _summary_html(traj, device, job.seconds)
        self.banner.value = box("Diagnostics skipped: the rollout was cancelled. Run it again to diagnose it.",
                                "warning")
        self.drop_figure("replay_divergence")
        kept = f"the {steps:,} steps done are" if steps != 1 else "the 1 step done is"
        self.show_message(f"{head}: {kept} kept and shown in the explorer.", "warning")
        self.emit("rollout", self.result)

    def on_rollout(self, callback: Callable[[RolloutResult], Any], remove: bool = False) -> None:
        """``callback(result)`` after every rollout."""
        self.on("rollout", callback, remove)
