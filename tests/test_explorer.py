"""The explorer stays interactive: what each interaction sends to the browser, measured headless.

Every state update the explorer's :class:`~widgets.plotly_view.PlotlyView` sends goes through its
comm (``_send``); the tests wrap it and check that a cursor move sends only ``cursor`` (a few
hundred bytes), that a zoom sends the timeline only, re-binned at full resolution, and that a view
connecting later gets the current figures and cursor.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from widgets.explorer_panel import ExplorerPanel
from widgets.plotly_view import decode
from workbench.episodes import episode_and_step
from workbench.keys import KEYS

STEPS, UNITS = 6_000, 16


class Wire:
    """Records what a widget really sends on its comm: each message's state keys and bytes (JSON + buffers).

    ipywidgets' ``echo_update`` messages (a value the browser set, confirmed back to it) are left out."""

    def __init__(self, *widgets):
        self.sent: list[tuple[set, int]] = []
        for widget in widgets:
            original = widget._send

            def send(msg, buffers=None, _original=original):
                if msg.get("method") == "echo_update":
                    return _original(msg, buffers)
                state = msg.get("state", {})
                live = {k for k, v in state.items() if v is not None}
                self.sent.append((live, len(json.dumps(msg, default=str)) + sum(len(memoryview(b).cast("B"))
                                                                              for b in buffers or [])))
                return _original(msg, buffers)
            widget._send = send

    def keys(self) -> set:
        return set().union(*[k for k, _ in self.sent]) if self.sent else set()


def from_browser(view, **state) -> None:
    """Applies ``state`` as a message from the browser does (``set_state``: no echo back)."""
    view.set_state(state)


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
    sent = panel.view.timeline["data"][0]
    assert sent["z"]["dtype"] == "f4" and sent["z"]["shape"].replace(" ", "") == f"{UNITS},{len(decode(sent['x']))}"
    heat = panel.timeline.data[0]
    assert heat.z.shape == (UNITS, len(heat.x)) and len(heat.x) <= 500
    hidden = big[KEYS.next_hidden][0, :, 0]
    assert np.abs(heat.z).max() == pytest.approx(hidden.abs().max().item())
    norm = panel.timeline.data[2]
    assert len(norm.x) <= 1000 and max(norm.y) == pytest.approx(hidden.norm(dim=-1).max().item())
    assert [d.name for d in panel.timeline.data][::2] == ["hidden", "norm", "gate r", "gate z", "gate n"]
    assert len(json.dumps(panel.view.timeline)) < 600_000  # screen resolution, not 6,000 × 16 × 4 values


@pytest.mark.parametrize("dims", [2, 3])
def test_a_cursor_move_sends_only_the_cursor(panel, dims):
    panel.pca_dims.value = dims
    wire = Wire(panel.view)
    panel.cursor.value = 1234
    assert panel.last_error is None, panel.message
    assert [keys for keys, _ in wire.sent] == [{"cursor"}], wire.sent
    assert sum(n for _, n in wire.sent) < 1_000, wire.sent
    point = panel.pca_view.data[0]
    i = list(point.customdata).index(1234)
    want = [point.x[i], point.y[i]] + ([point.z[i]] if dims == 3 else [])
    assert panel.view.cursor["t"] == 1234 and panel.view.cursor["timeline"] == [1234]
    assert panel.view.cursor["pca"] == pytest.approx(want)
    assert "step 1234" in panel.cursor_info.value
    # the marks the browser moves are there, named "cursor": an image (2D) or a one-point trace (3D)
    assert [im.name for im in panel.timeline.layout.images if im.name != "band"] == ["cursor"]  # band: the range
    if dims == 2:
        assert [im.name for im in panel.pca_view.layout.images] == ["cursor"]
    else:
        assert [d.name for d in panel.pca_view.data if d.name == "cursor"] == ["cursor"]


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
    """A 500-step zoom (what the browser reports) shows every step, bit-equal; only the timeline is sent."""
    wire = Wire(panel.view)
    from_browser(panel.view, view_range={"x": [1999.5, 2499.5], "n": 1})  # what a drag-zoom in the browser sets
    assert panel.last_error is None, panel.message
    assert [keys for keys, _ in wire.sent] == [{"timeline"}], wire.sent
    heat = panel.timeline.data[0]
    assert list(heat.x) == list(range(2000, 2500))
    assert heat.z.tobytes() == big[KEYS.next_hidden][0, 2000:2500, 0].T.contiguous().numpy().tobytes()
    assert list(panel.timeline.data[2].x) == list(range(2000, 2500))
    assert "every step" in panel.timeline.layout.title.text
    assert list(panel.timeline.layout.xaxis.range) == [1999.5, 2499.5]  # the user's view stays
    assert panel.figures["hidden_heatmap"].data[0].z.shape == (UNITS, 500)
    before = len(wire.sent)
    from_browser(panel.view, view_range={"x": [2000.5, 2298.5], "n": 2})  # inside what is drawn at full resolution: nothing
    assert len(wire.sent) == before
    from_browser(panel.view, view_range={"x": None, "n": 3})  # double-click: back to every step, binned
    assert len(panel.timeline.data[0].x) <= 500 and panel.timeline.data[0].x[-1] > STEPS - 20


