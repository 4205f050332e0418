"""The benchmark's results: measured rows, targets, correctness checks, the report, and the table printer.

Examples:
    >>> Target("workbench / floor", 1.1, "<=", 1.25).met
    True
    >>> Check("workbench vs torchrl", 2e-5, 1e-4, 1e-4).tolerance
    'atol 1e-04, rtol 1e-04 of max|ref|'
    >>> print_rows([Row("recurrent", "L=1", "workbench", "forward", 0.0021, 0.002, 0.0022, 1.08, 2.3)])
      contestant                 pass                  median             IQR  ×floor torchrl÷  peak MB mem×floor  picked
      workbench                  forward              2.10 ms    2.00 ms–2.20    1.08     2.30
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

__all__ = ["Row", "Target", "Check", "Report", "print_rows"]


@dataclass
class Row:
    section: str
    case: str
    contestant: str
    passes: str
    median_s: float
    q1_s: float
    q3_s: float
    ratio_floor: float | None = None
    torchrl_over: float | None = None  # torchrl's median / this one's
    peak_bytes: int | None = None
    peak_ratio: float | None = None
    picked: str | None = None
    note: str = ""


@dataclass
class Target:
    name: str
    value: float | None
    op: str
    limit: float
    unit: str = "×"

    @property
    def met(self) -> bool:
        if self.value is None or math.isnan(self.value):
            return False
        return self.value <= self.limit if self.op == "<=" else self.value >= self.limit


@dataclass
class Check:
    what: str
    max_abs_diff: float
    atol: float
    rtol: float = 0.0
    ok: bool | None = None  # None: max_abs_diff <= atol

    def __post_init__(self):
        if self.ok is None:
            self.ok = self.max_abs_diff <= self.atol

    @property
    def tolerance(self) -> str:
        return f"atol {self.atol:.0e}" + (f", rtol {self.rtol:.0e} of max|ref|" if self.rtol else "")


@dataclass
class Report:
    machine: dict
    config: dict
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "machine": self.machine,
            "config": self.config,
            "rows": [asdict(r) for r in self.rows],
            "targets": [{**asdict(t), "met": t.met} for t in self.targets],
            "checks": [asdict(c) for c in self.checks],
        }

def _fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def _fmt(x: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "" if x is None else f"{x:{spec}}{suffix}"


def print_rows(rows: list[Row], out=print) -> None:
    header = f"  {'contestant':<26} {'pass':<17} {'median':>10} {'IQR':>15} {'×floor':>7} {'torchrl÷':>8} {'peak MB':>8} {'mem×floor':>9}  picked"
    out(header)
    for r in rows:
        iqr = f"{_fmt_time(r.q1_s)}–{_fmt_time(r.q3_s).split()[0]}" if r.q1_s != r.q3_s else ""
        out(
            f"  {r.contestant:<26} {r.passes:<17} {_fmt_time(r.median_s):>10} {iqr:>15} "
            f"{_fmt(r.ratio_floor):>7} {_fmt(r.torchrl_over):>8} "
            f"{_fmt(None if r.peak_bytes is None else r.peak_bytes / 1e6, '.1f'):>8} {_fmt(r.peak_ratio):>9}"
            f"  {r.picked or ''}{('  ' + r.note) if r.note else ''}"
        )
