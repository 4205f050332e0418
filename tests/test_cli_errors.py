"""Bad input to the command line: one line on stderr naming the option, exit 2, and no work done first.

Most cases call ``workbench.cli.main`` in this process (a subprocess per case would cost
seconds each); the ones that need a real process (Ctrl-C, the lab's command line) run one.
"""
from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from workbench import cli
from workbench.errors import ConfigError, EnvMismatchError, OutputPathError

REPO = Path(__file__).resolve().parent.parent


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    """``main(argv)`` here: (exit code, stdout, stderr)."""
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, command: str, option: str, *parts: str) -> None:
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"workbench {command}: error: {option}"), lines[0]
    assert "Traceback" not in err
    for part in parts:
        assert part in lines[0], lines[0]


@pytest.fixture
def no_work(monkeypatch):
    """Makes the commands' long work fail loudly, so a test proves the check came before it."""
    import workbench.benchmark.runner
    import workbench.demo
    import workbench.train

    def forbidden(*args, **kwargs):
        raise AssertionError("the work started before the arguments were checked")

    monkeypatch.setattr(workbench.train, "train", forbidden)
    monkeypatch.setattr(workbench.train, "evaluate", forbidden)
    monkeypatch.setattr(workbench.demo, "run_demo", forbidden)
    monkeypatch.setattr(workbench.benchmark.runner, "run", forbidden)
    monkeypatch.setattr(cli.os, "execve", forbidden)
    monkeypatch.setattr(cli.os, "execv", forbidden)


CASES = [
    # (argv, option, parts of the message)
    (["train", "--steps", "-10"], "--steps", ["integer >= 1", "got -10"]),
    (["train", "--steps", "0"], "--steps", ["got 0"]),
    (["train", "--epochs", "0"], "--epochs", ["got 0"]),
    (["train", "--num-envs", "0"], "--num-envs", ["got 0"]),
    (["train", "--frames-per-batch", "0"], "--frames-per-batch", ["got 0"]),
    (["train", "--frames-per-batch", "100", "--num-envs", "8"], "--frames-per-batch",
     ["multiple of --num-envs (8)", "got 100"]),
    (["train", "--hidden-size", "0"], "--hidden-size", ["got 0"]),
    (["train", "--lr", "0"], "--lr", ["> 0", "got 0.0"]),
    (["train", "--lr=-1e-3"], "--lr", ["got -0.001"]),
    (["train", "--lr", "nan"], "--lr", ["got nan"]),
    (["train", "--seed", "-1"], "--seed", [">= 0", "got -1"]),
    (["train", "--env", "Bogus-v0"], "--env", ["registered gymnasium id", "'Bogus-v0'"]),
    (["train", "--out", "/proc/t9.pt"], "--out", ["/proc/t9.pt"]),
    (["train", "--out", "{tmp}"], "--out", ["is a folder"]),
    (["train", "--out", "{tmp}/taken.pt"], "--out", ["taken.pt' exists; pass --overwrite"]),
    (["lab", "--port", "-5"], "--port", ["1..65535", "got -5"]),
    (["lab", "--port", "0"], "--port", ["got 0"]),
    (["lab", "--port", "65536"], "--port", ["got 65536"]),
    (["lab", "--notebook-dir", "{tmp}/missing"], "--notebook-dir", ["existing folder", "missing"]),
    (["lab", "--ip", "192.0.2.1"], "--ip", ["address of this machine", "'192.0.2.1'"]),
    (["app", "--port", "-5"], "--port", ["1..65535", "got -5"]),
    (["app", "--port", "65536"], "--port", ["got 65536"]),
    (["app", "--ip", "192.0.2.1"], "--ip", ["address of this machine", "'192.0.2.1'"]),
    (["app", "--ip", "not an address"], "--ip", ["'not an address'"]),
    (["app", "--notebook", "{tmp}/missing.ipynb"], "--notebook", [".ipynb file", "missing.ipynb"]),
    (["app", "--notebook", "{tmp}/taken.pt"], "--notebook", [".ipynb file", "taken.pt"]),
    (["bench", "--threads", "0"], "--threads", ["integer >= 1", "got 0"]),
    (["bench", "--threads", "-2"], "--threads", ["got -2"]),
    (["bench", "--device", "tpu"], "--device", ["cpu, cuda or cuda:N", "'tpu'"]),
    (["bench", "--sections", "bogus"], "--sections", ["step,recurrent,scaling,python,rollout", "'bogus'"]),
    (["bench", "--sections", "step,bogus"], "--sections", ["'step,bogus'"]),
    (["bench", "--json", "/proc/x.json"], "--json", ["/proc/x.json"]),
    (["bench", "--json", "{tmp}"], "--json", ["is a folder"]),
    (["demo", "--steps", "1"], "--steps", [">= 3", "got 1"]),
    (["demo", "--steps", "2"], "--steps", ["got 2"]),
    (["demo", "--steps", "-4"], "--steps", ["got -4"]),
    (["demo", "--hidden-size", "0"], "--hidden-size", ["got 0"]),
    (["demo", "--hidden-size", "2"], "--hidden-size", [">= 3", "got 2"]),
    (["demo", "--num-envs", "0"], "--num-envs", ["got 0"]),
    (["demo", "--seed", "-1"], "--seed", ["got -1"]),
    (["demo", "--formats", "bogus"], "--formats", ["html,json,png,svg,pdf", "'bogus'"]),
    (["demo", "--formats", "html,gif"], "--formats", ["'html,gif'"]),
    (["demo", "--formats", ","], "--formats", ["','"]),
    (["demo", "--env", "Nope-v1"], "--env", ["'Nope-v1'"]),
    (["demo", "--env", "LunarLander-v3", "--hide-velocity"], "--hide-velocity", ["'LunarLander-v3'"]),
    (["demo", "--out", "{tmp}/taken.pt"], "--out", ["is a file, not a folder"]),
    (["demo", "--out", "{tmp}/taken.pt/sub"], "--out", ["taken.pt"]),
    (["evaluate", "{ckpt}", "--episodes", "0"], "--episodes", ["integer >= 1", "got 0"]),
    (["evaluate", "{ckpt}", "--episodes", "-3"], "--episodes", ["got -3"]),
    (["evaluate", "{ckpt}", "--seed", "-1"], "--seed", ["got -1"]),
    (["evaluate", "{ckpt}", "--env", "Bogus"], "--env", ["'Bogus'"]),
    (["check-gpu", "--device", "tpu"], "--device", ["'tpu'"]),
    (["check-gpu", "--budget", "0"], "--budget", ["got 0.0"]),
]


