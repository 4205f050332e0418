"""benchmarks/train_bench.py --quick: our side end to end (sb3-contrib's side only where it is installed)."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "train_bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_of_our_side_writes_json_and_markdown(bench, tmp_path, capsys):
    assert bench.main(["--quick", "--seeds", "1", "--no-sb3", "--json", str(tmp_path / "r.json"),
                       "--md", str(tmp_path / "r.md")]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    runs = result["runs"]
    assert [(r["side"], r["env_id"]) for r in runs] == [("ours", bench.CARTPOLE), ("ours", bench.CUE)]
    cart, cue = runs
    assert cart["frames"] == 1024 and cart["solve_return"] == 475.0 and cart["check_episodes"] == 2
    assert cue["solve_return"] == 0.9 and cue["config"]["eval_episodes"] == 2
    assert cart["seconds"] > 0 and 1 <= cart["check_return"] <= 500 and isinstance(cart["solved"], bool)
    assert 0.0 <= cue["check_success"] <= 1.0
    assert len(result["load_start"]) == 3 and all(math.isfinite(x) for x in result["load_start"])
    assert result["sb3_skipped"] == "--no-sb3"
    summary = result["summary"]
    assert summary["cartpole_seconds_median"] == cart["seconds"] and summary["ratio_per_seed"] == []
    md = (tmp_path / "r.md").read_text()
    assert md == capsys.readouterr().out
    assert "| ours, CartPoleNoVel-v1 | 0 |" in md and "sb3-contrib: skipped (--no-sb3)" in md
    assert "load average at start" in md


def test_quick_run_of_sb3_contrib(bench):
    pytest.importorskip("sb3_contrib", reason="sb3-contrib is a benchmark-only dependency (extra 'bench')")
    row = bench.sb3(0, steps=256, eval_episodes=2)
    assert row["steps"] == 256 and row["check_episodes"] == 2 and 1 <= row["check_return"] <= 500
    assert row["seconds"] > 0
    ours = {"side": "ours", "env_id": bench.CARTPOLE, "seed": 0, "seconds": 10.0, "solved": True, "frames": 1}
    summary = bench.summarize({"runs": [ours, {**row, "seconds": 40.0}]})
    assert summary["ratio_per_seed"] == [0.25] and summary["ratio_of_medians"] == 0.25
    assert summary["targets"]["cartpole <= 0.4 x sb3 (every seed)"] is True
