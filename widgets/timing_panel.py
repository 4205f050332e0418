"""Backend timing: backends × batch × T × hidden × reset rate × passes → ``workbench.timing.time_backends``.

cuDNN / native ``nn.GRU`` against the Python cell and the fast reset-aware paths, forward and
forward+backward, on CPU or CUDA. The grid runs in the background (:mod:`widgets.jobs`; all
backends of a cell interleaved): the progress bar moves case by case, Cancel (or Kernel → Interrupt)
stops it between two timing rounds and keeps the cases measured so far. Then the ratio to the floor,
one facet per shape (``workbench.figures.ratio_figure``), with the floor in one sentence and the
lesson of the CPU timings (why the workbench's Python cell beats ``nn.GRU`` there), the time per call
against T (``workbench.figures.timing_figure``) and a table.
"""

from __future__ import annotations

import html
from typing import Sequence

import ipywidgets as w

from workbench import figures, timing
from workbench.policy import resolve_device
from workbench.specs import settings
from workbench.timing import TimingConfig

from ._panel import Panel, controls_for, device_choice, device_info_html, device_options, html_table, read_controls

__all__ = ["TimingPanel", "GRID_FIELDS"]

GRID_FIELDS = ("backends", "passes", "batch", "steps", "hidden", "reset_rate", "rounds")
"""the :class:`~workbench.timing.TimingConfig` fields the panel has a control for (built from their settings)"""

DEFAULT_BACKENDS = ("torch", "workbench:native", "workbench:fused", "workbench:python")

LESSON = (
    "Why can a Python cell beat nn.GRU on the CPU? On the CPU nn.GRU has no sequence kernel: it runs one "
    "generic cell per time step and autograd records every small operation of every step. Its backward then "
    "does two small matrix products per step (the gradient for the hidden state and the one for the "
    "recurrent weights), 259 for 128 steps. The workbench's Python cell runs a hand-written loop "
    "(recurrent_backend 'fused'): one product per step for the hidden state, and the weight gradients of "
    "a block of steps in a few large products (4 in all), so about 6,700 operations instead of 11,600 "
    "(torch profiler, batch 32, T 128, hidden 128). Measured on a 2-core machine with 1 thread, batch 32, T 128: its "
    "forward+backward took 0.63× nn.GRU's time at hidden 32 and 0.78× at hidden 128, forward alone 0.85× "
    "and 0.83×. Being Python is not what makes it fast: torchrl's Python cell, plain autograd, took "
    "1.43× and 1.14×. Fewer and larger matrix products are."
)
"""the lesson of the CPU timings, shown under the ratio chart; measured on the project's 2-core machine with
``time_backends(backends=("torch", "workbench:python", "torchrl:python"), batch=(32,), steps=(128,),
hidden=(32, 128), reset_rate=(0.0,))`` and ``torch.profiler`` (ATen calls of one forward+backward)"""


def _fmt(value) -> str:
    return "–" if value is None else html.escape(str(value))


def table_html(records: Sequence[dict]) -> str:
    """The records as an HTML table: case, backend, pass, median (quartiles), ratio to the floor, kernel."""
    rows = []
    for r, q in zip(records, timing.floor_ratios(records)):
        ratio = q["ratio"]
        rows.append([_fmt(r["backend"]), _fmt(r["pass"]), str(r["batch"]), str(r["steps"]), str(r["hidden"]),
                     f"{r['reset_rate']:g}", f"<b>{r['median_s'] * 1e3:.3f}</b>",
                     f"{r['q1_s'] * 1e3:.3f}–{r['q3_s'] * 1e3:.3f}", "–" if ratio is None else f"{ratio:.2f}",
                     _fmt(r.get("last_backend"))])
    header = ["backend", "pass", "batch", "T", "hidden", "reset rate", "median ms", "q1–q3 ms", "× floor", "kernel"]
    return (f"<div style='max-height:320px;overflow:auto'>"
            f"{html_table(header, rows, css='wb-timing-table', numeric_from=2)}</div>")