@pytest.mark.parametrize("argv, option, parts", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_option_is_one_line_naming_it(argv, option, parts, tmp_path, capsys, no_work):
    """Each bad option: exit 2, one stderr line that names it, what was expected and what came in."""
    (tmp_path / "taken.pt").write_bytes(b"a user's file")
    argv = [a.format(tmp=tmp_path, ckpt=tmp_path / "taken.pt") for a in argv]
    if argv[0] == "train" and "--out" not in argv:
        argv += ["--out", str(tmp_path / "new.pt")]
    code, _, err = run_main(capsys, *argv)
    assert_one_line_error(code, err, argv[0], option, *parts)
    assert (tmp_path / "taken.pt").read_bytes() == b"a user's file"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(["--steps", "--num-envs", "--frames-per-batch", "--epochs", "--hidden-size"]),
       value=st.integers(max_value=0))
def test_train_counts_below_one_are_refused(option, value, tmp_path, capsys, no_work):
    """Any count below 1 for any of train's counts: the option and the value in one line."""
    code, _, err = run_main(capsys, "train", "--out", str(tmp_path / "c.pt"), f"{option}={value}")
    assert_one_line_error(code, err, "train", option, f"got {value}")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lr=st.one_of(st.floats(max_value=0.0), st.just(float("inf")), st.just(float("nan"))))
def test_train_lr_must_be_positive_and_finite(lr, tmp_path, capsys, no_work):
    code, _, err = run_main(capsys, "train", "--out", str(tmp_path / "c.pt"), f"--lr={lr!r}")
    assert_one_line_error(code, err, "train", "--lr", "finite number > 0")


