"""workbench.figures.sweep, headless: the table's numbers, the heatmap's z/text/failure marks, the probe and
curve figures' data, from synthetic records that follow the sweep record contract (workbench.sweep)."""

from __future__ import annotations

import json
import math

import numpy as np
import plotly.io as pio
import pytest

from workbench import figures as F
from workbench.figures.sweep import cell_text, sweep_fields

ENV = "workbench/CueMemory-v0"


def record(delay: int, hidden: int, seed: int, success: float | None = None, *, error: str | None = None,
           probe: list | None = None, curve: list | None = None) -> dict:
    """One trial's record as run_sweep writes it (the contract of workbench/sweep.py)."""
    params = {"delay": delay, "hidden_size": hidden}
    key = f"delay={delay},hidden_size={hidden},seed={seed}"
    base = {"key": key, "params": params, "seed": seed, "env_id": ENV, "provenance": {"workbench": "test"},
            "worker": "host:1", "seconds": 3.0 + seed}
    if error is not None:
        return {**base, "status": "failed", "error": error, "metrics": None, "curve": [], "checkpoint": None}
    curve = curve if curve is not None else [
        {"frames": 576 * (i + 1), "seconds": 0.5 * (i + 1), "mean_return": success * i / 2, "eval_return": None}
        for i in range(3)]
    return {**base, "status": "ok", "error": None, "checkpoint": f"checkpoints/{key}.pt", "curve": curve,
            "metrics": {"mean_return": 2 * success - 1, "return_std": 0.1, "success": success,
                        "solved": success >= 0.95, "frames": 1728, "train_seconds": 2.0 + seed,
                        "probe_r2": {"cue": 0.5, "time": 0.9},
                        "probe_r2_by_age": {"cue": probe if probe is not None else [1.0] * (delay + 1),
                                            "time": [None] + [0.9] * delay}}}


@pytest.fixture
def records() -> list[dict]:
    """delay 4, 8 × hidden 4, 16 × seeds 0..2, distinct values; (delay 8, hidden 4) seed 2 failed,
    (delay 8, hidden 16) not run yet except seed 0."""
    success = {(4, 4): [0.9, 0.8, 1.0], (4, 16): [1.0, 1.0, 1.0], (8, 4): [0.5, 0.6], (8, 16): [0.7]}
    out = []
    for (d, h), values in success.items():
        for s, v in enumerate(values):
            out.append(record(d, h, s, v))
    out.append(record(8, 4, 2, error="RuntimeError: out of memory in worker"))
    return out


class TestSweepTable:
    def test_rows_by_grid_point_with_mean_std_n_failed(self, records):
        """One row per params, sorted numerically; mean and sample std over the finished seeds; failures counted
        with their error."""
        rows = F.sweep_table(records)
        assert [r["key"] for r in rows] == ["delay=4,hidden_size=4", "delay=4,hidden_size=16",
                                           "delay=8,hidden_size=4", "delay=8,hidden_size=16"]
        first = rows[0]
        assert (first["n"], first["failed"], first["seeds"], first["errors"]) == (3, 0, [0, 1, 2], [])
        assert first["success"] == pytest.approx(0.9)
        assert first["success_std"] == pytest.approx(np.std([0.9, 0.8, 1.0], ddof=1))
        assert first["mean_return"] == pytest.approx(0.8)
        assert first["solved"] == pytest.approx(1 / 3)
        assert first["seconds"] == pytest.approx(4.0)
        failed = rows[2]
        assert (failed["n"], failed["failed"], failed["seeds"]) == (2, 1, [0, 1])
        assert failed["errors"] == [(2, "RuntimeError: out of memory in worker")]
        assert failed["success"] == pytest.approx(0.55)
        single = rows[3]
        assert (single["n"], single["success"], single["success_std"]) == (1, 0.7, None)

    def test_all_failed_point_has_no_value(self):
        """A grid point whose trials all failed: n=0, metrics None, the errors kept."""
        rows = F.sweep_table([record(4, 4, 0, error="boom"), record(4, 4, 1, error="bang")])
        assert len(rows) == 1
        assert (rows[0]["n"], rows[0]["failed"], rows[0]["success"]) == (0, 2, None)
        assert rows[0]["errors"] == [(0, "boom"), (1, "bang")]

    def test_missing_and_nan_metrics_are_left_out(self):
        """success None (not the cue task) and a NaN return do not enter the mean."""
        a, b = record(4, 4, 0, 0.5), record(4, 4, 1, 0.7)
        a["metrics"]["success"] = None
        b["metrics"]["mean_return"] = float("nan")
        row = F.sweep_table([a, b])[0]
        assert row["success"] == pytest.approx(0.7) and row["success_std"] is None
        assert row["mean_return"] == pytest.approx(0.0)

    def test_rows_are_json(self, records):
        """The rows go to JSON as they are (the panel and the CLI share them)."""
        assert json.loads(json.dumps(F.sweep_table(records)))[2]["errors"] == [[2, "RuntimeError: out of memory in "
                                                                                   "worker"]]

    def test_fields_in_order_of_appearance(self, records):
        assert sweep_fields(records) == ["delay", "hidden_size"]


