"""Linked plotly figures drawn once in the browser; a cursor move sends a few bytes.

:class:`PlotlyView` is an ``anywidget`` holding a few named plotly figures (``names``, drawn in
that order: the first full width, the others beside or below it). Each figure is drawn with
plotly.js (the copy bundled with the plotly package: offline, loaded once per page) from its
JSON, arrays as plotly.js typed-array specs (base64), and redrawn with ``Plotly.react`` only when
its JSON is replaced. The time cursor is a mark named ``"cursor"`` in each figure: a layout
image (a thin vertical line on a time axis, a ring on a 2D scatter; their size is kept in pixels
on zoom) or, in a 3D scene, a one-point trace. Setting :attr:`cursor` moves those marks with one
``Plotly.relayout`` (or ``restyle``) per figure, in the browser, with no redraw of the data.

**Play** runs in the browser: while :attr:`playing` is true the page advances the cursor one step
every ``play_settings["interval_ms"]`` up to ``play_settings["high"]``, moving every mark from data it
already has (a time axis's mark sits at the step; another figure's at the step's row of its
:meth:`set_path` positions). No message per step: the kernel hears the step in :attr:`step_seen` a
few times a second (``report_ms``) and when Play stops.

A selected step range is shown by :attr:`band` (``{name: marks}``): on a time axis, layout images
named ``"band"`` stretched over ``{"range": [x0, x1]}`` (at least a few pixels wide at any zoom);
in a scatter, the trace named ``"band"`` gets the points ``{"x", "y"[, "z"]}``. :attr:`dragmode`
(``"zoom"`` or ``"select"``) is the first figure's drag: in ``"select"`` a drag draws a box over
x only, reported in :attr:`brushed`.

From the browser: :attr:`view_range` (the first figure's x range after a zoom, pan or
double-click, debounced; ``None`` when autoranged), :attr:`clicked` (the figure and step of a
click on a point; the step is the point's ``customdata`` when it has one, else the x under the
mouse; with the trace's name, the heatmap row (``unit``) and the modifier keys ``shift``, ``alt``,
``ctrl``), :attr:`brushed` (``{"figure", "x": [x0, x1], "n"}``: a box drawn in select mode),
:attr:`step_seen` and :attr:`playing` (false again when Play reaches the end).

Examples:
    >>> import plotly.graph_objects as go
    >>> view = PlotlyView(names=["timeline"])
    >>> view.set_figure("timeline", go.Figure(go.Scatter(x=np.arange(3), y=np.array([1., 2, 3]))))
    >>> view.timeline["data"][0]["y"]["dtype"], decode(view.timeline["data"][0]["y"]).tolist()
    ('f4', [1.0, 2.0, 3.0])
    >>> view.move_cursor(2, timeline=[2]); view.cursor
    {'t': 2, 'timeline': [2.0]}
"""

from __future__ import annotations

import base64
import json
from typing import Any

import anywidget
import numpy as np
import plotly.graph_objects as go
import traitlets as t

__all__ = ["PlotlyView", "figure_json", "decode", "esm"]

_DTYPES = {"f4": np.float32, "f8": np.float64, "i1": np.int8, "i2": np.int16, "i4": np.int32, "u1": np.uint8,
           "u1c": np.uint8, "u2": np.uint16, "u4": np.uint32}


def figure_json(fig: go.Figure | dict) -> dict:
    """``fig`` as plain JSON for plotly.js: arrays as typed-array specs, float64 narrowed to float32.

    Examples:
        >>> d = figure_json(go.Figure(go.Heatmap(z=np.ones((2, 3)))))
        >>> d["data"][0]["z"]["dtype"], d["data"][0]["z"]["shape"]
        ('f4', '2, 3')
    """
    data = json.loads(fig.to_json() if hasattr(fig, "to_json") else go.Figure(fig).to_json())
    return _narrow(data)


def typed_array(values) -> dict:
    """``values`` (1D or 2D numbers) as a plotly.js typed-array spec: float32 or int32, base64.

    Examples:
        >>> spec = typed_array(np.arange(6.0).reshape(2, 3))
        >>> spec["dtype"], spec["shape"], decode(spec).tolist()
        ('f4', '2, 3', [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    """
    a = np.asarray(values)
    a = np.ascontiguousarray(a, dtype=np.int32 if a.dtype.kind in "iub" else np.float32)
    spec = {"dtype": "i4" if a.dtype == np.int32 else "f4", "bdata": base64.b64encode(a.tobytes()).decode("ascii")}
    if a.ndim == 2:
        spec["shape"] = f"{a.shape[0]}, {a.shape[1]}"
    elif a.ndim != 1:
        raise ValueError(f"values: expected a 1D or 2D array; got shape {a.shape}.")
    return spec


