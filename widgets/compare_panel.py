"""Compare two runs side by side: two timelines in the same units, their difference, one time cursor.

Each run (A and B) comes from a source picker: the current rollout (the rollout panel's, wired by
the app), a trajectory file (:func:`workbench.compare.load_run`), or a checkpoint rolled out on the
other run's environment, seeds and steps (:func:`workbench.compare.rollout_like`: run A's reference
is the current rollout, run B's is run A), in the background with progress and Cancel. The panel
then shows, for one env and layer (:func:`workbench.compare.compare`):

- the hidden-state heatmap and ``‖h‖₂`` of A and of B, in one colour scale and one norm range;
- the difference ``h_a − h_b`` (a diverging scale centred at 0) and ``‖h_a − h_b‖`` per step, when
  the hidden sizes match; otherwise a message and both runs' norms side by side;
- a summary table (steps, hidden size, resets, finished episodes, returns) and where the runs part
  (first divergence beyond the tolerance, first different action).

One time slider moves the cursor mark on every figure (one :class:`CompareView`, the marks moved in
the browser); a click on any figure moves the slider there. ``figures`` holds static ``go.Figure`` s
for export (``run_a``, ``run_b``, and ``difference`` or ``norms``).

Examples:
    >>> from workbench.compare import toy_run
    >>> panel = ComparePanel()
    >>> panel.show_runs(toy_run([[0.0, 0.2], [0.4, 0.1]]), toy_run([[0.0, 0.2], [0.4, 0.3]]), labels=("A", "B"))
    >>> sorted(panel.figures), panel.comparison.first_divergence
    (['difference', 'run_a', 'run_b'], 1)
    >>> panel.cursor.value = 1; panel.view.cursor
    {'t': 1, 'a': [1.0], 'b': [1.0], 'diff': [1.0]}
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import ipywidgets as w
import numpy as np
import plotly.graph_objects as go
import traitlets as t

from workbench import decimate
from workbench.compare import DEFAULT_TOLERANCE, Comparison, compare, load_run, rollout_like, run_label
from workbench.errors import ConfigError
from workbench.figures import timeline as tl
from workbench.figures._style import PALETTE, TEMPLATE
from workbench.jobs import report
from workbench.keys import KEYS

from ._panel import Panel, box, html_table
from .plotly_view import _CSS, PlotlyView

__all__ = ["ComparePanel", "CompareView", "SourcePicker", "SOURCES"]

SOURCES = ("current", "file", "checkpoint")
"""what a run can come from: the current rollout, a trajectory file, a checkpoint rolled out on the same seeds"""
VIEWS = ("a", "b", "diff")

_COMPARE_CSS = _CSS + """
.wb-plotly-view.wb-compare-view .wb-view.wb-view-a, .wb-plotly-view.wb-compare-view .wb-view.wb-view-b { flex: 1 1 45%; }
.wb-plotly-view.wb-compare-view .wb-view.wb-view-diff { flex: 1 1 100%; }
"""


class CompareView(PlotlyView):
    """A :class:`~widgets.plotly_view.PlotlyView` holding the comparison's figures: ``a`` and ``b`` side by
    side, ``diff`` below; one ``cursor`` moves the marks of all three.

    Examples:
        >>> view = CompareView()
        >>> view.names, view.move_cursor(3, a=[3], b=[3], diff=[3]), view.cursor["diff"]
        (['a', 'b', 'diff'], None, [3.0])
    """

    _css = t.Unicode(_COMPARE_CSS).tag(sync=True)
    names = t.List(t.Unicode(), default_value=list(VIEWS)).tag(sync=True)
    a = t.Dict().tag(sync=True)
    b = t.Dict().tag(sync=True)
    diff = t.Dict().tag(sync=True)

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.add_class("wb-compare-view")

    @t.validate("names")
    def _check_names(self, proposal):
        bad = [n for n in proposal["value"] if n not in VIEWS]
        if bad:
            raise ValueError(f"names: expected figures among {VIEWS}; got {bad!r}.")
        return proposal["value"]


class SourcePicker(w.VBox):
    """Where one run comes from: ``kind`` (:data:`SOURCES`), ``path`` (a trajectory file or checkpoint) and
    ``label`` (empty: made from the run's metadata).

    Examples:
        >>> picker = SourcePicker("B", reference="A")
        >>> [v for _, v in picker.kind.options], picker.path.layout.display
        (['current', 'file', 'checkpoint'], 'none')
        >>> picker.kind.value = "checkpoint"; picker.path.layout.display, picker.path.placeholder
        (None, 'a checkpoint (.pt), e.g. assets/agents/cartpole_novel.pt')
    """

    def __init__(self, name: str, *, reference: str, kind: str = "current"):
        self.name, self.reference = name, reference
        style = {"description_width": "60px"}
        self.kind = w.Dropdown(options=[("current rollout", "current"), ("trajectory file…", "file"),
                                        (f"checkpoint rolled out on {reference}'s seeds", "checkpoint")],
                               value=kind, description=f"run {name}", style=style, layout=w.Layout(width="360px"))
        self.path = w.Text(value="", description="path", style=style, layout=w.Layout(width="360px"))
        self.label = w.Text(value="", description="label", placeholder="empty: from the run",
                            style=style, layout=w.Layout(width="360px"))
        self.kind.observe(lambda _: self._kind_changed(), "value")
        self._kind_changed()
        super().__init__([self.kind, self.path, self.label], layout=w.Layout(width="50%"))
        self.add_class(f"wb-compare-source-{name.lower()}")

    def _kind_changed(self) -> None:
        kind = self.kind.value
        self.path.layout.display = "none" if kind == "current" else None
        self.path.placeholder = ("a trajectory file (trajectory.pt) or a rollout's memmap folder" if kind == "file"
                                 else "a checkpoint (.pt), e.g. assets/agents/cartpole_novel.pt")

    def describe(self) -> str:
        """The source in words, e.g. ``"cue_memory.pt on A's seeds"``."""
        if self.kind.value == "current":
            return "current rollout"
        name = Path(self.path.value.strip()).name or "?"
        return name if self.kind.value == "file" else f"{name} on {self.reference}'s seeds"


class ComparePanel(Panel):
    """Two runs side by side, one time cursor, their difference; see the module doc.

    Public: ``set_current(rollout_result_or_trajectory)`` (the app wires the rollout panel here),
    ``compare()`` (the *Compare* button: a checkpoint source runs in the background), ``run()``
    (the same, waited for), ``show_runs(a, b, labels=)`` (two trajectories from code), the controls
    (``source_a``, ``source_b``, ``env``, ``layer``, ``tolerance``, ``cursor``), ``comparison``
    (the :class:`~workbench.compare.Comparison` shown), ``view`` (the :class:`CompareView`),
    ``figure(name)`` (a live figure as drawn, arrays decoded), ``figures`` (static, for export).

    Keyword Args:
        columns: pixel columns a long run is binned to (:data:`workbench.decimate.COLUMNS`).
        device: where a checkpoint source runs (default: the reference run's device when present, else CPU).
    """

    EVENTS = ("figures",)

    def __init__(self, *, columns: int = decimate.COLUMNS, device: str | None = None):
        super().__init__(title="Compare two runs", css="wb-compare")
        decimate.bins(0, 1, columns=columns)  # checks columns
        self.columns, self.device = int(columns), device
        self.current = None
        """the current rollout's trajectory (``set_current``)"""
        self.runs: tuple[Any, Any] | None = None
        self.labels: tuple[str, str] = ("A", "B")
        self.comparison: Comparison | None = None
        self._quiet = False
        self.source_a = SourcePicker("A", reference="the current rollout")
        self.source_b = SourcePicker("B", reference="A", kind="checkpoint")
        small = dict(style={"description_width": "60px"})
        self.env = w.Dropdown(options=[("env 0", 0)], value=0, description="env", layout=w.Layout(width="140px"),
                              **small)
        self.layer = w.Dropdown(options=[("layer 0", 0)], value=0, description="layer",
                                layout=w.Layout(width="150px"), **small)
        self.tolerance = w.FloatText(value=DEFAULT_TOLERANCE, description="tolerance", layout=w.Layout(width="200px"),
                                     tooltip="the hidden states diverge where some unit differs by more than this",
                                     style={"description_width": "70px"})
        self.compare_button = w.Button(description="Compare", icon="columns", button_style="primary")
        self.buttons.append(self.compare_button)
        self.compare_button.on_click(lambda _: self.compare())
        self.cursor = w.IntSlider(value=0, min=0, max=0, description="time", continuous_update=False,
                                  layout=w.Layout(width="520px"), style={"description_width": "40px"})
        self.cursor_info = w.HTML()
        self.notice = w.HTML()
        self.summary = w.HTML()
        self.view = CompareView(layout=w.Layout(width="100%", min_height="200px"))
        self.view.observe(self._clicked, "clicked")
        self.cursor.observe(lambda _: self._cursor_moved(), "value")
        self.env.observe(lambda _: self._redraw(), "value")
        self.layer.observe(lambda _: self._redraw(), "value")
        self.tolerance.observe(lambda _: self._redraw(), "value")
        self.children = [
            self.header,
            w.HTML("<span style='font-size:12px;color:#555'>Two runs on the same time axis and colour scale; "
                   "a checkpoint is rolled out on the other run's environment, seeds and steps, so where they "
                   "part is the policies' doing. Click any figure to move the time cursor.</span>"),
            w.HBox([self.source_a, self.source_b], layout=w.Layout(width="100%")),
            w.HBox([self.env, self.layer, self.tolerance, self.compare_button]),
            self.job_controls,
            self.status,
            w.HBox([self.cursor, self.cursor_info]),
            self.notice,
            self.view,
            self.summary,
        ]
        self.show_message("Pick two runs and click Compare (a checkpoint is rolled out on the other run's seeds).")

    # ------------------------------------------------------------------ sources
    def set_current(self, data: Any) -> None:
        """Takes the current rollout (a :class:`~widgets.rollout_panel.RolloutResult` or a trajectory): the
        source "current rollout" and the reference of a checkpoint rolled out for run A."""
        self.current = getattr(data, "trajectory", data)
        if self.comparison is not None and "current" in (self.source_a.kind.value, self.source_b.kind.value):
            self.notice.value = box("A new rollout came in: click <b>Compare</b> to compare it.", "info")

    def _resolve(self, picker: SourcePicker, reference, *, cancel=None, on_progress=None):
        """The trajectory of ``picker`` (``reference``: what a checkpoint is rolled out like)."""
        kind = picker.kind.value
        if kind == "current":
            if self.current is None:
                raise ConfigError(f"run {picker.name}: 'current rollout' was chosen but there is none yet: run a "
                                  f"rollout first, or pick a trajectory file.")
            return self.current
        path = picker.path.value.strip()
        if not path:
            what = "trajectory file" if kind == "file" else "checkpoint"
            raise ConfigError(f"run {picker.name}: 'path' must name a {what}; got an empty path.")
        if kind == "file":
            return load_run(path)
        if reference is None:
            raise ConfigError(f"run {picker.name}: a checkpoint is rolled out on {picker.reference}'s seeds, and there "
                              f"is no {picker.reference} yet: run a rollout first.")
        return rollout_like(path, reference, device=self.device, cancel=cancel, on_progress=on_progress)

    def compare(self):
        """Loads both runs and shows them (the *Compare* button). A checkpoint source is rolled out in the
        background (progress, Cancel): returns that :class:`~widgets.jobs.Job`, else ``None``."""
        if self.refuse_if_running():
            return None
        labels = (self.source_a.label.value.strip(), self.source_b.label.value.strip())
        slow = "checkpoint" in (self.source_a.kind.value, self.source_b.kind.value)
        if not slow:
            with self.busy("Loading the runs…"):
                a = self._resolve(self.source_a, self.current)
                b = self._resolve(self.source_b, a)
                self._show(a, b, self._labels(a, b, labels))
            return None
        self.last_error = None
        with self.guard():
            current, a_kind, b_kind = self.current, self.source_a.kind.value, self.source_b.kind.value
            for picker in (self.source_a, self.source_b):  # what can be refused is refused before any work
                kind, empty = picker.kind.value, not picker.path.value.strip()
                if (kind == "current" and current is None) or (kind != "current" and empty) or (
                        picker is self.source_a and kind == "checkpoint" and current is None):
                    self._resolve(picker, None)  # raises, saying why

            def work(cancel, on_progress):
                offset, total = [0], [None]

                def progress(done, _total):
                    report(on_progress, offset[0] + done, total[0])

                if a_kind == "checkpoint":
                    total[0] = int(current.batch_size[1]) * (2 if b_kind == "checkpoint" else 1)
                a = self._resolve(self.source_a, current, cancel=cancel, on_progress=progress)
                if b_kind == "checkpoint":
                    offset[0] = int(a.batch_size[1]) if a_kind == "checkpoint" else 0
                    total[0] = offset[0] + int(a.batch_size[1])
                b = self._resolve(self.source_b, a, cancel=cancel, on_progress=progress)
                return a, b

            def on_end(job) -> None:
                if job.state == "cancelled":
                    self.show_message(f"Comparison cancelled ({job.token.reason or 'cancelled'}): nothing is kept; "
                                      f"the figures show the previous comparison.", "warning")
                    return
                a, b = job.result
                self._show(a, b, self._labels(a, b, labels))
                self.show_message(f"Compared {self.labels[0]} and {self.labels[1]}.", "ok")

            what = " and ".join(p.describe() for p in (self.source_a, self.source_b) if p.kind.value == "checkpoint")
            return self.start_job(work, name="comparison rollout", on_end=on_end, unit="steps",
                                  message=f"Rolling out {what}…")
        return None

    def run(self) -> None:
        """:meth:`compare`, waited for (for code and tests); Ctrl-C cancels a background rollout."""
        if self.compare() is not None:
            self.wait()

    def _labels(self, a, b, given: tuple[str, str]) -> tuple[str, str]:
        """The labels typed in, else made from each run, e.g. ``"B: GRU 64 (nn.GRU) · agent.pt on A's seeds"``."""
        out = []
        for side, picker, td, text in (("A", self.source_a, a, given[0]), ("B", self.source_b, b, given[1])):
            where, name = picker.describe(), Path(picker.path.value.strip()).name
            made = run_label(td, where)
            if picker.kind.value != "current" and name and name in made:
                made = made.replace(name, where)  # "cartpole_novel.pt" → "cartpole_novel.pt on A's seeds"
            elif where not in made:
                made = f"{made} · {where}"
            out.append(text or f"{side}: {made}")
        return out[0], out[1]

    # ------------------------------------------------------------------ showing
    def show_runs(self, a, b, *, labels: tuple[str, str] = ("A", "B")) -> None:
        """Compares trajectories ``a`` and ``b`` (``[envs, T]``, e.g. two rollouts) and shows them; an error
        (mismatched shapes, a missing entry) is shown in the panel, which keeps its previous comparison."""
        with self.busy("Comparing…"):
            self._show(a, b, labels)

    def _show(self, a, b, labels: tuple[str, str]) -> None:
        compare(a, b, env=0, layer=-1, labels=labels)  # checks both before the controls change
        ea, eb = a.batch_size[0], b.batch_size[0]
        la, lb = a.get(KEYS.next_hidden).shape[-2], b.get(KEYS.next_hidden).shape[-2]
        self.runs, self.labels = (a, b), (str(labels[0]), str(labels[1]))
        self._quiet = True
        try:
            self.env.options = [(f"env {e}", e) for e in range(min(ea, eb))]
            self.env.value = 0
            self.layer.options = [(f"layer {l}", l) for l in range(min(la, lb))]
            self.layer.value = min(la, lb) - 1
        finally:
            self._quiet = False
        self._draw()

    def _redraw(self) -> None:
        if self._quiet or self.runs is None:
            return
        with self.guard():
            self._draw()

    def _draw(self) -> None:
        a, b = self.runs
        c = compare(a, b, env=self.env.value, layer=self.layer.value, tolerance=float(self.tolerance.value),
                    labels=self.labels)
        self.comparison = c
        self._quiet = True
        try:
            self.cursor.max = max(0, c.steps - 1)
            self.cursor.value = min(self.cursor.value, c.steps - 1)
        finally:
            self._quiet = False
        step = self.cursor.value
        win_a, win_b = self._window(c, "a"), self._window(c, "b")
        live = {"a": self._run_figure(win_a, c.a.label), "b": self._run_figure(win_b, c.b.label)}
        if c.same_size:
            live["diff"] = self._difference_figure(c)
        else:
            live["diff"] = self._norms_figure(c, win_a, win_b)
        statics = {"run_a": live["a"], "run_b": live["b"], "difference" if c.same_size else "norms": live["diff"]}
        self.figures.clear()
        for name, fig in statics.items():
            self.figures[name] = go.Figure(fig).add_shape(**tl.time_cursor_shape(step))
        with self.view.hold_sync():
            for name, fig in live.items():
                fig.add_layout_image(tl.time_cursor_image(step))
                self.view.set_figure(name, fig)
            self.view.move_cursor(step, **{n: [step] for n in VIEWS})
        notes = list(c.notes) + ([c.message] if c.message else [])
        self.notice.value = box(html.escape(" ".join(notes)), "warning") if notes else ""
        self.summary.value = self._summary_html(c)
        self.cursor_info.value = self._cursor_text(step)
        self.emit("figures", self.figures)

    def _window(self, c: Comparison, side: str) -> tl.Window:
        hidden, norm, resets = ((c.hidden_a, c.norm_a, c.resets_a) if side == "a" else (c.hidden_b, c.norm_b, c.resets_b))
        return tl.window(hidden, resets=resets, columns=self.columns, norm=norm, zmax=c.zmax,
                         norm_range=c.norm_range, label=f"env {c.env} · layer {c.layer}")

    def _run_figure(self, win: tl.Window, label: str) -> go.Figure:
        fig = tl.timeline_figure(win, rows=("hidden", "norm"), height=420,
                                 title=f"{html.escape(label)}<br><span style='font-size:11px'>{win.label} · "
                                       f"{win.describe()} · colours ±{win.zmax:.2g} (shared)</span>")
        return fig.update_layout(margin_t=85)  # the two-line title above the rows' titles

    def _difference_figure(self, c: Comparison) -> go.Figure:
        scale = max(c.max_abs_diff or 0.0, c.tolerance, 1e-12)
        peak = float(np.nanmax(c.distance)) if c.distance.size else 0.0
        resets = np.union1d(c.resets_a, c.resets_b)
        win = tl.window(c.diff, resets=resets, columns=self.columns, norm=c.distance, zmax=scale,
                        norm_range=(0.0, max(peak * 1.05, c.tolerance)), label=f"env {c.env} · layer {c.layer}")
        where = ("never beyond the tolerance" if c.first_divergence is None
                 else f"first beyond {c.tolerance:g} at step {c.first_divergence}")
        fig = tl.timeline_figure(win, rows=("hidden", "norm"), height=380,
                                 title=f"Difference h_a − h_b ({html.escape(c.a.label)} minus {html.escape(c.b.label)})"
                                       f"<br><span style='font-size:11px'>max |h_a − h_b| = {c.max_abs_diff:.3g}, "
                                       f"{where} · {win.describe()}</span>")
        fig.update_traces(selector=dict(name="hidden"), colorbar_title_text="h_a − h_b",
                          hovertemplate="unit %{y}<br>h_a − h_b = %{z:.3g}<br>step %{x}<extra></extra>")
        fig.update_traces(selector=dict(name="norm"), hovertemplate="‖h_a − h_b‖ = %{y:.3g}<br>step %{x}<extra></extra>")
        fig.update_yaxes(title_text="‖h_a − h_b‖", row=2, col=1)
        fig.for_each_annotation(lambda a: a.update(text={"hidden state h": "h_a − h_b", "‖h‖₂": "‖h_a − h_b‖₂"}
                                                   .get(a.text, a.text)))
        return fig.update_layout(margin_t=85)

    def _norms_figure(self, c: Comparison, win_a: tl.Window, win_b: tl.Window) -> go.Figure:
        fig = go.Figure()
        for win, label, color in ((win_a, c.a.label, PALETTE[0]), (win_b, c.b.label, PALETTE[1])):
            fig.add_trace(go.Scatter(x=win.norm_x, y=win.norm_y, mode="lines", name=label, line=dict(color=color, width=1),
                                     hovertemplate="‖h‖₂ = %{y:.3f}<br>step %{x}<extra>" + html.escape(label) + "</extra>"))
        fig.update_layout(title=dict(text=f"‖h‖₂ per step, side by side<br><span style='font-size:11px'>"
                                          f"{html.escape(c.message)}</span>", font=dict(size=13)),
                          height=320, template=TEMPLATE, hovermode="closest", margin=dict(t=70, b=40, l=60, r=20),
                          legend=dict(orientation="h", y=-0.25), xaxis_title="step", yaxis_title="‖h‖₂",
                          xaxis_range=[-0.5, c.steps - 0.5], yaxis_range=list(c.norm_range))
        return fig

    def _summary_html(self, c: Comparison) -> str:
        rows = [[html.escape(v) if i == 0 else v for i, v in enumerate(s.row())] for s in (c.a, c.b)]
        table = html_table(["run", "steps", "hidden size", "resets", "finished episodes", "mean return",
                            "reward (compared steps)"], rows, css="wb-compare-table")
        return f"<div style='font-size:13px'>{table}<b>{html.escape(c.describe())}</b></div>"

    # ------------------------------------------------------------------ cursor
    def figure(self, name: str) -> go.Figure | None:
        """Live figure ``name`` (``"a"``, ``"b"``, ``"diff"``) as drawn in the browser, or ``None``."""
        return self.view.figure(name) if getattr(self.view, name) else None

    def _cursor_text(self, step: int) -> str:
        c = self.comparison
        if c is None:
            return ""
        parts = [f"step {step}", f"‖h_a‖ = {c.norm_a[step]:.3f}", f"‖h_b‖ = {c.norm_b[step]:.3f}"]
        if c.same_size:
            parts.append(f"‖h_a − h_b‖ = {c.distance[step]:.3g}")
        return "<b>" + html.escape(" · ".join(parts)) + "</b>"

    def _cursor_moved(self) -> None:
        if self._quiet or self.comparison is None:
            return
        with self.guard():
            step = self.cursor.value
            self.view.move_cursor(step, **{n: [step] for n in VIEWS})
            for fig in self.figures.values():
                fig.update_shapes(dict(x0=step, x1=step), selector=dict(name="cursor"))
            self.cursor_info.value = self._cursor_text(step)
            self.emit("figures", self.figures)

    def _clicked(self, change) -> None:
        """A click on any figure (``{"figure", "t", "n"}``) moves the one cursor there."""
        click = change["new"] or {}
        if self.comparison is None or click.get("t") is None:
            return
        with self.guard():
            self.cursor.value = int(np.clip(int(click["t"]), self.cursor.min, self.cursor.max))
