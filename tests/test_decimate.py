"""Binning per pixel column (workbench.decimate): bins cover the window, spikes survive, small windows are exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from workbench import decimate
from workbench.errors import ConfigError

FINITE = st.floats(-1e6, 1e6, allow_nan=False, width=32)


@st.composite
def windows(draw, max_len=400):
    t = draw(st.integers(1, max_len))
    start = draw(st.integers(0, t - 1))
    stop = draw(st.integers(start + 1, t))
    columns = draw(st.integers(1, 60))
    return t, start, stop, columns


@settings(max_examples=150, deadline=None)
@given(windows())
def test_bins_cover_the_window_exactly(w):
    t, start, stop, columns = w
    b = decimate.bins(start, stop, columns=columns)
    e = b.edges()
    assert e[0] == start and e[-1] == stop and np.all(np.diff(e) >= 1)
    assert b.count <= columns and len(e) == b.count + 1
    assert np.all(np.diff(e)[:-1] == b.width)  # equal widths, the last may be shorter
    assert all(b.of(s) == np.searchsorted(e, s, side="right") - 1 for s in range(start, stop))


@settings(max_examples=150, deadline=None)
@given(windows(), st.data())
def test_envelope_keeps_each_bins_min_and_max(w, data):
    t, start, stop, columns = w
    values = data.draw(arrays(np.float32, t, elements=FINITE))
    x, y = decimate.envelope(values, start, stop, columns=columns)
    b = decimate.bins(start, stop, columns=columns)
    e = b.edges()
    assert np.all(np.diff(x) > 0) and x[0] >= start and x[-1] < stop
    assert np.array_equal(y, values[x])  # points are real steps with their raw values
    which = np.searchsorted(e, x, side="right") - 1
    for i in range(b.count):
        raw = values[e[i]:e[i + 1]]
        got = y[which == i]
        assert 1 <= got.size <= 2
        assert got.max() == raw.max() and got.min() == raw.min()


@settings(max_examples=100, deadline=None)
@given(windows(), st.data(), st.sampled_from(decimate.HOW))
def test_heat_bins_per_unit(w, data, how):
    t, start, stop, columns = w
    values = data.draw(arrays(np.float32, (t, 3), elements=FINITE))
    x, z = decimate.heat(values, start, stop, columns=columns, how=how)
    b = decimate.bins(start, stop, columns=columns)
    e = b.edges()
    assert z.shape == (b.count, 3) and np.allclose(x, (e[:-1] + e[1:] - 1) / 2)
    for i in range(b.count):
        raw = values[e[i]:e[i + 1]]
        if how == "maxabs":
            assert np.array_equal(np.abs(z[i]), np.abs(raw).max(0))
            assert all(z[i, u] in raw[:, u] for u in range(3))  # a real value, sign kept
        else:
            np.testing.assert_allclose(z[i], raw.astype(np.float64).mean(0), rtol=1e-5, atol=1e-3)


@settings(max_examples=100, deadline=None)
@given(windows(), st.data())
def test_full_resolution_windows_are_the_raw_values(w, data):
    t, start, stop, _ = w
    columns = stop - start + data.draw(st.integers(0, 5))
    values = data.draw(arrays(np.float32, (t, 2), elements=FINITE))
    x, z = decimate.heat(torch.from_numpy(values), start, stop, columns=columns)
    assert x.tolist() == list(range(start, stop)) and z.tobytes() == values[start:stop].tobytes()
    xs, ys = decimate.envelope(values[:, 0], start, stop, columns=columns)
    assert xs.tolist() == list(range(start, stop)) and ys.tobytes() == values[start:stop, 0].tobytes()


def test_a_spike_survives_binning_and_a_500_step_window_is_exact():
    values = np.zeros((100_000, 4), np.float32)
    values[54_321, 2] = -7.5
    x, z = decimate.heat(values, columns=1500)
    assert z.shape[0] <= 1500 and z.min() == -7.5 and z[:, 2].argmin() == decimate.bins(0, 100_000).of(54_321)
    _, y = decimate.envelope(values[:, 2])
    assert y.min() == -7.5 and len(y) <= 3000
    x, z = decimate.heat(values, 54_000, 54_500)
    assert x.tolist() == list(range(54_000, 54_500)) and z[321, 2] == -7.5


def test_nan_is_skipped_by_the_envelope():
    values = np.array([np.nan, 1.0, np.nan, np.nan, 3.0, -1.0])
    x, y = decimate.envelope(values, columns=2)
    assert x.tolist() == [1, 4, 5] and y.tolist() == [1.0, 3.0, -1.0]


def test_thin_marks_keeps_one_per_bin():
    marks = np.arange(0, 100_000, 7)
    kept = decimate.thin_marks(marks, 0, 100_000, columns=1000)
    assert len(kept) <= 1000 and set(kept) <= set(marks)
    assert decimate.thin_marks(marks, 70, 90).tolist() == [70, 77, 84]


@pytest.mark.parametrize("call, match", [
    (lambda: decimate.bins(0, 10, columns=0), "columns: expected an int >= 1; got 0"),
    (lambda: decimate.envelope(np.zeros(5), 3, 9), "window: expected 0 <= start <= stop of a series of 5 steps"),
    (lambda: decimate.envelope(np.zeros((5, 2))), r"values: expected a series \[T\]; got shape \(5, 2\)"),
    (lambda: decimate.heat(np.zeros(5), how="max"), "how: expected one of"),
])
def test_bad_arguments_are_named(call, match):
    with pytest.raises(ConfigError, match=match):
        call()