def _narrow(obj: Any) -> Any:
    if isinstance(obj, dict):
        if obj.get("dtype") == "f8" and isinstance(obj.get("bdata"), str):
            a = np.frombuffer(base64.b64decode(obj["bdata"]), np.float64).astype(np.float32)
            return {**obj, "dtype": "f4", "bdata": base64.b64encode(a.tobytes()).decode("ascii")}
        return {k: _narrow(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_narrow(v) for v in obj]
    return obj


def decode(obj: Any) -> Any:
    """Typed-array specs in ``obj`` (recursively) back to numpy arrays.

    Examples:
        >>> decode({"x": {"dtype": "i2", "bdata": "AQACAA=="}})["x"].tolist()
        [1, 2]
    """
    if isinstance(obj, dict):
        if isinstance(obj.get("bdata"), str) and obj.get("dtype") in _DTYPES:
            a = np.frombuffer(base64.b64decode(obj["bdata"]), _DTYPES[obj["dtype"]])
            if obj.get("shape"):
                a = a.reshape([int(s) for s in str(obj["shape"]).split(",")])
            return a
        return {k: decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    return obj


_ESM: str | None = None

_VIEW_JS = r"""
const CONFIG = {responsive: true, displaylogo: false};
const LINE_PX = 2, RING_PX = 16, BAND_PX = 4;

function axisName(ref) { return ref === 'x' || ref === 'y' ? ref + 'axis' : ref[0] + 'axis' + ref.slice(1); }

function cursorImages(gd) {
  const out = [];
  ((gd.layout && gd.layout.images) || []).forEach((im, i) => { if (im.name === 'cursor') out.push([i, im]); });
  return out;
}

function cursorTrace(gd) { return (gd.data || []).findIndex(tr => tr.name === 'cursor'); }

function bandImages(gd) {
  const out = [];
  ((gd.layout && gd.layout.images) || []).forEach((im, i) => { if (im.name === 'band') out.push([i, im]); });
  return out;
}

// the selected step range [x0, x1] as the 'band' images: centred on it, at least BAND_PX pixels wide
function bandEdits(gd, range, edit) {
  const fl = gd._fullLayout; if (!fl) return edit;
  for (const [i, im] of bandImages(gd)) {
    if (!range) { edit[`images[${i}].visible`] = false; continue; }
    const xa = fl[axisName(im.xref || 'x')];
    if (!xa || !xa._length) continue;
    const perX = Math.abs(xa.range[1] - xa.range[0]) / xa._length;
    edit[`images[${i}].visible`] = true;
    edit[`images[${i}].x`] = (range[0] + range[1]) / 2;
    edit[`images[${i}].sizex`] = Math.max(Math.abs(range[1] - range[0]), BAND_PX * perX);
  }
  return edit;
}

// the cursor images' sizes in data units, so that they stay LINE_PX / RING_PX pixels wide at any zoom
function fit(gd, band) {
  const fl = gd._fullLayout; if (!fl) return;
  const edit = fitEdits(gd, bandEdits(gd, band && band.range, {}));
  if (Object.keys(edit).length) return Plotly.relayout(gd, edit);
}

function fitEdits(gd, edit) {
  const fl = gd._fullLayout; if (!fl) return edit;
  for (const [i, im] of cursorImages(gd)) {
    const xa = fl[axisName(im.xref || 'x')];
    if (!xa || !xa._length) continue;
    const perX = Math.abs(xa.range[1] - xa.range[0]) / xa._length;
    if (im.yref === 'paper') {
      edit[`images[${i}].sizex`] = LINE_PX * perX;
    } else {
      const ya = fl[axisName(im.yref || 'y')];
      if (!ya || !ya._length) continue;
      edit[`images[${i}].sizex`] = RING_PX * perX;
      edit[`images[${i}].sizey`] = RING_PX * Math.abs(ya.range[1] - ya.range[0]) / ya._length;
    }
  }
  return edit;
}

// after a (re)draw: the cursor at `pos`, the band, every mark's size, in ONE relayout (each relayout of a
// large figure costs a redraw of its layout), then the cursor and band traces (3D) if the figure has them
async function marks(gd, pos, band) {
  if (!gd._fullLayout) return;
  const edit = {};
  if (pos) for (const [i, im] of cursorImages(gd)) {
    edit[`images[${i}].x`] = pos[0];
    if (im.yref !== 'paper' && pos.length > 1) edit[`images[${i}].y`] = pos[1];
  }
  fitEdits(gd, bandEdits(gd, band && band.range, edit));
  if (Object.keys(edit).length) await Plotly.relayout(gd, edit);
  const k = cursorTrace(gd);
  if (pos && k >= 0) {
    const upd = {x: [[pos[0]]]};
    if (pos.length > 1) upd.y = [[pos[1]]];
    if (pos.length > 2) upd.z = [[pos[2]]];
    await Plotly.restyle(gd, upd, [k]);
  }
  const b = (gd.data || []).findIndex(tr => tr.name === 'band');
  if (b >= 0) {
    const upd = {x: [(band && band.x) || []], y: [(band && band.y) || []]};
    if (gd.data[b].type === 'scatter3d') upd.z = [(band && band.z) || []];
    await Plotly.restyle(gd, upd, [b]);
  }
}

function place(gd, pos) {
  if (!pos || !gd._fullLayout) return;
  const edit = {};
  for (const [i, im] of cursorImages(gd)) {
    edit[`images[${i}].x`] = pos[0];
    if (im.yref !== 'paper' && pos.length > 1) edit[`images[${i}].y`] = pos[1];
  }
  if (Object.keys(edit).length) Plotly.relayout(gd, edit);
  const k = cursorTrace(gd);
  if (k >= 0) {
    const upd = {x: [[pos[0]]]};
    if (pos.length > 1) upd.y = [[pos[1]]];
    if (pos.length > 2) upd.z = [[pos[2]]];
    Plotly.restyle(gd, upd, [k]);
  }
}

// the selected range's marks of one figure: {range: [x0, x1]} (band images) or {x, y[, z]} (the 'band' trace)
function placeBand(gd, band) {
  if (!gd._fullLayout) return;
  const edit = bandEdits(gd, band && band.range, {});
  if (Object.keys(edit).length) Plotly.relayout(gd, edit);
  const k = (gd.data || []).findIndex(tr => tr.name === 'band');
  if (k >= 0) {
    const upd = {x: [(band && band.x) || []], y: [(band && band.y) || []]};
    if (gd.data[k].type === 'scatter3d') upd.z = [(band && band.z) || []];
    Plotly.restyle(gd, upd, [k]);
  }
}

// per-step positions of a figure's cursor mark, from the `path` / `path_data` traits: {name: {k, rows, data}}
function readPaths(model) {
  const spec = model.get('path') || {}, dv = model.get('path_data');
  const all = dv && dv.byteLength ? new Float32Array(dv.buffer.slice(dv.byteOffset, dv.byteOffset + dv.byteLength))
                                  : new Float32Array(0);
  const out = {};
  for (const [name, p] of Object.entries(spec)) out[name] = {k: p.k, rows: p.rows, data: all.subarray(p.start, p.start + p.rows * p.k)};
  return out;
}

function render({model, el}) {
  el.classList.add('wb-plotly-view');
  const views = {};
  let clicks = 0, ranges = 0, brushes = 0, timer = null;
  const bandOf = (name) => (model.get('band') || {})[name];
  // Play runs here: each tick moves every cursor mark from data already in the page; the kernel
  // hears the step a few times a second (`step_seen`) and once more when Play stops
  let paths = readPaths(model), playTimer = null, playT = null, seen = 0, lastReport = 0;
  const positions = (t) => {
    const out = {timeline: [t]};
    for (const [name, p] of Object.entries(paths)) if (t >= 0 && t < p.rows) out[name] = Array.from(p.data.subarray(t * p.k, (t + 1) * p.k));
    return out;
  };
  const tell = (t) => { lastReport = performance.now(); model.set('step_seen', {t, n: ++seen}); model.save_changes(); };
  const tick = () => {
    const s = model.get('play_settings') || {};
    const t = playT + 1;
    if (s.high === undefined || t > s.high) { halt(true); return; }
    playT = t;
    const pos = positions(t);
    for (const name of names) { const v = views[name]; if (v.drawn && pos[name]) place(v.gd, pos[name]); }
    if (performance.now() - lastReport >= (s.report_ms || 250)) tell(t);
  };
  const play = () => {
    if (playTimer !== null) return;
    const s = model.get('play_settings') || {}, c = model.get('cursor') || {};
    playT = c.t === undefined ? s.low : c.t;
    if (playT >= s.high || playT < s.low) playT = s.low - 1;  // from the start again, like ipywidgets' Play
    lastReport = performance.now();
    playTimer = setInterval(tick, Math.max(10, s.interval_ms || 80));
  };
  const halt = (ended) => {
    if (playTimer === null) return;
    clearInterval(playTimer); playTimer = null;
    if (playT !== null) tell(playT);
    if (ended) { model.set('playing', false); model.save_changes(); }
  };
  const names = model.get('names') || [];
  names.forEach((name, i) => {
    const box = document.createElement('div');
    box.className = `wb-view wb-view-${name}` + (i === 0 ? ' wb-view-first' : '');
    const gd = document.createElement('div');
    box.appendChild(gd); el.appendChild(box);
    views[name] = {gd, drawn: false, wired: false, queue: Promise.resolve()};
  });
  const report = (gd) => {
    const xa = gd._fullLayout && gd._fullLayout.xaxis; if (!xa) return;
    clearTimeout(timer);
    timer = setTimeout(() => {
      model.set('view_range', {x: xa.autorange ? null : [Number(xa.range[0]), Number(xa.range[1])], n: ++ranges});
      model.save_changes();
    }, model.get('debounce_ms'));
  };
  const wire = (name, gd) => {
    gd.on('plotly_relayout', ev => {
      const keys = Object.keys(ev || {});
      if (!keys.some(k => /^(x|y)axis\d*\.(range|autorange)|^(xaxis|yaxis)\d*$|^scene/.test(k))) return;
      fit(gd, bandOf(name));
      if (name === names[0] && keys.some(k => /^xaxis\d*\.(range|autorange)|^xaxis\d*$/.test(k))) report(gd);
    });
    gd.on('plotly_click', ev => {
      const p = ev && ev.points && ev.points[0];
      if (!p || (p.data && (p.data.name === 'cursor' || p.data.name === 'resets' || p.data.name === 'band'))) return;
      const e = ev.event || {}, xa = p.xaxis;
      let step = p.customdata !== undefined && p.customdata !== null ? Number(Array.isArray(p.customdata) ? p.customdata[0] : p.customdata) : Number(p.x);
      if ((p.customdata === undefined || p.customdata === null) && xa && xa.p2d && e.clientX !== undefined) {
        // a time axis: the step under the mouse (not the nearest point's, nor a binned column's centre)
        const box = gd.getBoundingClientRect(), x = xa.p2d(e.clientX - box.left - xa._offset);
        if (Number.isFinite(x)) step = x;
      }
      if (!Number.isFinite(step)) return;
      const heat = p.data && p.data.type === 'heatmap', row = heat ? Math.round(Number(p.y)) : null;
      model.set('clicked', {figure: name, t: Math.round(step), n: ++clicks, trace: (p.data && p.data.name) || null,
                            unit: Number.isFinite(row) ? row : null, shift: !!e.shiftKey, alt: !!e.altKey,
                            ctrl: !!(e.ctrlKey || e.metaKey)});
      model.save_changes();
    });
    // a box drawn in "select" drag mode: its x range (the subplot's own x axis) is a step range
    gd.on('plotly_selected', ev => {
      const r = ev && ev.range; if (!r) return;
      const key = Object.keys(r).find(k => /^x\d*$/.test(k)); if (!key) return;
      const lo = Number(r[key][0]), hi = Number(r[key][1]);
      if (!Number.isFinite(lo) || !Number.isFinite(hi)) return;
      model.set('brushed', {figure: name, x: [Math.min(lo, hi), Math.max(lo, hi)], n: ++brushes});
      model.save_changes();
      Plotly.relayout(gd, {selections: []});  // the kernel's range comes back as the 'band' marks
    });
  };
  const draw = async (name) => {
    const v = views[name], fig = model.get(name);
    if (!fig || !fig.data) { if (v.drawn) Plotly.purge(v.gd); v.drawn = false; v.wired = false; return; }
    const layout = Object.assign({}, fig.layout || {});
    if (name === names[0]) Object.assign(layout, {dragmode: model.get('dragmode') || 'zoom', selectdirection: 'h'});
    if (v.drawn) await Plotly.react(v.gd, fig.data, layout, CONFIG);
    else await Plotly.newPlot(v.gd, fig.data, layout, CONFIG);
    v.drawn = true;
    if (!v.wired) { wire(name, v.gd); v.wired = true; }
    await marks(v.gd, playTimer !== null ? positions(playT)[name] : (model.get('cursor') || {})[name], bandOf(name));
  };
  const redraw = (name) => { const v = views[name]; v.queue = v.queue.then(() => draw(name)).catch(e => console.error(e)); };
  const move = () => {
    const c = model.get('cursor') || {};
    if (playTimer !== null && c.t !== undefined) playT = c.t;  // a jump while playing: play on from there
    for (const name of names) { const v = views[name]; if (v.drawn) place(v.gd, c[name]); }
  };
  const handlers = names.map(name => [`change:${name}`, () => redraw(name)]);
  handlers.push(['change:cursor', move]);
  handlers.push(['change:band', () => { for (const name of names) { const v = views[name]; if (v.drawn) placeBand(v.gd, bandOf(name)); } }]);
  handlers.push(['change:dragmode', () => { const v = views[names[0]];
    if (v && v.drawn) Plotly.relayout(v.gd, {dragmode: model.get('dragmode') || 'zoom', selectdirection: 'h'}); }]);
  handlers.push(['change:path', () => { paths = readPaths(model); }], ['change:path_data', () => { paths = readPaths(model); }]);
  handlers.push(['change:playing', () => (model.get('playing') ? play() : halt(false))]);
  for (const [ev, fn] of handlers) model.on(ev, fn);
  names.forEach(redraw);
  const resize = new ResizeObserver(() => { for (const name of names) { const v = views[name]; if (v.drawn) fit(v.gd, bandOf(name)); } });
  resize.observe(el);
  if (model.get('playing')) play();
  return () => {
    resize.disconnect(); clearTimeout(timer); if (playTimer !== null) clearInterval(playTimer);
    for (const [ev, fn] of handlers) model.off(ev, fn);
    for (const name of names) Plotly.purge(views[name].gd);
  };
}

export default { render };
"""

_CSS = """
.wb-plotly-view { display: flex; flex-wrap: wrap; gap: 4px; width: 100%; }
.wb-plotly-view .wb-view { flex: 0 1 460px; min-width: 0; }
.wb-plotly-view .wb-view-first { flex: 1 1 100%; }
"""


def esm() -> str:
    """The widget's ES module: plotly.js (the plotly package's bundled copy, evaluated once per page and
    kept on ``globalThis.__wbPlotly``) and the view. Built once per process."""
    global _ESM
    if _ESM is None:
        from plotly.offline import get_plotlyjs

        source = get_plotlyjs()
        _ESM = ("const Plotly = globalThis.__wbPlotly || (() => {\n"
                "  const before = globalThis.Plotly;\n"
                "  const module = {exports: {}}; const exports = module.exports;\n"
                "  (function (module, exports, define) {\n" + source + "\n"
                "  }).call(globalThis, module, exports, undefined);\n"
                "  if (before !== undefined) globalThis.Plotly = before;  // another widget's copy stays\n"
                "  globalThis.__wbPlotly = module.exports;\n"
                "  return module.exports;\n"
                "})();\n" + _VIEW_JS)
    return _ESM


class PlotlyView(anywidget.AnyWidget):
    """Named plotly figures, drawn in the browser once per data change; see the module doc.

    Traits: one per name in ``names`` (the figure's JSON, from :meth:`set_figure`), ``cursor``
    (``{"t": step, name: position, ...}``: the position of each figure's cursor mark), and from the
    browser ``view_range`` (``{"x": [x0, x1] or None, "n": count}``), ``clicked``
    (``{"figure": name, "t": step, "n": count, "trace", "unit", "shift", "alt", "ctrl"}``) and
    ``brushed`` (``{"figure": name, "x": [x0, x1], "n": count}``); ``band`` and ``dragmode`` (see the
    module doc).
    """

    _esm = t.Unicode().tag(sync=True)
    _css = t.Unicode(_CSS).tag(sync=True)
    names = t.List(t.Unicode(), default_value=["timeline", "pca"]).tag(sync=True)
    timeline = t.Dict().tag(sync=True)
    pca = t.Dict().tag(sync=True)
    cursor = t.Dict().tag(sync=True)
    view_range = t.Dict().tag(sync=True)
    clicked = t.Dict().tag(sync=True)
    brushed = t.Dict().tag(sync=True)
    band = t.Dict().tag(sync=True)
    dragmode = t.Unicode("zoom").tag(sync=True)
    debounce_ms = t.Int(100).tag(sync=True)
    playing = t.Bool(False).tag(sync=True)
    play_settings = t.Dict({"interval_ms": 80, "low": 0, "high": 0, "report_ms": 250}).tag(sync=True)
    step_seen = t.Dict().tag(sync=True)
    path = t.Dict().tag(sync=True)
    path_data = t.Bytes(b"").tag(sync=True)

    @t.default("_esm")
    def _default_esm(self) -> str:
        return esm()

    @t.validate("names")
    def _check_names(self, proposal):
        bad = [n for n in proposal["value"] if n not in ("timeline", "pca")]
        if bad:
            raise ValueError(f"names: expected figures among ('timeline', 'pca'); got {bad!r}.")
        return proposal["value"]

    @t.validate("dragmode")
    def _check_dragmode(self, proposal):
        if proposal["value"] not in ("zoom", "select", "pan"):
            raise ValueError(f"dragmode: expected 'zoom', 'select' or 'pan'; got {proposal['value']!r}.")
        return proposal["value"]

    def set_figure(self, name: str, fig: go.Figure | dict | None, *, packed: bool = False) -> None:
        """Replaces figure ``name`` (redrawn in the browser with ``Plotly.react``); ``None`` clears it.
        ``packed=True``: ``fig`` is JSON already, arrays as :func:`typed_array` specs (sent as is)."""
        if name not in self.names:
            raise ValueError(f"name: expected one of {list(self.names)}; got {name!r}.")
        setattr(self, name, {} if fig is None else fig if packed else figure_json(fig))

    def figure(self, name: str) -> go.Figure:
        """Figure ``name`` as it is drawn, arrays decoded (for tests and export)."""
        return go.Figure(decode(getattr(self, name)), skip_invalid=True)

    def set_path(self, name: str, positions) -> None:
        """The cursor mark's position in figure ``name`` at every step (``[steps, k]``), for Play in the browser.

        Examples:
            >>> view = PlotlyView(names=["timeline", "pca"])
            >>> view.set_path("pca", np.arange(6.0).reshape(3, 2)); view.path, len(view.path_data)
            ({'pca': {'k': 2, 'rows': 3, 'start': 0}}, 24)
        """
        if name not in self.names:
            raise ValueError(f"name: expected one of {list(self.names)}; got {name!r}.")
        rows = np.ascontiguousarray(np.asarray(positions, dtype=np.float32))
        if rows.ndim != 2:
            raise ValueError(f"positions: expected a [steps, k] array; got shape {tuple(rows.shape)}.")
        with self.hold_sync():
            self.path_data = rows.tobytes()
            self.path = {name: {"k": int(rows.shape[1]), "rows": int(rows.shape[0]), "start": 0}}

    def set_band(self, **marks: dict | None) -> None:
        """Shows a selected range: ``marks[name]`` is ``{"range": [x0, x1]}`` (a time axis's ``"band"`` images)
        or ``{"x": [...], "y": [...][, "z": [...]]}`` (the points of its ``"band"`` trace); ``None`` hides it.

        Examples:
            >>> view = PlotlyView(names=["timeline", "pca"])
            >>> view.set_band(timeline={"range": [4.5, 15.5]}, pca={"x": [0.5], "y": [1]}); view.band["pca"]
            {'x': [0.5], 'y': [1.0]}
        """
        bad = [k for k in marks if k not in self.names]
        if bad:
            raise ValueError(f"marks: expected figures among {list(self.names)}; got {bad!r}.")
        self.band = {k: {a: [float(x) for x in v] for a, v in m.items()} for k, m in marks.items() if m is not None}

    def move_cursor(self, step: int, **positions: list[float]) -> None:
        """Moves the cursor marks: ``positions[name]`` is the mark's position in figure ``name``."""
        self.cursor = {"t": int(step), **{k: [float(v) for v in p] for k, p in positions.items()}}