@pytest.mark.parametrize("argv, option", [
    (["train", "--out", "{tmp}/c.pt", "--num-envs", "0"], "--num-envs"),
    (["bench", "--sections", "bogus"], "--sections"),
    (["demo", "--steps", "2", "--out", "{tmp}/d"], "--steps"),
    (["lab", "--port", "-5"], "--port"),
    (["app", "--ip", "192.0.2.1"], "--ip"),
])
@pytest.mark.slow
def test_bad_option_in_a_real_process(argv, option, tmp_path):
    """The same through ``python -m workbench``: exit 2, one stderr line, no traceback."""
    argv = [a.format(tmp=tmp_path) for a in argv]
    done = subprocess.run([sys.executable, "-m", "workbench", *argv], capture_output=True, text=True,
                          timeout=180, cwd=tmp_path)
    assert_one_line_error(done.returncode, done.stderr, argv[0], option)
    assert done.stdout == ""


# ------------------------------------------------------------------ TrainConfig


class TestTrainConfig:
    @pytest.mark.parametrize("field, value, expected", [
        ("total_frames", -10, "an integer >= 1"), ("total_frames", 0, "an integer >= 1"),
        ("num_envs", 0, "an integer >= 1"), ("frames_per_batch", 0, "an integer >= 1"),
        ("epochs", 0, "an integer >= 1"), ("minibatches", 0, "an integer >= 1"),
        ("hidden_size", 0, "an integer >= 1"), ("best_window", 0, "an integer >= 1"),
        ("seed", -1, "an integer >= 0"), ("max_steps", 0, "an integer >= 1"),
        ("total_frames", 2.5, "an integer >= 1"), ("epochs", True, "an integer >= 1"),
        ("lr", 0.0, "a finite number > 0"), ("lr", float("inf"), "a finite number > 0"),
        ("clip_epsilon", 0, "a finite number > 0"), ("max_grad_norm", -1.0, "a finite number > 0"),
        ("reward_scale", 0.0, "a finite number > 0"), ("entropy_coeff", -0.1, "a finite number >= 0"),
        ("critic_coeff", float("nan"), "a finite number >= 0"), ("gamma", 0.0, "a finite number in (0, 1]"),
        ("gamma", 1.5, "a finite number in (0, 1]"), ("lmbda", -0.1, "a finite number in [0, 1]"), ("head_cells", (0,), "a tuple of ints >= 1"),
        ("anneal_lr", 1, "a bool"), ("frames_per_batch", 100, "a multiple of 'num_envs' (8)"),
        ("minibatches", 3, "a divisor of 'num_envs' (8)"),
    ])
    def test_bad_field_is_a_config_error_naming_it(self, field, value, expected):
        """A bad field fails when the config is made, naming the field, the expectation and the value."""
        from workbench.train import TrainConfig

        with pytest.raises(ConfigError, match=rf"^TrainConfig: '{field}': expected {re.escape(expected)}.*; got "):
            TrainConfig(**{field: value})

    @given(frames=st.integers(max_value=0))
    def test_no_frame_budget_below_one(self, frames):
        """``total_frames`` <= 0 (once an endless run, or an untrained checkpoint) is refused."""
        from workbench.train import TrainConfig

        with pytest.raises(ConfigError, match=rf"got {frames}$"):
            TrainConfig(total_frames=frames)

    def test_defaults_and_per_env_defaults_are_valid(self):
        from workbench.train import DEFAULTS, TrainConfig, _config_for

        assert TrainConfig().total_frames == 307_200
        for env_id in DEFAULTS:
            assert _config_for(env_id).env_id == env_id
        assert TrainConfig(head_cells=[8, 8]).head_cells == (8, 8)


# ------------------------------------------------------------------ evaluate: env vs checkpoint


