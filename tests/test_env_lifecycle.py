"""Worker processes never hang a process: closed at exit, on error and on Ctrl-C; a frozen worker fails
the rollout with WorkerTimeoutError. And one device rule for the library and the panels.

The lifecycle cases run real scripts in subprocesses (a hang must not hang the suite): each has a
generous outer timeout for a loaded machine, and asserts on the exit code, the message and that no
worker pid is left alive.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.envs import EnvSpec, make_env
from workbench.workers import WorkerWatch, close_env
from workbench.errors import ConfigError, DeviceUnavailableError
from workbench.policy import PolicySpec, build_policy, resolve_device
from workbench.rollout import rollout

ROOT = Path(__file__).resolve().parents[1]
OUTER_TIMEOUT_S = 120  # imports alone take seconds on a loaded machine; a hang is thousands of seconds
NO_CUDA_MESSAGE = r"^device: 'cuda' was asked for but CUDA is not available; use 'auto' or 'cpu'"
needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc (Linux)")

PRELUDE = """\
import json, os, signal, sys, time
from workbench.envs import EnvSpec, make_env
from workbench.policy import PolicySpec, build_policy
from workbench.rollout import rollout

def workers(env):
    return [p.pid for p in env.base_env._workers]  # the test reads torchrl's list to know whom to check

