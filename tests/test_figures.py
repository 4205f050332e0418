"""workbench.figures, headless: assertions on each figure's data, hover text, shapes and labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest
import torch
from tensordict import TensorDict

from workbench.hidden import pca
from workbench.probes import ProbeResult, probe_suite
from workbench import figures as F
from workbench.keys import KEYS

E, T, L, H = 2, 9, 2, 3
# env 0: episodes start at 0, 4, 7; env 1: at 0 and 5
IS_INIT = torch.zeros(E, T, 1, dtype=torch.bool)
IS_INIT[0, [0, 4, 7]] = True
IS_INIT[1, [0, 5]] = True


@pytest.fixture
def hidden():
    """Distinct values: 1000 * env + 100 * layer + 10 * unit + step, scaled into (-1, 1)."""
    e, t, l, h = torch.meshgrid(torch.arange(E), torch.arange(T), torch.arange(L), torch.arange(H), indexing="ij")
    return ((1000 * e + 100 * l + 10 * h + t).double() / 2000.0)


@pytest.fixture
def traj(hidden):
    gates = torch.rand(E, T, L, 3, H, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    episode = IS_INIT.squeeze(-1).long().cumsum(1) - 1
    return TensorDict({KEYS.next_hidden: hidden, KEYS.is_init: IS_INIT, KEYS.episode: episode,
                       KEYS.gates: gates}, [E, T])


def shapes(fig, name):
    return [s for s in fig.layout.shapes if s.name == name]


@pytest.fixture(autouse=True)
def no_display(monkeypatch):
    """Builders never display: Figure.show raises."""
    def show(*args, **kwargs):
        raise AssertionError("a figure builder called show()")
    monkeypatch.setattr(go.Figure, "show", show)


class TestHiddenHeatmap:
    def test_data_axes_and_hover(self, traj, hidden):
        """z is time × unit of the chosen env and layer; hover names step, unit, episode, env and h."""
        fig = F.hidden_heatmap(traj, env=1, layer=0)
        np.testing.assert_allclose(fig.data[0].z, hidden[1, :, 0].numpy().T)
        assert list(fig.data[0].x) == list(range(T)) and list(fig.data[0].y) == list(range(H))
        for word in ("step %{x}", "unit %{y}", "%{z", "episode %{customdata[0]}", "env 1"):
            assert word in fig.data[0].hovertemplate
        assert fig.data[0].customdata[0, :, 0].tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1]
        assert fig.layout.xaxis.title.text == "step" and fig.layout.yaxis.title.text == "hidden unit"
        assert fig.layout.title.text == "Hidden state, env 1"

    def test_reset_lines_and_episode_bands(self, traj):
        """One vertical line before each reset after t=0; one band per episode in the episode track."""
        fig = F.hidden_heatmap(traj)
        lines = shapes(fig, "reset")
        assert [s.x0 for s in lines] == [3.5, 6.5] and all(s.x0 == s.x1 for s in lines)
        assert [(s.x0, s.x1) for s in shapes(fig, "episode")] == [(-0.5, 3.5), (3.5, 6.5), (6.5, 8.5)]
        assert not shapes(F.hidden_heatmap(traj, bands=False), "episode")

    def test_tensor_inputs(self, hidden):
        """Plain tensors work: [E, T, L, H], [E, T, H] and [T, H]; is_init may be [E, T]."""
        a = F.hidden_heatmap(hidden, is_init=IS_INIT.squeeze(-1))
        b = F.hidden_heatmap(hidden[..., -1, :], is_init=IS_INIT)
        c = F.hidden_heatmap(hidden[0, :, -1])
        np.testing.assert_allclose(a.data[0].z, b.data[0].z)
        np.testing.assert_allclose(a.data[0].z, c.data[0].z)
        assert len(shapes(a, "reset")) == 2 and not shapes(c, "reset")

    def test_bad_env(self, traj):
        with pytest.raises(IndexError, match="env=5"):
            F.hidden_heatmap(traj, env=5)


class TestPCAFigure:
    def test_2d_traces_and_reset_markers(self, traj, hidden):
        """The curve is the PCA of the env's states; resets get x markers at their coordinates."""
        fig = F.pca_figure(traj, env=0)
        res = pca(hidden[..., -1, :], k=2)
        assert [d.name for d in fig.data] == ["env 0", "start", "reset (is_init)"]
        np.testing.assert_allclose(fig.data[0].x, res.coords[0, :, 0].numpy())
        np.testing.assert_allclose(fig.data[0].y, res.coords[0, :, 1].numpy())
        resets = fig.data[2]
        assert resets.marker.symbol == "x" and fig.data[1].marker.symbol == "diamond"
        assert resets.customdata[:, 0].tolist() == [4, 7]
        np.testing.assert_allclose(resets.x, res.coords[0, [4, 7], 0].numpy())
        assert fig.layout.xaxis.title.text.startswith("PC1 (") and "variance" in fig.layout.xaxis.title.text
        assert "step %{customdata[0]}" in fig.data[0].hovertemplate and "env" in fig.data[0].hovertemplate

    def test_colour_by_time_or_episode(self, traj):
        """Markers are coloured by step or by episode index."""
        by_time = F.pca_figure(traj)
        by_episode = F.pca_figure(traj, color="episode")
        assert list(by_time.data[0].marker.color) == list(range(T))
        assert list(by_episode.data[0].marker.color) == [0, 0, 0, 0, 1, 1, 1, 2, 2]
        assert by_episode.layout.coloraxis.colorbar.title.text == "episode"

    def test_3d_all_envs(self, traj):
        """k=3 draws Scatter3d for every env, with resets of all envs in one trace."""
        fig = F.pca_figure(traj, k=3, env=None)
        assert [type(d).__name__ for d in fig.data] == ["Scatter3d"] * 4
        assert len(fig.data[-1].x) == 3  # resets at 4, 7 (env 0) and 5 (env 1)
        assert fig.layout.scene.zaxis.title.text.startswith("PC3")

    def test_reuses_a_fitted_pca(self, traj, hidden):
        """A given PCAResult is used for the projection (e.g. fitted on another run)."""
        other = pca(hidden[..., -1, :].flip(1) * 2, k=2)
        fig = F.pca_figure(traj, result=other)
        np.testing.assert_allclose(fig.data[0].x, other.transform(hidden[0, :, -1])[:, 0].numpy())

    def test_bad_options(self, traj):
        with pytest.raises(ValueError, match="k must be 2 or 3"):
            F.pca_figure(traj, k=4)
        with pytest.raises(ValueError, match="color must be"):
            F.pca_figure(traj, color="reward")


