"""train --collectors: one training run collected by torchrl's RayCollector (workbench.distributed).

The Ray tests share one embedded Ray per module (``ray_session`` reuses a running Ray), except the
command-line ones, which start and stop their own in a subprocess as a user's run does.
"""
from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from workbench.errors import ConfigError
from workbench.train import TrainConfig

REPO = Path(__file__).resolve().parent.parent
CUE = "workbench/CueMemory-v0"


def _tiny(**overrides) -> TrainConfig:
    base = dict(env_id=CUE, total_frames=128, num_envs=4, frames_per_batch=64, epochs=1, hidden_size=8,
                head_cells=(8,), delay=2, progress=False)
    return TrainConfig(**{**base, **overrides})


def run_cli(*args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


# ------------------------------------------------------------------ checks before any Ray


@pytest.mark.parametrize("collectors, expected", [(3, "a divisor of 'num_envs' (4)"), (-1, "an integer >= 0")])
def test_collectors_must_divide_num_envs(collectors, expected):
    with pytest.raises(ConfigError, match=rf"^TrainConfig: 'collectors': expected {re.escape(expected)}; got "
                                          rf"{collectors}$"):
        _tiny(collectors=collectors)
    assert _tiny(collectors=4).collectors == 4 and _tiny().collectors == 0


def test_collector_shares():
    from workbench.distributed import SEED_STRIDE, collector_envs

    assert collector_envs(_tiny(collectors=2, seed=5)) == [(2, 5), (2, 5 + SEED_STRIDE)]
    assert collector_envs(_tiny(collectors=4)) == [(1, i * SEED_STRIDE) for i in range(4)]


@pytest.mark.parametrize("argv, message", [
    (["--num-envs", "4", "--frames-per-batch", "64", "--collectors", "3"],
     "--collectors: expected a divisor of --num-envs (4); got 3"),
    (["--collectors", "-2"], "--collectors: expected an integer >= 0; got -2"),
    (["--address", "auto"], "--address: needs --collectors N (N >= 1) to collect on a Ray cluster; "
                            "got --address 'auto' without it"),
    (["--collectors", "2", "--address", "head"],
     "--address: expected 'auto', 'host:port' or 'ray://host:port'; got 'head'"),
])
def test_train_command_rejects_bad_collector_options(tmp_path, capsys, argv, message):
    from workbench.cli import main

    out = tmp_path / "c.pt"
    code = main(["train", "--env", CUE, "--out", str(out), "--no-progress", *argv])
    err = capsys.readouterr().err
    assert code == 2 and err == f"workbench train: error: {message}\n"
    assert not out.exists()


def test_train_command_with_an_unreachable_address_is_one_line(tmp_path):
    out = tmp_path / "c.pt"
    done = run_cli("train", "--env", CUE, "--out", str(out), "--steps", "128", "--num-envs", "2",
                   "--frames-per-batch", "64", "--collectors", "2", "--address", "127.0.0.1:1", "--no-progress")
    assert done.returncode == 2, done.stderr
    assert re.fullmatch(r"workbench train: error: --address: cannot reach the Ray cluster at '127\.0\.0\.1:1' "
                        r"\([^\n]+\)\n", done.stderr), done.stderr
    assert not out.exists()


# ------------------------------------------------------------------ on a real (embedded) Ray


@pytest.fixture(scope="module")
def ray_cluster():
    pytest.importorskip("ray")
    from workbench.cluster import ray_session

    with ray_session(num_cpus=2):
        yield


def _collect(collector, batches: int) -> list:
    from workbench.ppo import collected_batch

    out = []
    for i, data in enumerate(collector):
        out.append(collected_batch(data, 4))
        if i + 1 == batches:
            break
    return out


def _collect_policy(config: TrainConfig):
    from tensordict.nn import TensorDictSequential

    from workbench.policy import PolicySpec, build_policy
    from workbench.ppo import build_critic
    from workbench.session import policy_io

    io = policy_io(config.env_spec())
    actor = build_policy(PolicySpec(hidden_size=config.hidden_size, head_cells=config.head_cells), io, device="cpu")
    return actor, TensorDictSequential(actor, build_critic(io, config.hidden_size, config.head_cells))


@pytest.mark.slow
def test_ray_batches_have_the_local_layout_and_follow_the_weights(ray_cluster):
    from workbench.distributed import make_ray_collector
    from workbench.ppo import make_collector, make_train_env

    config = _tiny(total_frames=64 * 3, delay=3)
    actor, policy = _collect_policy(config)
    local = make_collector(make_train_env(config.env_spec(), policy), policy, config)
    try:
        (expected,) = _collect(local, 1)
    finally:
        local.shutdown()

    remote = make_ray_collector(config.env_spec(), policy, dataclasses.replace(config, collectors=2))
    try:
        first, second = _collect(remote, 2)
        # the weights follow the learner: a head that always says (5, -5) shows in the next batch's logits
        last = [m for m in actor.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.copy_(torch.tensor([5.0, -5.0]))
        remote.update_policy_weights_()
        (third,) = _collect(remote, 1)
    finally:
        remote.shutdown()
        remote.shutdown()  # twice is harmless

    for batch in (first, second, third):
        assert batch.batch_size == expected.batch_size == torch.Size([4, 16])
        assert set(batch.keys(True, True)) == set(expected.keys(True, True))
        for key in expected.keys(True, True):
            assert batch[key].shape == expected[key].shape and batch[key].dtype == expected[key].dtype, key
    assert "recurrent_state" in first.keys() and ("next", "critic_state") in first.keys(True)
    assert first["is_init"][:, 0].all() and expected["is_init"][:, 0].all()  # every row starts an episode
    # a row is one environment from batch to batch: it starts an episode exactly where its last one ended
    done_before = first["next", "done"][:, -1, 0]
    reset = second["is_init"][:, 0, 0]
    assert torch.equal(reset, done_before)
    # each collector has its own seed: rows 0-1 and 2-3 do not replay the same cues (4 episodes each)
    assert not torch.equal(first["observation"][:2], first["observation"][2:])
    assert not torch.allclose(second["logits"], torch.tensor([5.0, -5.0]))
    assert torch.allclose(third["logits"], torch.tensor([5.0, -5.0]))


@pytest.mark.slow
def test_train_through_ray_collectors_writes_a_checkpoint(ray_cluster, tmp_path):
    from workbench.checkpoints import checkpoint_metadata, load_checkpoint
    from workbench.train import train

    rows = []
    history = train(_tiny(collectors=2), tmp_path / "c.pt", callback=rows.append)
    assert [h["frames"] for h in history] == [64, 128] and rows == history
    assert all(h["episodes"] >= 1 for h in history)  # delay 2: episodes of 4 steps end in every batch
    load_checkpoint(tmp_path / "c.pt")
    assert checkpoint_metadata(tmp_path / "c.pt")["frames"] == 128


LEARN = dict(env_id=CUE, total_frames=6144, num_envs=8, frames_per_batch=256, epochs=4, hidden_size=16,
             head_cells=(16,), gamma=0.99, lmbda=0.95, entropy_coeff=0.01, lr=3e-3, reward_scale=1.0, delay=2,
             seed=1, progress=False)
"""A budget the local path solves (greedy success 1.00 at seeds 0-1, solved by about half of it)."""


@pytest.mark.slow
def test_training_through_ray_collectors_learns_the_cue_task_as_the_local_path_does(ray_cluster, tmp_path):
    from workbench.checkpoints import load_checkpoint
    from workbench.tasks import cue_success_rate
    from workbench.train import evaluate, train

    success = {}
    for collectors in (0, 2):
        out = tmp_path / f"cue-{collectors}.pt"
        history = train(TrainConfig(**LEARN, collectors=collectors), out)
        assert history[-1]["frames"] == LEARN["total_frames"]
        policy, _ = load_checkpoint(out)
        success[collectors] = cue_success_rate(evaluate(policy, CUE, 100, delay=LEARN["delay"]))
    assert success[0] >= 0.9 and success[2] >= 0.9, success


# ------------------------------------------------------------------ the command, as a user runs it


def _tree(root: int) -> set[int]:
    """``root``'s descendants now (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.add(pid)
        except OSError:
            pass
    return alive


def _run_watched(argv: list[str], *, interrupt_at: bytes | None = None, timeout: float = 500):
    """Runs ``python -m workbench ARGV`` in its own process group, noting every process it starts; with
    ``interrupt_at``, a terminal's Ctrl-C (SIGINT to the group) once stderr matches it.
    Returns (returncode, stdout, stderr, names of the processes it started, those still alive 10 s after it ended)."""
    proc = subprocess.Popen([sys.executable, "-m", "workbench", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=REPO, start_new_session=True)
    os.set_blocking(proc.stderr.fileno(), False)
    started, names, err, deadline = set(), set(), b"", time.monotonic() + timeout
    try:
        while proc.poll() is None:
            assert time.monotonic() < deadline, err.decode(errors="replace")[-3000:]
            started |= _tree(proc.pid)
            for pid in started:  # read each time: Ray renames its workers ("ray::...") once they run
                try:
                    names.add(Path(f"/proc/{pid}/comm").read_text().strip())
                except OSError:
                    pass
            err += proc.stderr.read() or b""
            if interrupt_at is not None and re.search(interrupt_at, err):
                os.killpg(proc.pid, signal.SIGINT)
                interrupt_at = None
            time.sleep(0.3)
        out, rest = proc.communicate(timeout=60)
        err += rest or b""
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    time.sleep(10)
    left = _alive(started)
    for pid in left:  # leave the machine clean whatever the verdict
        os.kill(pid, signal.SIGKILL)
    return proc.returncode, out.decode(), err.decode(), names, left


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads the process tree from /proc")
def test_train_command_with_collectors_trains_and_leaves_no_ray_process(tmp_path):
    out = tmp_path / "c.pt"
    code, stdout, stderr, names, left = _run_watched(
        ["train", "--env", CUE, "--out", str(out), "--steps", "128", "--num-envs", "4", "--frames-per-batch", "64",
         "--epochs", "1", "--hidden-size", "8", "--delay", "2", "--collectors", "2", "--no-progress"])
    assert code == 0, stderr[-3000:]
    assert "trained workbench/CueMemory-v0 for 128 frames" in stdout and out.is_file()
    assert {"raylet", "gcs_server"} <= names and any(n.startswith("ray::") for n in names), names  # Ray ran
    assert not left, f"processes left running: {sorted(left)}"


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads the process tree from /proc")
def test_ctrl_c_stops_the_remote_collectors_and_ray(tmp_path):
    out = tmp_path / "c.pt"
    code, _, stderr, names, left = _run_watched(
        ["train", "--env", CUE, "--out", str(out), "--steps", "100000000", "--num-envs", "2",
         "--frames-per-batch", "64", "--epochs", "1", "--hidden-size", "4", "--collectors", "2"],
        interrupt_at=rb"\| [1-9]\d*/100000000")
    assert code == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    assert re.search(r"workbench train: interrupted after (\d+) of 100000000 frames; wrote the weights after \1 "
                     r"frames to '.*c\.partial\.pt', not to '.*c\.pt'", stderr), stderr[-3000:]
    assert not out.exists() and (tmp_path / "c.partial.pt").is_file()
    assert {"raylet", "gcs_server"} <= names and any(n.startswith("ray::") for n in names), names  # Ray ran
    assert not left, f"processes left running: {sorted(left)}"
