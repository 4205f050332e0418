"""``python -m workbench sweep``: bad input is one line on stderr and exit 2 before any work; a tiny sweep runs.

Most cases call ``workbench.cli.main`` in this process (a subprocess would cost seconds each).
"""
from __future__ import annotations

import json

import pytest

import workbench.sweep
from workbench import cli
from workbench.sweep import SweepInterrupted

TINY = ["--steps", "256", "--set", "num_envs=8", "--set", "frames_per_batch=64", "--set", "epochs=2",
        "--set", "head_cells=8", "--eval-episodes", "8"]


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, option: str, *parts: str) -> None:
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"workbench sweep: error: {option}"), lines[0]
    for part in parts:
        assert part in lines[0], lines[0]


@pytest.fixture
def no_trials(monkeypatch):
    """A trial that starts fails the test: the checks must come first."""
    def forbidden(*args, **kwargs):
        raise AssertionError("a trial started before the arguments were checked")

    monkeypatch.setattr(workbench.sweep, "_run_trial", forbidden)


@pytest.mark.parametrize("argv, option, parts", [
    (["--grid", "hidden_sze=4,8"], "--grid:", ["unknown field 'hidden_sze'", "hidden_size", "delay"]),
    (["--grid", "hidden_size=4,big"], "--grid:", ["'hidden_size': expected an integer; got 'big'"]),
    (["--grid", "hidden_size"], "--grid:", ["expected FIELD=VALUE[,VALUE...]; got 'hidden_size'"]),
    (["--grid", "delay=4", "--env", "workbench/CartPoleNoVel-v1"], "--grid:", ["'delay' needs an environment"]),
    (["--env", "NoSuch-v0"], "--env:", ["expected a registered gymnasium id", "'NoSuch-v0'"]),
    (["--seeds", "three"], "--seeds:", ["got 'three'"]),
    (["--seeds", "0"], "--seeds:", ["expected a count >= 1"]),
    (["--set", "epochs=0"], "--set:", ["'epochs': expected an integer >= 1; got 0"]),
    (["--set", "bogus=1"], "--set:", ["unknown field 'bogus'"]),
    (["--steps", "0"], "--steps:", ["expected an integer >= 1; got 0"]),
    (["--workers", "0"], "--workers:", ["expected an integer >= 1; got 0"]),
    (["--address", "head"], "--address:", ["expected 'auto', 'host:port' or 'ray://host:port'; got 'head'"]),
    (["--address", "127.0.0.1:1"], "--address:", ["cannot reach the Ray cluster at '127.0.0.1:1'"]),
])
def test_bad_input_is_one_line_and_exit_2_before_any_work(capsys, tmp_path, no_trials, argv, option, parts):
    out = tmp_path / "sweep"
    code, _, err = run_main(capsys, "sweep", "--out", str(out), *argv)
    assert_one_line_error(code, err, option, *parts)
    assert not out.exists()  # nothing written


def test_a_folder_of_another_sweep_is_refused_untouched(capsys, tmp_path, no_trials):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "spec.json").write_text(json.dumps({"env_id": "workbench/CueMemory-v0", "grid": {"hidden_size": [4]}}))
    code, _, err = run_main(capsys, "sweep", "--out", str(out), "--grid", "hidden_size=8", *TINY)
    assert_one_line_error(code, err, "--out:", "holds a sweep of another spec")
    assert [p.name for p in out.iterdir()] == ["spec.json"]


def test_ctrl_c_says_what_was_kept_and_how_to_resume(capsys, tmp_path, monkeypatch):
    def interrupted(spec, out, **kwargs):
        raise SweepInterrupted([{"key": "hidden_size=4,seed=0", "status": "ok"}], 2, out)

    monkeypatch.setattr(workbench.sweep, "run_sweep", interrupted)
    code, _, err = run_main(capsys, "sweep", "--out", str(tmp_path / "s"), "--grid", "hidden_size=4", "--seeds", "2")
    assert code == 130
    assert err.strip() == (f"workbench sweep: interrupted; kept 1 of 2 trials in {str(tmp_path / 's')!r}; "
                           "run the same command to resume")


@pytest.fixture(scope="module")
def local_ray():
    pytest.importorskip("ray")
    from test_sweep import shared_ray

    yield from shared_ray()  # the command uses the Ray running in this process


@pytest.mark.slow
def test_a_tiny_sweep_prints_its_table_and_writes_csv_and_json(capsys, tmp_path, local_ray):
    out = tmp_path / "sweep"
    code, stdout, err = run_main(capsys, "sweep", "--out", str(out), "--grid", "hidden_size=4,6", "--grid",
                                 "delay=2", "--seeds", "1", "--workers", "2", *TINY)
    assert code == 0, err
    lines = stdout.splitlines()
    assert lines[0].split() == ["params", "ok/trials", "success", "return"]
    assert lines[1].startswith("delay=2,hidden_size=4  1/1") and lines[2].startswith("delay=2,hidden_size=6  1/1")
    assert lines[-1].startswith("2 of 2 trials ok; wrote ")
    assert "sweep: 100%" in err  # the bar over trials
    rows = (out / "results.csv").read_text().splitlines()
    assert rows[0].startswith("key,hidden_size,delay,seed,status,mean_return") and len(rows) == 3
    assert [t["status"] for t in json.loads((out / "results.json").read_text())["trials"]] == ["ok", "ok"]
    code, stdout, _ = run_main(capsys, "sweep", "--out", str(out), "--grid", "hidden_size=4,6", "--grid",
                               "delay=2", "--seeds", "1", *TINY)  # again: everything is done, nothing runs
    assert code == 0 and "2 of 2 trials ok" in stdout
    assert len((out / "trials.jsonl").read_text().splitlines()) == 2