class TestNormFigure:
    def test_norm_line_resets_and_bands(self, traj, hidden):
        """y is ‖h‖₂ of the last layer; resets and alternate-episode bands (behind the line)."""
        fig = F.norm_figure(traj)
        np.testing.assert_allclose(fig.data[0].y, hidden[0, :, -1].norm(dim=-1).numpy())
        assert fig.layout.yaxis.title.text == "‖h‖₂" and fig.layout.xaxis.title.text == "step"
        assert [s.x0 for s in shapes(fig, "reset")] == [3.5, 6.5]
        bands = shapes(fig, "episode")
        assert [(s.x0, s.x1) for s in bands] == [(3.5, 6.5)] and bands[0].layer == "below"
        hover = fig.data[0].hovertemplate
        assert "‖h‖₂ = %{y" in hover and "episode %{customdata[0]}" in hover and "env %{customdata[2]}" in hover

    def test_all_envs(self, traj):
        """env=None: one line per env, no reset lines (they differ by env)."""
        fig = F.norm_figure(traj, env=None)
        assert [d.name for d in fig.data] == ["env 0", "env 1"] and not fig.layout.shapes


class TestGatesFigure:
    def test_panels(self, traj):
        """One heatmap per layer × gate; r, z on a 0–1 scale, n on −1–1; resets on every panel."""
        fig = F.gates_figure(traj, env=1)
        gates = traj.get(KEYS.gates)
        assert len(fig.data) == L * 3
        for i, d in enumerate(fig.data):
            layer, gate = divmod(i, 3)
            np.testing.assert_allclose(d.z, gates[1, :, layer, gate].numpy().T)
            assert d.coloraxis == ("coloraxis2" if gate == 2 else "coloraxis")
            assert f"layer {layer}, unit %{{y}}" in d.hovertemplate and "env 1" in d.hovertemplate
        assert fig.layout.coloraxis.cmin == 0 and fig.layout.coloraxis.cmax == 1
        assert fig.layout.coloraxis2.cmin == -1
        assert len(shapes(fig, "reset")) == L * 3  # env 1 has one reset after t=0
        titles = [a.text for a in fig.layout.annotations]
        assert titles[:3] == ["layer 0 · r (reset gate)", "layer 0 · z (update gate: memory kept)",
                              "layer 0 · n (candidate)"]

    def test_one_layer(self, traj):
        fig = F.gates_figure(traj, layers=[-1])
        assert len(fig.data) == 3 and fig.data[0].name == "layer 1 r"


