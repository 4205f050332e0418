"""Hidden-state explorer: a timeline (heatmap, norm, gates on one time axis) and a PCA scatter, one time cursor.

Built to stay interactive at 100,000 steps: the data go to the browser once, at screen resolution
(:mod:`workbench.decimate`: one column per bin of steps; every step when the window fits), in two
plotly ``FigureWidget`` s. Afterwards an interaction sends only what changed:

- moving the cursor (slider, arrow keys, ``Play``, a click on the timeline or on a PCA point) moves
  the ``"cursor"`` shape of the timeline and of the 2D PCA (one relayout each; a one-point trace
  in 3D) and rewrites the step's description;
- zooming the timeline re-bins the visible window at full resolution (a 500-step window shows
  every step) and replaces only the traces' arrays; double-click goes back;
- an episode zooms the timeline on it, bounds the cursor and shows its points in the PCA
  (on the env's principal components, so the axes stay comparable).

``figures`` holds static ``go.Figure`` s of the current window for export (``hidden_heatmap``,
``hidden_norm``, ``hidden_pca``, ``gates`` when recorded, ``units_aligned`` after a selection),
built on access when stale, so cursor moves stay cheap. Selecting units by threshold over a time
range (as LSTMVis does) outlines them on the heatmap and draws them across every episode.
"""

from __future__ import annotations

import asyncio
import copy
import html
from typing import Any, Callable

import ipywidgets as w
import numpy as np
import plotly.graph_objects as go
import torch

from workbench import decimate, figures
from workbench.episodes import as_bool_init, episode_spans
from workbench.figures import timeline as tl
from workbench.hidden import pca, select_units
from workbench.keys import KEYS

from ._panel import Panel, box

__all__ = ["ExplorerPanel"]

ALL = -1
PCA_FIT_POINTS = 20_000
"""the PCA is fitted on at most this many evenly spaced points of the env, then every point is projected"""
PCA_WIDTH = 460
"""the PCA view's width in pixels (a FigureWidget does not shrink to its box)"""
STATIC = ("hidden_heatmap", "hidden_norm", "gates", "hidden_pca")


class LiveFigure(go.FigureWidget):
    """A ``FigureWidget`` whose full state, when a view asks for it (a reload, Voila, a second view), is
    the figure as it is now, not as it was built: updates after display are sent as messages only."""

    _silent: frozenset = frozenset()

    def get_state(self, key=None, drop_defaults=False):
        if key is None and getattr(self, "_data", None) is not None and getattr(self, "_layout_obj", None) is not None:
            self._silent = frozenset({"_widget_data", "_widget_layout"})
            try:  # the state goes out once, below, not also as an update to the views already open
                self._widget_data = copy.deepcopy(self._data)
                self._widget_layout = copy.deepcopy(self._layout_obj._props)
            finally:
                self._silent = frozenset()
        return super().get_state(key, drop_defaults)

    def _should_send_property(self, key, value):
        return key not in self._silent and super()._should_send_property(key, value)


class _Figures(dict):
    """``panel.figures``: a dict whose stale entries are rebuilt when read (``build(name)``)."""

    def __init__(self, build: Callable[[str], go.Figure]):
        super().__init__()
        self._build = build
        self._stale: set[str] = set()

    def mark(self, *names: str) -> None:
        """Marks ``names`` (those present) to be rebuilt on the next read."""
        self._stale.update(n for n in names if dict.__contains__(self, n))

    def declare(self, name: str) -> None:
        """Adds ``name``, built on first read."""
        dict.__setitem__(self, name, None)
        self._stale.add(name)

    def __getitem__(self, name: str):
        if name in self._stale:
            dict.__setitem__(self, name, self._build(name))
            self._stale.discard(name)
        return dict.__getitem__(self, name)

    def __setitem__(self, name: str, fig) -> None:
        self._stale.discard(name)
        dict.__setitem__(self, name, fig)

    def pop(self, name: str, *default):
        self._stale.discard(name)
        return dict.pop(self, name, *default)

    def get(self, name: str, default=None):
        return self[name] if dict.__contains__(self, name) else default

    def values(self):
        return [self[k] for k in self]

    def items(self):
        return [(k, self[k]) for k in self]


