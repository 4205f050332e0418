"""Backend timing: backends × batch × T × hidden × reset rate × passes → ``workbench.timing.time_backends``.

cuDNN / native ``nn.GRU`` against the Python cell and the fast reset-aware paths, forward and
forward+backward, on CPU or CUDA. Each grid cell is one ``time_backends`` call (all backends of a
cell interleaved), so the progress bar moves cell by cell; then a chart
(``workbench.figures.timing_figure``) and a table.
"""

from __future__ import annotations

import dataclasses
import html
from typing import Sequence

import ipywidgets as w

from workbench import figures, timing
from workbench.policy import resolve_device

from ._panel import Panel, device_note, device_options, html_table, parse_numbers

__all__ = ["TimingPanel", "BACKEND_LABELS"]

BACKEND_LABELS = {
    "torch": "torch: bare nn.GRU / cuDNN, ignores resets (floor)",
    "torchrl": "torchrl: GRUModule (pad)",
    "workbench": "workbench: auto",
    "workbench:fused": "workbench: fused reset-aware loop",
    "workbench:packed": "workbench: packed nn.GRU / cuDNN",
    "workbench:native": "workbench: nn.GRU / cuDNN between resets",
    "workbench:loop": "workbench: reference step loop",
    "workbench:python": "workbench: Python cell",
    "torchrl:python": "torchrl: Python cell",
}
"""Labels of the backend choices (the choices themselves are ``workbench.timing.BACKENDS``)."""

DEFAULT_BACKENDS = ("torch", "workbench:native", "workbench:fused", "workbench:python")


def _fmt(value) -> str:
    return "–" if value is None else html.escape(str(value))


def table_html(records: Sequence[dict]) -> str:
    """The records as an HTML table: case, backend, pass, median (quartiles), ratio to the floor, kernel."""
    rows = []
    for r in records:
        ratio = r.get("ratio_to_floor")
        rows.append([_fmt(r["backend"]), _fmt(r["pass"]), str(r["batch"]), str(r["steps"]), str(r["hidden"]),
                     f"{r['reset_rate']:g}", f"<b>{r['median_s'] * 1e3:.3f}</b>",
                     f"{r['q1_s'] * 1e3:.3f}–{r['q3_s'] * 1e3:.3f}", "–" if ratio is None else f"{ratio:.2f}",
                     _fmt(r.get("last_backend"))])
    header = ["backend", "pass", "batch", "T", "hidden", "reset rate", "median ms", "q1–q3 ms", "× floor", "kernel"]
    return (f"<div style='max-height:320px;overflow:auto'>"
            f"{html_table(header, rows, css='wb-timing-table', numeric_from=2)}</div>")


def _hint(name: str) -> str:
    """The range of a grid axis, from ``TimingConfig.LIMITS``, as a tooltip."""
    low, high = timing.TimingConfig.LIMITS[name]
    kind = "ints" if name != "reset_rate" else "numbers"
    bound = f">= {low}" if high is None else f"in [{low}, {high}]"
    return f"{kind} {bound}, separated by commas"