class TestDivergenceFigure:
    def test_max_over_envs_log_axis(self):
        """Default: the max over envs per step on a log axis; zeros drawn at the floor, hover shows the truth."""
        gap = torch.tensor([[0.0, 1e-6, 0.0], [1e-7, 1e-8, 0.0]], dtype=torch.float64)
        fig = F.divergence_figure(gap, floor=1e-15, tol=1e-5)
        assert fig.layout.yaxis.type == "log"
        assert fig.data[0].y.tolist() == [1e-7, 1e-6, 1e-15]
        assert fig.data[0].customdata.tolist() == [1e-7, 1e-6, 0.0]
        assert [s.y0 for s in shapes(fig, "tolerance")] == [1e-5]
        assert fig.layout.annotations[0].y == pytest.approx(-5)  # log10 coordinates on a log axis
        assert "max |Δh| = %{customdata" in fig.data[0].hovertemplate

    def test_a_long_run_is_drawn_at_screen_resolution_and_keeps_its_largest_gap(self):
        """100,000 steps: a min/max envelope of at most two points per column; the largest gap keeps its step."""
        gap = torch.rand(2, 100_000, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 1e-9
        gap[1, 54_321] = 1e-3
        fig = F.divergence_figure(gap)
        custom = np.asarray(fig.data[0].customdata)
        assert len(fig.data[0].x) <= 2 * 1500 and custom.max() == 1e-3
        assert fig.data[0].x[int(custom.argmax())] == 54_321

    def test_several_replays_one_env_with_resets(self):
        """A mapping gives one line per replay; an env shows its own values and resets."""
        gap = torch.rand(E, T, dtype=torch.float64)
        fig = F.divergence_figure({"python": gap, "scan": gap / 2}, env=1, is_init=IS_INIT)
        assert [d.name for d in fig.data] == ["python", "scan"]
        np.testing.assert_allclose(fig.data[1].y, gap[1].numpy() / 2)
        assert [s.x0 for s in shapes(fig, "reset")] == [4.5]


    def test_replay_report(self):
        """A ReplayReport-like object: its gap is drawn and its atol is the tolerance."""
        @dataclass
        class Report:
            gap: torch.Tensor
            atol: float
            backend: str

        fig = F.divergence_figure(Report(torch.full((E, T), 1e-7), 1e-6, "packed"))
        assert fig.data[0].name == "replay (packed)" and [s.y0 for s in shapes(fig, "tolerance")] == [1e-6]


def _probe(name, curve, r2):
    curve = torch.tensor(curve, dtype=torch.float64)
    return ProbeResult(name, r2, torch.tensor([r2]), curve, torch.full(curve.shape, 3),
                         torch.zeros(1, 1), torch.zeros(1))


class TestProbeFigure:
    def test_curves(self):
        """One line per feature set, y = R² by steps since reset, hidden solid and baselines dashed."""
        results = {"hidden": _probe("hidden", [0.2, 0.8, 0.9], 0.7),
                   "observation": _probe("observation", [0.1, 0.1, float("nan")], 0.1),
                   "obs+prev": _probe("obs+prev", [0.0, 0.95, 0.95], 0.6)}
        fig = F.probe_figure(results)
        assert [d.name for d in fig.data] == ["hidden (R² 0.70)", "observation (R² 0.10)", "obs+prev (R² 0.60)"]
        assert fig.data[0].y.tolist() == [0.2, 0.8, 0.9] and fig.data[0].line.dash is None
        assert np.isnan(fig.data[1].y[2]) and fig.data[1].line.dash == "dash" and fig.data[2].line.dash == "dot"
        assert fig.layout.xaxis.title.text == "steps since reset" and fig.layout.yaxis.title.text == "held-out R²"
        assert "held-out samples %{customdata}" in fig.data[0].hovertemplate

    def test_from_probe_suite(self):
        """Real ProbeResults from probes.probe_suite draw directly."""
        g = torch.Generator().manual_seed(0)
        obs = torch.randn(4, 12, 2, generator=g)
        is_init = torch.zeros(4, 12, 1, dtype=torch.bool)
        is_init[:, ::4] = True
        td = TensorDict({KEYS.observation: obs, KEYS.is_init: is_init, KEYS.true_state: obs,
                         KEYS.next_hidden: obs[:, :, None]}, [4, 12])
        fig = F.probe_figure(probe_suite(td, target=0))
        assert len(fig.data) == 3 and len(fig.data[0].x) == 4


@dataclass
class Record:
    backend: str
    pass_: str
    batch: int
    steps: int
    hidden: int
    reset_rate: float
    median_s: float


def _records():
    return [{"backend": b, "pass": p, "batch": 8, "steps": t, "hidden": 16, "reset_rate": 0.0, "median_s": t * s}
            for b, s in (("torch", 1e-5), ("workbench", 2e-5))
            for p in ("forward+backward", "forward") for t in (64, 16)]


class TestTimingFigure:
    def test_lines_per_backend_and_pass(self):
        """One panel per pass (forward first), one line per backend, y in ms sorted by T."""
        fig = F.timing_figure(_records())
        assert [a.text for a in fig.layout.annotations] == ["forward", "forward+backward"]
        assert [(d.name, d.xaxis) for d in fig.data] == [("torch", "x"), ("workbench", "x"),
                                                         ("torch", "x2"), ("workbench", "x2")]
        assert list(fig.data[0].x) == [16, 64]
        np.testing.assert_allclose(fig.data[1].y, [0.32, 1.28])
        assert fig.layout.yaxis.title.text == "time per call (ms)"
        assert fig.layout.xaxis.title.text.startswith("steps T")
        assert [d.showlegend for d in fig.data] == [True, True, False, False]
        assert "median %{y:.3f} ms" in fig.data[0].hovertemplate

    def test_dataclasses_and_varying_fields(self):
        """Dataclass records work (``pass`` spelt ``pass_``, PEP 8); a varying field splits series."""
        recs = [Record("torch", "forward", 8, 16, 16, 0.0, 1e-3), Record("torch", "forward", 8, 32, 16, 0.0, 2e-3)]
        recs += [dict(backend="torch", **{"pass": "forward"}, batch=8, steps=t, hidden=16, reset_rate=0.1,
                      median_s=3e-3, q1_s=2e-3, q3_s=4e-3) for t in (16, 32)]
        rows = F.timing_rows(recs)
        assert rows[0]["pass"] == "forward" and rows[0]["reset_rate"] == 0.0
        assert rows[2]["pass"] == "forward" and rows[2]["reset_rate"] == 0.1
        fig = F.timing_figure(recs)
        assert [d.name for d in fig.data] == ["torch · reset rate 0.0", "torch · reset rate 0.1"]
        assert fig.data[0].error_y.array is None  # quartiles only when every record has them

    def test_bars_and_quartiles(self):
        """kind='bar' gives grouped bars on a categorical axis; quartiles become error bars."""
        recs = [dict(r, q1_s=r["median_s"] * 0.5, q3_s=r["median_s"] * 2) for r in _records()]
        fig = F.timing_figure(recs, kind="bar", log_y=True)
        assert all(isinstance(d, go.Bar) for d in fig.data) and fig.layout.barmode == "group"
        assert list(fig.data[0].x) == ["16", "64"] and fig.layout.xaxis.type == "category"
        np.testing.assert_allclose(fig.data[0].error_y.array, [0.16, 0.64])
        np.testing.assert_allclose(fig.data[0].error_y.arrayminus, [0.08, 0.32])
        assert fig.layout.yaxis.type == "log"

    def test_missing_field(self):
        """A record without a required field names it and shows what it has."""
        with pytest.raises(ValueError, match=r"timing record 0 lacks \['median_s'\]; it has"):
            F.timing_rows([{"backend": "torch", "pass": "forward", "steps": 4}])


def _grid(backends=(("torch", 1.0), ("workbench", 1.5), ("workbench:python", 0.75))):
    """2 hidden sizes × 2 reset rates × 2 passes; each backend's median is ``factor`` × the floor's."""
    return [{"backend": b, "pass": p, "batch": 8, "steps": 64, "hidden": h, "reset_rate": rr,
             "median_s": f * h * (1 + rr) * (3 if p == "forward+backward" else 1) * 1e-5}
            for h in (32, 128) for rr in (0.0, 0.05) for p in ("forward", "forward+backward") for b, f in backends]


class TestRatioFigure:
    def test_one_facet_per_shape_one_bar_per_backend(self):
        """4 shapes → 4 facets titled by what varies; in each, one bar trace per backend (same colour
        everywhere, one legend entry each), x = the passes, the ratio to torch's time (torch exactly 1)."""
        fig = F.ratio_figure(_grid())
        assert [a.text for a in fig.layout.annotations] == ["H 32 · reset 0", "H 32 · reset 0.05",
                                                             "H 128 · reset 0", "H 128 · reset 0.05"]
        assert len(fig.data) == 4 * 3 and all(isinstance(d, go.Bar) for d in fig.data)
        assert [d.xaxis for d in fig.data] == [f"x{'' if i == 0 else i + 1}" for i in range(4) for _ in range(3)]
        names = [d.legendgroup for d in fig.data[:3]]
        assert names == ["torch", "workbench", "workbench:python"] and fig.data[0].name == "torch (floor)"
        assert [d.showlegend for d in fig.data] == [True] * 3 + [False] * 9
        for i, d in enumerate(fig.data):
            assert d.marker.color == fig.data[i % 3].marker.color  # one colour per backend across facets
            assert list(d.x) == ["forward", "forward+backward"] and d.base == 1.0
        expected = {"torch": 1.0, "workbench": 1.5, "workbench:python": 0.75}
        for d in fig.data:
            ratios = [float(c[3]) for c in d.customdata]
            np.testing.assert_allclose(ratios, [expected[d.legendgroup]] * 2, rtol=1e-12)
            if d.legendgroup == "torch":
                assert ratios == [1.0, 1.0]  # exactly: the floor over itself
            np.testing.assert_allclose(d.y, np.array(ratios) - 1)  # bars start at the floor line
        assert fig.layout.title.text.startswith("Time as a ratio to the floor (torch = 1")
        assert "B 8, T 64" in fig.layout.title.text and fig.layout.barmode == "group"
        assert [s.y0 for s in fig.layout.shapes] == [1] * 4  # the floor line in each facet

    def test_without_torch_the_fastest_is_the_floor(self):
        fig = F.ratio_figure(_grid(backends=(("workbench", 2.0), ("workbench:python", 0.5))))
        python = [d for d in fig.data if d.legendgroup == "workbench:python"]
        assert all(float(c[3]) == 1.0 for d in python for c in d.customdata)
        assert python[0].name == "workbench:python (floor)"
        assert all(float(c[3]) == 4.0 for d in fig.data if d.legendgroup == "workbench" for c in d.customdata)
        assert "the fastest backend of each shape" in fig.layout.title.text

    def test_log_axis_for_wide_ranges_and_facet_columns(self):
        """A 40× spread gets a log axis with 2× ticks; 4 facets in 2 columns make 2 rows."""
        fig = F.ratio_figure(_grid(backends=(("torch", 1.0), ("torchrl", 40.0))), columns=2)
        assert fig.layout.yaxis.type == "log" and list(fig.layout.yaxis.ticktext)[:2] == ["1×", "2×"]
        assert fig.layout.xaxis3.anchor == "y3" and fig.layout.yaxis3.domain[1] < fig.layout.yaxis.domain[0]
        assert F.ratio_figure(_grid()).layout.yaxis.type != "log"


BUILDERS = {
    "hidden_heatmap": lambda td, **kw: F.hidden_heatmap(td, **kw),
    "pca_figure": lambda td, **kw: F.pca_figure(td, **kw),
    "norm_figure": lambda td, **kw: F.norm_figure(td, **kw),
    "gates_figure": lambda td, **kw: F.gates_figure(td, **kw),
    "divergence_figure": lambda td, **kw: F.divergence_figure(torch.rand(E, T), **kw),
    "probe_figure": lambda td, **kw: F.probe_figure([_probe("hidden", [0.5], 0.5)], **kw),
    "timing_figure": lambda td, **kw: F.timing_figure(_records(), **kw),
    "ratio_figure": lambda td, **kw: F.ratio_figure(_records(), **kw),
    "pca_groups_figure": lambda td, **kw: F.pca_groups_figure(td, torch.ones(E, T), **kw),
    "training_figure": lambda td, **kw: F.training_figure([{"frames": 10, "mean_return": 1.0}], **kw),
}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_shared_keywords(name, traj):
    """Every builder takes title, height, width, template and env, returns a Figure, and has a default title."""
    default = BUILDERS[name](traj)
    assert isinstance(default, go.Figure) and default.layout.title.text
    fig = BUILDERS[name](traj, title="Custom", height=321, width=654, template="simple_white", env=0)
    assert fig.layout.title.text == "Custom" and fig.layout.height == 321 and fig.layout.width == 654
    assert fig.layout.template.to_plotly_json() == pio.templates["simple_white"].to_plotly_json()
    assert default.layout.template.to_plotly_json() == pio.templates[F.TEMPLATE].to_plotly_json()


class TestGroupsAndTraining:
    def test_pca_groups_one_trace_per_group_with_whole_episodes(self, traj):
        """Episodes take the label of their first step; each group's trace holds its episodes, NaN-separated."""
        group = torch.zeros(E, T)
        group[0, 4:7] = 1.0  # env 0's second episode
        group[1, 5:] = 1.0  # env 1's second episode
        fig = F.pca_groups_figure(traj, group, names={1.0: "cue +1"})
        assert [d.name for d in fig.data] == ["0 (3 episodes)", "cue +1 (2 episodes)", "first step", "last step"]
        coords = pca(traj[KEYS.next_hidden][..., -1, :], k=2).coords.numpy()
        xs = np.asarray(fig.data[1].x, dtype=float)
        expected = np.concatenate([coords[0, 4:7, 0], [np.nan], coords[1, 5:, 0], [np.nan]])
        np.testing.assert_allclose(xs, expected)
        assert len(fig.data[2].x) == len(fig.data[3].x) == 5  # one start and one end per episode
        one_env = F.pca_groups_figure(traj, group, env=1)
        assert [d.name for d in one_env.data][:2] == ["0 (1 episodes)", "1 (1 episodes)"]
        assert len(F.pca_groups_figure(traj, group, max_episodes=2).data[2].x) == 2

    def test_pca_groups_bad_group_shape(self, traj):
        with pytest.raises(ValueError, match=r"'group' must be \[E, T\] = \(2, 9\); got \(3, 9\)"):
            F.pca_groups_figure(traj, torch.zeros(3, 9))

    def test_training_figure_skips_batches_without_episodes(self):
        rows = [{"frames": 100 * i, "mean_return": float("nan") if i % 2 else float(i)} for i in range(1, 9)]
        fig = F.training_figure(rows, target=7.0, window=2)
        assert fig.data[0].x == (200, 400, 600, 800) and fig.data[0].y == (2.0, 4.0, 6.0, 8.0)
        assert fig.data[1].y == (2.0, 3.0, 5.0, 7.0)
        assert [s.y0 for s in fig.layout.shapes if s.name == "target"] == [7.0]
        assert "7.00 after 800 frames" in fig.layout.title.text
        with pytest.raises(ValueError, match="'window' must be an int >= 1; got 0"):
            F.training_figure(rows, window=0)