def _hint(name: str) -> str:
    """The range of a grid axis or of ``rounds``, from its setting, as a tooltip."""
    info = settings(TimingConfig)[name]
    if name == "rounds":
        return f"{info.help}, {info.low} to {info.high}"
    kind = "ints" if info.kind == "ints" else "numbers"
    bound = f">= {info.low}" if info.high is None else f"in [{info.low}, {info.high}]"
    return f"{kind} {bound}, separated by commas"


class TimingPanel(Panel):
    """Times GRU backends on a grid of shapes; ``run()`` is the button, ``records`` the last result.

    The controls are built from :class:`workbench.timing.TimingConfig`'s field settings and read
    back into one, which checks every range before anything runs: a value out of range is shown in
    the panel, which keeps working. The device follows the library's rule
    (:func:`~widgets._panel.device_choice`): ``"cuda"`` without CUDA selects ``"cpu"`` and says why.
    """

    EXCLUSIVE_JOBS = True  # a timing measured while a rollout runs would be wrong

    def __init__(self, *, backends: Sequence[str] = DEFAULT_BACKENDS, batch: Sequence[int] = (8,),
                 steps: Sequence[int] = (16, 64), hidden: Sequence[int] = (32,),
                 reset_rate: Sequence[float] = (0.0, 0.05), passes: Sequence[str] = timing.PASSES,
                 device: str = "cpu", rounds: int = 3, block_s: float = 0.005):
        # the starting values are checked like the controls (a bad argument raises ConfigError here)
        start = TimingConfig(backends=backends, batch=batch, steps=steps, hidden=hidden,
                             reset_rate=reset_rate, passes=passes, rounds=rounds, block_s=block_s)
        super().__init__(title="Backend timing", css="wb-timing")
        text = dict(style={"description_width": "90px"}, layout=dict(width="240px"))
        self.grid_controls = {
            **controls_for(start, ["backends"], style={"description_width": "70px"}, layout=dict(width="430px")),
            **controls_for(start, ["passes", "batch", "steps", "hidden", "reset_rate", "rounds"], bounded=True,
                           **text),
        }
        c = self.grid_controls
        self.backends, self.passes, self.batch, self.steps, self.hidden, self.reset_rate, self.rounds = (
            c[name] for name in GRID_FIELDS)
        for name in ("batch", "steps", "hidden", "reset_rate", "rounds"):
            c[name].tooltip = _hint(name)
        choice, self.device_warning = device_choice(device)
        self.device = w.Dropdown(options=device_options(), value=choice, description="device",
                                 style=text["style"], layout=w.Layout(**text["layout"]))
        self.block_s = block_s
        self.x_axis = w.Dropdown(options=[("T (steps)", "steps"), ("batch", "batch"), ("hidden", "hidden"),
                                          ("reset rate", "reset_rate")], value="steps", description="x axis",
                                 style=text["style"], layout=w.Layout(**text["layout"]))
        self.log_y = w.Checkbox(value=False, description="log time axis", indent=False)
        self.floor_note = w.HTML(f"<div class='wb-timing-floor' style='font-size:13px;margin:2px 0'>"
                                 f"<b>Floor.</b> {html.escape(timing.FLOOR_TEXT, quote=False)}</div>")
        self.lesson = w.HTML(f"<details open class='wb-timing-lesson' style='font-size:13px;margin:2px 0'>"
                             f"<summary style='cursor:pointer'><b>On the CPU the Python cell beats nn.GRU: "
                             f"why?</b></summary><div style='max-width:1100px'>{html.escape(LESSON, quote=False)}</div>"
                             f"</details>")
        self.run_button = w.Button(description="Run timing", button_style="primary", icon="clock-o")
        self.progress = self.job_controls  # bar, rate, time left, Cancel: one area, reused by every run
        self.table = w.HTML()
        self.buttons.append(self.run_button)
        self.records: list[dict] = []
        self.run_button.on_click(lambda _: self.start())
        self.x_axis.observe(lambda _: self._redraw(), "value")
        self.log_y.observe(lambda _: self._redraw(), "value")
        self.device_info = w.HTML(device_info_html(self.device_warning))
        self.children = [
            self.header,
            w.HBox([self.backends, w.VBox([self.passes, self.device, self.rounds]),
                    w.VBox([self.batch, self.steps, self.hidden, self.reset_rate])]),
            self.device_info,
            self.run_button,
            self.progress,
            self.status,
            self.floor_note,
            self.add_view("timing_ratio", 0),
            self.lesson,
            w.HBox([w.HTML("<b style='font-size:13px'>Time per call</b>", layout=w.Layout(width="110px")),
                    self.x_axis, self.log_y]),
            self.add_view("timing", 0),
            self.table,
        ]

    def config(self) -> TimingConfig:
        """The controls read as a checked ``TimingConfig`` (``ConfigError`` names a value out of range)."""
        return TimingConfig(**read_controls(TimingConfig, self.grid_controls),
                            device=resolve_device(self.device.value), block_s=self.block_s, memory=False)

    def grid(self) -> dict:
        """The controls read as ``time_backends`` arguments (one tuple per axis of the grid), checked."""
        cfg = self.config()
        return {name: getattr(cfg, name) for name in cfg.AXES}

    def start(self):
        """Starts the grid in the background (the *Run timing* button); returns the
        :class:`~widgets.jobs.Job`, or ``None`` when nothing started (a value out of range, a job still
        running: the panel says why). When it ends the chart and table show the records."""
        if self.refuse_if_running():
            return None
        self.last_error = None
        with self.guard():
            cfg = self.config()  # every range checked before the first cell runs
            n_cases = len(cfg.cases())
            shape = (f"({n_cases} case(s) × {len(cfg.backends)} backend(s) × {len(cfg.passes)} pass(es))")

            def work(cancel, on_progress):
                return timing.time_backends(**cfg.as_kwargs(), cancel=cancel, on_progress=on_progress)

            def on_end(job) -> None:
                if job.state == "done":
                    self.records = job.result
                    self._pick_x_axis()
                    self._draw()
                    self.show_message(f"{len(self.records)} measurements on {cfg.device} {shape}.", "ok")
                    return
                err, records = job.error, job.partial or []
                head = (f"Timing cancelled ({job.token.reason or 'cancelled'}) after {err.done or 0} of "
                        f"{err.total if err.total is not None else n_cases} case(s)")
                if not records:
                    self.show_message(f"{head}: nothing measured is kept; the chart keeps the previous run.",
                                      "warning")
                    return
                self.records = list(records)
                self._draw()
                self.show_message(f"{head}: the {len(records)} measurements done are kept and drawn.", "warning")

            return self.start_job(work, name="timing grid", on_end=on_end, unit="cases",
                                  message=f"Timing {shape} on {cfg.device}…")
        return None

    def run(self) -> None:
        """Measures every cell of the grid, then draws the chart and table; returns when done.

        The same work as the button, waited for: Ctrl-C or Kernel → Interrupt cancels it (the measured
        cases are kept) and the ``KeyboardInterrupt`` goes on to the caller.
        """
        if self.start() is not None:
            self.wait()

    def _pick_x_axis(self) -> None:
        """After a run: when the chosen x axis has one value and another axis several, the line chart takes the
        axis with the most values (points along T = 64 alone say little)."""
        counts = {name: len({r.get(name) for r in self.records}) for _, name in self.x_axis.options}
        best = max(counts, key=counts.get)
        if counts[self.x_axis.value] < 2 <= counts[best]:
            self._quiet = True
            try:
                self.x_axis.value = best
            finally:
                self._quiet = False

    def _redraw(self) -> None:
        if self.records and not getattr(self, "_quiet", False):
            with self.guard():
                self._draw()

    def _draw(self) -> None:
        self.show_figure("timing_ratio", figures.ratio_figure(self.records), emit=False)
        self.show_figure("timing", figures.timing_figure(self.records, x=self.x_axis.value,
                                                         log_y=self.log_y.value, height=420))
        self.table.value = table_html(self.records)
