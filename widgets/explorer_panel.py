"""Hidden-state explorer: a timeline (heatmap, norm, gates on one time axis) and a PCA scatter, one time cursor.

Built to stay interactive at 100,000 steps: the data go to the browser once, at screen resolution
(:mod:`workbench.decimate`: one column per bin of steps; every step when the window fits), in one
:class:`~widgets.plotly_view.PlotlyView` (plotly.js in the browser, both figures). Afterwards an
interaction sends only what changed:

- moving the cursor (slider, arrow keys, a click on the timeline or on a PCA point) sends
  the view's ``cursor`` (a few bytes): the browser moves the ``"cursor"`` layout image of the
  timeline and of the 2D PCA (a one-point trace in 3D) without redrawing data, and the step's
  description is rewritten;
- ``Play`` runs in the browser, from every step's PCA point sent once with the PCA: no message
  per step; the slider and the description follow a few times a second;
- zooming the timeline re-bins the visible window at full resolution (a 500-step window shows
  every step) and sends the timeline figure only; double-click goes back;
- an episode zooms the timeline on it, puts the cursor on its first step, bounds it, and shows its
  points in the PCA (on the env's principal components, so the axes stay comparable).

As in LSTMVis, the figures are the controls: a click on any row of the timeline (heatmap, norm,
gates) or on a PCA point moves the cursor there; with *drag: select steps* a drag over the timeline
brushes a step range (``time_range``, shown as a band on the timeline and as ringed points in the
PCA; sends only ``band``) and selects the units above the threshold over it; a shift-click (or a
click in select mode) on a row of the hidden-state heatmap adds that unit to the selection or
removes it. The range can also be typed (``range_first``/``range_last``), so 5–15 of 20,000 steps
is reachable without a mouse.

``figures`` holds static ``go.Figure`` s of the current window for export (``hidden_heatmap``,
``hidden_norm``, ``hidden_pca``, ``gates`` when recorded, ``units_aligned`` after a selection),
built on access when stale, so cursor moves stay cheap. Selecting units by threshold over a time
range (as LSTMVis does) outlines them on the heatmap and draws them across every episode.
"""

from __future__ import annotations

import html
from typing import Any, Callable

import ipywidgets as w
import numpy as np
import plotly.graph_objects as go
import torch

from workbench import decimate, figures
from workbench.episodes import as_bool_init, episode_spans, reset_counts
from workbench.figures import timeline as tl
from workbench.hidden import pca, select_units
from workbench.keys import KEYS

from ._panel import Panel, box
from .plotly_view import PlotlyView, typed_array

__all__ = ["ExplorerPanel"]

