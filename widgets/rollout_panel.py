"""Rollout: steps, envs, device, seed → a :class:`workbench.session.Session` → summary and diagnostics.

Shows a progress bar while it runs, an episode summary, and the diagnostics banner (wiring,
reset audit, replay check) in plain words, with the replay's divergence figure. Emits
``"rollout"`` with a :class:`RolloutResult`.
"""

from __future__ import annotations

import html
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import ipywidgets as w

from workbench import figures
from workbench.diagnostics import DiagnosticsReport
from workbench.envs import EnvSpec
from workbench.episodes import episode_summary
from workbench.session import Session

from ._panel import Panel, box, call_in_output, device_choice, device_info_html, device_options, html_table, in_kernel
from .policy_panel import BuiltPolicy

__all__ = ["RolloutPanel", "RolloutResult", "diagnostics_html"]

_MARKS = {"ok": ("✔", "#3c9a3c"), "warning": ("⚠", "#c08000"), "error": ("✖", "#c83c3c")}


@dataclass
class RolloutResult:
    """What the rollout panel emits."""

    trajectory: Any
    """the ``[envs, T]`` trajectory TensorDict (on CPU)"""
    report: DiagnosticsReport
    """wiring, reset audit and replay check"""
    built: BuiltPolicy
    """the policy that acted"""
    env_spec: EnvSpec
    """the environment it acted in"""
    device: str
    """where the policy ran"""
    seconds: float
    """wall time of the rollout"""


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
    return (f"<div style='font-size:13px'><b>{e_count} env(s) × {t} steps</b> on {html.escape(result_device)} "
            f"in {seconds:.2f} s.{table}</div>")


class RolloutPanel(Panel):
    """Runs the built policy in its environment; ``set_policy(built)`` gives it the policy.

    Public: ``run()`` (the button), ``result`` (the last :class:`RolloutResult`),
    ``trajectory``, ``report``, ``on_rollout(cb)``.
    """

    EVENTS = ("figures", "rollout")

    def __init__(self, *, steps: int = 200, env_spec: EnvSpec | None = None, device: str = "auto",
                 deterministic: bool = False):
        super().__init__(title="Rollout", css="wb-rollout")
        env = env_spec or EnvSpec(num_envs=2)
        style = dict(style={"description_width": "130px"}, layout=w.Layout(width="270px"))
        self.steps = w.IntText(value=steps, description="steps per env", **style)
        self.num_envs = w.IntText(value=env.num_envs, description="envs", **style)
        self.parallel = w.Checkbox(value=env.parallel, description="worker processes (ParallelEnv)", indent=False)
        self.max_steps = w.IntText(value=env.max_steps or 0, description="max episode steps",
                                   tooltip="0: the environment's own limit", **style)
        self.seed = w.IntText(value=env.seed if env.seed is not None else 0, description="seed", **style)
        self.deterministic = w.Checkbox(value=deterministic, description="greedy actions", indent=False)
        choice, self.device_warning = device_choice(device)
        self.device = w.Dropdown(options=device_options(), value=choice, description="device", **style)
        self.run_button = w.Button(description="Run rollout", button_style="primary", icon="play")
        self.policy_info = w.HTML(box("No policy yet: build one in the Policy builder.", "warning"))
        self.progress = w.Output(layout=w.Layout(min_height="0px"))
        self.summary = w.HTML()
        self.banner = w.HTML()
        self.buttons.append(self.run_button)
        self.built: BuiltPolicy | None = None
        self.result: RolloutResult | None = None
        self.run_button.on_click(lambda _: self.run())
        self.device_info = w.HTML(device_info_html(self.device_warning))
        self.children = [
            self.header,
            self.policy_info,
            w.HBox([w.VBox([self.steps, self.num_envs, self.max_steps]),
                    w.VBox([self.seed, self.device, self.parallel, self.deterministic])]),
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
            f": GRU {built.spec.hidden_size} × {built.spec.num_layers} ({html.escape(built.source)}).", "ok")

    def env_spec(self) -> EnvSpec:
        """The controls (and the policy's environment) read as an :class:`EnvSpec`."""
        if self.built is None:
            raise RuntimeError("No policy to run: click 'Build policy' in the Policy builder first.")
        return EnvSpec(self.built.env_spec.env_id, hide_velocity=self.built.env_spec.hide_velocity,
                       num_envs=self.num_envs.value, parallel=self.parallel.value,
                       max_steps=self.max_steps.value or None, seed=self.seed.value)

    def run(self) -> None:
        """Rolls the policy out, diagnoses the trajectory, shows both and emits ``"rollout"``."""
        with self.busy("Running the rollout…"):
            env_spec, steps = self.env_spec(), self.steps.value
            checkpoint = None if self.built.source == "built" else self.built.source
            session = Session.of_policy(env_spec, self.built.policy, device=self.device.value, checkpoint=checkpoint)
            with session:  # the environment (and its workers) closed on every path
                try:
                    started = time.perf_counter()
                    traj = call_in_output(self.progress, lambda: session.rollout(  # its tqdm bar shows here
                        steps, seed=self.seed.value, progress=in_kernel(), deterministic=self.deterministic.value))
                    seconds = time.perf_counter() - started
                finally:
                    self.progress.outputs = ()
            report = session.diagnose()
            device = traj.get_non_tensor("metadata")["device"]
            self.result = RolloutResult(traj, report, self.built, env_spec, device, seconds)
            self.summary.value = _summary_html(traj, device, seconds)
            self.banner.value, _ = diagnostics_html(report)
            if report.replay is not None:
                self.show_figure("replay_divergence", figures.divergence_figure(report.replay, height=260))
            else:
                self.drop_figure("replay_divergence")
            self.show_message(f"Rollout done: {traj.batch_size[0]} env(s) × {steps} steps on {device}.", "ok")
            self.emit("rollout", self.result)

    def on_rollout(self, callback: Callable[[RolloutResult], Any], remove: bool = False) -> None:
        """``callback(result)`` after every rollout."""
        self.on("rollout", callback, remove)