class TestSweepHeatmap:
    def test_z_text_and_axes(self, records):
        """z[i][j] is the mean at (y value i, x value j); text 'mean ± std' and n; axes categorical, sorted."""
        fig = F.sweep_heatmap(records, x="delay", y="hidden_size")
        heat = fig.data[0]
        assert heat.type == "heatmap"
        assert heat.x == ("4", "8") and heat.y == ("4", "16")
        z = np.array(heat.z, dtype=float)
        np.testing.assert_allclose(z, [[0.9, 0.55], [1.0, 0.7]])
        std = np.std([0.9, 0.8, 1.0], ddof=1)
        assert [list(r) for r in heat.text] == [[f"0.90 ± {std:.2f}<br>n=3", "0.55 ± 0.07<br>n=2, 1 failed"],
                                                ["1.00 ± 0.00<br>n=3", "0.70<br>n=1"]]
        assert (heat.zmin, heat.zmax) == (0.0, 1.0)
        assert fig.layout.xaxis.title.text == "delay" and fig.layout.yaxis.type == "category"
        assert "3 seed(s)" in fig.layout.title.text and "1 failed" in fig.layout.title.text

    def test_failed_cells_are_marked_with_their_errors(self, records):
        """A cross on every cell with a failed trial; its hover and the cell's hover carry the error."""
        records = records + [record(4, 16, 3, error="ValueError: bad lr")]
        fig = F.sweep_heatmap(records, x="delay", y="hidden_size")
        marks = fig.data[1]
        assert marks.name == "failed" and marks.showlegend
        assert list(zip(marks.x, marks.y)) == [("8", "4"), ("4", "16")]
        assert "RuntimeError: out of memory" in marks.text[0] and "seed 3: ValueError: bad lr" in marks.text[1]
        assert "failed:" in fig.data[0].customdata[0][1]

    def test_all_failed_cell_is_nan_and_says_failed(self):
        fig = F.sweep_heatmap([record(4, 4, 0, 1.0), record(8, 4, 0, error="boom"), record(8, 4, 1, error="boom")],
                              x="delay", y="hidden_size")
        assert math.isnan(fig.data[0].z[0][1]) and fig.data[0].text[0][1] == "failed (2)"

    def test_cells_not_run_are_empty(self):
        """Records arriving one by one: cells without a record have no value and no text."""
        fig = F.sweep_heatmap([record(4, 4, 0, 0.8), record(8, 16, 0, 0.6)], x="delay", y="hidden_size")
        assert [list(r) for r in fig.data[0].text] == [["0.80<br>n=1", ""], ["", "0.60<br>n=1"]]
        assert not fig.data[1].showlegend

    def test_defaults_metric_and_axes(self, records):
        """Without x/y: the first two fields; without success (not the cue task): mean_return, auto scale."""
        for r in records:
            if r["metrics"]:
                r["metrics"]["success"] = None
        fig = F.sweep_heatmap(records)
        assert fig.layout.xaxis.title.text == "delay" and fig.layout.yaxis.title.text == "hidden_size"
        assert fig.data[0].zmin is None
        assert fig.data[0].z[0][0] == pytest.approx(0.8)  # 2 * 0.9 - 1

    def test_one_field_is_one_row(self):
        recs = [{**record(4, 4, 0, 0.5), "params": {"delay": 4}}, {**record(8, 4, 0, 0.7), "params": {"delay": 8}}]
        fig = F.sweep_heatmap(recs)
        assert fig.data[0].x == ("4", "8") and np.array(fig.data[0].z, dtype=float).shape == (1, 2)

    def test_where_picks_a_third_field(self, records):
        """A third field that varies is refused, named; where= picks one of its values."""
        for r in records:
            r["params"] = {**r["params"], "lr": 0.01 if r["seed"] == 0 else 0.001}
        with pytest.raises(ValueError, match=r"also vary 'lr'.*where="):
            F.sweep_heatmap(records, x="delay", y="hidden_size")
        fig = F.sweep_heatmap(records, x="delay", y="hidden_size", where={"lr": 0.01})
        np.testing.assert_allclose(np.array(fig.data[0].z, dtype=float), [[0.9, 0.5], [1.0, 0.7]])

    @pytest.mark.parametrize("kwargs, match", [
        (dict(x="seed"), r"'x' must be a grid field of the records \(delay, hidden_size\); got 'seed'"),
        (dict(x="delay", y="delay"), "two different grid fields"),
        (dict(metric="accuracy"), r"'metric' must be one of \["),
        (dict(where={"nope": 1}), r"'where' must be a grid field"),
    ])
    def test_bad_arguments_are_named(self, records, kwargs, match):
        with pytest.raises(ValueError, match=match):
            F.sweep_heatmap(records, **kwargs)

    def test_empty_records_give_an_empty_figure(self):
        fig = F.sweep_heatmap([])
        assert fig.data[0].type == "heatmap" and fig.data[1].x == ()

    def test_serialises(self, records):
        """The figure goes to JSON (export) without NaN trouble."""
        assert json.loads(pio.to_json(F.sweep_heatmap(records)))["data"][0]["type"] == "heatmap"