def test_clicks_move_the_cursor(panel):
    """A click in the browser sets ``clicked`` (figure, step, a count so the same step fires again)."""
    from_browser(panel.view, clicked={"figure": "timeline", "t": 4321, "n": 1})
    assert panel.cursor.value == 4321
    from_browser(panel.view, clicked={"figure": "pca", "t": 17, "n": 2})
    assert panel.cursor.value == 17
    panel.cursor.value = 30
    from_browser(panel.view, clicked={"figure": "pca", "t": 17, "n": 3})
    assert panel.cursor.value == 17
    from_browser(panel.view, clicked={"figure": "pca", "t": 10 ** 9, "n": 4})  # clamped into the steps
    assert panel.cursor.value == STEPS - 1 and panel.last_error is None


def test_a_late_view_gets_the_current_figures_and_cursor(panel):
    """A view that connects after updates (reload, Voila) reads the model's state: it is the current one."""
    panel.cursor.value = 77
    panel.zoom(100, 199)
    state = panel.view.get_state()
    assert state["cursor"]["t"] == 77 and state["cursor"]["timeline"] == [77]
    assert state["timeline"] == panel.view.timeline and state["pca"] == panel.view.pca
    assert list(decode(state["timeline"]["data"][0]["x"])) == list(range(100, 200))
    assert state["names"] == ["timeline", "pca"] and "__wbPlotly" in state["_esm"]


def test_a_new_rollout_reuses_the_view(panel, big):
    """A new trajectory is sent to the same view: new figures (no gates), cursor back in range, zoom works."""
    view = panel.view
    small = trajectory(e=1, t=50, h=3, gates=False)
    panel.columns = 20
    wire = Wire(view)
    panel.set_trajectory(small)
    assert {"timeline", "pca", "cursor"} <= wire.keys(), wire.keys()
    assert panel.view is view
    assert [d.name for d in panel.timeline.data] == ["hidden", "resets", "norm", "resets"]
    assert panel.timeline.data[0].z.shape == (3, 17) and "gates" not in panel.figures
    from_browser(view, view_range={"x": [9.5, 19.5], "n": 9})  # zoom still re-bins
    assert list(panel.timeline.data[0].x) == list(range(10, 20))


def test_the_view_esm_is_built_once_and_bundles_plotly_offline():
    from plotly.offline import get_plotlyjs

    from widgets.plotly_view import PlotlyView, esm
    assert esm() is esm() and get_plotlyjs()[:200] in esm() and "cdn" not in esm()[:300].lower()
    a, b = PlotlyView(), PlotlyView()
    assert a._esm is b._esm
    with pytest.raises(ValueError, match="name: expected one of"):
        a.set_figure("heatmap", {})


