"""`python -m workbench demo` runs the whole pipeline headless and writes files a person can open."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from workbench.embedded_metadata import read_metadata
from workbench.export import find_chromium


def run_demo_cli(tmp_path, *args, timeout=300):
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "workbench", "demo", "--out", str(out), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return proc, out


def test_demo_writes_figures_trajectory_and_report(tmp_path):
    proc, out = run_demo_cli(tmp_path, "--env", "CartPole-v1", "--steps", "150", "--formats", "html,json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("hidden_heatmap", "pca_2d", "pca_3d", "hidden_norm", "gates", "replay_divergence"):
        html = (out / f"{name}.html").read_text()
        assert "cdn.plot.ly" not in html and "plotly.min.js" in html
        figure = json.loads((out / f"{name}.json").read_text())
        assert figure["data"], name
        assert read_metadata(out / f"{name}.json")["env"] == "CartPole-v1"
    assert (out / "plotly.min.js").stat().st_size > 1_000_000
    assert (out / "trajectory.pt").exists()
    report = (out / "diagnostics.txt").read_text()
    assert report.startswith("0 errors") and "Replay matches the rollout" in report
    assert str(out / "pca_2d.html") in proc.stdout
    assert "Resets restart the memory" in proc.stdout


@pytest.mark.skipif(find_chromium() is None, reason="static export needs Debian's chromium (apt-get install chromium)")
def test_demo_static_images_on_velocity_hidden_pendulum(tmp_path):
    proc, out = run_demo_cli(tmp_path, "--env", "Pendulum-v1", "--hide-velocity", "--steps", "220",
                             "--num-envs", "2", "--formats", "png,svg")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "hidden_heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (out / "pca_2d.svg").read_bytes()[:2000]
    assert "probe_r2" in proc.stdout and "hidden R²=" in proc.stdout


def test_demo_unwritable_output_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    bad = subprocess.run([sys.executable, "-m", "workbench", "demo", "--steps", "20", "--out", str(blocker / "x")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0
    assert str(blocker) in bad.stderr
    assert blocker.read_text() == "a file, not a folder"
