"""workbench.hidden and workbench.probes on synthetic data with known answers."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from tensordict import TensorDict

from workbench import episodes
from workbench import hidden as H
from workbench import probes as P
from workbench.errors import AnalysisError
from workbench.keys import KEYS

# Two envs, T=8. env 0: episodes start at 0, 3, 5 (lengths 3, 2, 3);
# env 1: a partial segment [0, 2) without is_init, then an episode from 2 (length 6).
IS_INIT = torch.tensor([[1, 0, 0, 1, 0, 1, 0, 0],
                        [0, 0, 1, 0, 0, 0, 0, 0]], dtype=torch.bool)


def distinct(e=2, t=8, *rest):
    """Distinct values: 100 * env + step (+ a fraction per trailing index)."""
    base = 100.0 * torch.arange(e).view(e, 1) + torch.arange(t).view(1, t)
    if not rest:
        return base
    extra = torch.arange(math.prod(rest)).view(*rest) / 10
    return base.view(e, t, *([1] * len(rest))) + extra


class TestPCA:
    def test_points_on_a_line_have_one_component(self):
        """Data on a line: the first component explains all the variance and is the line's direction."""
        t = torch.linspace(-3, 3, 40)
        direction = torch.tensor([1.0, -2.0, 2.0]) / 3
        res = H.pca(t[:, None] * direction + torch.tensor([5.0, 1.0, 0.0]), k=2)
        assert res.explained_variance_ratio[0].item() == pytest.approx(1.0, abs=1e-6)
        assert res.explained_variance_ratio[1].item() == pytest.approx(0.0, abs=1e-6)
        # sign convention: the largest |loading| (-2/3) comes out positive
        torch.testing.assert_close(res.components[0], -direction, atol=1e-5, rtol=0)
        torch.testing.assert_close(res.mean, torch.tensor([5.0, 1.0, 0.0]), atol=1e-5, rtol=0)

    def test_shapes_and_reconstruction(self):
        """[E, T, H] keeps its leading shape; with k = H the projection reconstructs the data."""
        h = torch.randn(3, 7, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        res = H.pca(h, k=4)
        assert res.coords.shape == (3, 7, 4) and res.components.shape == (4, 4)
        torch.testing.assert_close(res.coords @ res.components + res.mean, h)
        torch.testing.assert_close(res.transform(h), res.coords)
        assert bool((res.explained_variance[:-1] >= res.explained_variance[1:]).all())
        assert res.explained_variance_ratio.sum().item() == pytest.approx(1.0)

    def test_signs_are_deterministic(self):
        """Negating the data gives the same axes (the sign convention), and negated coordinates."""
        h = torch.randn(50, 5, generator=torch.Generator().manual_seed(1))
        a, b = H.pca(h, k=3), H.pca(-h, k=3)
        torch.testing.assert_close(a.components, b.components, atol=1e-5, rtol=0)
        torch.testing.assert_close(a.coords, -b.coords, atol=1e-5, rtol=0)
        assert bool((a.components.gather(1, a.components.abs().argmax(1, keepdim=True)) > 0).all())

    @pytest.mark.parametrize("k", [0, 6])
    def test_bad_k(self, k):
        """k outside [1, min(N, H)] is rejected with the allowed range."""
        with pytest.raises(AnalysisError, match=r"k must be in \[1, "):
            H.pca(torch.randn(10, 5), k=k)


class TestNormsAndUnits:
    def test_hidden_norm(self):
        """‖h‖₂ per state, leading shape kept."""
        h = torch.tensor([[[3.0, 4.0], [0.0, 0.0]], [[1.0, 0.0], [6.0, 8.0]]])
        assert H.hidden_norm(h).tolist() == [[5.0, 0.0], [1.0, 10.0]]

    def test_unit_stats_and_saturation(self):
        """Per-unit mean/std/min/max over all steps, and |h| > 0.9 fractions."""
        h = torch.tensor([[[0.0, 0.95], [0.5, -0.95]], [[1.0, 0.0], [0.5, 0.0]]])  # [2, 2, 2]
        s = H.unit_stats(h)
        torch.testing.assert_close(s.mean, torch.tensor([0.5, 0.0]))
        torch.testing.assert_close(s.min, torch.tensor([0.0, -0.95]))
        torch.testing.assert_close(s.max, torch.tensor([1.0, 0.95]))
        torch.testing.assert_close(s.std, torch.tensor([math.sqrt(0.125), math.sqrt(0.45125)]))
        torch.testing.assert_close(s.saturated, torch.tensor([0.25, 0.5]))
        assert H.saturated_fraction(h).tolist() == [[0.5, 0.5], [0.5, 0.0]]

    def test_hidden_states_from_trajectory(self):
        """hidden_states reads KEYS.next_hidden [E, T, L, H] and picks a layer."""
        h = distinct(2, 3, 2, 4)
        td = TensorDict({KEYS.next_hidden: h}, [2, 3])
        torch.testing.assert_close(H.hidden_states(td), h[..., 1, :])
        torch.testing.assert_close(H.hidden_states(td, layer=0), h[..., 0, :])


class TestAlignment:
    def test_known_pattern(self):
        """Episodes are cut at is_init and aligned on their first step; padding is NaN."""
        values = distinct()
        a = H.align_on_resets(values, IS_INIT)
        assert a.lengths.tolist() == [3, 2, 3, 6]
        assert a.env.tolist() == [0, 0, 0, 1] and a.start.tolist() == [0, 3, 5, 2]
        assert a.values.shape == (4, 6)
        for row, (env, start, length) in enumerate(zip(a.env, a.start, a.lengths)):
            torch.testing.assert_close(a.values[row, :length], values[env, start:start + length])
            assert torch.isnan(a.values[row, length:]).all()

    def test_partial_segment_and_is_init_shape(self):
        """A segment that starts at t=0 without is_init is dropped unless asked; [E, T, 1] is accepted."""
        a = H.align_on_resets(distinct(), IS_INIT[..., None], include_partial=True)
        assert a.lengths.tolist() == [3, 2, 3, 2, 6]
        torch.testing.assert_close(a.values[3, :2], torch.tensor([100.0, 101.0]))
        assert episodes.steps_since_reset(IS_INIT).tolist() == [[0, 1, 2, 0, 1, 0, 1, 2], [-1, -1, 0, 1, 2, 3, 4, 5]]
        assert episodes.episode_segments(IS_INIT).tolist() == [[0, 0, 0, 1, 1, 2, 2, 2], [3, 3, 4, 4, 4, 4, 4, 4]]

    def test_mean_std_count_and_max_len(self):
        """Mean/std over episodes by steps since reset; max_len truncates; trailing dims are kept."""
        a = H.align_on_resets(distinct(), IS_INIT, max_len=3)
        assert a.values.shape == (4, 3) and a.lengths.tolist() == [3, 2, 3, 3]
        assert a.count.tolist() == [4, 4, 3]
        starts = torch.tensor([0.0, 3.0, 5.0, 102.0])
        torch.testing.assert_close(a.mean()[0], starts.mean())
        torch.testing.assert_close(a.std()[0], starts.std(correction=0))
        torch.testing.assert_close(a.mean()[2], torch.tensor([2.0, 7.0, 104.0]).mean())
        multi = H.align_on_resets(distinct(2, 8, 3), IS_INIT)
        assert multi.values.shape == (4, 6, 3)
        torch.testing.assert_close(multi.values[1, 1], torch.tensor([4.0, 4.1, 4.2]))

    def test_integer_and_bool_values_become_float(self):
        """Integer values are converted so that NaN padding is possible."""
        a = H.align_on_resets(torch.ones(2, 8, dtype=torch.long), IS_INIT)
        assert a.values.is_floating_point() and torch.isnan(a.values[1, 2])

    def test_shape_mismatch(self):
        """is_init must match the values' [E, T]."""
        with pytest.raises(AnalysisError, match="leading shape"):
            H.align_on_resets(torch.zeros(2, 7), IS_INIT)


class TestGates:
    def test_saturation_retention_and_means(self):
        """Known gates: unit 0's z is always 1 (keeps memory), unit 1's r always 0, the rest 0.5."""
        g = torch.full((2, 5, 1, 3, 2), 0.5)
        g[..., 0, 1, 0] = 1.0  # z of unit 0
        g[..., 0, 0, 1] = 0.0  # r of unit 1
        s = H.gate_summary(g)
        assert s.mean.shape == (1, 3, 2) and s.low.shape == (1, 2, 2) and s.retention.shape == (2, 5, 1)
        assert s.high[0].tolist() == [[0.0, 0.0], [1.0, 0.0]]
        assert s.low[0].tolist() == [[0.0, 1.0], [0.0, 0.0]]
        torch.testing.assert_close(s.retention, torch.full((2, 5, 1), 0.75))
        torch.testing.assert_close(s.write, torch.full((2, 5, 1), 0.25))
        torch.testing.assert_close(s.saturated[0, 0, 0], torch.tensor([0.5, 0.5]))
        assert s.mean_update_gate.tolist() == [0.75]

    def test_varies_over_time(self):
        """Retention follows z step by step, per layer."""
        g = torch.full((1, 4, 2, 3, 3), 0.5)
        g[0, :, 1, 1] = torch.tensor([0.1, 0.4, 0.7, 1.0])[:, None]
        s = H.gate_summary(g)
        torch.testing.assert_close(s.retention[0, :, 1], torch.tensor([0.1, 0.4, 0.7, 1.0]))
        torch.testing.assert_close(s.retention[0, :, 0], torch.full((4,), 0.5))

    def test_bad_shape(self):
        with pytest.raises(AnalysisError, match=r"\[E, T, L, 3, H\]"):
            H.gate_summary(torch.zeros(2, 5, 1, 2, 4))


def _velocity_trajectory(e=6, t=40, seed=0):
    """A random walk: observation = position, hidden = [position, velocity] (velocity hidden from o_t)."""
    g = torch.Generator().manual_seed(seed)
    is_init = torch.zeros(e, t, 1, dtype=torch.bool)
    is_init[:, ::10] = True
    pos = torch.randn(e, t, generator=g).cumsum(1)
    vel = pos - P.previous_step(pos, is_init)
    hidden = torch.stack([pos, vel, torch.randn(e, t, generator=g)], -1)[:, :, None]
    td = TensorDict({KEYS.observation: pos[..., None], KEYS.is_init: is_init,
                     KEYS.true_state: torch.stack([pos, vel], -1), KEYS.next_hidden: hidden}, [e, t])
    return td, vel


class TestProbes:
    def test_linear_target_has_r2_one(self):
        """A target that is a linear function of the features is probed with R² ≈ 1, curve included."""
        g = torch.Generator().manual_seed(0)
        x = torch.randn(4, 30, 6, generator=g)
        is_init = torch.zeros(4, 30, dtype=torch.bool)
        is_init[:, ::10] = True
        y = x @ torch.randn(6, 2, generator=g) + 1.0
        res = P.linear_probe(x, y, is_init, alpha=1e-8)
        assert res.r2 == pytest.approx(1.0, abs=1e-6)
        assert res.r2_per_target.shape == (2,)
        assert res.curve.shape == (10,) and torch.allclose(res.curve, torch.ones(10, dtype=torch.float64))
        assert int(res.count.sum()) == res.test_samples == 10 * res.test_episodes

    def test_noise_target_has_no_skill(self):
        """Independent noise gives a held-out R² near or below 0."""
        g = torch.Generator().manual_seed(1)
        is_init = torch.zeros(8, 50, dtype=torch.bool)
        is_init[:, ::10] = True
        res = P.linear_probe(torch.randn(8, 50, 4, generator=g), torch.randn(8, 50, generator=g), is_init)
        assert res.r2 < 0.1

    def test_split_keeps_episodes_whole(self):
        """The held-out mask never splits an episode, and one seed gives one split."""
        is_init = torch.zeros(3, 40, dtype=torch.bool)
        is_init[:, ::8] = True
        test = P.split_episodes(is_init, test_fraction=0.3, seed=4)
        seg = episodes.episode_segments(is_init)
        for s in seg.unique():
            values = test[seg == s]
            assert bool(values.all()) or not bool(values.any())
        assert torch.equal(test, P.split_episodes(is_init, test_fraction=0.3, seed=4))
        n_test = len(seg[test].unique())
        assert n_test == round(0.3 * 15)

    def test_too_few_episodes(self):
        """One episode cannot be split into train and held-out parts."""
        with pytest.raises(AnalysisError, match="at least 2 episodes"):
            P.split_episodes(torch.tensor([[True, False, False]]))

    def test_suite_velocity_baselines(self):
        """Velocity: o_t alone fails, [o_t, o_{t-1}] and the hidden state (which holds it) succeed."""
        td, vel = _velocity_trajectory()
        untrained = torch.randn(6, 40, 2, 5, generator=torch.Generator().manual_seed(9))
        res = P.probe_suite(td, target=1, extra={"untrained": untrained}, alpha=1e-6)
        assert list(res) == ["hidden", "observation", "obs+prev", "untrained"]
        assert res["hidden"].r2 == pytest.approx(1.0, abs=1e-6)
        assert res["obs+prev"].r2 == pytest.approx(1.0, abs=1e-6)
        assert res["observation"].r2 < 0.5
        assert res["untrained"].r2 < 0.5
        assert len({r.test_samples for r in res.values()}) == 1  # one shared split
        # a tensor target is the same as indices into true_state
        same = P.probe_suite(td, target=vel, baselines=False, alpha=1e-6)
        assert same["hidden"].r2 == pytest.approx(res["hidden"].r2)

    def test_r2_after_is_the_r2_of_the_late_samples(self):
        """r2_after(k) equals R² computed directly on the held-out samples >= k steps after their reset."""
        g = torch.Generator().manual_seed(3)
        x = torch.randn(6, 40, 3, generator=g)
        is_init = torch.zeros(6, 40, dtype=torch.bool)
        is_init[:, ::8] = True
        y = torch.stack([x[..., 0] + 0.5 * torch.randn(6, 40, generator=g), x[..., 1] * x[..., 2]], -1)
        res = P.linear_probe(x, y, is_init, alpha=1e-3, seed=1)
        test = P.split_episodes(is_init, seed=1)
        since = episodes.steps_since_reset(is_init)
        pred = x.double().reshape(-1, 3) @ res.weights + res.bias
        yy = y.double().reshape(-1, 2)
        held = test.reshape(-1)
        var = ((yy[held] - yy[held].mean(0)) ** 2).mean(0)
        for k in (0, 3, 7):
            late = held & (since.reshape(-1) >= k)
            direct = (1 - ((yy[late] - pred[late]) ** 2).mean(0) / var).mean()
            assert res.r2_after(k) == pytest.approx(float(direct), abs=1e-12)
        assert math.isnan(res.r2_after(8))  # no episode is that long
        with pytest.raises(ValueError, match="'steps' must be an int >= 0; got -1"):
            res.r2_after(-1)

    def test_previous_step_zero_at_resets(self):
        """o_{t-1} is zero at the first step of every episode and at t=0."""
        prev = P.previous_step(distinct(), IS_INIT)
        assert prev[0].tolist() == [0.0, 0.0, 1.0, 0.0, 3.0, 0.0, 5.0, 6.0]
        assert prev[1].tolist() == [0.0, 100.0, 0.0, 102.0, 103.0, 104.0, 105.0, 106.0]


def test_analysis_does_not_import_plotly(tmp_path):
    """workbench.hidden and workbench.probes are torch only: no plotly, no ipywidgets."""
    code = ("import sys, workbench.hidden, workbench.probes; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('plotly', 'ipywidgets')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensors():
    """Alignment and probes work on CUDA tensors (is_init may stay on the CPU)."""
    td, vel = _velocity_trajectory()
    cuda = td.to("cuda")
    a = H.align_on_resets(cuda[KEYS.observation], td[KEYS.is_init])
    assert a.values.is_cuda
    res = P.probe_suite(cuda, target=1, alpha=1e-6)
    assert res["hidden"].r2 == pytest.approx(1.0, abs=1e-6)
