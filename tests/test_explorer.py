"""The explorer stays interactive: what each interaction sends to the browser, measured headless.

Every message a FigureWidget sends goes through one of its ``_send_*_msg`` methods; the tests wrap
them and check that a cursor move sends only the cursor marks (a few hundred bytes), that a zoom
re-bins at full resolution, and that a view connecting later gets the current figure.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from widgets.explorer_panel import ExplorerPanel
from workbench.episodes import episode_and_step
from workbench.keys import KEYS

STEPS, UNITS = 6_000, 16


def _nbytes(obj) -> int:
    """Bytes of a message as it goes out: JSON, with binary buffers (numpy arrays) at their size."""
    def default(o):
        if isinstance(o, (np.ndarray, memoryview)):
            return "#" * o.nbytes
        return str(o)
    return len(json.dumps(obj, default=default))


class Wire:
    """Records what a widget really sends on its comm: each message's state keys and bytes (JSON + buffers)."""

    def __init__(self, *widgets):
        self.sent: list[tuple[set, int]] = []
        for widget in widgets:
            original = widget._send

            def send(msg, buffers=None, _original=original):
                state = msg.get("state", {})
                live = {k for k, v in state.items() if v is not None}
                self.sent.append((live, len(json.dumps(msg, default=str)) + sum(len(memoryview(b).cast("B"))
                                                                              for b in buffers or [])))
                return _original(msg, buffers)
            widget._send = send

    def keys(self) -> set:
        return set().union(*[k for k, _ in self.sent]) if self.sent else set()


class Recorder:
    """Records every message a FigureWidget sends (method name, arguments, size in bytes)."""

    METHODS = ("_send_relayout_msg", "_send_restyle_msg", "_send_update_msg", "_send_addTraces_msg",
               "_send_deleteTraces_msg", "_send_moveTraces_msg", "_send_animate_msg")

    def __init__(self, *figs):
        self.sent: list[tuple[str, dict]] = []
        for fig in figs:
            for name in self.METHODS:
                original = getattr(fig, name)

                def wrapped(*args, _name=name, _original=original, **kwargs):
                    self.sent.append((_name, dict(args=args, kwargs=kwargs)))
                    return _original(*args, **kwargs)
                setattr(fig, name, wrapped)

    def keys(self) -> set[str]:
        """Every property path sent (relayout/restyle keys), e.g. ``"shapes.0.x0"``."""
        out = set()
        for _, msg in self.sent:
            for part in list(msg["args"]) + list(msg["kwargs"].values()):
                if isinstance(part, dict):
                    out |= set(part)
        return out

    def nbytes(self) -> int:
        return sum(_nbytes(msg) for _, msg in self.sent)


def trajectory(e: int = 2, t: int = STEPS, h: int = UNITS, gates: bool = True) -> TensorDict:
    g = torch.Generator().manual_seed(0)
    hidden = torch.tanh(torch.randn(e, t, 1, h, generator=g).cumsum(1) * 0.05)
    is_init = torch.zeros(e, t, dtype=torch.bool)
    is_init[:, ::97] = True
    episode, step = episode_and_step(is_init)
    data = {KEYS.next_hidden: hidden, KEYS.is_init: is_init.unsqueeze(-1), KEYS.episode: episode, KEYS.step: step}
    if gates:
        data[KEYS.gates] = torch.rand(e, t, 1, 3, h, generator=g)
    return TensorDict(data, [e, t])


@pytest.fixture(scope="module")
def big() -> TensorDict:
    return trajectory()


@pytest.fixture
def panel(big) -> ExplorerPanel:
    p = ExplorerPanel(columns=500)
    p.set_trajectory(big)
    assert p.last_error is None, p.message
    return p


def test_first_paint_is_binned_to_the_columns(panel, big):
    """6,000 steps drawn in ≤ 500 columns; a spike anywhere survives in the heatmap and in the norm."""
    heat = panel.timeline.data[0]
    assert heat.z["shape"] == f"{UNITS},{len(heat.x)}" and len(heat.x) <= 500
    hidden = big[KEYS.next_hidden][0, :, 0]
    z = np.frombuffer(__import__("base64").b64decode(heat.z["bdata"]), np.float32).reshape(UNITS, -1)
    assert np.abs(z).max() == pytest.approx(hidden.abs().max().item())
    norm = panel.timeline.data[2]
    assert len(norm.x) <= 1000 and max(norm.y) == pytest.approx(hidden.norm(dim=-1).max().item())
    assert [d.name for d in panel.timeline.data][::2] == ["hidden", "norm", "gate r", "gate z", "gate n"]