@pytest.mark.parametrize("gates", [False, True])
def test_a_zoom_swaps_the_data_of_the_figure_built_whole(gates):
    """The zoom's fast path (timeline.rewindow on the last timeline sent) draws what building the figure
    again for that window draws: the same traces, hover texts, title and ranges."""
    from workbench.figures import timeline as tl
    from widgets.plotly_view import decode, figure_json, typed_array

    g = torch.Generator().manual_seed(3)
    h = torch.tanh(torch.randn(4000, 6, generator=g))
    gate = torch.rand(4000, 3, 6, generator=g) if gates else None
    whole = figure_json(tl.timeline_figure(tl.window(h, resets=[5, 700, 2500], gates=gate, columns=300)))
    for start, stop in [(100, 600), (0, 4000), (1000, 1290), (3990, 4000)]:
        win = tl.window(h, resets=[5, 700, 2500], gates=gate, start=start, stop=stop, columns=300,
                        zmax=1.0, norm_range=(0.0, 3.0))
        fast = decode(tl.rewindow(whole, win, pack=typed_array))
        slow = decode(figure_json(tl.timeline_figure(win)))
        assert len(fast["data"]) == len(slow["data"])
        for a, b in zip(fast["data"], slow["data"]):
            for key in ("x", "y", "z"):
                if key in b and not (key == "y" and a.get("type") == "heatmap"):
                    np.testing.assert_array_equal(np.asarray(a[key], dtype=float), np.asarray(b[key], dtype=float))
            assert a.get("hovertemplate") == b.get("hovertemplate")
        assert fast["layout"]["title"]["text"] == slow["layout"]["title"]["text"]
        for key, axis in slow["layout"].items():
            if key.startswith(("xaxis", "yaxis")) and "range" in axis:
                assert list(fast["layout"][key]["range"]) == pytest.approx(list(axis["range"])), key


@pytest.mark.parametrize("dims", [2, 3])
def test_play_runs_in_the_page_from_every_steps_pca_point(panel, dims):
    """Play needs no message per step: the page has every step's PCA point, and the kernel only follows."""
    panel.pca_dims.value = dims
    rows = np.frombuffer(panel.view.path_data, dtype=np.float32).reshape(-1, dims)
    assert panel.view.path == {"pca": {"k": dims, "rows": STEPS, "start": 0}} and rows.shape == (STEPS, dims)
    for t in (0, 1234, STEPS - 1):  # the point the page plays to is the one a slider move sends
        panel.cursor.value = t
        assert rows[t] == pytest.approx(panel.view.cursor["pca"])
    assert panel.view.play_settings["low"] == 0 and panel.view.play_settings["high"] == STEPS - 1
    wire = Wire(panel.view)
    from_browser(panel.view, playing=True)
    from_browser(panel.view, step_seen={"t": 40, "n": 1})  # the page played to step 40
    assert panel.cursor.value == 40 and "step 40" in panel.cursor_info.value
    assert wire.sent == []  # the marks are already there: nothing goes back to the page
    panel.cursor.value = 41  # a move while playing is a jump: the page plays on from there
    assert [keys for keys, _ in wire.sent] == [{"cursor"}]
    sent = len(wire.sent)
    panel.pca_dims.value = 2 if dims == 3 else 3  # new dims: the path follows
    assert panel.view.path["pca"]["k"] == (2 if dims == 3 else 3)
    assert any("path" in keys for keys, _ in wire.sent[sent:])  # path_data travels as a binary buffer


def test_play_is_bounded_by_the_episode_shown(panel):
    first = panel.episode.options[2][1]
    panel.episode.value = first
    a, b = panel._spans[first]
    assert (panel.view.play_settings["low"], panel.view.play_settings["high"]) == (a, b)
    assert panel.play.description == "Play"
    panel.play.value = True  # (the page links it to the view's `playing`)
    assert panel.play.description == "Pause" and panel.play.icon == "pause"
    from_browser(panel.view, playing=False)


# ---------------------------------------------------------------------------- LSTMVis-style interaction
def hidden_of(big, env=0):
    return big[KEYS.next_hidden][env, :, 0]


@pytest.mark.parametrize("trace", ["hidden", "norm", "gate r", "gate n"])
def test_a_click_on_any_timeline_row_moves_only_the_cursor(panel, trace):
    """What the page sends for a click on each row (the step under the mouse): the cursor moves, nothing else."""
    wire = Wire(panel.view)
    unit = 3 if trace != "norm" else None
    from_browser(panel.view, clicked={"figure": "timeline", "t": 2222, "n": 1, "trace": trace, "unit": unit,
                                      "shift": False, "alt": False, "ctrl": False})
    assert panel.last_error is None, panel.message
    assert panel.cursor.value == 2222 and "step 2222" in panel.cursor_info.value
    assert [keys for keys, _ in wire.sent] == [{"cursor"}] and panel.selected_units == []