@pytest.fixture(scope="module")
def cartpole_checkpoint(tmp_path_factory):
    """A tiny untrained CartPole policy (4 observations, 2 discrete actions) saved as a checkpoint."""
    from workbench.envs import EnvSpec, make_env
    from workbench.checkpoints import save_checkpoint
    from workbench.policy import PolicySpec, build_policy

    spec = PolicySpec(hidden_size=4)
    policy = build_policy(spec, make_env(EnvSpec("CartPole-v1")), device="cpu")
    return save_checkpoint(policy, spec, tmp_path_factory.mktemp("ckpt") / "cartpole.pt",
                           metadata={"env_id": "CartPole-v1"})


@pytest.mark.parametrize("env_id, found", [
    ("MountainCar-v0", "found observation size 2 and 3 discrete actions"),
    ("Acrobot-v1", "found observation size 6 and 3 discrete actions"),
    ("Pendulum-v1", "found observation size 3 and a continuous action of 1 dim(s) in [-2, 2]"),
])
def test_evaluate_refuses_an_env_that_does_not_fit(env_id, found, cartpole_checkpoint, capsys):
    """A 2-action CartPole policy on another env: one line naming the env, the expected and the found spaces."""
    code, out, err = run_main(capsys, "evaluate", str(cartpole_checkpoint), "--env", env_id, "--episodes", "1")
    assert_one_line_error(code, err, "evaluate", "--env", repr(env_id),
                          "expected observation size 4 and 2 discrete actions (categorical)", found)
    assert "mean_return" not in out


def test_evaluate_library_call_raises_env_mismatch(cartpole_checkpoint):
    from workbench.checkpoints import load_checkpoint
    from workbench.train import evaluate

    policy, _ = load_checkpoint(cartpole_checkpoint)
    with pytest.raises(EnvMismatchError, match=r"'MountainCar-v0' does not fit the policy"):
        evaluate(policy, "MountainCar-v0", 1)
    assert len(evaluate(policy, "CartPole-v1", 2)) == 2  # the env it fits still runs


# ------------------------------------------------------------------ output paths


