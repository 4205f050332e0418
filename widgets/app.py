"""The Workbench app: every panel in one view, linked by events.

A built (or loaded) policy flows to the rollout panel; a rollout flows to the explorer and to the
export panel (its metadata); the export panel offers the figures of the rollout, explorer, timing
and sweep panels. A sweep's trial opened in the sweep panel is loaded into the policy builder
(its checkpoint, with the task's delay), rolled out, and shown in the explorer. Each panel shows its
own errors, so a failing callback leaves the rest working.

Examples:
    >>> from workbench.envs import EnvSpec
    >>> from workbench.policy import PolicySpec
    >>> app = WorkbenchApp(PolicySpec(hidden_size=8, python_based=True, record_gates=True),
    ...                    EnvSpec("CartPole-v1", hide_velocity=True, num_envs=2), steps=30)
    >>> app.build(); app.run()
    >>> app.trajectory.batch_size, sorted(app.explorer_panel.figures)
    (torch.Size([2, 30]), ['gates', 'hidden_heatmap', 'hidden_norm', 'hidden_pca'])
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w

from workbench.envs import EnvSpec
from workbench.policy import PolicySpec
from workbench.rollout import trajectory_metadata

from ._panel import Panel
from .compare_panel import ComparePanel
from .explorer_panel import ExplorerPanel
from .export_panel import ExportPanel
from .policy_panel import PolicyPanel
from .rollout_panel import RolloutPanel, RolloutResult
from .session_bar import SessionBar
from .sweep_panel import SweepPanel, TrialCheckpoint
from .timing_panel import TimingPanel

__all__ = ["WorkbenchApp"]


class WorkbenchApp(w.VBox):
    """All panels in one view: policy builder and rollout side by side, then the explorer,
    export, backend timing and sweeps.

    Args:
        policy_spec: the policy builder's starting architecture (default: 16 units, Python cell,
            gates recorded).
        env_spec: the environment: ``env_id`` and ``hide_velocity`` go to the policy builder,
            ``num_envs``, ``parallel``, ``max_steps`` and ``seed`` to the rollout panel.

    Keyword Args:
        steps: rollout steps per env.
        device: where rollouts and timings run: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``
            (without CUDA, the panels select ``"cpu"`` and say why).
        export_dir: the export panel's folder.
        timing: keyword arguments of :class:`~widgets.timing_panel.TimingPanel` (a ``device`` there wins).
        sweep: keyword arguments of :class:`~widgets.sweep_panel.SweepPanel`.

    Attributes:
        policy_panel, rollout_panel, explorer_panel, export_panel, timing_panel, sweep_panel: the panels.
        panels: the same, by short name.
    """

    def __init__(self, policy_spec: PolicySpec | None = None, env_spec: EnvSpec | None = None, *,
                 steps: int = 200, device: str = "auto", export_dir: str = "exports",
                 timing: dict[str, Any] | None = None, sweep: dict[str, Any] | None = None):
        env_spec = env_spec or EnvSpec("CartPole-v1", hide_velocity=True, num_envs=2)
        self.policy_panel = PolicyPanel(policy_spec, env_spec)
        self.rollout_panel = RolloutPanel(steps=steps, env_spec=env_spec, device=device)
        self.explorer_panel = ExplorerPanel()
        self.compare_panel = ComparePanel()
        self.export_panel = ExportPanel(folder=export_dir)
        self.timing_panel = TimingPanel(**{"device": device, **(timing or {})})
        self.sweep_panel = SweepPanel(**(sweep or {}))
        self.panels: dict[str, Panel] = {
            "policy": self.policy_panel, "rollout": self.rollout_panel, "explorer": self.explorer_panel,
            "compare": self.compare_panel,
            "export": self.export_panel, "timing": self.timing_panel, "sweep": self.sweep_panel,
        }
        self.policy_panel.on_policy(self.rollout_panel.set_policy)
        self.rollout_panel.on_rollout(self.explorer_panel.set_trajectory)
        self.rollout_panel.on_rollout(self._rollout_metadata)
        self.rollout_panel.on_rollout(self.compare_panel.set_current)
        self.sweep_panel.on_open(self.open_trial)
        self.policy_panel.on_policy(self._mark_stale)  # a new policy: what the explorer (and compare) show is old
        self.rollout_panel.on_rollout(self._clear_stale)
        self.session_bar = SessionBar(self)  # Save session / Open session (not a panel of `panels`: it reads them)
        for name in ("rollout", "explorer", "compare", "timing", "sweep"):
            self.export_panel.add_source(name, self.panels[name], from_rollout=name not in ("compare", "timing", "sweep"))
        for panel in (self.policy_panel, self.rollout_panel):
            panel.layout.width = "50%"
        top = w.HBox([self.policy_panel, self.rollout_panel], layout=w.Layout(width="100%"))
        top.add_class("wb-top")
        super().__init__([
            w.HTML("<h2 style='margin:4px 0'>GRU Workbench</h2>"
                   "<span style='color:#555'>Build a recurrent policy, roll it out, look inside its memory. "
                   "Resets are the dotted lines; the red line is the time cursor.</span>"),
            self.session_bar,
            top,
            self.explorer_panel,
            self.compare_panel,
            self.export_panel,
            self.timing_panel,
            self.sweep_panel,
        ])
        self.add_class("wb-app")

    def open_trial(self, trial: TrialCheckpoint) -> None:
        """Loads a sweep trial's checkpoint into the policy builder (with the task's delay it was trained
        with), and starts a rollout of it; when it ends the explorer shows it (the sweep panel's
        *Open in explorer*). A load that fails raises, so the sweep panel shows why."""
        policy = self.policy_panel
        policy.path.value = str(trial.path)
        policy.load()
        if policy.last_error is not None:
            raise RuntimeError(f"could not open trial {trial.key}: {policy.message}")
        self.rollout_panel.start()

    def _stale_panels(self) -> list[Panel]:
        return [p for p in (self.explorer_panel, getattr(self, "compare_panel", None)) if p is not None]

    def _mark_stale(self, built) -> None:
        """A new policy: the explorer's (and the comparison's) rollout is the previous policy's until the next one."""
        result = self.rollout_panel.result
        if result is None or result.built is built:
            return
        for panel in self._stale_panels():
            panel.mark_stale(f"this shows the rollout of the previous policy (GRU {result.built.spec.hidden_size} in "
                             f"{result.env_spec.env_id}); run the rollout to see the new one.")

    def _clear_stale(self, result: RolloutResult) -> None:
        for panel in self._stale_panels():
            panel.clear_stale()

    def _rollout_metadata(self, result: RolloutResult) -> None:
        self.export_panel.set_metadata(trajectory_metadata(result.trajectory), diagnostics=result.report)

    def save_session(self, path, overwrite: bool = False):
        """Saves the policy, environment, trajectory and explorer view to one file (*Save session…*) and
        returns its path; an existing file only with ``overwrite``. Errors raise (and show in the bar)."""
        bar = self.session_bar
        if bar.save_to(path, overwrite=overwrite) is not None:
            bar.wait()
        bar.raise_if_failed("save_session", conflict=True)
        return bar.saved

    def open_session(self, path):
        """Opens a session file (*Open session…*): the policy into the policy builder, the environment and
        trajectory into the rollout panel and explorer, then the explorer's view. Errors raise."""
        bar = self.session_bar
        if bar.open_from(path) is not None:
            bar.wait()
        bar.raise_if_failed("open_session")
        return bar.opened

    # ------------------------------------------------------------------ shortcuts for notebooks
    def build(self) -> None:
        """Clicks *Build policy*."""
        self.policy_panel.build_button.click()

    def run(self) -> None:
        """Runs the rollout panel's rollout and returns when it is done (*Run rollout* runs it in the
        background); interrupting the cell cancels it."""
        self.rollout_panel.run()

    def cancel(self) -> None:
        """Cancels every panel's running job (as their Cancel buttons do)."""
        for panel in self.panels.values():
            panel.cancel("app.cancel()")

    @property
    def policy(self):
        """The last built or loaded policy (``None`` before)."""
        built = self.policy_panel.built
        return None if built is None else built.policy

    @property
    def trajectory(self):
        """The last rollout's trajectory (``None`` before)."""
        return self.rollout_panel.trajectory

    @property
    def errors(self) -> dict[str, str]:
        """The error each panel shows now, by panel name (empty when all is well)."""
        return {name: p.message for name, p in self.panels.items() if p.last_error is not None}