ALL = -1
PCA_FIT_POINTS = 20_000
PCA_DRAW_POINTS = 20_000
BAND_POINTS = 2_000
"""the PCA rings at most this many points of the selected range (evenly spaced)"""
"""the PCA draws at most this many points (evenly spaced steps; the cursor's point is exact at every step)"""
"""the PCA is fitted on at most this many evenly spaced points of the env, then every point is projected"""
STATIC = ("hidden_heatmap", "hidden_norm", "gates", "hidden_pca")


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
    ``pca_dims``, ``color``, ``cursor``, ``play`` (a toggle: Play runs in the browser, see
    :class:`~widgets.plotly_view.PlotlyView`), ``threshold``, ``time_range``, ``absolute``),
    ``select_units(...)`` (the *Select units* button), ``toggle_unit(unit)`` (a shift-click on a heatmap row),
    ``drag`` (``"zoom"`` or ``"select"``: what a drag on the timeline does), ``range_first``/``range_last``
    (the range typed), ``selected_units``, ``describe_step``,
    ``figures``; ``view`` (the :class:`~widgets.plotly_view.PlotlyView` drawing both figures) and, as
    drawn there, ``timeline`` and ``pca_view`` (``go.Figure`` s, arrays decoded), ``zoom(first, last)``.

    Keyword Args:
        play_interval_ms: the ``Play`` button's step interval.
        columns: pixel columns a window is binned to (:data:`workbench.decimate.COLUMNS`).
        how: heatmap binning, ``"maxabs"`` (value of largest magnitude) or ``"mean"``.
        debounce_s: zoom re-binning waits this long for the range to settle (in the browser).
    """

    def __init__(self, *, play_interval_ms: int = 80, columns: int = decimate.COLUMNS, how: str = "maxabs",
                 debounce_s: float = 0.02):
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
        self._timeline_spec: dict | None = None  # the last timeline built whole (a zoom swaps its data)
        self._shown: list[float] | None = None
        self._pca: tl.PCAView | None = None
        self._quiet = False
        small = dict(style={"description_width": "60px"})
        self.env = w.Dropdown(options=[("env 0", 0)], description="env", layout=w.Layout(width="140px"), **small)
        self.episode = w.Dropdown(options=[("all episodes", ALL)], value=ALL, description="episode",
                                  layout=w.Layout(width="280px"), **small)
        self.layer = w.Dropdown(options=[("layer 0", 0)], description="layer", layout=w.Layout(width="150px"), **small)
        self.pca_dims = w.ToggleButtons(options=[("PCA 2D", 2), ("PCA 3D", 3)], value=2,
                                        style={"button_width": "70px"})
        self.color = w.ToggleButtons(options=[("by time", "time"), ("by episode", "episode")], value="time",
                                     style={"button_width": "100px"})
        self.play = w.ToggleButton(value=False, description="Play", icon="play", layout=w.Layout(width="90px"),
                                   tooltip="move the time cursor forward, step by step (in the browser)")
        self.cursor = w.IntSlider(value=0, min=0, max=0, description="time", continuous_update=False,
                                  layout=w.Layout(width="520px"), style={"description_width": "40px"})
        self.cursor_info = w.HTML()
        self.threshold = w.FloatSlider(value=0.15, min=0.0, max=1.0, step=0.05, description="threshold",
                                       continuous_update=False, style={"description_width": "70px"})
        self.time_range = w.IntRangeSlider(value=(0, 0), min=0, max=0, description="steps",
                                           continuous_update=False, layout=w.Layout(width="420px"),
                                           style={"description_width": "50px"})
        self.absolute = w.Checkbox(value=True, description="|h| (else h)", indent=False,
                                   layout=w.Layout(width="110px"))
        self.range_first = w.BoundedIntText(value=0, min=0, max=0, description="from", layout=w.Layout(width="130px"),
                                            style={"description_width": "35px"})
        self.range_last = w.BoundedIntText(value=0, min=0, max=0, description="to", layout=w.Layout(width="120px"),
                                           style={"description_width": "25px"})
        self.drag = w.ToggleButtons(options=[("zoom", "zoom"), ("select steps", "select")], value="zoom",
                                    description="drag", layout=w.Layout(flex="0 0 auto", width="auto"),
                                    style={"button_width": "100px", "description_width": "35px"},
                                    tooltips=["drag over the timeline to zoom (double-click: back)",
                                              "drag over the timeline to choose a step range; "
                                              "a click on a heatmap row selects or drops that unit"])
        self._selection_words = ""
        self._syncing = False
        self.select_button = w.Button(description="Select units", icon="crosshairs", button_style="info")
        self.units_info = w.HTML()
        self.buttons.append(self.select_button)
        self.select_button.on_click(lambda _: self.select_units())
        self.view = PlotlyView(names=["timeline", "pca"], debounce_ms=int(round(self.debounce_s * 1000)),
                               layout=w.Layout(width="100%", min_height="380px"))
        self.view.observe(self._view_range_changed, "view_range")
        self.view.observe(self._clicked, "clicked")
        self.view.observe(self._brushed, "brushed")
        self.drag.observe(lambda change: setattr(self.view, "dragmode", change["new"]), "value")
        self.time_range.observe(self._range_changed, "value")
        self.range_first.observe(self._range_typed, "value")
        self.range_last.observe(self._range_typed, "value")
        self.view.play_settings = dict(self.view.play_settings, interval_ms=int(play_interval_ms))
        w.jslink((self.play, "value"), (self.view, "playing"))  # Play starts and stops in the page
        self.play.observe(self._play_toggled, "value")
        self.view.observe(self._step_seen, "step_seen")
        self._path_key: tuple | None = None
        self._echo = False  # the cursor follows the page's Play: its marks are already there

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
            w.HBox([self.drag, w.HTML(
                "<span style='font-size:12px;color:#555'>click a figure: move the cursor · shift-click a heatmap "
                "row: select or drop that unit · <i>select steps</i>: drag over the timeline to choose the steps "
                "below</span>", layout=w.Layout(flex="1 1 auto"))]),
            self.status,
            self.view,
            w.HTML("<b>Select units</b> <span style='font-size:12px;color:#555'>(units above the threshold "
                   "at every step of the range, in the selected env; then every episode, aligned on resets)"
                   "</span>"),
            w.HBox([self.threshold, self.time_range, self.range_first, self.range_last, self.absolute,
                    self.select_button]),
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
                for box_ in (self.range_first, self.range_last):
                    box_.max = t - 1
                self.time_range.value = (min(5, t - 1), min(15, t - 1))
            finally:
                self._quiet = False
            self._draw()
            resets = self._resets_text(slice(None))
            text = f"{e_count} env(s) × {t} steps, {n_layers} layer(s), {resets}."
            if KEYS.gates not in traj.keys(True):  # the gates row is absent: say why, and how to get it
                text += (" Gates not recorded (an nn.GRU policy keeps them inside): click Record gates in the "
                         "policy builder, or tick record gates, then roll out again.")
            self.show_message(text, "ok")

    def _resets_text(self, envs: slice) -> str:
        """Both reset counts of ``envs`` in words (:func:`workbench.episodes.reset_counts`, the one owner)."""
        traj = self.trajectory
        init = torch.as_tensor(traj.get(KEYS.is_init)[envs]).cpu()
        shape = tuple(init.shape[:2])
        done = torch.as_tensor(traj.get(KEYS.done)[envs]).cpu().reshape(shape) if KEYS.done in traj.keys(True) else None
        return reset_counts(as_bool_init(init, shape), done).describe()

    def _episode_options(self) -> None:
        spans = episode_spans(self.trajectory.get(KEYS.episode)[self.env.value]) \
            if KEYS.episode in self.trajectory.keys() else []
        self._spans = {i: (a, b) for i, a, b in spans}
        self.episode.options = [("all episodes", ALL)] + [(f"episode {i}: steps {a}–{b}", i) for i, a, b in spans]
        self.episode.value = ALL

    def _set_bounds(self, low: int, high: int) -> None:
        """Cursor (and Play) bounds; the value is clamped into them."""
        widget = self.cursor
        if low > widget.max:
            widget.max = high
            widget.min = low
        else:
            widget.min = low
            widget.max = high
        self.view.play_settings = dict(self.view.play_settings, low=int(low), high=int(high))
        if not low <= self.cursor.value <= high:
            self.cursor.value = low

    def _clear_selection(self) -> None:
        self.selected_units, self._selection, self._selection_words = [], None, ""
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
        stride = max(1, -(-(b + 1 - a) // PCA_DRAW_POINTS))
        resets = np.asarray(self._series()["resets"], dtype=np.int64)
        steps = np.arange(a, b + 1, stride)
        if stride > 1:  # thinned: every stride-th step, and every reset (the marks stay exact)
            steps = np.union1d(steps, resets[(resets >= a) & (resets <= b)])
        if self.color.value == "episode" and KEYS.episode in self.trajectory.keys():
            color = torch.as_tensor(self.trajectory.get(KEYS.episode)[self.env.value, a:b + 1]).reshape(-1).numpy()
            color, title = color[steps - a], "episode"
        else:
            color, title = steps, "step"
        where = "all episodes" if self.episode.value == ALL else f"episode {self.episode.value}"
        if stride > 1:
            where += f", 1 step in {stride} drawn (and every reset)"
        return tl.pca_view(coords[steps, :self.pca_dims.value], steps, color=color, color_title=title,
                           resets=resets, ratio=ratio, fitted_on=fitted, total=self.steps,
                           label=f"PCA of env {self.env.value} · layer {self.layer.value} · {where}")

    # ------------------------------------------------------------------ drawing
    def _span(self) -> tuple[int, int]:
        """The steps ``[start, stop)`` the episode choice shows (all steps for "all episodes")."""
        a, b = self._spans.get(self.episode.value, (0, self.steps - 1))
        return a, b + 1

    @property
    def timeline(self) -> go.Figure | None:
        """The live timeline as drawn in the browser (arrays decoded), ``None`` before a trajectory."""
        return self.view.figure("timeline") if self.view.timeline else None

    @property
    def pca_view(self) -> go.Figure | None:
        """The live PCA figure as drawn in the browser (arrays decoded), ``None`` before a trajectory."""
        return self.view.figure("pca") if self.view.pca else None

    def _draw(self, *, pca_only: bool = False) -> None:
        with self.view.hold_sync():
            if not pca_only:
                self._win = self._window(*self._span())
                self._shown = None
                self._send_timeline()
                if self._win.gates is not None:
                    self.figures.declare("gates")
                else:
                    self.figures.pop("gates", None)
                self.figures.declare("hidden_heatmap")
                self.figures.declare("hidden_norm")
            self._pca = self._pca_data()
            self._send_pca()
            self._move_cursor_marks(self.cursor.value)
        self.figures.declare("hidden_pca")
        self.cursor_info.value = self._cursor_text(self.cursor.value)
        self.emit("figures", self.figures)

    def _send_timeline(self, x_range: list[float] | None = None, *, rewindow: bool = False) -> None:
        """Sends the timeline of ``self._win`` (x range: the window's, or ``x_range``), cursor as an image.

        ``rewindow=True`` (a zoom: only the window changed) swaps the data of the last timeline sent
        instead of building the figure again (milliseconds instead of plotly's validation).
        """
        spec = None
        if rewindow and self._timeline_spec is not None:
            try:
                spec = tl.rewindow(self._timeline_spec, self._win, x_range=x_range, pack=typed_array)
            except ValueError:  # the rows changed since (cannot happen through the controls): build it whole
                spec = None
        if spec is not None:
            images = [dict(im, x=self.cursor.value) if im.get("name") == "cursor" else im
                      for im in spec["layout"].get("images", ())]
            spec["layout"] = dict(spec["layout"], images=images)
            self.view.set_figure("timeline", spec, packed=True)
            return
        fig = tl.timeline_figure(self._win, cursor=None, selection=self._selection_marks(), height=None)
        fig.add_layout_image(tl.range_band_image(*self.time_range.value))
        fig.add_layout_image(tl.time_cursor_image(self.cursor.value))
        if x_range is not None:
            fig.update_xaxes(range=list(x_range), autorange=False)
        self.view.set_figure("timeline", fig)
        self._timeline_spec = self.view.timeline

    def _send_pca(self) -> None:
        key = ("path", self.env.value, self.layer.value, self._pca.k)
        if key != self._path_key:  # every step's PCA point, for Play in the page
            self.view.set_path("pca", self._pca_fit()[0][:, :self._pca.k])
            self._path_key = key
        three = self._pca.k == 3
        fig = tl.pca_scatter_figure(self._pca, cursor=self.cursor.value if three else None, height=420,
                                    band=np.zeros((0, self._pca.k)))  # its points come with the view's `band`
        if not three:
            p = self._pca_point(self.cursor.value)
            fig.add_layout_image(tl.point_cursor_image(p[0], p[1]))
        self.view.set_figure("pca", fig)
        self._send_band()

    def _selection_marks(self):
        if self._selection is None:
            return None
        return (self.selected_units, *self._selection)

    # ------------------------------------------------------------------ static figures (export)
    def _static_figure(self, name: str) -> go.Figure:
        t = self.cursor.value
        label = f"env {self.env.value} · layer {self.layer.value}"
        if name == "hidden_pca":
            return tl.pca_scatter_figure(self._pca, cursor=t, height=420, band=self._band_points())
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
        """Moves only the cursor marks: sends the view's ``cursor`` (the step, and the PCA point in 2 or 3D)."""
        p = self._pca_point(t)
        self.view.move_cursor(t, timeline=[t], pca=list(p[:self._pca.k]))

    def _pca_point(self, t: int) -> np.ndarray:
        """The PCA coordinates of step ``t`` (of every step, also those the thinned scatter leaves out)."""
        coords = self._pca_fit()[0]
        return coords[int(np.clip(t, 0, coords.shape[0] - 1)), :self._pca.k]

    # ------------------------------------------------------------------ observers
    def _changed(self, *, full: bool = False, pca: bool = False) -> None:
        if self._quiet or self.trajectory is None:
            return
        with self.guard():
            if full:
                had = bool(self.selected_units)
                self._clear_selection()
                self._quiet = True
                try:
                    self._episode_options()
                    self._set_bounds(0, self.steps - 1)
                finally:
                    self._quiet = False
            self._draw(pca_only=pca and not full)
            if full:  # what is shown now (not the last selection's message, which no longer applies)
                e, t = self.env.value, self.steps
                self.show_message(f"Showing env {e} · layer {self.layer.value}: {t} steps, "
                                  f"{self._resets_text(slice(e, e + 1))}."
                                  + (" The unit selection was cleared." if had else ""), "ok")

    def _episode_changed(self) -> None:
        if self._quiet or self.trajectory is None:
            return
        with self.guard():
            start, stop = self._span()
            self._quiet = True
            try:
                self._set_bounds(start, stop - 1)
                if self.episode.value != ALL:  # an episode is read from its first step
                    self.cursor.value = start
            finally:
                self._quiet = False
            self.figures.mark(*STATIC)
            with self.view.hold_sync():
                self.zoom(start, stop - 1)
                self._pca = self._pca_data()
                self._send_pca()
                self._move_cursor_marks(self.cursor.value)
            self.cursor_info.value = self._cursor_text(self.cursor.value)
            self.figures.mark("hidden_pca")

    def _cursor_moved(self) -> None:
        if self._quiet or self.trajectory is None:
            return
        with self.guard():
            t = self.cursor.value
            if not self._echo:
                self._move_cursor_marks(t)
            self.cursor_info.value = self._cursor_text(t)
            self.figures.mark(*STATIC)

    def _play_toggled(self, change) -> None:
        self.play.description, self.play.icon = ("Pause", "pause") if change["new"] else ("Play", "play")

    def _step_seen(self, change) -> None:
        """The page's Play reached step ``t``: the slider and the words follow; the marks are there already."""
        t = (change["new"] or {}).get("t")
        if t is None or self.trajectory is None:
            return
        self._echo = True
        try:
            self._set_cursor(int(t))
        finally:
            self._echo = False

    def _clicked(self, change) -> None:
        """A click in the browser (``{"figure", "t", "n", "trace", "unit", "shift", "alt", "ctrl"}``) moves the
        cursor to the step; on a row of the hidden-state heatmap with shift, alt or ctrl held, or in the
        *select* drag mode, it selects or drops that unit instead (:meth:`toggle_unit`)."""
        click = change["new"] or {}
        if self.trajectory is None or click.get("t") is None:
            return
        picks = click.get("trace") == "hidden" and click.get("unit") is not None and (
            self.drag.value == "select" or any(click.get(k) for k in ("shift", "alt", "ctrl")))
        if picks:
            self.toggle_unit(int(click["unit"]))
            return
        with self.guard():
            self._set_cursor(int(click["t"]))

    def _set_cursor(self, t: int) -> None:
        self.cursor.value = int(np.clip(t, self.cursor.min, self.cursor.max))

    # ------------------------------------------------------------------ zoom
    def zoom(self, first: int, last: int) -> None:
        """Shows steps ``first..last`` (inclusive) on the timeline, re-binned at full resolution."""
        self._rebin(int(first), int(last) + 1)

    def _rebin(self, start: int, stop: int, *, x_range: list[float] | None = None) -> None:
        """Re-bins ``[start, stop)`` and sends the timeline only, showing ``x_range`` (default: the window)."""
        start, stop = max(0, start), min(self.steps, max(stop, start + 1))
        self._win = self._window(start, stop)
        self._shown = x_range if x_range is not None else [start - 0.5, stop - 0.5]
        self._send_timeline(self._shown, rewindow=True)
        self.figures.mark("hidden_heatmap", "hidden_norm", "gates")

    def _view_range_changed(self, change) -> None:
        """The browser's timeline x range after a zoom, pan or double-click (``{"x": [lo, hi] or None}``)."""
        if self.trajectory is None or self._win is None:
            return
        rng = (change["new"] or {}).get("x")
        with self.guard():
            if rng is None:
                self._rebin_if_needed(*self._span())
                return
            lo, hi = sorted((float(rng[0]), float(rng[1])))
            self._shown = [lo, hi]
            start, stop = int(np.floor(lo + 0.5)), int(np.ceil(hi - 0.5)) + 1
            self._rebin_if_needed(start, stop, x_range=[lo, hi])

    def _rebin_if_needed(self, start: int, stop: int, x_range: list[float] | None = None) -> None:
        start, stop = max(0, start), min(self.steps, stop)
        want = decimate.bins(start, max(stop, start + 1), columns=self.columns)
        have = self._win.bins if self._win is not None else None
        # the drawn bins already cover the view at this resolution: nothing to send
        if have is not None and have.width == want.width and have.start <= start and have.stop >= stop:
            return
        self._rebin(start, stop, x_range=x_range)

    # ------------------------------------------------------------------ LSTMVis-style interaction
    def toggle_unit(self, unit: int) -> list[int]:
        """Adds ``unit`` to the selected units or drops it (a shift-click on its heatmap row): the outline on
        the heatmap and the aligned-units figure follow. Returns the selected units."""
        with self.busy(f"Selecting unit {unit}…"):
            if self.trajectory is None:
                raise RuntimeError("No trajectory yet: run a rollout first.")
            n = self._series()["hidden"].shape[1]
            if not 0 <= int(unit) < n:
                raise ValueError(f"unit: expected a unit of layer {self.layer.value}, 0..{n - 1}; got {unit!r}.")
            unit = int(unit)
            added = unit not in self.selected_units
            self.selected_units = sorted(set(self.selected_units) ^ {unit})
            if self._selection is None:
                self._selection = tuple(self.time_range.value)
            words = self._selection_words
            if "by hand" not in words:  # a threshold's selection, edited; or the first pick
                self._selection_words = f"{words}, edited by hand" if words else "picked by hand"
            self._show_selection(f"Unit {unit} {'added' if added else 'dropped'}")
        return self.selected_units

    def set_units(self, units) -> list[int]:
        """Selects exactly ``units`` (of the current layer) over the steps of ``time_range``, as hand-picked ones:
        outlined on the heatmap and drawn aligned on resets (a saved session's selection). Returns them."""
        with self.busy("Selecting units…"):
            if self.trajectory is None:
                raise RuntimeError("No trajectory yet: run a rollout first.")
            n = self._series()["hidden"].shape[1]
            bad = [u for u in units if not 0 <= int(u) < n]
            if bad:
                raise ValueError(f"units: expected units of layer {self.layer.value}, 0..{n - 1}; got {bad}.")
            self.selected_units = sorted({int(u) for u in units})
            self._selection = tuple(self.time_range.value)
            self._selection_words = "picked by hand"
            self._show_selection("Units set")
        return self.selected_units

    def _show_selection(self, done: str) -> None:
        """Shows ``selected_units``: the outlines (the timeline is sent again), the words, the aligned units."""
        a, b = self._selection
        units, e = self.selected_units, self.env.value
        self._send_timeline(self._shown or [self._win.start - 0.5, self._win.stop - 0.5])
        self.figures.mark("hidden_heatmap")
        words = html.escape(self._selection_words)
        how = f"with {words} of env {e}" if "by hand" not in words else f"({words}) of env {e}"
        if not units:
            self.units_info.value = box(f"No unit {how}: lower the threshold, shorten the range, or shift-click a "
                                        "row of the heatmap.", "warning")
            self.drop_figure("units_aligned")
            self.show_message(f"{done}: no unit selected.", "warning")
            return
        self.units_info.value = box(f"{len(units)} unit(s) {how}, outlined over steps {a}–{b}: "
                                    f"<b>{', '.join(map(str, units))}</b>.", "ok")
        self.show_figure("units_aligned", figures.aligned_units_figure(
            self.trajectory, units, layer=self.layer.value,
            title=f"{len(units)} unit(s) {how.replace('&gt;', '>')}: every episode, aligned on resets"))
        self.show_message(f"{done}: {len(units)} unit(s) selected.", "ok")

    def _range_changed(self, change) -> None:
        """``time_range`` moved (slider, typed, brushed): the typed boxes and the band marks follow."""
        a, b = change["new"]
        self._syncing = True
        try:
            self.range_first.value, self.range_last.value = int(a), int(b)
        finally:
            self._syncing = False
        if self._quiet or self.trajectory is None or self._pca is None:
            return
        with self.guard():
            self._send_band()
            self.figures.mark("hidden_pca")

    def _range_typed(self, _change) -> None:
        if self._syncing or self.trajectory is None:
            return
        a, b = sorted((int(self.range_first.value), int(self.range_last.value)))
        self.time_range.value = (a, b)

    def _brushed(self, change) -> None:
        """A box drawn over the timeline in *select* mode (``{"figure", "x": [x0, x1]}``): the steps whose
        centre it covers become ``time_range`` (whole steps, clamped), and the units above the threshold
        over them are selected."""
        x = (change["new"] or {}).get("x")
        if self.trajectory is None or not x:
            return
        lo, hi = sorted((float(x[0]), float(x[1])))
        a, b = int(np.ceil(lo)), int(np.floor(hi))
        if a > b:  # inside one step
            a = b = int(np.floor((lo + hi) / 2 + 0.5))
        top = self.time_range.max
        a, b = int(np.clip(a, 0, top)), int(np.clip(b, 0, top))
        self.time_range.value = (a, b)
        self.select_units()

    def _band_points(self) -> np.ndarray:
        """The PCA coordinates of the selected range's steps within the shown episode (at most ``BAND_POINTS``)."""
        a, b = self.time_range.value
        lo, hi = self._span()
        a, b = max(a, lo), min(b, hi - 1)
        if a > b:
            return np.zeros((0, self._pca.k), dtype=np.float32)
        steps = np.arange(a, b + 1, max(1, -(-(b + 1 - a) // BAND_POINTS)))
        return self._pca_fit()[0][steps, :self._pca.k]

    def _send_band(self) -> None:
        """Sends the view's ``band``: the range on the timeline, its points in the PCA (a few bytes to kB)."""
        a, b = self.time_range.value
        pts = self._band_points()
        self.view.set_band(timeline={"range": [a - 0.5, b + 0.5]},
                           pca={axis: pts[:, i] for i, axis in enumerate("xyz"[:pts.shape[1]])})

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
            self._selection_words = f"{what} > {self.threshold.value:g} at every step {a}–{b}"
            self._show_selection(f"Units with {what} > {self.threshold.value:g} over steps {a}–{b}")
        return self.selected_units

    # ------------------------------------------------------------------ session (saved view state)
    def view_state(self) -> dict[str, Any]:
        """What the explorer shows, as a JSON-able dict (:meth:`restore_view_state` applies it): env, layer,
        episode (``None``: all), cursor, PCA dims, colour, the selection's threshold, steps and |h| flag,
        the selected units, and the timeline's x range when zoomed (else ``None``)."""
        span = self._span() if self.trajectory is not None else None
        shown = self._shown
        zoomed = shown is not None and span is not None and [round(v, 6) for v in shown] != [span[0] - 0.5, span[1] - 0.5]
        a, b = self._selection if self._selection is not None else self.time_range.value
        return {
            "env": int(self.env.value), "layer": int(self.layer.value),
            "episode": None if self.episode.value == ALL else int(self.episode.value),
            "cursor": int(self.cursor.value), "pca_dims": int(self.pca_dims.value), "color": self.color.value,
            "threshold": float(self.threshold.value), "time_range": [int(a), int(b)],
            "absolute": bool(self.absolute.value), "selected_units": [int(u) for u in self.selected_units],
            "x_range": [float(v) for v in shown] if zoomed else None,
        }

    def restore_view_state(self, state: dict[str, Any]) -> None:
        """Applies a :meth:`view_state` dict to the trajectory shown: env and layer, episode, PCA dims and
        colour, cursor (clamped into the episode), zoom, then the unit selection (selected again with the
        saved threshold, steps and |h| flag). A value that does not fit this trajectory is left out or
        clamped, and the panel's message says which."""
        if not isinstance(state, dict):
            raise TypeError(f"restore_view_state: 'state' must be a dict (from view_state()); got {type(state).__name__}")
        if self.trajectory is None:
            raise RuntimeError("restore_view_state: no trajectory shown yet; set one first (set_trajectory)")
        skipped: list[str] = []

        def pick(name: str, widget, convert=int) -> None:
            if state.get(name) is None:
                return
            try:
                value = convert(state[name])
            except (TypeError, ValueError):
                skipped.append(f"{name}={state[name]!r} (not a {convert.__name__})")
                return
            values = [v for _, v in widget.options] if isinstance(widget.options[0], tuple) else list(widget.options)
            if value in values:
                widget.value = value
            else:
                skipped.append(f"{name}={value!r} (this trajectory offers {values[:8]})")

        def number(name: str, convert):
            if state.get(name) is None:
                return None
            try:
                return convert(state[name])
            except (TypeError, ValueError):
                skipped.append(f"{name}={state[name]!r} (not a number)")
                return None

        with self.guard():
            pick("env", self.env)
            pick("layer", self.layer)
            if state.get("episode") is not None:
                pick("episode", self.episode)
            pick("pca_dims", self.pca_dims)
            pick("color", self.color, str)
            t = number("cursor", int)
            if t is not None:
                if not self.cursor.min <= t <= self.cursor.max:
                    skipped.append(f"cursor {t} (clamped into {self.cursor.min}–{self.cursor.max})")
                self._set_cursor(t)
            x_range = state.get("x_range")
            if x_range is not None:
                try:
                    lo, hi = sorted(float(v) for v in x_range)
                    self._rebin_if_needed(max(0, int(np.floor(lo + 0.5))), int(np.ceil(hi - 0.5)) + 1,
                                          x_range=[lo, hi])
                except (TypeError, ValueError):
                    skipped.append(f"x_range={x_range!r} (not two numbers)")
            top = self.steps - 1
            value = number("threshold", float)
            if value is not None:
                if not self.threshold.min <= value <= self.threshold.max:
                    skipped.append(f"threshold {value:g} (clamped into {self.threshold.min:g}–{self.threshold.max:g})")
                self.threshold.value = float(np.clip(value, self.threshold.min, self.threshold.max))
            steps = state.get("time_range")
            if steps is not None:
                try:
                    a, b = sorted(int(v) for v in steps)
                    if not 0 <= a <= b <= top:
                        skipped.append(f"steps {a}–{b} (clamped into 0–{top})")
                    self.time_range.value = (int(np.clip(a, 0, top)), int(np.clip(b, 0, top)))
                except (TypeError, ValueError):
                    skipped.append(f"time_range={steps!r} (not two steps)")
            if state.get("absolute") is not None:
                self.absolute.value = bool(state["absolute"])
            try:
                wanted = [int(u) for u in state.get("selected_units") or []]
            except (TypeError, ValueError):
                skipped.append(f"selected_units={state.get('selected_units')!r} (not unit numbers)")
                wanted = []
            if wanted:
                n = self._series()["hidden"].shape[1]
                fits = [u for u in wanted if 0 <= u < n]
                if len(fits) < len(wanted):
                    skipped.append(f"units {[u for u in wanted if u not in fits]} (layer {self.layer.value} has {n})")
                if self.select_units() != sorted(set(fits)):  # hand-picked: set them as they were
                    self.set_units(fits)
        if self.last_error is None:
            if skipped:
                self.show_message("View restored, except: " + "; ".join(skipped) + ".", "warning")
            else:
                self.show_message(f"View restored: {self.describe_step()}.", "ok")
