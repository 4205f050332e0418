"""Hidden-state explorer: heatmap, PCA (2D/3D), norm and gates of a trajectory, linked by one time cursor.

Controls pick the env, the episode (zooms every time axis and bounds the cursor) and the layer;
a ``Play`` button drives the cursor, which is a vertical line on the time figures and a marker
on the PCA figure. Resets are marked on every figure (``workbench.figures`` draws them).
Selecting units by threshold over a time range (as LSTMVis does) outlines them on the heatmap and
draws them across every episode, aligned on resets.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as w

from workbench import figures
from workbench.episodes import episode_spans
from workbench.hidden import hidden_states, select_units
from workbench.keys import KEYS

from ._panel import Panel, box

__all__ = ["ExplorerPanel"]

TIME_VIEWS = ("hidden_heatmap", "hidden_norm", "gates")
ALL = -1


class ExplorerPanel(Panel):
    """Explores the hidden states of a trajectory; ``set_trajectory(traj_or_rollout_result)`` loads one.

    Public: ``set_trajectory``, ``trajectory``, the controls (``env``, ``episode``, ``layer``,
    ``pca_dims``, ``color``, ``cursor``, ``play``, ``threshold``, ``time_range``, ``absolute``),
    ``select_units(...)`` (the *Select units* button), ``selected_units``, ``figures``.
    """

    def __init__(self, *, play_interval_ms: int = 300):
        super().__init__(title="Hidden-state explorer", css="wb-explorer")
        self.trajectory = None
        self.selected_units: list[int] = []
        self._selection: tuple[int, int] | None = None
        self._spans: dict[int, tuple[int, int]] = {}
        self._quiet = False
        small = dict(style={"description_width": "60px"})
        self.env = w.Dropdown(options=[("env 0", 0)], description="env", layout=w.Layout(width="140px"), **small)
        self.episode = w.Dropdown(options=[("all episodes", ALL)], value=ALL, description="episode",
                                  layout=w.Layout(width="280px"), **small)
        self.layer = w.Dropdown(options=[("layer 0", 0)], description="layer", layout=w.Layout(width="150px"), **small)
        self.pca_dims = w.ToggleButtons(options=[("PCA 2D", 2), ("PCA 3D", 3)], value=2,
                                        style={"button_width": "70px"})
        self.color = w.ToggleButtons(options=[("by time", "time"), ("by episode", "episode")], value="time",
                                     style={"button_width": "90px"})
        self.play = w.Play(value=0, min=0, max=0, step=1, interval=play_interval_ms, description="play")
        self.cursor = w.IntSlider(value=0, min=0, max=0, description="time", continuous_update=False,
                                  layout=w.Layout(width="520px"), style={"description_width": "40px"})
        w.jslink((self.play, "value"), (self.cursor, "value"))
        self.cursor_info = w.HTML()
        self.threshold = w.FloatSlider(value=0.15, min=0.0, max=1.0, step=0.05, description="threshold",
                                       continuous_update=False, style={"description_width": "70px"})
        self.time_range = w.IntRangeSlider(value=(0, 0), min=0, max=0, description="steps",
                                           continuous_update=False, layout=w.Layout(width="420px"),
                                           style={"description_width": "50px"})
        self.absolute = w.Checkbox(value=True, description="|h| (else h)", indent=False,
                                   layout=w.Layout(width="110px"))
        self.select_button = w.Button(description="Select units", icon="crosshairs", button_style="info")
        self.units_info = w.HTML()
        self.buttons.append(self.select_button)
        self.select_button.on_click(lambda _: self.select_units())

        self.env.observe(lambda _: self._changed(full=True), "value")
        self.layer.observe(lambda _: self._changed(full=True), "value")
        self.pca_dims.observe(lambda _: self._changed(pca=True), "value")
        self.color.observe(lambda _: self._changed(pca=True), "value")
        self.episode.observe(lambda _: self._episode_changed(), "value")
        self.cursor.observe(lambda _: self._cursor_moved(), "value")
        half = dict(width="50%")
        self.children = [
            self.header,
            w.HBox([self.env, self.episode, self.layer, self.pca_dims, self.color]),
            w.HBox([self.play, self.cursor, self.cursor_info]),
            self.status,
            self.add_view("hidden_heatmap", 320),
            w.HBox([self.add_view("hidden_pca", 380, **half), self.add_view("hidden_norm", 380, **half)]),
            self.add_view("gates", 0),
            w.HTML("<b>Select units</b> <span style='font-size:12px;color:#555'>(units above the threshold "
                   "at every step of the range, in the selected env; then every episode, aligned on resets)"
                   "</span>"),
            w.HBox([self.threshold, self.time_range, self.absolute, self.select_button]),
            self.units_info,
            self.add_view("units_aligned", 0),
        ]
        self.show_message("No trajectory yet: run a rollout.", "info")

    # ------------------------------------------------------------------ loading
    def set_trajectory(self, data: Any) -> None:
        """Shows a trajectory (a TensorDict ``[E, T]`` from ``workbench.rollout.rollout``, or a
        :class:`~widgets.rollout_panel.RolloutResult`)."""
        with self.busy("Drawing the hidden states…"):
            traj = getattr(data, "trajectory", data)
            missing = [k for k in (KEYS.next_hidden, KEYS.is_init) if k not in traj.keys(True)]
            if missing or len(traj.batch_size) != 2:
                raise ValueError(f"The explorer needs a trajectory [envs, T] with {KEYS.next_hidden} and "
                                 f"{KEYS.is_init!r} (what workbench.rollout.rollout returns); got batch size "
                                 f"{list(traj.batch_size)}, missing {missing}.")
            e_count, t = traj.batch_size
            n_layers = traj.get(KEYS.next_hidden).shape[-2]
            self.trajectory = traj
            self.selected_units, self._selection = [], None
            self.units_info.value = ""
            self.drop_figure("units_aligned", emit=False)
            self._quiet = True
            try:
                self.env.options = [(f"env {e}", e) for e in range(e_count)]
                self.env.value = 0
                self.layer.options = [(f"layer {l}", l) for l in range(n_layers)]
                self.layer.value = n_layers - 1
                self._episode_options()
                self._set_bounds(0, t - 1)
                self.time_range.max = t - 1
                self.time_range.value = (min(5, t - 1), min(15, t - 1))
            finally:
                self._quiet = False
            self._draw()
            self.show_message(f"{e_count} env(s) × {t} steps, {n_layers} layer(s), "
                              f"{int(traj.get(KEYS.is_init).sum())} resets.", "ok")

    def _episode_options(self) -> None:
        spans = episode_spans(self.trajectory.get(KEYS.episode)[self.env.value]) \
            if KEYS.episode in self.trajectory.keys() else []
        self._spans = {i: (a, b) for i, a, b in spans}
        self.episode.options = [("all episodes", ALL)] + [(f"episode {i}: steps {a}–{b}", i) for i, a, b in spans]
        self.episode.value = ALL

    def _set_bounds(self, low: int, high: int) -> None:
        """Cursor (and play) bounds; the value is clamped into them."""
        for widget in (self.cursor, self.play):
            if low > widget.max:
                widget.max = high
                widget.min = low
            else:
                widget.min = low
                widget.max = high
        if not low <= self.cursor.value <= high:
            self.cursor.value = low

    # ------------------------------------------------------------------ drawing
    def _hidden(self):
        return hidden_states(self.trajectory, layer=self.layer.value)

    def _draw(self, *, pca_only: bool = False) -> None:
        traj, env = self.trajectory, self.env.value
        common = dict(env=env, layer=self.layer.value)
        if not pca_only:
            self.figures["hidden_heatmap"] = figures.hidden_heatmap(traj, height=320, **common)
            self.figures["hidden_norm"] = figures.norm_figure(traj, height=380, **common)
            if KEYS.gates in traj.keys():
                self.figures["gates"] = figures.gates_figure(traj, env=env, layers=[self.layer.value])
            else:
                self.figures.pop("gates", None)
                self.views["gates"].outputs = ()
        self.figures["hidden_pca"] = figures.pca_figure(traj, k=self.pca_dims.value, color=self.color.value,
                                                        height=380, **common)
        self._decorate()
        self._show_all(emit=True)

    def _show_all(self, *, emit: bool) -> None:
        for name in ("hidden_heatmap", "hidden_pca", "hidden_norm", "gates"):
            if name in self.figures:
                self.show_figure(name, self.figures[name], emit=False)
        if emit:
            self.emit("figures", self.figures)

    def _decorate(self) -> None:
        """Cursor, episode zoom and unit selection on the current figures."""
        t = self.cursor.value
        span = self._spans.get(self.episode.value)
        for name in TIME_VIEWS:
            fig = self.figures.get(name)
            if fig is not None:
                figures.zoom_time(figures.set_time_cursor(fig, t), span)
        self._outline_selection()
        figures.set_pca_cursor(self.figures["hidden_pca"], self.env.value, t)
        self.cursor_info.value = self._cursor_text(t)

    def _outline_selection(self) -> None:
        fig = self.figures.get("hidden_heatmap")
        if fig is not None:
            figures.outline_units(fig, self.selected_units, *(self._selection or (None, None)))

    def describe_step(self, t: int | None = None) -> str:
        """Plain words for step ``t`` of the current env (default: the cursor's): episode, steps since reset,
        and whether it is a reset or an episode's last step."""
        traj, e = self.trajectory, self.env.value
        t = self.cursor.value if t is None else t
        parts = [f"step {t}"]
        if KEYS.episode in traj.keys():
            parts.append(f"episode {int(traj.get(KEYS.episode)[e, t])}")
        if KEYS.step in traj.keys():
            parts.append(f"{int(traj.get(KEYS.step)[e, t])} steps since reset")
        if bool(traj.get(KEYS.is_init)[e, t].any()):
            parts.append("reset (is_init)")
        if KEYS.done in traj.keys(True) and bool(traj.get(KEYS.done)[e, t].any()):
            parts.append("episode ends")
        return " · ".join(parts)

    def _cursor_text(self, t: int) -> str:
        text = html.escape(self.describe_step(t))
        for flag in ("reset (is_init)", "episode ends"):
            text = text.replace(flag, f"<span style='color:#d62728'>{flag}</span>")
        return f"<b>{text}</b>"

    # ------------------------------------------------------------------ observers
    def _changed(self, *, full: bool = False, pca: bool = False) -> None:
        if self._quiet or self.trajectory is None:
            return
        with self.guard():
            if full:
                self.selected_units, self._selection = [], None
                self.units_info.value = ""
                self.drop_figure("units_aligned", emit=False)
                self._quiet = True
                try:
                    self._episode_options()
                    self._set_bounds(0, self.trajectory.batch_size[1] - 1)
                finally:
                    self._quiet = False
            self._draw(pca_only=pca and not full)

    def _episode_changed(self) -> None:
        if self._quiet or self.trajectory is None:
            return
        with self.guard():
            span = self._spans.get(self.episode.value, (0, self.trajectory.batch_size[1] - 1))
            self._quiet = True
            try:
                self._set_bounds(*span)
            finally:
                self._quiet = False
            self._decorate()
            self._show_all(emit=False)

    def _cursor_moved(self) -> None:
        if self._quiet or self.trajectory is None:
            return
        with self.guard():
            self._decorate()
            self._show_all(emit=False)

    # ------------------------------------------------------------------ unit selection
    def select_units(self, threshold: float | None = None, steps: tuple[int, int] | None = None,
                     absolute: bool | None = None) -> list[int]:
        """Selects the units of the current env above ``threshold`` at every step of ``steps`` (inclusive).

        Arguments left ``None`` are read from the controls (and set into them otherwise). The units
        are outlined on the heatmap and drawn across every episode, aligned on resets
        (``figures["units_aligned"]``). Returns the selected units.
        """
        with self.busy("Selecting units…"):
            if self.trajectory is None:
                raise RuntimeError("No trajectory yet: run a rollout first.")
            if threshold is not None:
                self.threshold.value = threshold
            if steps is not None:
                self.time_range.value = tuple(steps)
            if absolute is not None:
                self.absolute.value = absolute
            a, b = self.time_range.value
            hidden = self._hidden()[self.env.value]
            self.selected_units = select_units(hidden, a, b, self.threshold.value, absolute=self.absolute.value)
            self._selection = (a, b)
            what = "|h|" if self.absolute.value else "h"
            units = ", ".join(map(str, self.selected_units)) or "none"
            self.units_info.value = box(
                f"{len(self.selected_units)} unit(s) with {what} &gt; {self.threshold.value:g} at every step "
                f"{a}–{b} of env {self.env.value}: <b>{html.escape(units)}</b>.",
                "ok" if self.selected_units else "warning")
            self._outline_selection()
            self.show_figure("hidden_heatmap", self.figures["hidden_heatmap"], emit=False)
            self.show_figure("units_aligned", figures.aligned_units_figure(
                self.trajectory, self.selected_units, layer=self.layer.value, height=360,
                title=f"Units {units} ({what} > {self.threshold.value:g} over steps {a}–{b}, env "
                      f"{self.env.value}) across every episode, aligned on resets"))
            self.show_message(f"Selected {len(self.selected_units)} unit(s).", "ok")
        return self.selected_units