def state(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"

spec = EnvSpec("CartPole-v1", num_envs=2, parallel=True, seed=None)
policy = build_policy(PolicySpec(hidden_size=4), make_env(EnvSpec("CartPole-v1")), device="cpu")
env = make_env(spec, policy)
env.reset()
pids = workers(env)
"""


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def _alive(pid: int) -> bool:
    """Running, sleeping or stopped; a zombie (exited, waiting to be reaped by init) is not alive."""
    return _state(pid) not in ("gone", "Z", "X")


def _start(tmp_path: Path, body: str) -> subprocess.Popen:
    script = tmp_path / "script.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # its own process group (its workers join it), to kill them all if it hangs; SIGINT at its default,
    # whatever the runner ignores, so the script gets a KeyboardInterrupt
    return subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _finish(proc: subprocess.Popen, pids: list[int]) -> tuple[int, str, str]:
    """Waits for the script and its output (outer timeout); past it kills its process group and fails."""
    try:
        out, err = proc.communicate(timeout=OUTER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        exited = proc.poll()
        os.killpg(proc.pid, signal.SIGKILL)  # workers left behind hold the pipes open: they go too
        out, err = proc.communicate()
        what = ("did not exit" if exited is None else
                f"exited ({exited}) but left worker processes alive, holding its output open")
        pytest.fail(f"the script {what} after {OUTER_TIMEOUT_S} s (workers {pids}); stderr:\n{err[-2000:]}")
    return proc.returncode, out, err


def _wait_for_file(path: Path, proc: subprocess.Popen) -> list[int]:
    deadline = time.monotonic() + OUTER_TIMEOUT_S
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the script stopped before it wrote {path.name}: {proc.communicate()[1][-2000:]}")
        time.sleep(0.2)
    time.sleep(0.2)  # the file is written in one call; let the script enter what follows
    return json.loads(path.read_text())


@needs_proc
class TestProcessExit:
    @pytest.mark.parametrize("ending, code, stderr_has", [
        ("print(json.dumps(pids))", 0, ""),
        ("print(json.dumps(pids), flush=True)\nraise ValueError('boom')", 1, "ValueError: boom"),
    ])
    def test_script_with_an_open_parallel_env_exits(self, tmp_path, ending, code, stderr_has):
        """A script that leaves its ParallelEnv open exits (end or uncaught error) and its workers with it."""
        proc = _start(tmp_path, ending + "\n")
        rc, out, err = _finish(proc, [])
        pids = json.loads(out.splitlines()[0])
        assert rc == code, err[-2000:]
        assert stderr_has in err
        assert len(pids) == 2 and not any(_alive(pid) for pid in pids)

    def test_ctrl_c_during_a_rollout_on_a_frozen_worker(self, tmp_path):
        """SIGINT to the main process (Jupyter's interrupt) while it waits on a frozen worker: it exits,
        and both workers, the frozen one included, are gone."""
        proc = _start(tmp_path, """
            os.kill(pids[1], signal.SIGSTOP)
            with open("pids.tmp", "w") as f:
                json.dump(pids, f)
            os.replace("pids.tmp", "pids.json")
            rollout(policy, env, 10_000, progress=False, device="cpu")  # default worker_timeout: 60 s
        """)
        pids = _wait_for_file(tmp_path / "pids.json", proc)
        assert _state(pids[1]) in ("T", "t")
        proc.send_signal(signal.SIGINT)
        rc, _, err = _finish(proc, pids)
        assert rc == -signal.SIGINT, err[-2000:]  # Python's exit on an uncaught KeyboardInterrupt
        assert "KeyboardInterrupt" in err
        assert not any(_alive(pid) for pid in pids)


@needs_proc
class TestFrozenWorker:
    def test_rollout_fails_naming_the_worker_and_leaves_no_worker(self, tmp_path):
        """A SIGSTOPped worker fails the rollout with WorkerTimeoutError naming it (index, pid); its reset
        never answers. With a seed the command in flight is set_seed, which does not tell who answered:
        every worker is named, the stopped one marked. No worker is left afterwards."""
        proc = _start(tmp_path, """
            from workbench.errors import WorkerTimeoutError
            report = {"pids": [pids]}
            for frozen, seed in ((1, None), (0, 3)):
                if frozen == 0:
                    env = make_env(spec, policy)
                    env.reset()
                    pids = workers(env)
                    report["pids"].append(pids)
                os.kill(pids[frozen], signal.SIGSTOP)
                try:
                    rollout(policy, env, 50, seed=seed, progress=False, device="cpu", worker_timeout=2)
                except WorkerTimeoutError as error:
                    report.setdefault("errors", []).append(str(error))
                report.setdefault("states", []).append([state(pid) for pid in pids])
                report.setdefault("closed", []).append(env.is_closed)
            print(json.dumps(report))
        """)
        rc, out, err = _finish(proc, [])
        assert rc == 0, err[-2000:]
        report = json.loads(out.splitlines()[-1])
        (a0, a1), (b0, b1) = report["pids"]
        first, second = report["errors"]
        assert f"rollout: environment worker 1 (pid {a1}, stopped) did not answer within worker_timeout=2 s" in first
        assert "(during reset)" in first and str(a0) not in first
        assert f"workers 0 (pid {b0}, stopped), 1 (pid {b1})" in second and "(during set_seed)" in second
        assert report["states"] == [["gone", "gone"], ["gone", "gone"]]  # killed and reaped, none orphaned
        assert report["closed"] == [True, True]


class TestWorkerWatch:
    @settings(max_examples=25, deadline=None)
    @given(st.one_of(st.floats(max_value=0.0), st.integers(max_value=0), st.booleans(), st.none(), st.text(max_size=3)))
    def test_bad_timeout_is_a_config_error(self, value):
        """Anything but a positive number of seconds is refused, naming the argument and the value."""
        with pytest.raises(ConfigError, match=r"^rollout: 'worker_timeout' expected a number of seconds > 0; got "):
            WorkerWatch(None, value)

    def test_in_process_envs_need_no_watch(self):
        """Without worker processes the watch starts no thread."""
        env = make_env(EnvSpec("CartPole-v1", num_envs=2))
        with WorkerWatch(env, 1.0) as watch, watch.call("reset"):
            env.reset()
        assert watch.parallel is None and watch._thread is None

    def test_close_env_twice_and_after_close(self):
        env = make_env(EnvSpec("CartPole-v1", num_envs=2, parallel=True))
        env.reset()
        env.close()
        close_env(env)
        close_env(env)
        assert env.is_closed


class TestDeviceRule:
    """'auto' picks CUDA when present; an explicit 'cuda' without CUDA is a ConfigError in the library and a
    warning in the panel, which selects 'cpu' and keeps working. CUDA's absence is simulated, so these
    run on GPU machines too."""

    @pytest.fixture
    def no_cuda(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def test_library_refuses_cuda(self, no_cuda):
        assert resolve_device("auto") == torch.device("cpu")
        for choice in ("cuda", "cuda:0", torch.device("cuda")):
            with pytest.raises(ConfigError, match=NO_CUDA_MESSAGE.replace("'cuda'", repr(str(choice)))) as caught:
                resolve_device(choice)
            assert isinstance(caught.value, DeviceUnavailableError) and isinstance(caught.value, RuntimeError)

    def test_rollout_refuses_cuda(self, no_cuda):
        spec = EnvSpec("CartPole-v1")
        policy = build_policy(PolicySpec(hidden_size=4), make_env(spec), device="cpu")
        with pytest.raises(ConfigError, match=NO_CUDA_MESSAGE):
            rollout(policy, make_env(spec, policy), 5, progress=False, device="cuda")

    @settings(max_examples=60, deadline=None)
    @given(st.one_of(st.text(max_size=8), st.sampled_from(["cuda:", "cuda:x", "cuda:-1", "CPU", " cpu", "mps"]),
                     st.integers(), st.none()))
    def test_any_choice_is_a_device_or_a_config_error(self, choice):
        """Whatever comes in, the answer is a device or a ConfigError that names 'device' and echoes it."""
        try:
            device = resolve_device(choice)
        except ConfigError as error:
            assert str(error).startswith("device: ") and repr(choice) in str(error)
        else:
            assert isinstance(device, torch.device) and device.type in ("cpu", "cuda")

    def test_panel_selects_cpu_and_says_why(self, no_cuda):
        from widgets.app import WorkbenchApp

        app = WorkbenchApp(PolicySpec(hidden_size=4), EnvSpec("CartPole-v1", num_envs=1, max_steps=10), steps=12,
                           device="cuda")
        panel = app.rollout_panel
        assert panel.device.value == "cpu"
        assert panel.device_warning.startswith("device: 'cuda' was asked for but CUDA is not available")
        assert "This panel runs on 'cpu' instead." in panel.device_warning
        assert "wb-msg-warning" in panel.device_info.value and "CUDA is not available" in panel.device_info.value
        app.build()
        app.run()
        assert app.errors == {}
        assert app.rollout_panel.result.device == "cpu"

    def test_panel_refuses_an_unknown_device(self):
        from widgets.rollout_panel import RolloutPanel

        with pytest.raises(ConfigError, match=r"^device: expected 'auto', 'cpu', 'cuda' or 'cuda:N'; got 'gpu'"):
            RolloutPanel(device="gpu")

    def test_panel_without_cuda_request_shows_no_warning(self, no_cuda):
        from widgets.rollout_panel import RolloutPanel

        panel = RolloutPanel(device="auto")
        assert panel.device.value == "auto" and panel.device_warning == ""
        assert "wb-msg-warning" not in panel.device_info.value

    @pytest.mark.gpu
    @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: the panel then offers and keeps 'cuda'")
    def test_panel_keeps_cuda_when_present(self):
        from widgets.rollout_panel import RolloutPanel

        panel = RolloutPanel(device="cuda")
        assert panel.device.value == "cuda" and panel.device_warning == ""
