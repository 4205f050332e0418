"""The UI benchmark: the Workbench app of notebook 05 in a real JupyterLab, driven by a headless Chromium.

``python -m workbench bench --ui [--quick] [--json FILE] [--md FILE]`` (or ``python
benchmarks/ui_bench.py``) copies ``notebooks/05-workbench-app.ipynb`` into a temporary folder, writes
the benchmark's sizes over its parameters cell (hidden 128, 1 layer, a 100-step warm-up rollout),
starts JupyterLab there (a free port, a token), opens the notebook in Chromium (Playwright), runs every
cell, then does what a person does and times it:

1. *rollout memory*: sets the rollout panel's steps, clicks *Run rollout* and follows the kernel's
   VmRSS (``/proc/PID/status``; VmHWM reset through ``clear_refs``) against the bytes of the tensors
   of ``app.trajectory`` (read with a silent execute request, not a cell);
2. *first paint*: from the rollout's "done" message appearing to every linked explorer figure
   showing the new trajectory (polled in the page on every animation frame);
3. *cursor move*: an arrow key on the focused time slider, until every figure's ``"cursor"`` mark
   (a layout shape or a trace) moved and the timeline's cursor is at the new step (median of 20);
4. *Play*: clicks Play for 10 s, counts the cursor positions painted on the timeline, and times a
   trivial JS call every 200 ms;
5. *zoom*: ``Plotly.relayout`` of the timeline to a 500-step window, until its heatmap holds every
   step of the window;
6. *JS heap*: CDP ``Performance.getMetrics`` (``JSHeapUsedSize``), sampled through the session;
7. *Cancel*: of a long rollout and of a long timing grid, until the panel says "cancelled" and its
   Run button is enabled again ("n/a" while the app has no Cancel button);
8. *saved notebook*: Lab's ``docmanager:save``, then the file's size.

Every measure that fails is reported as an error in the table; Lab, its kernel and Chromium are
stopped on every path. The page selectors and the in-page probes are in :data:`SEL` and :data:`PROBES`.

Examples:
    >>> TARGETS["cursor_ms"].met(120.0), TARGETS["play_steps_per_s"].met(4.0)
    (True, False)
    >>> parse_size("2x100000")
    (2, 100000)
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import ChromiumNotFoundError, ConfigError

__all__ = ["TARGETS", "Target", "Measure", "UiReport", "parse_size", "format_table", "machine_info",
           "run_ui_bench", "run_args", "main"]

REPO = Path(__file__).resolve().parent.parent.parent
NOTEBOOK = "05-workbench-app.ipynb"
WARMUP_STEPS = 100
"""steps of the rollout that run-all does (the notebook's own ``app.run()``); the bench's rollout comes after"""
COMPARE_STEPS = 2000
"""steps per env of the comparison size (``--quick`` runs only this one)"""
MOVES = 20
PLAY_SECONDS = 10.0
ZOOM_STEPS = 500
CANCEL_STEPS = 20_000
"""steps per env of the rollout that the bench cancels 3 s after its start"""
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}

# --------------------------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    """One line of the issue's targets: ``value op limit`` (``op`` is ``"<="`` or ``">="``)."""

    label: str
    op: str
    limit: float
    unit: str
    fmt: Callable[[float], str]

    def met(self, value: float | None) -> bool | None:
        """Whether ``value`` meets the target (``None`` without a value)."""
        if value is None:
            return None
        return value <= self.limit if self.op == "<=" else value >= self.limit

    @property
    def text(self) -> str:
        return f"{'≤' if self.op == '<=' else '≥'} {self.fmt(self.limit)}"


def _ms(v: float) -> str:
    return f"{v:.0f} ms" if v >= 10 else f"{v:.1f} ms"


def _s(v: float) -> str:
    return f"{v:.2f} s"


def _mb(v: float) -> str:
    return f"{v:.0f} MB" if v >= 10 else f"{v:.2f} MB"


TARGETS: dict[str, Target] = {
    "rss_ratio": Target("rollout: kernel RSS growth / trajectory bytes", "<=", 2.0, "×", lambda v: f"{v:.2f}×"),
    "first_paint_s": Target("explorer first paint after the rollout", "<=", 3.0, "s", _s),
    "cursor_ms": Target(f"cursor move → every linked figure (median of {MOVES})", "<=", 150.0, "ms", _ms),
    "play_steps_per_s": Target("Play: cursor steps painted per second", ">=", 10.0, "steps/s",
                               lambda v: f"{v:.1f}/s"),
    "play_js_ms": Target("Play: trivial JS call (max)", "<=", 50.0, "ms", _ms),
    "zoom_ms": Target(f"zoom to {ZOOM_STEPS} steps → full-resolution redraw", "<=", 500.0, "ms", _ms),
    "heap_mb": Target("tab JS heap (peak sampled)", "<=", 400.0, "MB", _mb),
    "cancel_rollout_s": Target("Cancel rollout → app usable", "<=", 1.0, "s", _s),
    "cancel_timing_s": Target("Cancel timing grid → app usable", "<=", 1.0, "s", _s),
    "notebook_kb": Target("notebook 05 saved after the session", "<=", 1024.0, "KB", lambda v: f"{v:.0f} KB"),
}
"""The issue's targets, in table order (key → :class:`Target`)."""


@dataclass
class Measure:
    """One measure at one size: a value, or why there is none (``error``, or ``na`` for not applicable)."""

    value: float | None = None
    error: str | None = None
    na: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def cell(self, target: Target) -> str:
        """The table cell: the value (with a short detail), ``n/a (...)`` or ``error: ...``."""
        if self.na:
            return f"n/a ({self.na})"
        if self.error:
            return "error: " + _short(self.error)
        text = target.fmt(self.value)
        note = self.detail.get("note")
        return f"{text} ({note})" if note else text


def _short(text: str, n: int = 90) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


@dataclass
class UiReport:
    """Everything the bench measured: per size label (``"2x2000"``), per measure key, a :class:`Measure`."""

    machine: dict[str, Any]
    settings: dict[str, Any]
    results: dict[str, dict[str, Measure]] = field(default_factory=dict)
    seconds: float = 0.0

    def met(self, key: str, size: str) -> bool | None:
        m = self.results.get(size, {}).get(key)
        return None if m is None or m.value is None else TARGETS[key].met(m.value)

    def to_json(self) -> dict[str, Any]:
        return {"machine": self.machine, "settings": self.settings, "seconds": round(self.seconds, 1),
                "targets": {k: {"label": t.label, "op": t.op, "limit": t.limit, "unit": t.unit}
                            for k, t in TARGETS.items()},
                "results": {size: {k: {**asdict(m), "met": TARGETS[k].met(m.value)} for k, m in measures.items()}
                            for size, measures in self.results.items()}}


def parse_size(text: str) -> tuple[int, int]:
    """``"ENVSxSTEPS"`` → ``(envs, steps)``.

    Examples:
        >>> parse_size("1x200")
        (1, 200)
        >>> parse_size("2 x 3")
        Traceback (most recent call last):
        ...
        workbench.errors.ConfigError: size: expected ENVSxSTEPS such as '2x100000'; got '2 x 3'
    """
    m = re.fullmatch(r"(\d+)x(\d+)", text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ConfigError(f"size: expected ENVSxSTEPS such as '2x100000'; got {text!r}")
    return int(m.group(1)), int(m.group(2))


def format_table(report: UiReport) -> str:
    """The results as a Markdown table: ``measure | <size>... | target | met?`` (met? of the largest size).

    Examples:
        >>> r = UiReport({}, {}, {"1x200": {"cursor_ms": Measure(80.0), "zoom_ms": Measure(error="timeout")}})
        >>> print(format_table(r).splitlines()[2])
        | cursor move → every linked figure (median of 20) | 80 ms | ≤ 150 ms | yes |
    """
    sizes = list(report.results)
    head = ["measure", *sizes, "target", "met?"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, target in TARGETS.items():
        cells = [report.results[s][key] if key in report.results[s] else None for s in sizes]
        if all(c is None for c in cells):
            continue
        met = report.met(key, sizes[-1])
        last = cells[-1]
        mark = ("n/a" if last is not None and last.na else "–") if met is None else ("yes" if met else "no")
        row = [target.label, *[("–" if c is None else c.cell(target)) for c in cells], target.text, mark]
        lines.append("| " + " | ".join(x.replace("|", "/") for x in row) + " |")
    return "\n".join(lines)


def format_report(report: UiReport) -> str:
    """The machine, the settings and the table, as Markdown."""
    m = report.machine
    s = report.settings
    lines = [f"GRU Workbench UI benchmark: notebook 05 in JupyterLab {m.get('jupyterlab', '?')}, headless "
             f"{m.get('chromium', 'Chromium')}; hidden {s.get('hidden')}, {s.get('layers')} layer, "
             f"sizes {', '.join(s.get('sizes', []))} (envs × steps), device {s.get('device')}",
             "",
             f"machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, load average at start "
             f"{m.get('loadavg', '?')}, {m.get('platform', '')}",
             f"versions: python {m.get('python')}, torch {m.get('torch')}, plotly {m.get('plotly')}, "
             f"ipywidgets {m.get('ipywidgets')}, jupyterlab {m.get('jupyterlab')}, playwright {m.get('playwright')}",
             f"run time: {report.seconds:.0f} s", "", format_table(report)]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- the machine


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return "?"


def chromium_path() -> str | None:
    """The Chromium the bench drives: ``$CHROMIUM_PATH``, else ``chromium`` on the PATH, else ``None``."""
    env = os.environ.get("CHROMIUM_PATH")
    if env:
        return env if Path(env).is_file() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


def require_browser() -> str:
    """Chromium's path; raises :class:`ChromiumNotFoundError` (one line) without Playwright or Chromium."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as e:
        raise ChromiumNotFoundError(f"bench --ui needs Playwright: pip install -e '.[test]' ({e})") from e
    path = chromium_path()
    if path is None:
        raise ChromiumNotFoundError("bench --ui needs Chromium: install the Debian package `chromium` "
                                    "(apt-get install chromium) or set CHROMIUM_PATH; never `playwright install`")
    return path


def machine_info(chromium: str | None = None) -> dict[str, Any]:
    """CPU model, cores, load average, platform and the versions that matter for the UI."""
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    info = {"cpu": cpu, "cores": cores, "platform": platform.platform(),
            "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?",
            "python": platform.python_version()}
    for name in ("torch", "plotly", "jupyterlab", "ipywidgets", "anywidget", "playwright"):
        info[name] = _version(name)
    if chromium:
        try:
            info["chromium"] = subprocess.run([chromium, "--version"], capture_output=True, text=True,
                                              timeout=30).stdout.strip() or "Chromium"
        except (OSError, subprocess.SubprocessError):
            info["chromium"] = "Chromium"
    return info


# ------------------------------------------------------------------------------ selectors and probes

SEL = {
    "explorer": ".wb-explorer",
    "rollout": ".wb-rollout",
    "timing": ".wb-timing",
    "plot": ".js-plotly-plot",
    "time_handle": ".wb-explorer .widget-hslider:has-text('time') .noUi-handle",
    "play": ".wb-explorer button:has-text('Play')",  # a toggle: Play runs in the page, the kernel follows
    "pause": ".wb-explorer button:has-text('Pause')",
    "rollout_run": ".wb-rollout .widget-button:has-text('Run rollout')",
    "timing_run": ".wb-timing .widget-button:has-text('Run timing')",
    "job_cancel": ".wb-job .widget-button:has-text('Cancel'), .wb-job button:has-text('Cancel')",
    "message": ".wb-msg",
}
"""Every selector the bench uses, in one place (the explorer's figures are the ``.js-plotly-plot``
divs inside ``.wb-explorer``; a figure is *linked* when it holds a mark named ``"cursor"``)."""

def within(panel: str, selector: str) -> str:
    """``selector`` (alternatives separated by commas) restricted to ``panel``.

    Examples:
        >>> within(".wb-rollout", ".a, .b")
        '.wb-rollout .a, .wb-rollout .b'
    """
    return ", ".join(f"{panel} {part.strip()}" for part in selector.split(","))


PROBES = r"""
(() => {
  const first = a => (a && a.length !== undefined && typeof a !== 'string') ? a[0] : a;
  const wb = window.__wb = window.__wb || {};
  wb.plots = () => { const ex = document.querySelector(%(explorer)s);
    return ex ? Array.from(ex.querySelectorAll(%(plot)s)) : []; };
  // the cursor marks of one figure as a string (null: none): shapes, layout images and traces named "cursor"
  wb.marks = gd => {
    const lay = gd._fullLayout || gd.layout, data = gd._fullData || gd.data;
    if (!lay || !data) return null;
    const shapes = (lay.shapes || []).filter(s => s.name === 'cursor').map(s => [s.x0, s.x1, s.y0, s.y1]);
    const images = (lay.images || []).filter(s => s.name === 'cursor').map(s => [s.x, s.y]);
    const traces = data.filter(t => t.name === 'cursor').map(t => [first(t.x), first(t.y), first(t.z)]);
    return shapes.length || images.length || traces.length ? JSON.stringify([shapes, images, traces]) : null;
  };
  wb.linked = () => wb.plots().filter(gd => wb.marks(gd) !== null);
  wb.heatmap = gd => (gd._fullData || []).find(t => t.type === 'heatmap' || t.type === 'heatmapgl');
  wb.timeline = () => wb.plots().find(gd => wb.heatmap(gd) && wb.marks(gd) !== null) || null;
  wb.cursorX = () => { const gd = wb.timeline(); if (!gd || !gd._fullLayout) return null;
    const s = (gd._fullLayout.shapes || []).find(s => s.name === 'cursor'); if (s) return Number(s.x0);
    const im = (gd._fullLayout.images || []).find(s => s.name === 'cursor'); return im ? Number(im.x) : null; };
  // the steps a heatmap trace draws (its x, or x0 + i·dx over its columns)
  wb.heatX = gd => { const t = wb.heatmap(gd); if (!t) return [];
    const n = t.z && t.z.length ? t.z[0].length : 0;
    if (t.x && t.x.length) return Array.from(t.x, Number);
    const x0 = Number(t.x0 || 0), dx = Number(t.dx || 1); return Array.from({length: n}, (_, i) => x0 + i * dx); };
  // a figure's data, short: per trace its type and the length and ends of x (so a new trajectory differs)
  wb.dataSig = gd => JSON.stringify((gd._fullData || []).filter(t => t.name !== 'cursor').map(t => {
    const x = t.x || (t.z && t.z[0]) || []; return [t.type, x.length, first(x), x.length ? x[x.length - 1] : null]; }));
  wb.snapshot = () => { const gds = wb.linked(); return {marks: gds.map(wb.marks), data: gds.map(wb.dataSig),
    x: wb.cursorX(), n: gds.length}; };
  wb.text = sel => { const el = document.querySelector(sel); return el ? el.innerText : ''; };
  // every message box of a panel, joined (the status line and any banner: a change shows new news)
  wb.msg = panel => Array.from(document.querySelectorAll(panel + ' ' + %(message)s), el => el.innerText).join('\n');
  // runs check() on every animation frame from now until it is true; resolves the time it first was
  wb.until = (check, timeoutMs) => new Promise((resolve) => {
    const t0 = performance.now();
    const tick = () => { let ok = false; try { ok = check(); } catch (e) { ok = false; }
      if (ok) return resolve(performance.now());
      if (performance.now() - t0 > timeoutMs) return resolve(null);
      requestAnimationFrame(tick); };
    tick(); });
  // a lag loop: a setTimeout(200) that fires late by the main thread's business
  wb.lagStart = () => { wb.lags = []; wb.lagOn = true;
    const loop = () => { const t = performance.now();
      setTimeout(() => { wb.lags.push(performance.now() - t - 200); if (wb.lagOn) loop(); }, 200); };
    loop(); };
  wb.lagStop = () => { wb.lagOn = false; return wb.lags; };
  // cursor positions the timeline paints (one entry per change), on every animation frame
  wb.trackStart = () => { wb.track = []; wb.trackOn = true; let last = wb.cursorX();
    const tick = () => { const x = wb.cursorX(); if (x !== last && x !== null) { wb.track.push([performance.now(), x]); last = x; }
      if (wb.trackOn) requestAnimationFrame(tick); };
    requestAnimationFrame(tick); };
  wb.trackStop = () => { wb.trackOn = false; return wb.track; };
  // the time of the next key press / click anywhere in the page
  wb.stamp = type => { wb.stamped = null;
    window.addEventListener(type, () => { wb.stamped = performance.now(); }, {capture: true, once: true}); };
  return true;
})()
""" % {k: json.dumps(SEL[k]) for k in ("explorer", "plot", "message")}

KERNEL_IDLE = ("() => window.jupyterapp?.shell?.currentWidget?.sessionContext?.session?.kernel?.status"
               " === 'idle'")
CELL_ERRORS = """() => { const errs = [];
  for (const cell of window.jupyterapp.shell.currentWidget.content.widgets) {
    if (cell.model.type !== 'code') continue;
    const outs = cell.model.outputs;
    for (let i = 0; i < outs.length; i++) { const o = outs.get(i).toJSON();
      if (o.output_type === 'error') errs.push(o.ename + ': ' + o.evalue); } }
  return errs; }"""
SILENT_EXECUTE = """async (code) => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const future = kernel.requestExecute({code, silent: false, store_history: false});
  let out = '';
  future.onIOPub = msg => { if (msg.header.msg_type === 'stream') out += msg.content.text;
    if (msg.header.msg_type === 'error') out += 'ERROR ' + msg.content.ename + ': ' + msg.content.evalue; };
  await future.done; return out; }"""
STORED_BYTES = ("import torch as _t\n_tr = app.trajectory\n"
                "print(sum(v.numel() * v.element_size() for v in _tr.values(True, True) if isinstance(v, _t.Tensor)))")


# -------------------------------------------------------------------------------------- the notebook


def prepare_notebook(dest: Path, *, envs: int, hidden: int, layers: int, device: str) -> Path:
    """Copies notebook 05 to ``dest`` with the bench's values appended to its parameters cell.

    The rollout that run-all does is the short warm-up (:data:`WARMUP_STEPS`); the timing grid is the
    smallest. The repository's notebook is never written.

    Examples:
        >>> import tempfile, nbformat
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     nb = nbformat.read(prepare_notebook(Path(tmp) / "nb.ipynb", envs=2, hidden=128, layers=1,
        ...                                         device="cpu"), as_version=4)
        >>> cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        >>> "hidden_size=128" in cell.source and "steps = 100" in cell.source
        True
    """
    import nbformat

    nb = nbformat.read(REPO / "notebooks" / NOTEBOOK, as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise RuntimeError(f"{NOTEBOOK}: expected one code cell tagged 'parameters'; got {len(cells)}")
    cells[0].source += (
        "\n# ui bench: its sizes (the rollout of run-all is a short warm-up; the bench clicks Run rollout itself)\n"
        "import dataclasses as _dc\n"
        f"policy_spec = _dc.replace(policy_spec, hidden_size={hidden}, num_layers={layers})\n"
        f"env_spec = _dc.replace(env_spec, num_envs={envs})\n"
        f"steps = {WARMUP_STEPS}\n"
        f"device = {device!r}\n"
        "timing = dict(batch=(4,), steps=(16,), hidden=(32,), reset_rate=(0.0,), rounds=1)\n")
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest)
    return dest


# ----------------------------------------------------------------------------------- the Lab server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A JupyterLab on 127.0.0.1 serving ``root`` (a context manager: stopped, kernels included, on exit)."""

    def __init__(self, tmp: Path, root: Path, timeout: float = 120.0):
        self.tmp, self.root, self.timeout = tmp, root, timeout
        self.token = "ui-bench-" + os.urandom(8).hex()
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = tmp / "lab.log"
        self.kernel_pids: set[int] = set()

    def __enter__(self) -> "Lab":
        for name, values in LAB_SETTINGS.items():
            path = self.tmp / "settings" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(self.tmp / "settings"),
                   JUPYTERLAB_WORKSPACES_DIR=str(self.tmp / "workspaces"), JUPYTER_RUNTIME_DIR=str(self.tmp / "runtime"),
                   PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
               f"--port={self.port}", f"--ServerApp.root_dir={self.root}", f"--IdentityProvider.token={self.token}",
               "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.expose_app_in_browser=True"]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        started = time.monotonic()
        while time.monotonic() - started < self.timeout:
            if self.proc.poll() is not None:
                self.__exit__()
                raise RuntimeError(f"JupyterLab exited early ({self.proc.returncode}); see {self.log_path}")
            try:
                self.api("status")
                return self
            except OSError:
                time.sleep(0.3)
        self.__exit__()
        raise TimeoutError(f"JupyterLab did not answer within {self.timeout:.0f} s; see {self.log_path}")

    def api(self, path: str, method: str = "GET") -> Any:
        req = urllib.request.Request(f"{self.base}/api/{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def kernel(self) -> tuple[str, int]:
        """``(kernel id, pid)`` of the one running kernel (its process found by its connection file in /proc)."""
        kernels = self.api("kernels")
        if len(kernels) != 1:
            raise RuntimeError(f"expected one running kernel; the server lists {len(kernels)}")
        kid = kernels[0]["id"]
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    cmdline = (proc / "cmdline").read_bytes()
                except OSError:
                    continue
                if f"kernel-{kid}.json".encode() in cmdline:
                    self.kernel_pids.add(int(proc.name))
                    return kid, int(proc.name)
        raise RuntimeError(f"no process in /proc runs kernel {kid}")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: jupyter-server shuts its kernels down too
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self.kernel_pids:  # a kernel the server left behind (we started it: it is ours)
            if Path(f"/proc/{pid}").exists():
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass
        if getattr(self, "_log", None):
            self._log.close()


# ------------------------------------------------------------------------------------ kernel memory


def proc_status(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of process ``pid`` in bytes (from ``/proc/PID/status``).

    Examples:
        >>> sorted(proc_status(os.getpid())), proc_status(os.getpid())["VmRSS"] > 0
        (['VmHWM', 'VmRSS'], True)
    """
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(rest.split()[0]) * 1024
    return out


def reset_peak(pid: int) -> bool:
    """Resets ``VmHWM`` of ``pid`` to its RSS (``echo 5 > /proc/PID/clear_refs``); ``False`` where refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class RssSampler(threading.Thread):
    """Samples a process's VmRSS every ``interval`` seconds until :meth:`stop`; ``peak`` is the largest."""

    def __init__(self, pid: int, interval: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak, self._stop_event = pid, interval, 0, threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.peak = max(self.peak, proc_status(self.pid)["VmRSS"])
            except (OSError, KeyError):
                return
            self._stop_event.wait(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join(timeout=5)
        return self.peak


# ------------------------------------------------------------------------------------ one session


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


class Session:
    """One size in one Lab: run-all, then every measure in order (each its own try, so one failing
    measure is reported and the next one runs)."""

    def __init__(self, browser, lab: Lab, envs: int, steps: int, *, shots: Path | None, log: Callable[[str], None],
                 slow: float = 1.0):
        self.browser, self.lab, self.envs, self.steps, self.shots, self.log = browser, lab, envs, steps, shots, log
        self.slow = slow
        self.results: dict[str, Measure] = {}
        self.heap_samples: list[float] = []
        self.page = None
        self.cdp = None
        self.pid: int | None = None
        self._last_heap = 0.0

    # -------------------------------------------------------------- helpers
    def _heap(self, force: bool = False) -> float | None:
        """JSHeapUsedSize in MB (CDP), sampled at most every second unless ``force``."""
        if self.cdp is None or (not force and time.monotonic() - self._last_heap < 1.0):
            return None
        self._last_heap = time.monotonic()
        try:
            metrics = {m["name"]: m["value"] for m in self.cdp.send("Performance.getMetrics")["metrics"]}
        except Exception:
            return None
        mb = metrics.get("JSHeapUsedSize", 0) / 2**20
        self.heap_samples.append(mb)
        return mb

    def wait(self, js: str, what: str, timeout: float, arg: Any = None, interval: float = 0.25) -> Any:
        """Polls ``js`` in the page until it returns something truthy (sampling the heap meanwhile);
        raises ``TimeoutError`` naming ``what``."""
        end = time.monotonic() + timeout * self.slow
        while True:
            value = self.page.evaluate(js, arg)
            if value:
                return value
            self._heap()
            if time.monotonic() > end:
                raise TimeoutError(f"{what}: not within {timeout * self.slow:.0f} s")
            time.sleep(interval)

    def measure(self, key: str, fn: Callable[[], Measure | float]) -> Measure:
        started = time.monotonic()
        try:
            m = fn()
            m = m if isinstance(m, Measure) else Measure(m)
        except Exception as e:  # reported in the table; the next measure still runs
            m = Measure(error=f"{type(e).__name__}: {e}")
        self.results[key] = m
        shown = m.cell(TARGETS[key]) if key in TARGETS else str(m)
        self.log(f"  {TARGETS[key].label if key in TARGETS else key}: {shown}  [{time.monotonic() - started:.0f} s]")
        return m

    def shot(self, name: str, selector: str | None = None) -> None:
        if self.shots is None:
            return
        try:
            self.shots.mkdir(parents=True, exist_ok=True)
            target = self.page.locator(selector).first if selector else self.page
            target.screenshot(path=str(self.shots / f"ui-{self.envs}x{self.steps}-{name}.png"))
        except Exception as e:
            self.log(f"  (screenshot {name} failed: {e})")

    def _set_text(self, panel: str, label: str, value: str) -> None:
        box = self.page.locator(f"{panel} .widget-inline-hbox", has=self.page.locator("label", has_text=label)).first
        field_ = box.locator("input")
        field_.fill(value)
        field_.press("Enter")

    def settle(self, what: str, quiet_s: float = 2.0, timeout: float = 300.0) -> None:
        """Waits until the kernel is idle and the timeline's cursor has not moved for ``quiet_s`` (updates
        queued by Play or the cursor moves drained); logs and goes on after ``timeout``."""
        end = time.monotonic() + timeout * self.slow
        last, since = object(), time.monotonic()
        while time.monotonic() < end:
            x, idle = self.page.evaluate(f"() => [window.__wb.cursorX(), ({KERNEL_IDLE})()]")
            if x != last or not idle:
                last, since = x, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            self._heap()
            time.sleep(0.2)
        self.log(f"  (the app did not settle within {timeout * self.slow:.0f} s before {what}; going on)")

    def _install(self) -> None:
        self.page.evaluate(PROBES)

    # -------------------------------------------------------------- the session
    def open(self) -> None:
        ctx = self.browser.new_context(viewport={"width": 1400, "height": 2400})
        self.page = ctx.new_page()
        self.page.set_default_timeout(60_000 * self.slow)
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.cdp = ctx.new_cdp_session(self.page)
        self.cdp.send("Performance.enable")
        t = time.monotonic()
        self.page.goto(f"{self.lab.base}/doc/tree/{NOTEBOOK}?token={self.lab.token}")
        self.page.wait_for_selector(".jp-Notebook", timeout=120_000 * self.slow)
        self.wait(KERNEL_IDLE, "the kernel to start (idle)", 120)
        ok = self.page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        errors = self.page.evaluate(CELL_ERRORS)
        if ok is not True or errors:
            raise RuntimeError(f"run-all of {NOTEBOOK} failed: {errors}")
        self.wait(KERNEL_IDLE, "the kernel to be idle after run-all", 300)
        self._install()
        self.wait("() => window.__wb.timeline() !== null", "the explorer's timeline figure after run-all", 120)
        _, self.pid = self.lab.kernel()
        self._heap(force=True)
        self.log(f"  run-all done in {time.monotonic() - t:.0f} s (kernel pid {self.pid})")

    def run_all_measures(self) -> dict[str, Measure]:
        self.measure("rss_ratio", self.rollout)  # also measures first_paint_s
        self.shot("explorer", SEL["explorer"])
        self.measure("cursor_ms", self.cursor_moves)
        self.measure("play_steps_per_s", self.play)  # also play_js_ms
        self.measure("zoom_ms", self.zoom)
        # long enough to be running 3 s later (a 2.6 ms step: ~50 s), not so long that its storage is huge
        self.measure("cancel_rollout_s", lambda: self.cancel(SEL["rollout"], SEL["rollout_run"],
                                                             [("steps per env", str(CANCEL_STEPS))]))
        self.measure("cancel_timing_s", lambda: self.cancel(SEL["timing"], SEL["timing_run"],
                                                            [("steps", "16, 32, 64, 128, 256, 512, 1024"),
                                                             ("rounds", "200")]))
        self.measure("notebook_kb", self.save)
        self.measure("heap_mb", self.heap)
        self.results["heap_mb"].detail.setdefault("console_errors", len(self.errors))
        return self.results

    # 1 + 2
    def rollout(self) -> Measure:
        page, panel = self.page, SEL["rollout"]
        before_msg = page.evaluate("(p) => window.__wb.msg(p)", panel)
        self._set_text(panel, "steps per env", str(self.steps))
        self._set_text(panel, "envs", str(self.envs))
        self.wait(KERNEL_IDLE, "the kernel to take the steps", 30)
        time.sleep(1.0)  # let the kernel settle before the baseline
        rss_before = proc_status(self.pid)["VmRSS"]
        hwm_reset = reset_peak(self.pid)
        sampler = RssSampler(self.pid)
        sampler.start()
        snap = page.evaluate("() => window.__wb.snapshot()")
        watch = """([before, steps, snap, timeoutMs]) => { const wb = window.__wb;
          const done = () => { const m = wb.msg(%s); return m !== before && /done/i.test(m); };
          const painted = () => { const gds = wb.linked(); if (gds.length < snap.n) return false;
            const xs = wb.timeline() ? wb.heatX(wb.timeline()) : [];
            if (!xs.length || Math.max(...xs.slice(-4)) < 0.95 * (steps - 1)) return false;
            return gds.every((gd, i) => wb.dataSig(gd) !== snap.data[i]); };
          wb.ro = {done: null, paint: null};
          wb.until(done, timeoutMs).then(t => { wb.ro.done = t;
            if (t !== null) wb.until(painted, timeoutMs).then(p => { wb.ro.paint = p === null ? -1 : p; }); }); }""" % (
            json.dumps(panel))
        budget = 300 + self.steps * self.envs * 0.01  # ~2.6 ms/step unloaded, with room for a loaded machine
        page.evaluate(watch, [before_msg, self.steps, snap, budget * 1000 * self.slow])
        started = time.monotonic()
        page.locator(SEL["rollout_run"]).click()
        failed = """([panel, run]) => !!document.querySelector(panel + ' .wb-msg-error') &&
          Array.from(document.querySelectorAll(panel + ' button')).some(b => b.innerText.includes(run) && !b.disabled)"""
        self.wait("(args) => window.__wb.ro.done !== null || (%s)(args)" % failed,
                  f"the rollout of {self.envs}×{self.steps} steps to say done", budget, arg=[panel, "Run rollout"],
                  interval=0.05)  # the RSS below is read as soon as the message shows
        msg = page.evaluate("(p) => window.__wb.msg(p)", panel)
        if page.evaluate("() => window.__wb.ro.done") is None:
            raise RuntimeError(f"the rollout failed: {_short(msg, 200)}")
        rollout_s = time.monotonic() - started
        rss_done = proc_status(self.pid)["VmRSS"]
        # first paint (its own measure: a failure here still reports the memory)
        try:
            self.wait("() => window.__wb.ro.paint !== null", "the explorer to draw the new trajectory", 600)
            ro = page.evaluate("() => window.__wb.ro")
            if ro["paint"] < 0:
                raise TimeoutError("the explorer did not draw the new trajectory")
            self.results["first_paint_s"] = Measure((ro["paint"] - ro["done"]) / 1000)
        except Exception as e:
            self.results["first_paint_s"] = Measure(error=f"{type(e).__name__}: {e}")
        self.log(f"  {TARGETS['first_paint_s'].label}: {self.results['first_paint_s'].cell(TARGETS['first_paint_s'])}")
        self.wait(KERNEL_IDLE, "the kernel to be idle after the rollout", 600)
        peak = sampler.stop()
        status = proc_status(self.pid)
        stored = int(page.evaluate(SILENT_EXECUTE, STORED_BYTES).strip().splitlines()[-1])
        retained = status["VmRSS"] - rss_before
        peak = max(peak, status["VmHWM"] if hwm_reset else 0)
        grown = rss_done - rss_before
        detail = {"stored_mb": stored / 2**20, "rss_before_mb": rss_before / 2**20,
                  "growth_at_done_mb": grown / 2**20, "growth_idle_mb": retained / 2**20,
                  "idle_ratio": retained / stored, "peak_growth_mb": (peak - rss_before) / 2**20,
                  "peak_ratio": (peak - rss_before) / stored, "hwm_reset": hwm_reset, "rollout_s": rollout_s,
                  "note": f"{grown / 2**20:.0f} MB for {stored / 2**20:.0f} MB stored; with the explorer drawn "
                          f"{retained / stored:.2f}×, peak {(peak - rss_before) / stored:.2f}×"}
        return Measure(grown / stored, detail=detail)

    # 3
    def cursor_moves(self) -> Measure:
        page = self.page
        self.settle("the cursor moves")
        handle = page.locator(SEL["time_handle"]).first
        handle.focus()
        times, errors = [], []
        check = """([snap, timeoutMs]) => { const wb = window.__wb; wb.mv = null;
          const moved = () => { const gds = wb.linked(); if (gds.length < snap.n) return false;
            if (wb.cursorX() !== snap.x + 1) return false;
            return gds.every((gd, i) => { const m = wb.marks(gd); return m !== null && m !== snap.marks[i]; }); };
          wb.stamp('keydown');
          wb.until(moved, timeoutMs).then(t => { wb.mv = t === null ? -1 : t; }); }"""
        for i in range(MOVES):
            snap = page.evaluate("() => window.__wb.snapshot()")
            if snap["x"] is None:
                raise RuntimeError("the timeline figure has no cursor shape")
            page.evaluate(check, [snap, 30_000 * self.slow])
            handle.press("ArrowRight")
            self.wait("() => window.__wb.mv !== null", f"cursor move {i + 1}", 40)
            t1, t0 = page.evaluate("() => [window.__wb.mv, window.__wb.stamped]")
            if t1 < 0 or t0 is None:
                errors.append(i)
                continue
            times.append(t1 - t0)
            self._heap()
        if not times:
            raise TimeoutError(f"no cursor move showed in every linked figure within 30 s ({MOVES} tried)")
        detail = {"n": len(times), "failed": len(errors), "min_ms": min(times), "max_ms": max(times),
                  "figures": page.evaluate("() => window.__wb.linked().length"),
                  "note": f"max {_ms(max(times))}, {page.evaluate('() => window.__wb.linked().length')} figures"
                          + (f", {len(errors)} timed out" if errors else "")}
        return Measure(_median(times), detail=detail)

    # 4
    def play(self) -> Measure:
        page = self.page
        play = page.locator(SEL["play"]).first
        page.evaluate("() => { window.__wb.trackStart(); window.__wb.lagStart(); }")
        play.click()
        started = time.monotonic()
        calls = []
        while time.monotonic() - started < PLAY_SECONDS:
            t = time.perf_counter()
            page.evaluate("() => 1")
            calls.append((time.perf_counter() - t) * 1000)
            self._heap()
            time.sleep(max(0.0, 0.2 - (time.perf_counter() - t)))
        elapsed = time.monotonic() - started
        track, lags = page.evaluate("() => [window.__wb.trackStop(), window.__wb.lagStop()]")
        pause = page.locator(SEL["pause"])
        (pause.first if pause.count() else play).click()
        steps = len(track)
        advanced = (track[-1][1] - track[0][1]) if track else 0
        lag = {"median_ms": _median(lags) if lags else None, "max_ms": max(lags) if lags else None}
        self.results["play_js_ms"] = Measure(max(calls), detail={
            "median_ms": _median(calls), "n": len(calls), "timer_lag": lag,
            "note": f"median {_ms(_median(calls))}; in-page timer lag max {_ms(lag['max_ms'] or 0)}"})
        self.log(f"  {TARGETS['play_js_ms'].label}: {self.results['play_js_ms'].cell(TARGETS['play_js_ms'])}")
        return Measure(steps / elapsed, detail={"painted": steps, "advanced": advanced, "seconds": elapsed,
                                               "note": f"{steps} positions in {elapsed:.0f} s"})

    # 5
    def zoom(self) -> Measure:
        page = self.page
        if self.steps < ZOOM_STEPS + 2:
            return Measure(na=f"needs > {ZOOM_STEPS} steps")
        self.settle("zooming")  # Play's queued cursor updates
        a = (self.steps // 2) - ZOOM_STEPS // 2
        b = a + ZOOM_STEPS - 1
        js = """async ([a, b, timeoutMs]) => { const wb = window.__wb; const gd = wb.timeline();
          if (!gd) return 'no timeline figure';
          const P = window.__wbPlotly || window.Plotly; if (!P || !P.relayout) return 'no Plotly object on the page';
          const t = wb.heatmap(gd); const axis = 'xaxis' + ((t.xaxis || 'x').slice(1));
          const full = () => { const g = wb.timeline(); if (!g) return false;
            const xs = wb.heatX(g).filter(x => x >= a && x <= b).sort((p, q) => p - q);
            if (xs.length < b - a + 1) return false;
            for (let i = 1; i < xs.length; i++) if (xs[i] - xs[i - 1] > 1) return false;
            const r = g._fullLayout[axis].range; return r[0] <= a && r[1] >= b && r[1] - r[0] < 2 * (b - a + 1); };
          const t0 = performance.now();
          P.relayout(gd, {[axis + '.range']: [a - 0.5, b + 0.5]});
          const t1 = await wb.until(full, timeoutMs);
          return t1 === null ? 'the heatmap did not show every step of the window' : t1 - t0; }"""
        result = page.evaluate(js, [a, b, 30_000 * self.slow])
        if isinstance(result, str):
            raise RuntimeError(result)
        self.shot("zoom", SEL["explorer"])
        return Measure(result, detail={"window": [a, b]})

    # 7
    def cancel(self, panel: str, run: str, fields: list[tuple[str, str]]) -> Measure:
        page = self.page
        if page.locator(f"{panel} .wb-job").count() == 0:
            return Measure(na="no Cancel yet")
        self.settle("the Cancel")
        for label, value in fields:
            self._set_text(panel, label, value)
        before = page.evaluate("(p) => window.__wb.msg(p)", panel)
        page.locator(run).click()
        time.sleep(3.0)
        cancel = page.locator(within(panel, SEL["job_cancel"])).first
        js = """([panel, run, before, timeoutMs]) => { const wb = window.__wb; wb.cx = null;
          const usable = () => { const m = wb.msg(panel); const btn = Array.from(document.querySelectorAll(
              panel + ' button')).find(b => b.innerText.includes(run));
            return m !== before && /cancel/i.test(m) && btn && !btn.disabled; };
          wb.stamp('click'); wb.until(usable, timeoutMs).then(t => { wb.cx = t === null ? -1 : t; }); }"""
        run_text = page.locator(run).first.inner_text().strip()
        page.evaluate(js, [panel, run_text, before, 60_000 * self.slow])
        cancel.click()
        try:
            self.wait("() => window.__wb.cx !== null", "the panel to say cancelled with its Run button enabled", 70)
            t1, t0 = page.evaluate("() => [window.__wb.cx, window.__wb.stamped]")
            if t1 < 0:
                raise TimeoutError("not cancelled within 60 s")
        except Exception:
            self.lab.api(f"kernels/{self.lab.kernel()[0]}/interrupt", method="POST")  # free the kernel
            self.wait(KERNEL_IDLE, "the kernel to be idle after the interrupt", 120)
            raise
        self.wait(KERNEL_IDLE, "the kernel to be idle after the Cancel", 60)
        return Measure((t1 - t0) / 1000, detail={"message": _short(page.evaluate("(p) => window.__wb.msg(p)", panel))})

    # 8
    def save(self) -> Measure:
        self.settle("saving")
        path = self.lab.root / NOTEBOOK
        mtime = path.stat().st_mtime_ns
        self.page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
        end = time.monotonic() + 60 * self.slow
        while path.stat().st_mtime_ns == mtime:
            if time.monotonic() > end:
                raise TimeoutError("docmanager:save did not write the notebook within 60 s")
            time.sleep(0.2)
        time.sleep(0.5)
        size = path.stat().st_size
        return Measure(size / 1024, detail={"bytes": size})

    # 6
    def heap(self) -> Measure:
        end = self._heap(force=True)
        if not self.heap_samples:
            raise RuntimeError("CDP Performance.getMetrics gave no JSHeapUsedSize")
        peak = max(self.heap_samples)
        return Measure(peak, detail={"end_mb": end, "samples": len(self.heap_samples),
                                     "widget_errors": self.page.locator(".jupyter-widgets",
                                                                        has_text="Error displaying widget").count(),
                                     "note": f"end {_mb(end or 0)}"})


# -------------------------------------------------------------------------------------------- runner


def run_size(browser, envs: int, steps: int, *, hidden: int, layers: int, device: str, shots: Path | None,
             log: Callable[[str], None], tmp: Path) -> dict[str, Measure]:
    """One size in a fresh Lab (its own kernel, its own tab); every measure of :data:`TARGETS`."""
    root = tmp / f"{envs}x{steps}" / "root"
    prepare_notebook(root / NOTEBOOK, envs=envs, hidden=hidden, layers=layers, device=device)
    session = None
    with Lab(root.parent, root) as lab:
        try:
            session = Session(browser, lab, envs, steps, shots=shots, log=log)
            session.open()
            return session.run_all_measures()
        except Exception as e:
            results = dict(session.results) if session is not None else {}
            for key in TARGETS:
                results.setdefault(key, Measure(error=f"{type(e).__name__}: {e}"))
            log(f"  session failed: {type(e).__name__}: {_short(str(e), 300)} (log: {lab.log_path})")
            return results
        finally:
            if session is not None and session.page is not None:
                try:
                    session.page.context.close()
                except Exception:
                    pass


def run_ui_bench(sizes: list[tuple[int, int]], *, hidden: int = 128, layers: int = 1, device: str = "cpu",
                 json_path: str | None = None, md_path: str | None = None, shots: str | None = None,
                 log: Callable[[str], None] = print) -> UiReport:
    """Runs every size in turn (a fresh Lab each), prints the table and writes JSON/Markdown if asked."""
    from ..files import atomic_write, check_output_path

    chromium = require_browser()
    for path, what in ((json_path, "--json"), (md_path, "--md")):
        if path is not None:  # checked, and its folder made, before the run: not a failure after 15 minutes
            check_output_path(path, what=what).parent.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    machine = machine_info(chromium)
    labels = [f"{e}x{s}" for e, s in sizes]
    report = UiReport(machine, {"sizes": labels, "hidden": hidden, "layers": layers, "device": device,
                                "warmup_steps": WARMUP_STEPS, "moves": MOVES, "play_seconds": PLAY_SECONDS,
                                "zoom_steps": ZOOM_STEPS})
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="wb-ui-bench-"))
    failed = False
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROME_ARGS)
            try:
                for (envs, steps), label in zip(sizes, labels):
                    log(f"== {label} (envs × steps), hidden {hidden}, {layers} layer ==")
                    report.results[label] = run_size(browser, envs, steps, hidden=hidden, layers=layers, device=device,
                                                     shots=Path(shots) if shots else None, log=log, tmp=tmp)
                    failed |= any(m.error for m in report.results[label].values())
            finally:
                browser.close()
    finally:
        report.seconds = time.monotonic() - started
        if failed:
            log(f"(some measures failed; Lab logs kept in {tmp})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    text = format_report(report)
    log("")
    log(text)
    if json_path:
        atomic_write(json_path, (json.dumps(report.to_json(), indent=2) + "\n").encode(), what="--json")
        log(f"wrote {json_path}")
    if md_path:
        atomic_write(md_path, (text + "\n").encode(), what="--md")
        log(f"wrote {md_path}")
    return report


def sizes_for(args) -> list[tuple[int, int]]:
    """The sizes the options ask for: ``envs × 2000`` then ``envs × steps`` (only the first with ``--quick``).

    Examples:
        >>> import argparse
        >>> sizes_for(argparse.Namespace(quick=False, envs=None, steps=None))
        [(2, 2000), (2, 100000)]
        >>> sizes_for(argparse.Namespace(quick=True, envs=1, steps=None))
        [(1, 2000)]
    """
    envs = 2 if args.envs is None else args.envs
    steps = 100_000 if args.steps is None else args.steps
    for name, value, low in (("--envs", envs, 1), ("--steps", steps, 2 * WARMUP_STEPS)):
        if value < low:
            raise ConfigError(f"{name}: expected an integer >= {low}; got {value}")
    if args.quick:
        return [(envs, min(COMPARE_STEPS, steps))]
    return [(envs, COMPARE_STEPS), (envs, steps)] if steps > COMPARE_STEPS else [(envs, steps)]


def run_args(args) -> int:
    """``bench --ui`` with parsed options; exit code 1 when a measure failed, else 0 (targets are reported, not enforced)."""
    hidden = 128 if args.hidden is None else args.hidden
    if hidden < 1:
        raise ConfigError(f"--hidden: expected an integer >= 1; got {hidden}")
    device = getattr(args, "device", "cpu") or "cpu"
    report = run_ui_bench(sizes_for(args), hidden=hidden, device=device, json_path=args.json,
                          md_path=getattr(args, "md", None), shots=getattr(args, "screenshots", None))
    return 1 if any(m.error for ms in report.results.values() for m in ms.values()) else 0


def main(argv: list[str] | None = None) -> int:
    """``python benchmarks/ui_bench.py [--quick] [--steps N] [--envs N] [--hidden N] [--json F] [--md F]``."""
    import argparse

    from ..bench_cli import UI_ARGUMENTS
    from ..errors import WorkbenchError

    parser = argparse.ArgumentParser(prog="ui_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"only envs × {COMPARE_STEPS}")
    parser.add_argument("--json", metavar="FILE", default=None, help="also write the results as JSON to FILE")
    parser.add_argument("--device", default="cpu", help="where the app's rollouts run (default: cpu)")
    for flags, options in UI_ARGUMENTS:
        if flags[0] != "--ui":
            parser.add_argument(*flags, **options)
    args = parser.parse_args(argv)
    try:
        return run_args(args)
    except WorkbenchError as error:
        print(f"ui_bench: error: {error}", file=sys.stderr)
        return 2