def test_train_checks_out_before_training(tmp_path, capsys, monkeypatch):
    """``train --out`` that cannot be written fails before any environment is built."""
    import workbench.envs
    import workbench.session  # noqa: F401  (imported first: it binds make_env, which must stay the real one)
    import workbench.train  # noqa: F401

    def forbidden(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(workbench.envs, "make_env", forbidden)
    code, _, err = run_main(capsys, "train", "--out", "/proc/t9.pt")
    assert_one_line_error(code, err, "train", "--out", "'/proc/t9.pt'")
    from workbench.train import TrainConfig, train

    with pytest.raises(OutputPathError, match=r"^out: expected a file path; .* is a folder"):
        train(TrainConfig(total_frames=64, num_envs=2, frames_per_batch=32), tmp_path)


def test_train_saves_to_a_fallback_when_the_write_fails_at_the_end(tmp_path, monkeypatch):
    """The folder of ``out`` becomes a file during training: the model goes to the temp folder, and the error says where."""
    import shutil
    import tempfile

    from workbench.checkpoints import checkpoint_metadata, load_checkpoint
    from workbench.train import TrainConfig, train

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    folder = tmp_path / "runs"
    folder.mkdir()

    def break_folder(row):
        shutil.rmtree(folder)
        folder.write_text("now a file")

    cfg = TrainConfig(env_id="workbench/CueMemory-v0", total_frames=32, num_envs=2, frames_per_batch=32,
                      epochs=1, hidden_size=4, head_cells=(4,), progress=False)
    with pytest.raises(OutputPathError, match=r"could not write the checkpoint to .*runs/c\.pt.*; saved it to") as info:
        train(cfg, folder / "c.pt", callback=break_folder)
    saved = Path(re.search(r"saved it to '([^']+)' instead", str(info.value)).group(1))
    assert saved.parent == tmp_path / "tmp" and saved.name.startswith("workbench-c.") and saved.suffix == ".pt"
    assert saved.stat().st_mode & 0o077 == 0  # the temp folder is shared: only this user reads it
    policy, spec = load_checkpoint(saved)
    assert spec.hidden_size == 4 and checkpoint_metadata(saved)["frames"] == 32
    assert folder.read_text() == "now a file"


def test_save_or_fallback(tmp_path, monkeypatch):
    import tempfile

    from workbench.files import atomic_write, save_or_fallback

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    path, failure = save_or_fallback(lambda p: atomic_write(p, b"x"), tmp_path / "ok.json")
    assert (path, failure) == (tmp_path / "ok.json", None) and path.read_bytes() == b"x"
    path, failure = save_or_fallback(lambda p: atomic_write(p, b"y"), tmp_path / "no" / "r.json")
    assert isinstance(failure, OSError) and failure.errno == 2  # ENOENT: the folder is missing
    assert path.parent == tmp_path and path.name.startswith("workbench-r.") and path.read_bytes() == b"y"

    def never(p):
        raise OSError(28, "No space left on device")

    before = set(tmp_path.iterdir())
    with pytest.raises(OSError, match="No space left"):
        save_or_fallback(never, tmp_path / "z.json")
    assert set(tmp_path.iterdir()) == before  # no empty fallback left behind


def test_bench_json_fallback(tmp_path, monkeypatch):
    """``bench --json`` whose folder breaks before the end: the results go to the temp folder, named in the error."""
    import tempfile

    from workbench.benchmark import runner as suite

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setitem(suite.SECTIONS, "python", lambda report, cfg, out: None)
    blocker = tmp_path / "file"
    blocker.write_text("a file")
    with pytest.raises(OutputPathError, match=r"^--json: could not write .*file/r\.json.*; the results are in '([^']+)'"):
        suite.run(quick=True, json_path=str(blocker / "r.json"), sections=["python"], out=lambda *a: None)
    fallback = next(tmp_path.glob("workbench-r.*.json"))
    assert json.loads(fallback.read_text())["config"]["sections"] == ["python"]
    assert blocker.read_text() == "a file"


# ------------------------------------------------------------------ Ctrl-C in train


def _interrupt_train(tmp_path: Path, frames_per_batch: int, wait_for: bytes) -> tuple[subprocess.CompletedProcess, str]:
    """Starts ``train``, waits until its progress bar shows ``wait_for``, sends SIGINT; (result, stderr)."""
    out = tmp_path / "c.pt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench", "train", "--env", "workbench/CueMemory-v0", "--out", str(out),
         "--steps", "100000000", "--num-envs", "2", "--frames-per-batch", str(frames_per_batch), "--epochs", "1",
         "--hidden-size", "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    seen = b""
    try:
        deadline = time.monotonic() + 240
        while not re.search(wait_for, seen):
            chunk = os.read(proc.stderr.fileno(), 4096)
            assert chunk and time.monotonic() < deadline, seen.decode(errors="replace")
            seen += chunk
        proc.send_signal(signal.SIGINT)
        stdout, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = (seen + rest).decode()
    # the bar redraws its line with \r and ends without a newline when Ctrl-C comes as it first draws, so
    # the message may follow the bar's text on the same line
    pieces = [re.sub(r"^.*frame/s[^\]]*\]", "", piece) for piece in re.split(r"[\r\n]", err)]  # a bar, then maybe text
    lines = [line for line in pieces if line.strip()]
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout.decode(), err), "\n".join(lines)


@pytest.mark.slow
def test_ctrl_c_after_a_batch_writes_the_last_weights_to_a_partial_file(tmp_path):
    """SIGINT mid-training: exit 130, one line naming the partial file; --out itself is not written."""
    from workbench.checkpoints import checkpoint_metadata, load_checkpoint

    result, message = _interrupt_train(tmp_path, 64, rb"\| [1-9]\d*/100000000")
    assert result.returncode == 130, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert len(message.splitlines()) == 1, message
    match = re.fullmatch(r"workbench train: interrupted after (\d+) of 100000000 frames; wrote the weights after "
                         r"\1 frames to '(.+)', not to '(.+)'", message)
    assert match, message
    assert Path(match.group(2)) == tmp_path / "c.partial.pt" and Path(match.group(3)) == tmp_path / "c.pt"
    assert not (tmp_path / "c.pt").exists()
    load_checkpoint(tmp_path / "c.partial.pt")
    meta = checkpoint_metadata(tmp_path / "c.partial.pt")
    assert meta["interrupted"] is True and meta["frames"] == int(match.group(1)) >= 64