class TimingPanel(Panel):
    """Times GRU backends on a grid of shapes; ``run()`` is the button, ``records`` the last result.

    The controls are read into a :class:`workbench.timing.TimingConfig`, which checks every range
    before anything runs: a value out of range is shown in the panel, which keeps working.
    """

    def __init__(self, *, backends: Sequence[str] = DEFAULT_BACKENDS, batch: Sequence[int] = (8,),
                 steps: Sequence[int] = (16, 64), hidden: Sequence[int] = (32,),
                 reset_rate: Sequence[float] = (0.0, 0.05), passes: Sequence[str] = timing.PASSES,
                 device: str = "cpu", rounds: int = 3, block_s: float = 0.005):
        # the starting values are checked like the controls (a bad argument raises ConfigError here)
        start = timing.TimingConfig(backends=backends, batch=batch, steps=steps, hidden=hidden,
                                    reset_rate=reset_rate, passes=passes, rounds=rounds, block_s=block_s)
        super().__init__(title="Backend timing", css="wb-timing")
        text = dict(style={"description_width": "90px"}, layout=w.Layout(width="240px"))
        self.backends = w.SelectMultiple(
            options=[(BACKEND_LABELS.get(b, b), b) for b in timing.BACKENDS], value=tuple(backends),
            rows=len(timing.BACKENDS), description="backends", layout=w.Layout(width="430px"),
            style={"description_width": "70px"})
        self.passes = w.SelectMultiple(options=list(timing.PASSES), value=tuple(passes), rows=len(timing.PASSES),
                                       description="passes", layout=w.Layout(width="240px"),
                                       style={"description_width": "90px"})
        self.batch = w.Text(value=", ".join(map(str, start.batch)), description="batch", tooltip=_hint("batch"),
                            **text)
        self.steps = w.Text(value=", ".join(map(str, start.steps)), description="T (steps)", tooltip=_hint("steps"),
                            **text)
        self.hidden = w.Text(value=", ".join(map(str, start.hidden)), description="hidden",
                             tooltip=_hint("hidden"), **text)
        self.reset_rate = w.Text(value=", ".join(f"{p:g}" for p in start.reset_rate), description="reset rate",
                                 tooltip=_hint("reset_rate"), **text)
        options = device_options()
        self.device = w.Dropdown(options=options, value=device if device in dict(options).values() else "cpu",
                                 description="device", **text)
        low, high = timing.TimingConfig.LIMITS["rounds"]
        self.rounds = w.BoundedIntText(value=rounds, min=low, max=high, description="rounds",
                                       tooltip=f"timing rounds per contestant, {low} to {high}", **text)
        self.block_s = block_s
        self.x_axis = w.Dropdown(options=[("T (steps)", "steps"), ("batch", "batch"), ("hidden", "hidden"),
                                          ("reset rate", "reset_rate")], value="steps", description="x axis", **text)
        self.log_y = w.Checkbox(value=False, description="log time axis", indent=False)
        self.run_button = w.Button(description="Run timing", button_style="primary", icon="clock-o")
        self.progress = w.Box()
        self.table = w.HTML()
        self.buttons.append(self.run_button)
        self.records: list[dict] = []
        self.run_button.on_click(lambda _: self.run())
        self.x_axis.observe(lambda _: self._redraw(), "value")
        self.log_y.observe(lambda _: self._redraw(), "value")
        note = device_note()
        self.children = [
            self.header,
            w.HBox([self.backends, w.VBox([self.passes, self.device, self.rounds]),
                    w.VBox([self.batch, self.steps, self.hidden, self.reset_rate])]),
            *([w.HTML(f"<span style='font-size:12px;color:#666'>{html.escape(note)}</span>")] if note else []),
            w.HBox([self.run_button, self.x_axis, self.log_y]),
            self.progress,
            self.status,
            self.add_view("timing", 0),
            self.table,
        ]

    def config(self) -> timing.TimingConfig:
        """The controls read as a checked ``TimingConfig`` (``ConfigError`` names a value out of range)."""
        return timing.TimingConfig(
            backends=self.backends.value, passes=self.passes.value,
            batch=parse_numbers(self.batch.value, name="batch"),
            steps=parse_numbers(self.steps.value, name="T (steps)"),
            hidden=parse_numbers(self.hidden.value, name="hidden"),
            reset_rate=parse_numbers(self.reset_rate.value, float, name="reset rate"),
            device=resolve_device(self.device.value), rounds=self.rounds.value, block_s=self.block_s, memory=False)

    def grid(self) -> dict:
        """The controls read as ``time_backends`` arguments (one tuple per axis of the grid), checked."""
        cfg = self.config()
        return {name: getattr(cfg, name) for name in cfg.AXES}

    def run(self) -> None:
        """Measures every cell of the grid (one ``time_backends`` call each), then draws the chart and table."""
        from tqdm.notebook import tqdm

        with self.busy("Timing…"):
            cfg = self.config()  # every range checked before the first cell runs
            cells = cfg.cases()
            bar = tqdm(total=len(cells), desc="timing", unit="case", display=False, mininterval=0)
            self.progress.children = [bar.container]
            records = []
            try:
                for b, t, h, p in cells:
                    bar.set_postfix_str(f"batch {b}, T {t}, hidden {h}, reset {p:g}", refresh=False)
                    cell = dataclasses.replace(cfg, batch=(b,), steps=(t,), hidden=(h,), reset_rate=(p,))
                    records += timing.time_backends(**cell.as_kwargs())
                    bar.update(1)
            finally:
                bar.close()
            self.records = records
            self._draw()
            self.show_message(f"{len(records)} measurements on {cfg.device} "
                              f"({len(cells)} case(s) × {len(cfg.backends)} backend(s) × "
                              f"{len(cfg.passes)} pass(es)).", "ok")

    def _redraw(self) -> None:
        if self.records:
            with self.guard():
                self._draw()

    def _draw(self) -> None:
        self.show_figure("timing", figures.timing_figure(self.records, x=self.x_axis.value,
                                                         log_y=self.log_y.value, height=420))
        self.table.value = table_html(self.records)
