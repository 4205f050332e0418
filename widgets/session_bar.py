"""Save session / Open session: the app's policy, environment, trajectory and view in one file.

The bar sits at the top of :class:`~widgets.app.WorkbenchApp`. *Save session…* writes what the app
shows (:func:`workbench.saved_session.save_session`): the policy panel's policy (as a checkpoint with
its metadata), the rollout panel's environment, the explorer's trajectory and its view state (cursor,
episode, zoom, selected units). *Open session…* reads one back and puts each part where it came from:
the policy into the policy builder (as if loaded), the environment into the rollout panel, the
trajectory into the rollout panel and from there to the explorer (and every panel fed by rollouts),
then the explorer's view. Both run in the background with progress and Cancel. An existing file is
never replaced without the explicit *overwrite* tick (the bar proposes a free name instead).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import ipywidgets as w

from workbench.errors import OutputPathError
from workbench.files import check_output_path, free_name, is_shipped_asset
from workbench.saved_session import SavedSession, load_session, save_session

from ._panel import Panel, SaveConflict, box

__all__ = ["SessionBar", "SESSION_FOLDER"]

SESSION_FOLDER = Path.home() / "gru-workbench" / "sessions"
"""where the bar proposes to save sessions"""


def _mib(on_progress):
    """Byte progress as MiB for the job controls (whole numbers read better than 69,206,016 bytes)."""
    return lambda done, total: on_progress(done >> 20, None if total is None else max(1, total >> 20))


class SessionBar(SaveConflict, Panel):
    """*Save session…* / *Open session…* for an app (any object with the
    :class:`~widgets.app.WorkbenchApp` panels ``policy_panel``, ``rollout_panel``, ``explorer_panel``).

    Public: ``save_to(path=None, overwrite=False)`` and ``open_from(path=None)`` (what the buttons do: start in
    the background and return the job, or ``None`` when nothing started: the bar says why),
    ``path`` (the file field), ``saved`` (the last path written), ``opened`` (the last
    :class:`~workbench.saved_session.SavedSession` read).
    """

    def __init__(self, app, *, path: str | None = None, folder: str | Path | None = None):
        super().__init__(title="", css="wb-session",
                         layout=w.Layout(border="1px solid #d0d7de", padding="2px 10px", margin="4px 0"))
        self.app = app
        self.folder = Path(folder if folder is not None else SESSION_FOLDER).expanduser()
        self.path = w.Text(value=path or str(free_name(self.folder / "session.zip")), description="session file",
                           style={"description_width": "80px"}, layout=w.Layout(width="420px"))
        self.save_button = w.Button(description="Save session…", icon="save", layout=w.Layout(width="auto"),
                                    tooltip="policy, environment, trajectory and view in one file")
        self.open_button = w.Button(description="Open session…", icon="folder-open", layout=w.Layout(width="auto"),
                                    tooltip="restore the policy, environment, trajectory and view of a session file")
        self._conflict_controls()
        self.saved: Path | None = None
        self.opened: SavedSession | None = None
        self.buttons += [self.save_button, self.open_button, self.save_as_button]
        self.save_button.on_click(lambda _: self.save_to())
        self.open_button.on_click(lambda _: self.open_from())
        self.path.observe(lambda _: self._hide_conflict(), "value")
        self.children = [
            w.HBox([self.path, self.save_button, self.open_button, self.overwrite, self.save_as_button],
                   layout=w.Layout(flex_flow="row wrap", align_items="center")),
            self.job_controls,
            self.status,
        ]

    # ------------------------------------------------------------------ save
    def save_to(self, path: str | None = None, *, overwrite: bool = False):
        """Starts writing the app's session to ``path`` (default: the field); returns the job or ``None``.

        An existing file is replaced only with ``overwrite`` (or the *overwrite* tick); otherwise the bar
        shows the conflict and proposes a free name. Without a rollout it saves the policy and environment
        only, and says so.
        """
        if self.refuse_if_running():
            return None
        self.last_error = None
        if path is not None:
            self.path.value = str(path)
        overwrite = overwrite or self.overwrite.value
        with self.guard():
            target = Path(self.path.value.strip()).expanduser()
            if not self.path.value.strip():
                raise ValueError("session file: type a path to save to, e.g. ~/gru-workbench/sessions/run.zip")
            if is_shipped_asset(target):
                self._show_conflict(free_name(self.folder / target.name), confirm=False, text=(
                    f"{target} is under the repository's assets/: the workbench never writes there."))
                return None
            real = check_output_path(target, what="session file")
            if real.exists() and not overwrite:
                self._show_conflict(free_name(target), confirm=True, text=(
                    f"{target} exists: nothing was saved. Save under the proposed name, or tick "
                    "'overwrite the existing file' and click Save session again."))
                return None
            parts = self._collect()

            def work(cancel, on_progress):
                return save_session(target, overwrite=True, cancel=cancel, on_progress=_mib(on_progress), **parts)

            def on_end(job) -> None:
                if job.state == "cancelled":
                    self.show_message(f"Save cancelled: {target} was not written (an existing file is untouched).",
                                      "warning")
                    return
                self.saved = Path(job.result)
                self._hide_conflict()
                traj = parts["trajectory"]
                if traj is None:
                    self.show_message(f"Saved the policy and environment to {self.saved.resolve()}: no rollout "
                                      "yet, so no trajectory or view (run a rollout and save again to keep them).",
                                      "warning")
                else:
                    view = parts["view"]
                    self.show_message(
                        f"Saved session to {self.saved.resolve()}: policy, environment, trajectory "
                        f"{list(traj.batch_size)}, view (step {view.get('cursor')}, "
                        f"{len(view.get('selected_units') or [])} selected unit(s)).", "ok")

            return self.start_job(work, name="session save", on_end=on_end, unit="MiB",
                                  message=f"Saving the session to {target}…")
        return None

    def _collect(self) -> dict[str, Any]:
        """The app's parts, read on the kernel's thread: policy, spec, env, trajectory, view, metadata."""
        from workbench.envs import EnvSpec
        from workbench.rollout import trajectory_metadata

        app = self.app
        rollout, explorer = app.rollout_panel, app.explorer_panel
        trajectory = explorer.trajectory if explorer.trajectory is not None else rollout.trajectory
        result = rollout.result
        # the policy that made the trajectory shown (a newer one in the builder is not that policy)
        built = result.built if result is not None and result.trajectory is trajectory else app.policy_panel.built
        if built is None:
            raise RuntimeError("Nothing to save yet: build or load a policy first (Policy builder).")
        recorded = trajectory_metadata(trajectory).get("env") if trajectory is not None else None
        if isinstance(recorded, dict):
            env_spec = EnvSpec.from_dict(recorded)  # the environment the trajectory was made in
        else:
            env_spec = rollout.env_spec() if rollout.built is not None else built.env_spec
        view = explorer.view_state() if explorer.trajectory is not None else {}
        metadata = {**built.metadata, "source": built.source}
        return dict(policy=built.policy, policy_spec=built.spec, env_spec=env_spec, trajectory=trajectory,
                    view=view, metadata=metadata)

    def _save_again(self):
        return self.save_to()

    # ------------------------------------------------------------------ open
    def open_from(self, path: str | None = None):
        """Starts reading a session file (default: the field); when read, restores it into the app
        (:meth:`restore`). Returns the job, or ``None`` when nothing started."""
        if self.refuse_if_running():
            return None
        self.last_error = None
        if path is not None:
            self.path.value = str(path)
        source = Path(self.path.value.strip()).expanduser()

        def work(cancel, on_progress):
            return load_session(source, cancel=cancel, on_progress=_mib(on_progress))

        def on_end(job) -> None:
            if job.state == "cancelled":
                self.show_message(f"Open cancelled: nothing of {source} was restored.", "warning")
                return
            self.restore(job.result)

        return self.start_job(work, name="session open", on_end=on_end, unit="MiB",
                              message=f"Opening the session {source}…")

    def restore(self, saved: SavedSession) -> None:
        """Puts a session's parts into the app: the policy into the policy builder (as if loaded), the
        environment into the rollout panel, the trajectory into the rollout panel (emitted to the explorer
        and every panel fed by rollouts), then the explorer's view state."""
        from workbench.envs import EnvSpec

        from .policy_panel import BuiltPolicy
        from .rollout_panel import RolloutResult

        app, env = self.app, saved.env_spec
        policy_panel, rollout = app.policy_panel, app.rollout_panel
        ids = list(policy_panel.env_id.options)
        if env.env_id not in ids:
            policy_panel.env_id.options = ids + [env.env_id]
        policy_panel.env_id.value = env.env_id
        policy_panel.hide_velocity.value = env.hide_velocity
        policy_panel.set_spec(saved.policy_spec)
        source = f"session {saved.path}"
        built = BuiltPolicy(saved.policy, saved.policy_spec,
                            EnvSpec(env.env_id, hide_velocity=env.hide_velocity, delay=env.delay), source,
                            dict(saved.metadata))
        policy_panel._publish(built, f"Loaded from the session {saved.path}.")  # the "policy" event: as a Load
        rollout.num_envs.value, rollout.parallel.value = env.num_envs, env.parallel
        rollout.max_steps.value, rollout.seed.value = env.max_steps or 0, env.seed if env.seed is not None else 0
        rollout.built = built
        what = f"policy (GRU {saved.policy_spec.hidden_size}), {env.env_id} × {env.num_envs}"
        if saved.trajectory is None:
            self.show_message(f"Opened {saved.path}: {what}; it holds no trajectory (it was saved before a "
                              "rollout): run one.", "ok")
            self.opened = saved
            return
        traj = saved.trajectory
        rollout.steps.value = int(traj.batch_size[1])
        from workbench.rollout import trajectory_metadata

        result = RolloutResult(traj, None, built, env, str(trajectory_metadata(traj).get("device", "cpu")), 0.0)
        rollout.result = result
        where = f"read from {saved.trajectory_folder}" if saved.trajectory_folder else "from the session file"
        rollout.banner.value = box(
            f"Trajectory {html.escape(where)}: its diagnostics are not saved with it. Run the rollout again to "
            "diagnose it.", "info")
        rollout.drop_figure("replay_divergence")
        rollout.show_message(f"Opened from the session {saved.path}: {traj.batch_size[0]} env(s) × "
                             f"{traj.batch_size[1]:,} steps.", "ok")
        rollout.emit("rollout", result)
        explorer = app.explorer_panel
        if saved.view and explorer.trajectory is traj:
            explorer.restore_view_state(saved.view)
        self.opened = saved
        self.show_message(f"Opened {saved.path}: {what}, trajectory {list(traj.batch_size)} ({where}), view "
                          f"restored ({explorer.message}).", "ok" if explorer.last_error is None else "warning")

    def raise_if_failed(self, what: str, *, conflict: bool = False) -> None:
        """For code (``app.save_session`` / ``app.open_session``): the error the bar shows, raised (with
        ``conflict``: a refused save too)."""
        if self.last_error is not None:
            raise self.last_error
        if conflict and self.proposed is not None:
            raise OutputPathError(f"{what}: {self.message}")