class TestSweepProbeFigure:
    def test_one_line_per_hidden_size_mean_and_band(self):
        """Mean over seeds per age (None ages left out), a band of ± the sample std where two seeds or more."""
        recs = [record(8, 4, 0, 0.6, probe=[1.0, 0.8, 0.2]), record(8, 4, 1, 0.6, probe=[1.0, 0.6, None]),
                record(8, 16, 0, 1.0, probe=[1.0, 0.9, 0.9]), record(8, 16, 1, error="boom")]
        fig = F.sweep_probe_figure(recs, state="cue")
        lines = [t for t in fig.data if t.mode == "lines+markers"]
        assert [t.name for t in lines] == ["hidden_size=4 (n=2)", "hidden_size=16 (n=1)"]
        assert lines[0].y == pytest.approx((1.0, 0.7, 0.2))
        assert lines[1].y == (1.0, 0.9, 0.9)
        bands = [t for t in fig.data if t.name.startswith("hidden_size=4 (n=2) ")]
        assert [t.name.rsplit(" ", 1)[1] for t in bands] == ["upper", "lower"]
        dev = np.std([0.8, 0.6], ddof=1)
        assert bands[0].y[1] == pytest.approx(0.7 + dev) and bands[1].y[1] == pytest.approx(0.7 - dev)
        assert bands[0].y[0] == pytest.approx(1.0) and bands[0].y[2] is None  # one seed at age 2: no spread
        assert bands[1].fill == "tonexty"
        assert not [t for t in fig.data if t.name.startswith("hidden_size=16 (n=1) ")]  # one seed: no band
        assert "Probe for cue" in fig.layout.title.text

    def test_default_state_is_the_first(self):
        fig = F.sweep_probe_figure([record(4, 4, 0, 1.0, probe=[1.0, 0.5])])
        assert "Probe for cue" in fig.layout.title.text and fig.data[0].y == (1.0, 0.5)

    def test_other_state(self):
        fig = F.sweep_probe_figure([record(4, 4, 0, 1.0)], state="time")
        assert fig.data[0].y == (None, 0.9, 0.9, 0.9, 0.9)

    def test_varying_delay_needs_where(self, records):
        with pytest.raises(ValueError, match=r"also vary 'delay'"):
            F.sweep_probe_figure(records)
        fig = F.sweep_probe_figure(records, where={"delay": 4})
        assert [t.name for t in fig.data if t.mode == "lines+markers"] == ["hidden_size=4 (n=3)",
                                                                            "hidden_size=16 (n=3)"]

    def test_bad_state_is_named(self, records):
        with pytest.raises(ValueError, match=r"'state' must be a probed true-state entry \(cue, time\); got 'x'"):
            F.sweep_probe_figure(records, state="x", where={"delay": 4})

    def test_records_without_probes(self):
        """probe_r2_by_age null (a task without true_state): an empty figure, no error."""
        r = record(4, 4, 0, 1.0)
        r["metrics"]["probe_r2_by_age"] = None
        assert F.sweep_probe_figure([r]).data == ()