@pytest.mark.slow
def test_ctrl_c_before_a_batch_finished_writes_nothing(tmp_path):
    """SIGINT before the first batch is done: exit 130, one line saying no checkpoint was written."""
    result, message = _interrupt_train(tmp_path, 40_000, rb"\| 0/100000000")
    assert result.returncode == 130, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert message == ("workbench train: interrupted after 0 of 100000000 frames; no checkpoint written "
                       "(no batch had finished)")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_partial_file_never_replaces_a_users_file(tmp_path):
    from workbench.train import _partial_path

    assert _partial_path(tmp_path / "c.pt") == tmp_path / "c.partial.pt"
    (tmp_path / "c.partial.pt").write_text("mine")
    (tmp_path / "c.partial-2.pt").write_text("mine too")
    assert _partial_path(tmp_path / "c.pt") == tmp_path / "c.partial-3.pt"
    assert _partial_path(tmp_path / "model") == tmp_path / "model.partial"


# ------------------------------------------------------------------ lab: the token stays off the command line


def test_lab_passes_the_token_in_the_environment_not_argv(tmp_path, capsys, monkeypatch):
    """The exec'd command line holds no token; JUPYTER_TOKEN holds the one in the printed URL."""
    calls = []
    monkeypatch.setattr(cli.os, "execve", lambda path, argv, env: calls.append((path, argv, env)))
    monkeypatch.setattr(cli.os, "execv", lambda *a: pytest.fail("os.execv: the environment would not be set"))
    monkeypatch.setenv("JUPYTER_TOKEN", "an-old-token")
    code = cli.main(["lab", "--headless", "--notebook-dir", str(tmp_path)])
    out = capsys.readouterr().out
    token = re.search(r"URL: http://127\.0\.0\.1:\d+/lab\?token=([0-9a-f]{48})$", out, re.MULTILINE).group(1)
    assert code == 0 and len(calls) == 1
    path, argv, env = calls[0]
    assert path == sys.executable and argv[1:3] == ["-m", "jupyterlab"]
    assert not any(token in a or "IdentityProvider" in a or "token=" in a.lower() for a in argv), argv
    assert env["JUPYTER_TOKEN"] == token != "an-old-token"
    assert "--ServerApp.ip=127.0.0.1" in argv and "--no-browser" in argv
    assert env["PATH"] == os.environ["PATH"]  # the rest of the environment passes through