def test_a_brush_sets_the_range_exactly_and_selects_its_units(panel, big):
    panel.drag.value = "select"
    assert panel.view.dragmode == "select"
    from_browser(panel.view, brushed={"figure": "timeline", "x": [3010.2, 3000.6], "n": 1})  # either direction
    assert panel.last_error is None, panel.message
    assert panel.time_range.value == (3001, 3010) and (panel.range_first.value, panel.range_last.value) == (3001, 3010)
    from workbench.hidden import select_units
    want = select_units(hidden_of(big), 3001, 3010, panel.threshold.value, absolute=True)
    assert panel.selected_units == want and 0 < len(want) < UNITS
    assert "at every step 3001–3010" in panel.units_info.value
    assert panel.view.band["timeline"] == {"range": [3000.5, 3010.5]}
    coords = panel._pca_fit()[0][3001:3011, :2]
    np.testing.assert_allclose(np.array([panel.view.band["pca"]["x"], panel.view.band["pca"]["y"]]).T, coords, rtol=1e-6)
    from_browser(panel.view, brushed={"figure": "timeline", "x": [7.2, 7.4], "n": 2})  # inside one step
    assert panel.time_range.value == (7, 7)
    from_browser(panel.view, brushed={"figure": "timeline", "x": [-50.0, 1e9], "n": 3})  # clamped
    assert panel.time_range.value == (0, STEPS - 1)


def test_a_range_typed_or_slid_sends_only_the_band(panel):
    wire = Wire(panel.view)
    panel.range_last.value = 4012
    panel.range_first.value = 4003
    assert panel.time_range.value == (4003, 4012)
    panel.range_first.value = 5000  # past the last: the range is the two numbers, in order
    assert panel.time_range.value == (4012, 5000) and (panel.range_first.value, panel.range_last.value) == (4012, 5000)
    assert {k for keys, _ in wire.sent for k in keys} == {"band"} and sum(n for _, n in wire.sent) < 200_000
    assert panel.view.band["timeline"] == {"range": [4011.5, 5000.5]}
    assert panel.range_last.max == STEPS - 1
    panel.range_last.value = 10 ** 9  # bounded
    assert panel.time_range.value == (4012, STEPS - 1)
    # the timeline itself carries the band image, so a redrawn figure shows the range
    assert [im.name for im in panel.timeline.layout.images].count("band") == 1


@pytest.mark.parametrize("how", ["shift", "alt", "select mode"])
def test_a_click_on_a_heatmap_row_selects_and_drops_that_unit(panel, big, how):
    if how == "select mode":
        panel.drag.value = "select"
    panel.cursor.value = 100
    click = {"figure": "timeline", "t": 3000, "trace": "hidden", "unit": 3, "shift": how == "shift",
             "alt": how == "alt", "ctrl": False}
    from_browser(panel.view, clicked=dict(click, n=1))
    assert panel.last_error is None, panel.message
    assert panel.selected_units == [3] and panel.cursor.value == 100  # a pick does not move the cursor
    outlines = [s for s in panel.timeline.layout.shapes if s.name == "selection"]
    assert [(s.y0, s.y1) for s in outlines] == [(2.5, 3.5)]
    assert "units_aligned" in panel.figures and [d.name for d in panel.figures["units_aligned"].data] == [
        "unit 3 (episodes)", "unit 3 (mean)"]
    from_browser(panel.view, clicked=dict(click, unit=11, n=2))
    assert panel.selected_units == [3, 11] and "3, 11" in panel.units_info.value
    from_browser(panel.view, clicked=dict(click, n=3))
    assert panel.selected_units == [11]
    from_browser(panel.view, clicked=dict(click, unit=11, n=4))
    assert panel.selected_units == [] and "units_aligned" not in panel.figures
    assert "No unit (picked by hand) of env 0" in panel.units_info.value and "none" not in panel.units_info.value
    assert [s for s in panel.timeline.layout.shapes if s.name == "selection"] == []
    # a modified click on a gate row is still a cursor move
    from_browser(panel.view, clicked=dict(click, trace="gate z", n=5))
    assert panel.cursor.value == 3000 and panel.selected_units == []


def test_toggle_unit_checks_its_argument(panel):
    panel.toggle_unit(UNITS)
    assert isinstance(panel.last_error, ValueError) and "unit: expected a unit of layer 0, 0..15; got 16" in panel.message