class ExplorerPanel(Panel):
    """Explores the hidden states of a trajectory; ``set_trajectory(traj_or_rollout_result)`` loads one.

    Public: ``set_trajectory``, ``trajectory``, the controls (``env``, ``episode``, ``layer``,
    ``pca_dims``, ``color``, ``cursor``, ``play``, ``threshold``, ``time_range``, ``absolute``),
    ``select_units(...)`` (the *Select units* button), ``selected_units``, ``describe_step``,
    ``figures``; the live views ``timeline`` and ``pca_view`` (``FigureWidget`` s), ``zoom(first, last)``.

    Keyword Args:
        play_interval_ms: the ``Play`` button's step interval.
        columns: pixel columns a window is binned to (:data:`workbench.decimate.COLUMNS`).
        how: heatmap binning, ``"maxabs"`` (value of largest magnitude) or ``"mean"``.
        debounce_s: zoom re-binning waits this long for the range to settle (in a kernel).
    """

    def __init__(self, *, play_interval_ms: int = 300, columns: int = decimate.COLUMNS, how: str = "maxabs",
                 debounce_s: float = 0.15):
        super().__init__(title="Hidden-state explorer", css="wb-explorer")
        decimate.bins(0, 1, columns=columns)  # checks columns
        if how not in decimate.HOW:
            raise ValueError(f"how: expected one of {decimate.HOW}; got {how!r}.")
        self.columns, self.how, self.debounce_s = int(columns), how, float(debounce_s)
        self.figures = _Figures(self._static_figure)
        self.trajectory = None
        self.selected_units: list[int] = []
        self._selection: tuple[int, int] | None = None
        self._spans: dict[int, tuple[int, int]] = {}
        self._cache: dict[tuple, Any] = {}
        self._win: tl.Window | None = None
        self._pca: tl.PCAView | None = None
        self._quiet = False
        self._pending: Any = None
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
        self.timeline: LiveFigure | None = None
        self.pca_view: LiveFigure | None = None
        self.timeline_box = w.Box(layout=w.Layout(flex="1 1 auto", min_height="380px", overflow="auto"))
        self.timeline_box.add_class("wb-view-timeline")
        self.pca_box = w.Box(layout=w.Layout(min_width=f"{PCA_WIDTH}px", min_height="380px", overflow="auto"))
        self.pca_box.add_class("wb-view-pca")

        self.env.observe(lambda _: self._changed(full=True), "value")
        self.layer.observe(lambda _: self._changed(full=True), "value")
        self.pca_dims.observe(lambda _: self._changed(pca=True), "value")
        self.color.observe(lambda _: self._changed(pca=True), "value")
        self.episode.observe(lambda _: self._episode_changed(), "value")
        self.cursor.observe(lambda _: self._cursor_moved(), "value")
        self.children = [
            self.header,
            w.HBox([self.env, self.episode, self.layer, self.pca_dims, self.color]),
            w.HBox([self.play, self.cursor, self.cursor_info]),
            self.status,
            w.HBox([self.timeline_box, self.pca_box]),
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
        """Shows a trajectory (a TensorDict ``[E, T]`` from ``workbench.rollout.rollout``, memory-mapped or
        not, or a :class:`~widgets.rollout_panel.RolloutResult`). Reads one env and layer at a time."""
        with self.busy("Drawing the hidden states…"):
            traj = getattr(data, "trajectory", data)
            keys = set(traj.keys(True)) if hasattr(traj, "keys") else set()
            missing = [k for k in (KEYS.next_hidden, KEYS.is_init) if k not in keys]
            if missing or len(getattr(traj, "batch_size", ())) != 2:
                raise ValueError(f"The explorer needs a trajectory [envs, T] with {KEYS.next_hidden} and "
                                 f"{KEYS.is_init!r} (what workbench.rollout.rollout returns); got batch size "
                                 f"{list(getattr(traj, 'batch_size', []))}, missing {missing}.")
            e_count, t = traj.batch_size
            n_layers = traj.get(KEYS.next_hidden).shape[-2]
            self.trajectory = traj
            self._cache = {}
            self._clear_selection()
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
            n_resets = int(as_bool_init(traj.get(KEYS.is_init), (e_count, t)).sum())
            self.show_message(f"{e_count} env(s) × {t} steps, {n_layers} layer(s), {n_resets} resets.", "ok")

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

    def _clear_selection(self) -> None:
        self.selected_units, self._selection = [], None
        self.units_info.value = ""
        self.drop_figure("units_aligned", emit=False)

    # ------------------------------------------------------------------ data (one env and layer at a time)
    @property
    def steps(self) -> int:
        return int(self.trajectory.batch_size[1])

    def _series(self) -> dict[str, Any]:
        """The current env and layer's arrays, read once: hidden ``[T, H]``, norm, resets, gates, colour range."""
        key = ("series", self.env.value, self.layer.value)
        if key not in self._cache:
            traj, e, l = self.trajectory, self.env.value, self.layer.value
            h = traj.get(KEYS.next_hidden)[e, :, l]
            h = torch.as_tensor(h).detach().cpu()
            h = h.float() if h.dtype in (torch.float16, torch.bfloat16) else h
            gates = None
            if KEYS.gates in traj.keys(True):
                gates = torch.as_tensor(traj.get(KEYS.gates)[e, :, l]).detach().cpu().numpy()
            init = as_bool_init(torch.as_tensor(traj.get(KEYS.is_init)[e:e + 1]).cpu())[0]
            norm = h.double().norm(dim=-1).numpy()
            hn = h.numpy()
            zmax = max(1.0, float(np.nanmax(np.abs(hn)))) if hn.size else 1.0
            self._cache = {k: v for k, v in self._cache.items() if k[1:3] == (e, l) and k[0] != "series"}
            self._cache[key] = dict(hidden=hn, norm=norm, gates=gates, resets=torch.nonzero(init).flatten().numpy(),
                                    zmax=zmax, norm_range=(0.0, float(np.nanmax(norm)) * 1.05 if norm.size else 1.0))
        return self._cache[key]

    def _window(self, start: int, stop: int) -> tl.Window:
        s = self._series()
        return tl.window(s["hidden"], resets=s["resets"], start=start, stop=stop, columns=self.columns,
                         how=self.how, norm=s["norm"], gates=s["gates"], zmax=s["zmax"],
                         norm_range=s["norm_range"], label=f"env {self.env.value} · layer {self.layer.value}")

    def _pca_fit(self):
        """``(coords [T, k<=3], ratio, fitted_on)``: PCA of the env's states on at most ``PCA_FIT_POINTS``
        evenly spaced steps, every step projected."""
        key = ("pca", self.env.value, self.layer.value)
        if key not in self._cache:
            h = torch.from_numpy(self._series()["hidden"])
            k = min(3, h.shape[-1], h.shape[0])
            step = max(1, -(-h.shape[0] // PCA_FIT_POINTS))
            sample = h[::step]
            res = pca(sample, k=k)
            coords = res.transform(h).float().numpy()
            if coords.shape[1] < 3:  # a 1- or 2-unit state: pad so 2D/3D always draw
                coords = np.pad(coords, ((0, 0), (0, 3 - coords.shape[1])))
            ratio = np.pad(res.explained_variance_ratio.double().numpy(), (0, 3 - k))
            self._cache[key] = (coords, ratio, sample.shape[0])
        return self._cache[key]

    def _pca_data(self) -> tl.PCAView:
        coords, ratio, fitted = self._pca_fit()
        a, b = self._spans.get(self.episode.value, (0, self.steps - 1))
        steps = np.arange(a, b + 1)
        if self.color.value == "episode" and KEYS.episode in self.trajectory.keys():
            color = torch.as_tensor(self.trajectory.get(KEYS.episode)[self.env.value, a:b + 1]).reshape(-1).numpy()
            title = "episode"
        else:
            color, title = steps, "step"
        where = "all episodes" if self.episode.value == ALL else f"episode {self.episode.value}"
        return tl.pca_view(coords[a:b + 1, :self.pca_dims.value], steps, color=color, color_title=title,
                           resets=self._series()["resets"], ratio=ratio, fitted_on=fitted, total=self.steps,
                           label=f"PCA of env {self.env.value} · layer {self.layer.value} · {where}")

    # ------------------------------------------------------------------ drawing
    def _span(self) -> tuple[int, int]:
        """The steps ``[start, stop)`` the episode choice shows (all steps for "all episodes")."""
        a, b = self._spans.get(self.episode.value, (0, self.steps - 1))
        return a, b + 1

    def _draw(self, *, pca_only: bool = False) -> None:
        if not pca_only:
            self._win = self._window(*self._span())
            new = tl.timeline_figure(self._win, cursor=self.cursor.value, selection=self._selection_marks(),
                                     height=None)
            self.timeline = self._show(self.timeline, new, self.timeline_box, self._wire_timeline)
            if self._win.gates is not None:
                self.figures.declare("gates")
            else:
                self.figures.pop("gates", None)
            self.figures.declare("hidden_heatmap")
            self.figures.declare("hidden_norm")
        self._pca = self._pca_data()
        new = tl.pca_scatter_figure(self._pca, cursor=self.cursor.value, height=420, width=PCA_WIDTH)
        self.pca_view = self._show(self.pca_view, new, self.pca_box, self._wire_pca)
        self.figures.declare("hidden_pca")
        self.cursor_info.value = self._cursor_text(self.cursor.value)
        self.emit("figures", self.figures)

    def _show(self, live: LiveFigure | None, new: go.Figure, holder: w.Box, wire) -> LiveFigure:
        """Puts ``new`` in the live figure: the first time a new FigureWidget, later in place (its traces
        and layout replaced: no second copy of plotly.js goes to the browser)."""
        packed = [tl.widget_arrays(tr.to_plotly_json()) for tr in new.data]
        if live is None:
            live = LiveFigure(data=packed, layout=new.layout)
            holder.children = (live,)
        else:
            # no hold_sync here: it would merge the transient _py2js_* messages into their final None
            live.data = []
            gone = {k: None for k in live.layout.to_plotly_json() if k not in new.layout.to_plotly_json()}
            if gone:
                live.update_layout(gone)
            live.layout = new.layout
            live.add_traces(packed)
        wire(live)
        return live

    def _wire_timeline(self, fig: LiveFigure) -> None:
        for trace in fig.data:
            if trace.name != "resets":
                trace.on_click(self._clicked_timeline)
        # once per axis object: a replaced layout has new axes, and rows may appear later (gates)
        wired = fig.__dict__.setdefault("_wb_axes", set())
        for name in [k for k in fig.layout.to_plotly_json() if k.startswith("xaxis")] or ["xaxis"]:
            if id(fig.layout[name]) not in wired:
                wired.add(id(fig.layout[name]))
                fig.layout[name].on_change(self._range_changed, "range")
                fig.layout[name].on_change(self._autorange_changed, "autorange")

    def _wire_pca(self, fig: LiveFigure) -> None:
        fig.data[0].on_click(self._clicked_pca)

    def _selection_marks(self):
        if self._selection is None:
            return None
        return (self.selected_units, *self._selection)

    # ------------------------------------------------------------------ static figures (export)
    def _static_figure(self, name: str) -> go.Figure:
        t = self.cursor.value
        label = f"env {self.env.value} · layer {self.layer.value}"
        if name == "hidden_pca":
            return tl.pca_scatter_figure(self._pca, cursor=t, height=420)
        rows, title = {"hidden_heatmap": (("hidden",), "Hidden state"), "hidden_norm": (("norm",), "Hidden-state norm"),
                       "gates": (("gates",), "GRU gates")}[name]
        return tl.timeline_figure(self._win, rows=rows, cursor=t, selection=self._selection_marks(),
                                  title=f"{title}, {label} · {self._win.describe()}")

    # ------------------------------------------------------------------ cursor
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
        if bool(torch.as_tensor(traj.get(KEYS.is_init)[e, t]).any()):
            parts.append("reset (is_init)")
        if KEYS.done in traj.keys(True) and bool(torch.as_tensor(traj.get(KEYS.done)[e, t]).any()):
            parts.append("episode ends")
        return " · ".join(parts)

    def _cursor_text(self, t: int) -> str:
        text = html.escape(self.describe_step(t))
        for flag in ("reset (is_init)", "episode ends"):
            text = text.replace(flag, f"<span style='color:#d62728'>{flag}</span>")
        return f"<b>{text}</b>"

    def _move_cursor_marks(self, t: int) -> None:
        """Moves only the cursor marks: the timeline's ``"cursor"`` shape (x0/x1) and the PCA's (its anchor,
        or the 3D cursor trace's point)."""
        fig = self.timeline
        i = next(i for i, s in enumerate(fig.layout.shapes) if s.name == "cursor")
        with fig.batch_update():
            fig.layout.shapes[i].update(x0=t, x1=t)
        p = self._pca.point(t)
        fig = self.pca_view
        if self._pca.k == 3:
            cursor = next(fig.select_traces(selector=dict(name="cursor")))
            with fig.batch_update():
                cursor.update(x=[float(p[0])], y=[float(p[1])], z=[float(p[2])])
        else:
            i = next(i for i, s in enumerate(fig.layout.shapes) if s.name == "cursor")
            with fig.batch_update():
                fig.layout.shapes[i].update(xanchor=float(p[0]), yanchor=float(p[1]))

    # ------------------------------------------------------------------ observers
    def _changed(self, *, full: bool = False, pca: bool = False) -> None:
        if self._quiet or self.trajectory is None:
            return
        with self.guard():
            if full:
                self._clear_selection()
                self._quiet = True
                try:
                    self._episode_options()
                    self._set_bounds(0, self.steps - 1)
                finally:
                    self._quiet = False
            self._draw(pca_only=pca and not full)

    def _episode_changed(self) -> None:
        if self._quiet or self.trajectory is None:
            return
        with self.guard():
            start, stop = self._span()
            self._quiet = True
            try:
                self._set_bounds(start, stop - 1)
            finally:
                self._quiet = False
            self.zoom(start, stop - 1)
            self._pca = self._pca_data()
            fig = self.pca_view
            packed = [tl.widget_arrays(t) for t in tl.pca_traces(self._pca)]
            with fig.batch_update():
                for trace, data in zip(fig.data, packed):
                    trace.update(data)
                fig.layout.title.text = tl.pca_scatter_figure(self._pca).layout.title.text
                if self._pca.k == 2:
                    fig.layout.xaxis.autorange = fig.layout.yaxis.autorange = True
            self._move_cursor_marks(self.cursor.value)
            self.cursor_info.value = self._cursor_text(self.cursor.value)
            self.figures.mark("hidden_pca")

    def _cursor_moved(self) -> None:
        if self._quiet or self.trajectory is None:
            return
        with self.guard():
            t = self.cursor.value
            self._move_cursor_marks(t)
            self.cursor_info.value = self._cursor_text(t)
            self.figures.mark(*STATIC)

    def _clicked_timeline(self, trace, points, _state) -> None:
        if points.xs:
            self._set_cursor(int(round(float(points.xs[0]))))

    def _clicked_pca(self, trace, points, _state) -> None:
        if points.point_inds and self._pca is not None:
            self._set_cursor(int(self._pca.steps[points.point_inds[0]]))

    def _set_cursor(self, t: int) -> None:
        self.cursor.value = int(np.clip(t, self.cursor.min, self.cursor.max))

    # ------------------------------------------------------------------ zoom
    def zoom(self, first: int, last: int) -> None:
        """Shows steps ``first..last`` (inclusive) on the timeline, re-binned at full resolution."""
        self._rebin(int(first), int(last) + 1, set_range=True)

    def _rebin(self, start: int, stop: int, *, set_range: bool) -> None:
        start, stop = max(0, start), min(self.steps, max(stop, start + 1))
        win = self._window(start, stop)
        fig = self.timeline
        packed = [tl.widget_arrays(t) for t in tl.timeline_traces(win)]
        self._quiet_range = True
        try:
            with fig.batch_update():
                for trace, data in zip(fig.data, packed):
                    trace.update(data)
                fig.layout.title.text = tl.timeline_figure(win, rows=("norm",)).layout.title.text
                if set_range:
                    fig.layout.xaxis.update(range=[start - 0.5, stop - 0.5], autorange=False)
        finally:
            self._quiet_range = False
        self._win = win
        self.figures.mark("hidden_heatmap", "hidden_norm", "gates")

    def _range_changed(self, axis, rng) -> None:
        if getattr(self, "_quiet_range", False) or self.trajectory is None or rng is None:
            return
        lo, hi = float(rng[0]), float(rng[1])
        start, stop = int(np.floor(lo + 0.5)), int(np.ceil(hi - 0.5)) + 1
        self._later(lambda: self._rebin_if_needed(start, stop))

    def _autorange_changed(self, axis, auto) -> None:
        if getattr(self, "_quiet_range", False) or self.trajectory is None or not auto:
            return
        self._later(lambda: self._rebin_if_needed(*self._span()))

    def _rebin_if_needed(self, start: int, stop: int) -> None:
        with self.guard():
            start, stop = max(0, start), min(self.steps, stop)
            want = decimate.bins(start, max(stop, start + 1), columns=self.columns)
            have = self._win.bins if self._win is not None else None
            # the drawn bins already cover the view at this resolution: nothing to send
            if have is not None and have.width == want.width and have.start <= start and have.stop >= stop:
                return
            self._rebin(start, stop, set_range=False)

    def _later(self, fn: Callable[[], None]) -> None:
        """Runs ``fn`` once the zoom settles (``debounce_s`` in a kernel's event loop; at once without one)."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            fn()
            return
        self._pending = loop.call_later(self.debounce_s, fn)

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
            hidden = torch.from_numpy(self._series()["hidden"])
            self.selected_units = select_units(hidden, a, b, self.threshold.value, absolute=self.absolute.value)
            self._selection = (a, b)
            what = "|h|" if self.absolute.value else "h"
            units = ", ".join(map(str, self.selected_units)) or "none"
            self.units_info.value = box(
                f"{len(self.selected_units)} unit(s) with {what} &gt; {self.threshold.value:g} at every step "
                f"{a}–{b} of env {self.env.value}: <b>{html.escape(units)}</b>.",
                "ok" if self.selected_units else "warning")
            fig = self.timeline
            keep = [s for s in fig.layout.shapes if s.name != "selection"]
            with fig.batch_update():
                fig.layout.shapes = keep + [go.layout.Shape(**s) for s in tl.selection_shapes(self.selected_units, a, b)]
            self.figures.mark("hidden_heatmap")
            self.show_figure("units_aligned", figures.aligned_units_figure(
                self.trajectory, self.selected_units, layer=self.layer.value, height=360,
                title=f"Units {units} ({what} > {self.threshold.value:g} over steps {a}–{b}, env "
                      f"{self.env.value}) across every episode, aligned on resets"))
            self.show_message(f"Selected {len(self.selected_units)} unit(s).", "ok")
        return self.selected_units