class TestSweepCurves:
    def test_one_line_per_trial_coloured_by_field(self, records):
        fig = F.sweep_curves_figure(records, color="hidden_size")
        assert len(fig.data) == 9  # the finished trials
        names = [t.name for t in fig.data]
        assert names == ["hidden_size=4"] * 5 + ["hidden_size=16"] * 4
        assert [t.showlegend for t in fig.data].count(True) == 2
        colors = {t.name: t.line.color for t in fig.data}
        assert colors["hidden_size=4"] != colors["hidden_size=16"]
        first = fig.data[0]
        assert first.x == (576, 1152, 1728) and first.y == pytest.approx((0.0, 0.45, 0.9))
        assert first.text[0] == "delay=4,hidden_size=4,seed=0"

    def test_eval_return_and_gaps(self):
        curve = [{"frames": 100, "seconds": 1.0, "mean_return": None, "eval_return": float("nan")},
                 {"frames": 200, "seconds": 2.0, "mean_return": 0.3, "eval_return": 0.9}]
        fig = F.sweep_curves_figure([record(4, 4, 0, 1.0, curve=curve)], y="eval_return", target=0.9)
        assert fig.data[0].x == (200,) and fig.data[0].y == (0.9,)
        assert fig.layout.shapes[0].name == "target"
        with pytest.raises(ValueError, match="'y' must be 'mean_return' or 'eval_return'"):
            F.sweep_curves_figure([], y="loss")


def test_cell_text():
    assert cell_text(0.951, 0.0312, 3) == "0.95 ± 0.03<br>n=3"
    assert cell_text(12.345, 1.5, 2, digits=1) == "12.3 ± 1.5<br>n=2"
    assert cell_text(None, None, 0, 1) == "failed (1)"


def test_heatmap_shows_the_planned_grid_before_its_trials_finish():
    """With grid=: every planned value is on its axis from the first record on (empty cells)."""
    fig = F.sweep_heatmap([record(4, 16, 0, 0.8)], x="delay", y="hidden_size",
                          grid={"delay": (4, 8, 16), "hidden_size": (4, 16)})
    assert fig.data[0].x == ("4", "8", "16") and fig.data[0].y == ("4", "16")
    assert [list(r) for r in fig.data[0].text] == [["", "", ""], ["0.80<br>n=1", "", ""]]


def test_table_keeps_the_latest_record_of_a_trial():
    """A failed trial run again (resume) counts once, with its new outcome."""
    rows = F.sweep_table([record(4, 4, 0, error="boom"), record(4, 4, 0, 0.9)])
    assert (rows[0]["n"], rows[0]["failed"], rows[0]["success"]) == (1, 0, 0.9)