@pytest.mark.parametrize("dims", [2, 3])
def test_a_cursor_move_sends_only_the_cursor_marks(panel, dims):
    panel.pca_dims.value = dims
    rec = Recorder(panel.timeline, panel.pca_view)
    panel.cursor.value = 1234
    assert panel.last_error is None, panel.message
    names = [name for name, _ in rec.sent]
    assert names == ["_send_update_msg", "_send_update_msg"], names  # one batch per figure
    keys = rec.keys()
    if dims == 2:
        assert keys == {"shapes.0.x0", "shapes.0.x1", "shapes.0.xanchor", "shapes.0.yanchor"}, keys
    else:
        assert keys == {"shapes.0.x0", "shapes.0.x1", "x", "y", "z"}, keys
    assert rec.nbytes() < 2_000, rec.nbytes()
    wire = Wire(panel.timeline, panel.pca_view)
    panel.cursor.value = 1300
    assert wire.keys() <= {"_py2js_update", "_last_layout_edit_id", "_last_trace_edit_id"}, wire.keys()
    assert sum(n for _, n in wire.sent) < 2_000, wire.sent
    shape = panel.timeline.layout.shapes[0]
    assert (shape.name, shape.x0, shape.x1) == ("cursor", 1300, 1300)
    assert "step 1300" in panel.cursor_info.value


def test_static_figures_are_built_on_read_not_on_every_move(panel, monkeypatch):
    built = []
    original = panel._static_figure
    monkeypatch.setattr(panel, "_static_figure", lambda name: built.append(name) or original(name))
    panel.figures._build = panel._static_figure
    for t in range(10, 30):
        panel.cursor.value = t
    assert built == []
    assert [s.x0 for s in panel.figures["hidden_heatmap"].layout.shapes if s.name == "cursor"] == [29]
    assert built == ["hidden_heatmap"]
    panel.figures["hidden_heatmap"]
    assert built == ["hidden_heatmap"]  # current: not rebuilt


def test_zoom_rebins_the_window_at_full_resolution(panel, big):
    """A 300-step zoom shows every step, bit-equal; the messages carry arrays, not the whole figure."""
    rec = Recorder(panel.timeline)
    panel.timeline.layout.xaxis.range = [1999.5, 2299.5]  # what a drag-zoom in the browser sets
    assert panel.last_error is None, panel.message
    heat = panel.timeline.data[0]
    assert list(heat.x) == list(range(2000, 2300))
    z = np.frombuffer(__import__("base64").b64decode(heat.z["bdata"]), np.float32).reshape(UNITS, 300)
    assert z.tobytes() == big[KEYS.next_hidden][0, 2000:2300, 0].T.contiguous().numpy().tobytes()
    assert list(panel.timeline.data[2].x) == list(range(2000, 2300))
    assert "every step" in panel.timeline.layout.title.text
    assert {"x", "z", "y"} >= {k.split("[")[0] for k in rec.keys() if not k.startswith(("title", "xaxis"))}
    assert panel.figures["hidden_heatmap"].data[0].z.shape == (UNITS, 300)
    before = len(rec.sent)
    panel.timeline.layout.xaxis.range = [2000.5, 2298.5]  # inside what is drawn at full resolution: nothing
    assert len(rec.sent) == before + 1  # the range change itself only
    panel.timeline.layout.xaxis.autorange = True  # double-click: back to every step, binned
    assert len(panel.timeline.data[0].x) <= 500 and panel.timeline.data[0].x[-1] > STEPS - 20


def test_clicks_move_the_cursor(panel):
    from plotly.callbacks import Points
    heat = panel.timeline.data[0]
    heat._dispatch_on_click(Points(point_inds=[3], xs=[4321.4], ys=[2], trace_name="hidden", trace_index=0), None)
    assert panel.cursor.value == 4321
    pts = panel.pca_view.data[0]
    pts._dispatch_on_click(Points(point_inds=[17], xs=[0], ys=[0], trace_name="points", trace_index=0), None)
    assert panel.cursor.value == 17


def test_a_late_view_gets_the_current_figure(panel):
    """A view that connects after updates (reload, Voila) receives the figure as it is now."""
    panel.cursor.value = 77
    state = panel.timeline.get_state()
    cursor = [s for s in state["_widget_layout"]["shapes"] if s.get("name") == "cursor"]
    assert [c["x0"] for c in cursor] == [77]


def test_a_new_rollout_reuses_the_figure_widgets(panel, big):
    """The figures are replaced in place: the messages really go out (none merged away), no new widget."""
    timeline, pca_view = panel.timeline, panel.pca_view
    small = trajectory(e=1, t=50, h=3, gates=False)
    panel.columns = 20
    wire = Wire(timeline)
    panel.set_trajectory(small)
    assert {"_py2js_deleteTraces", "_py2js_addTraces", "_py2js_relayout"} <= wire.keys(), wire.keys()
    assert panel.timeline is timeline and panel.pca_view is pca_view
    assert [d.name for d in timeline.data] == ["hidden", "resets", "norm", "resets"]
    assert timeline.data[0].z["shape"] == "3,17" and "gates" not in panel.figures
    timeline.layout.xaxis.range = [9.5, 19.5]  # zoom still re-bins on the replaced layout
    assert list(timeline.data[0].x) == list(range(10, 20))