def test_app_serves_the_app_notebook_with_lab_rules(capsys, monkeypatch):
    """``app``: Voila on notebooks/app.ipynb through the launcher that keeps files behind the token; the
    token only in JUPYTER_TOKEN (Voila reads it with auto_token) and in the printed URL; 127.0.0.1."""
    calls = []
    monkeypatch.setattr(cli.os, "execve", lambda path, argv, env: calls.append((path, argv, env)))
    monkeypatch.setenv("JUPYTER_TOKEN", "an-old-token")
    code = cli.main(["app", "--headless"])
    out = capsys.readouterr().out
    token = re.search(r"^URL: http://127\.0\.0\.1:(\d+)/\?token=([0-9a-f]{48})$", out, re.MULTILINE)
    assert code == 0 and token is not None and len(calls) == 1, out
    path, argv, env = calls[0]
    assert argv[1:4] == ["-m", "workbench.voila_app", str(cli.APP_NOTEBOOK.resolve())]
    assert not any(token.group(2) in a or a.startswith(("--Voila.token", "--token", "--IdentityProvider"))
                   for a in argv), argv
    assert env["JUPYTER_TOKEN"] == token.group(2) != "an-old-token"
    assert {"--Voila.ip=127.0.0.1", f"--Voila.port={token.group(1)}", "--Voila.port_retries=0",
            "--Voila.auto_token=True", "--no-browser"} <= set(argv)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _status(url: str) -> int:
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(url, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_real_lab_keeps_its_token_out_of_proc_cmdline(tmp_path):
    """A headless lab: no token in /proc/PID/cmdline; 403 or a redirect without it, 200 with the printed one."""
    port = _free_port()
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"))
    env.pop("JUPYTER_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "lab", "--headless", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    log: list[str] = []
    try:
        token = None
        deadline = time.monotonic() + 90
        while token is None:
            assert proc.poll() is None and time.monotonic() < deadline, "".join(log)
            try:
                log.append(lines.get(timeout=1))
            except queue.Empty:
                continue
            match = re.search(r"URL: http://127\.0\.0\.1:\d+/lab(?:/tree/notebooks)?\?token=(\w+)", log[-1])
            token = match and match.group(1)
        base = f"http://127.0.0.1:{port}"
        while True:
            assert proc.poll() is None, "server exited:\n" + "".join(log)
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as r:
                    assert r.status == 200
                break
            except OSError:
                assert time.monotonic() < deadline + 60, "server never answered:\n" + "".join(log)
                time.sleep(0.5)
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode()
        assert "jupyterlab" in cmdline and token not in cmdline and "token=" not in cmdline.lower(), cmdline
        assert _status(f"{base}/api/status") == 403
        assert _status(f"{base}/api/contents") == 403
        assert _status(f"{base}/lab") in (302, 303)  # to the login page
        assert _status(f"{base}/api/status?token={'0' * len(token)}") == 403
        assert _status(f"{base}/lab?token={token}") == 200
        assert _status(f"{base}/api/contents?token={token}") == 200
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------ check-gpu


def test_check_gpu_without_cuda_says_so_and_runs_nothing(capsys, monkeypatch):
    import torch

    from workbench import gpu_check

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(gpu_check, "run_checks", lambda *a, **k: pytest.fail("a check ran without CUDA"))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("a subprocess ran without CUDA"))
    code, out, err = run_main(capsys, "check-gpu")
    assert code == 0 and err == ""
    assert len(out.splitlines()) == 1 and out.startswith("check-gpu: CUDA is not available (torch "), out


def test_check_gpu_plan_on_cuda_runs_the_real_steps():
    """On CUDA: the gpu tests really run, the rollout is bigger, bench is ``--device cuda --quick`` in full."""
    from workbench.gpu_check import plan

    tests, rollout, bench = plan("cuda")
    assert tests.command[-3:] == ["-m", "gpu", "tests"]
    assert "--collect-only" not in tests.command
    assert bench.command[-5:] == ["workbench", "bench", "--device", "cuda", "--quick"]
    assert rollout.run is not None and rollout.command is None


def test_check_gpu_reports_failures_and_the_budget(capsys):
    """A failing step makes the summary FAILED (exit 1 through the command); a spent budget skips the rest."""
    from workbench.gpu_check import Step, run_checks, summary

    steps = [Step("fine", run=lambda: (True, "all good")),
             Step("broken", run=lambda: (_ for _ in ()).throw(RuntimeError("cuDNN said no"))),
             Step("late", command=[sys.executable, "-c", "pass"], summarize=lambda rc, out: (True, "ran"))]
    results = run_checks("cuda", budget_s=0.0, steps=steps, out=lambda *a: None)
    assert [(r.name, r.ok) for r in results] == [("fine", True), ("broken", False), ("late", False)]
    assert results[1].detail == "RuntimeError: cuDNN said no"
    assert results[2].detail == "not run: the time budget is spent"
    line = summary("cuda", results, 12.0)
    assert line.startswith("check-gpu on cuda: FAILED, 1/3 steps: fine ok (all good); broken FAILED")


@pytest.mark.slow
def test_check_gpu_dry_run_on_cpu(capsys):
    """``--device cpu`` runs the same three steps on a tiny budget and ends with one summary line."""
    code, out, err = run_main(capsys, "check-gpu", "--device", "cpu")
    last = out.strip().splitlines()[-1]
    assert code == 0, out + err
    assert re.fullmatch(r"check-gpu on cpu: passed, 3/3 steps: gpu tests ok \(\d+ collected\); rollout ok "
                        r"\(2x30 steps on cpu, replay gap \S+\); bench ok \(\d+/\d+ checks, \d+/\d+ targets met\); "
                        r"\d+ s", last), last