@pytest.mark.parametrize("dims", [2, 3])
def test_the_pca_follows_the_episode_its_cursor_and_the_brush(panel, dims):
    panel.pca_dims.value = dims
    panel.cursor.value = 5000
    episode = panel.episode.options[3][1]
    a, b = panel._spans[episode]
    panel.episode.value = episode
    assert panel.cursor.value == a  # the episode's FIRST step
    points = panel.pca_view.data[0]
    assert list(points.customdata) == list(range(a, b + 1))
    coords = panel._pca_fit()[0]
    assert panel.view.cursor["pca"] == pytest.approx(coords[a, :dims].tolist())
    assert panel.view.cursor["timeline"] == [a] and f"step {a}" in panel.cursor_info.value
    assert points.x[0] == pytest.approx(coords[a, 0])
    from_browser(panel.view, brushed={"figure": "timeline", "x": [a - 20.0, a + 4.2], "n": 1})
    assert panel.time_range.value == (max(0, a - 20), a + 4)
    band = panel.view.band["pca"]  # only the brushed steps inside the episode shown are ringed
    assert len(band["x"]) == 5 and sorted(band) == sorted("xyz"[:dims])
    assert band["x"] == pytest.approx(coords[a:a + 5, 0].tolist())
    assert [d.name for d in panel.pca_view.data].count("band") == 1
    panel.episode.value = -1  # all episodes: every point again, the cursor stays
    assert len(panel.pca_view.data[0].customdata) == STEPS and panel.cursor.value == a


def test_the_3d_pca_has_short_legible_axis_titles(panel):
    panel.pca_dims.value = 3
    scene = panel.pca_view.layout.scene
    import re
    for axis in (scene.xaxis, scene.yaxis, scene.zaxis):
        assert re.fullmatch(r"PC\d \(\d+%\)", axis.title.text), axis.title.text
        assert axis.tickfont.size <= 10 and axis.title.font.size <= 11


def test_the_aligned_units_figure_shows_every_selected_unit(big):
    from workbench import figures
    from workbench.hidden import align_on_resets
    units = [0, 2, 3, 5, 7, 9, 12, 15]
    fig = figures.aligned_units_figure(big, units, layer=0)
    names = [d.name for d in fig.data if d.name]
    assert names == [f"unit {u} ({k})" for u in units for k in ("episodes", "mean")]
    aligned = align_on_resets(big[KEYS.next_hidden][..., 0, :], big[KEYS.is_init])
    mean = aligned.mean().double().numpy()
    for i, u in enumerate(units):
        np.testing.assert_allclose(fig.data[2 * i + 1].y, mean[:, u])
    assert len({(d.xaxis, d.yaxis) for d in fig.data}) == 8  # one panel per unit
    assert "left out" not in fig.layout.title.text and fig.layout.height >= 8 // 2 * 130
    many = figures.aligned_units_figure(big, list(range(16)), layer=0, max_units=10)
    assert len(many.data) == 20 and "10 of 16 selected units shown" in many.layout.title.text
    assert "6 left out" in many.layout.title.text


def test_a_new_env_replaces_the_selection_message(panel):
    panel.select_units(threshold=0.0, steps=(5, 15))
    assert panel.selected_units and "selected" in panel.message
    panel.env.value = 1
    assert panel.last_error is None, panel.message
    assert "Showing env 1 · layer 0" in panel.message and "unit selection was cleared" in panel.message
    assert "selected:" not in panel.message and panel.units_info.value == "" and "units_aligned" not in panel.figures


def test_an_empty_selection_is_said_and_draws_no_figure(panel):
    assert panel.select_units(threshold=1.0, steps=(5, 15)) == []
    assert "No unit with |h| &gt; 1 at every step 5–15 of env 0: lower the threshold" in panel.units_info.value
    assert "none" not in panel.units_info.value.lower().replace("no unit", "")
    assert "units_aligned" not in panel.figures and panel.views["units_aligned"].outputs == ()


def test_the_resets_are_counted_in_words(panel):
    # is_init every 97 steps from t = 0: 62 per env, of which the first is the env's start
    assert "124 is_init steps = 2 env starts (t = 0) + 122 resets" in panel.message


def test_a_trajectory_without_gates_says_why_and_how_to_get_them(panel):
    assert "Gates not recorded" not in panel.message  # the fixture's trajectory has gates
    bare = ExplorerPanel(columns=100)
    bare.set_trajectory(trajectory(t=300, gates=False))
    assert bare.last_error is None and "gates" not in bare.figures
    assert "Gates not recorded (an nn.GRU policy keeps them inside): click Record gates" in bare.message
