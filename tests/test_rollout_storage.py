"""rollout() streams into storage allocated once: bit-identical to stacking the per-step frames, memory that
grows by the stored bytes, memory-mapped folders, Cancel with the partial trajectory, and progress."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from tensordict import MemoryMappedTensor, TensorDict
from torch import nn

from workbench.envs import EnvSpec, make_env
from workbench.episodes import episode_and_step
from workbench.errors import Cancelled, ConfigError, OutputPathError
from workbench.jobs import CancelToken
from workbench.keys import KEYS
from workbench.policy import PolicySpec, recurrent_modules
from workbench.rollout import (METADATA_KEY, _metadata, load_trajectory, rollout, save_trajectory,
                               trajectory_metadata)
from workbench.storage import StepStorage, check_storage, stored_bytes
from workbench.testing import policy_and_env

REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ the reference: the implementation before streaming
def stacked_rollout(policy, env, steps, *, seed, metadata=None, on_progress=None):
    """rollout() as it was before the storage streaming: every frame kept, ``torch.stack``-ed at the end
    (cpu, random actions, no wiring check)."""
    from torchrl.envs.utils import ExplorationType, set_exploration_type

    from workbench.gru import set_recurrent_mode

    frames = []
    with torch.random.fork_rng(devices=[]), torch.no_grad(), set_recurrent_mode(False), \
            set_exploration_type(ExplorationType.RANDOM):
        torch.manual_seed(seed)
        env.set_seed(seed)
        td = env.reset()
        for t in range(steps):
            td = policy(td)
            frame, td = env.step_and_maybe_reset(td)
            frames.append(frame)
            if on_progress is not None:
                on_progress(t + 1, steps)
    traj = torch.stack(frames, dim=env.batch_dims)
    traj = traj.reshape(-1, steps) if env.batch_dims != 1 else traj
    modules = recurrent_modules(policy)
    if modules:
        gru = modules[0]
        for key, name in ((gru.in_keys[1], KEYS.hidden), (gru.out_keys[1], KEYS.next_hidden)):
            if key != name and key in traj.keys(True):
                traj.rename_key_(key, name)
        if KEYS.hidden not in traj.keys() and KEYS.next_hidden in traj.keys(True):
            traj.set(KEYS.hidden, torch.zeros_like(traj.get(KEYS.next_hidden)))
    is_init = traj.get(KEYS.is_init, None)
    if is_init is not None:
        episode, step = episode_and_step(is_init.reshape(traj.batch_size))
        traj.set(KEYS.episode, episode)
        traj.set(KEYS.step, step)
    traj.set_non_tensor(METADATA_KEY, _metadata(policy, env, steps, seed, False, torch.device("cpu"), metadata))
    return traj


def assert_same_trajectory(new, ref):
    """Same batch size, same keys, every leaf equal bit for bit with the same dtype; metadata equal but its time."""
    assert new.batch_size == ref.batch_size
    keys = set(ref.keys(True, True)) - {METADATA_KEY}
    assert set(new.keys(True, True)) - {METADATA_KEY} == keys
    for key in keys:
        a, b = new.get(key), ref.get(key)
        assert a.dtype == b.dtype and a.shape == b.shape, (key, a.dtype, b.dtype, a.shape, b.shape)
        assert a.device.type == "cpu", key
        assert torch.equal(a, b), key
    meta_new, meta_ref = trajectory_metadata(new), trajectory_metadata(ref)
    meta_new.pop("created"), meta_ref.pop("created")
    return meta_new, meta_ref


def on_disk(td) -> bool:
    """Whether every tensor of ``td`` is a memory-mapped file (an unlocked memmap TensorDict says False to
    ``is_memmap()``)."""
    return all(isinstance(v, MemoryMappedTensor) for v in td.values(True, True) if isinstance(v, torch.Tensor))


def renamed_hidden_policy():
    """A policy whose GRU keeps its memory under "rs" (stored as KEYS.hidden / KEYS.next_hidden)."""
    from tensordict.nn import TensorDictModule, TensorDictSequential
    from torchrl.modules import ProbabilisticActor

    from workbench import GRUModule

    torch.manual_seed(0)
    gru = GRUModule(4, 3, in_keys=[KEYS.observation, "rs"], out_keys=["features", ("next", "rs")])
    head = TensorDictModule(nn.Linear(3, 2), ["features"], ["logits"])
    env = make_env(EnvSpec(max_steps=5, num_envs=2), gru)
    policy = ProbabilisticActor(TensorDictSequential(gru, head), in_keys=["logits"], spec=env.action_spec,
                                distribution_class=torch.distributions.Categorical)
    return policy, env


CASES = {
    "one env, resets": lambda: policy_and_env(EnvSpec("CartPole-v1", hide_velocity=True, max_steps=7)),
    "two envs, 2 layers, gates": lambda: policy_and_env(
        EnvSpec("CartPole-v1", num_envs=2, max_steps=9),
        PolicySpec(hidden_size=4, num_layers=2, python_based=True, record_gates=True)),
    "continuous actions": lambda: policy_and_env(EnvSpec("Pendulum-v1", num_envs=2, max_steps=6)),
    "other hidden key": renamed_hidden_policy,
    "no primer": lambda: (policy_and_env()[0], make_env(EnvSpec(max_steps=8))),
}


class TestSameAsStacking:
    @pytest.mark.parametrize("case", list(CASES))
    def test_bit_identical(self, case):
        policy, env = CASES[case]()
        ref = stacked_rollout(policy, env, 30, seed=3, metadata={"note": "x"})
        new = rollout(policy, env, 30, seed=3, progress=False, device="cpu", check=False, metadata={"note": "x"})
        meta_new, meta_ref = assert_same_trajectory(new, ref)
        assert meta_new == meta_ref
        assert all(v.is_contiguous() for v in new.values(True, True) if isinstance(v, torch.Tensor))
        assert int(new[KEYS.is_init][:, 1:].sum()) >= 2  # episodes restarted inside the run
        if case == "two envs, 2 layers, gates":
            assert new[KEYS.gates].shape == (2, 30, 2, 3, 4)
        if case == "no primer":
            assert new[KEYS.hidden].abs().max() == 0

    def test_parallel_env(self):
        policy, env = policy_and_env(EnvSpec("CartPole-v1", num_envs=2, parallel=True, max_steps=9))
        try:
            ref = stacked_rollout(policy, env, 25, seed=1)
            new = rollout(policy, env, 25, seed=1, progress=False, device="cpu", check=False)
        finally:
            env.close()
        meta_new, meta_ref = assert_same_trajectory(new, ref)
        assert meta_new == meta_ref


# ------------------------------------------------------------------ memory
RSS_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import psutil, torch
    from workbench.envs import EnvSpec
    from workbench.policy import PolicySpec
    from workbench.rollout import rollout
    from workbench.storage import stored_bytes
    from workbench.testing import policy_and_env

    envs, hidden, steps, mark = (int(a) for a in sys.argv[1:5])
    policy, env = policy_and_env(EnvSpec("CartPole-v1", hide_velocity=True, num_envs=envs, max_steps=200),
                                 PolicySpec(hidden_size=hidden))
    rollout(policy, env, 200, seed=1, progress=False, device="cpu")  # warm-up: code paths, caches, arenas
    proc, rss = psutil.Process(), {}
    def sample(done, total):
        if done in (mark, total):
            rss[done] = proc.memory_info().rss
    if len(sys.argv) > 5:  # the stacking reference, to show what the test catches
        sys.path.insert(0, sys.argv[5])
        from test_rollout_storage import stacked_rollout
        run = lambda: stacked_rollout(policy, env, steps, seed=0, on_progress=sample)
    else:
        run = lambda: rollout(policy, env, steps, seed=0, progress=False, device="cpu", on_progress=sample)
    start = proc.memory_info().rss
    traj = run()
    end = proc.memory_info().rss
    print(json.dumps({"stored": stored_bytes(traj), "steps": steps, "mark": mark, "start": start, "end": end,
                      "at_mark": rss[mark], "at_last": rss[steps]}))
""")


def measure_rss(envs: int, hidden: int, steps: int, mark: int, reference: bool = False) -> dict:
    """RSS of a fresh process around one rollout (after a warm-up), and at steps ``mark`` and ``steps``."""
    args = [sys.executable, "-c", RSS_SCRIPT, str(envs), str(hidden), str(steps), str(mark)]
    if reference:
        args.append(str(Path(__file__).parent))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(args, capture_output=True, text=True, timeout=900, cwd=REPO, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# Fixed allowance over 2x the stored bytes: the last, partly filled 4 KiB page of each of ~25 leaves
# (0.1 MB), the episode/step computation at the end (3 int64 [1, T] tensors: 0.1 MB at 5,000 steps),
# and the noise of the glibc and torch allocators (below 1 MB in every measurement here).
RSS_ALLOWANCE = 4 * 2**20


@pytest.mark.slow
def test_memory_grows_by_the_stored_bytes():
    """One env, hidden 16, 5,000 steps: the RSS growth stays within 2x the bytes the trajectory stores (stacking
    per-step TensorDicts grew by ~12 KB per step for ~0.3 KB stored), over the whole run and per step."""
    r = measure_rss(1, 16, 5000, 500)
    per_step = r["stored"] / r["steps"]
    assert r["end"] - r["start"] <= 2 * r["stored"] + RSS_ALLOWANCE, r
    assert r["at_last"] - r["at_mark"] <= 2 * per_step * (r["steps"] - r["mark"]) + RSS_ALLOWANCE, r


# ------------------------------------------------------------------ memory-mapped folders
class TestMemmap:
    def test_values_equal_memory_and_folder_reopens(self, tmp_path):
        policy, env = policy_and_env(EnvSpec("CartPole-v1", num_envs=2, max_steps=9),
                                     PolicySpec(hidden_size=4, num_layers=2, python_based=True, record_gates=True))
        memory = rollout(policy, env, 30, seed=0, progress=False, device="cpu")
        folder = tmp_path / "runs" / "r1"
        disk = rollout(policy, env, 30, seed=0, progress=False, device="cpu", storage="memmap", memmap_folder=folder)
        assert on_disk(disk)
        meta_disk, meta_memory = assert_same_trajectory(disk, memory)
        assert meta_disk == {**meta_memory, "storage": "memmap", "memmap_folder": str(folder)}
        assert (folder / "meta.json").is_file()
        again = TensorDict.load_memmap(folder)
        assert_same_trajectory(again, memory)
        assert trajectory_metadata(again)["steps"] == 30 and trajectory_metadata(again)["storage"] == "memmap"
        assert_same_trajectory(load_trajectory(folder), memory)
        disk.set("added", torch.zeros(2, 30))  # a trajectory on disk takes new entries, like one in memory

    def test_refuses_a_folder_with_files_before_any_step(self, tmp_path):
        policy, env = policy_and_env()
        (tmp_path / "mine.txt").write_text("keep me")
        steps = []
        with pytest.raises(OutputPathError, match=r"'memmap_folder' .* exists and is not empty"):
            rollout(policy, env, 5, progress=False, device="cpu", storage="memmap", memmap_folder=tmp_path,
                    on_progress=lambda done, total: steps.append(done))
        assert steps == [] and os.listdir(tmp_path) == ["mine.txt"]
        empty = tmp_path / "empty"
        empty.mkdir()
        traj = rollout(policy, env, 5, progress=False, device="cpu", storage="memmap", memmap_folder=empty)
        assert traj.batch_size == (1, 5) and (empty / "meta.json").is_file()

    def test_bad_arguments(self, tmp_path):
        policy, env = policy_and_env()
        with pytest.raises(ConfigError, match="'storage' expected one of 'memory', 'memmap'; got 'disk'"):
            rollout(policy, env, 5, progress=False, device="cpu", storage="disk")
        with pytest.raises(ConfigError, match="storage='memmap' needs 'memmap_folder'"):
            rollout(policy, env, 5, progress=False, device="cpu", storage="memmap")
        with pytest.raises(ConfigError, match="'memmap_folder' is for storage='memmap'"):
            rollout(policy, env, 5, progress=False, device="cpu", memmap_folder=tmp_path / "x")
        (tmp_path / "file").write_text("")
        with pytest.raises(OutputPathError, match="is a file"):
            check_storage("memmap", tmp_path / "file")

    def test_a_failed_run_leaves_no_folder(self, tmp_path):
        policy, env = policy_and_env()

        def fail_at_3(done, total):
            if done == 3:
                raise RuntimeError("boom")
        with pytest.raises(RuntimeError, match="boom"):
            rollout(policy, env, 10, progress=False, device="cpu", storage="memmap", memmap_folder=tmp_path / "r",
                    on_progress=fail_at_3)
        assert not (tmp_path / "r").exists()
        with pytest.raises(RuntimeError, match="boom"):  # an empty folder the user made stays, empty
            rollout(policy, env, 10, progress=False, device="cpu", storage="memmap", memmap_folder=tmp_path,
                    on_progress=fail_at_3)
        assert tmp_path.is_dir() and os.listdir(tmp_path) == []

    def test_not_a_trajectory_folder(self, tmp_path):
        with pytest.raises(ValueError, match="not a memory-mapped trajectory"):
            load_trajectory(tmp_path)


# ------------------------------------------------------------------ Cancel and progress
def cancel_at(token: CancelToken, step: int, seen: list):
    def on_progress(done, total):
        seen.append((done, total))
        if done == step:
            token.cancel("test")
    return on_progress


class TestCancel:
    @pytest.mark.parametrize("num_envs", [1, 2])
    def test_partial_is_the_first_steps(self, num_envs):
        policy, env = policy_and_env(EnvSpec("CartPole-v1", num_envs=num_envs, max_steps=4),
                                     PolicySpec(hidden_size=4, num_layers=2))
        full = rollout(policy, env, 20, seed=5, progress=False, device="cpu")
        token, seen = CancelToken(), []
        with pytest.raises(Cancelled) as info:
            rollout(policy, env, 20, seed=5, progress=False, device="cpu", cancel=token,
                    on_progress=cancel_at(token, 9, seen))
        err = info.value
        assert (err.what, err.done, err.total, err.unit) == ("rollout", 9, 20, "steps")
        assert str(err) == "rollout: cancelled after 9 of 20 steps"
        assert seen == [(t, 20) for t in range(1, 10)]  # after every step, and none after the cancel
        part = err.partial
        assert part.batch_size == (num_envs, 9)
        meta_part, meta_full = assert_same_trajectory(part, full[:, :9])  # episode and step too: computed on 9
        assert meta_part == {**meta_full, "steps": 9, "cancelled": True, "steps_planned": 20}
        assert part[KEYS.episode].max() >= 1  # reset inside the partial run: episode/step computed on it
        assert all(v.is_contiguous() for v in part.values(True, True) if isinstance(v, torch.Tensor))

    def test_the_exception_does_not_hold_the_whole_storage(self):
        """A Cancelled kept (by a panel) holds the [E, done] partial, not the [E, steps] allocation via its traceback."""
        import gc

        policy, env = policy_and_env(EnvSpec("CartPole-v1", num_envs=2))
        token = CancelToken()
        with pytest.raises(Cancelled) as info:
            rollout(policy, env, 777, progress=False, device="cpu", cancel=token, on_progress=cancel_at(token, 5, []))
        gc.collect()
        assert info.value.partial.batch_size == (2, 5)
        with warnings.catch_warnings():  # isinstance on every object touches deprecated torch aliases
            warnings.simplefilter("ignore", FutureWarning)
            alive = [o for o in gc.get_objects() if isinstance(o, torch.Tensor) and o.dim() > 1 and o.shape[1] == 777]
        assert not alive

    @pytest.mark.parametrize("storage", ["memory", "memmap"])
    def test_a_saved_partial_holds_only_its_steps(self, tmp_path, storage):
        policy, env = policy_and_env()
        token = CancelToken()
        folder = tmp_path / "r" if storage == "memmap" else None
        with pytest.raises(Cancelled) as info:
            rollout(policy, env, 4000, seed=0, progress=False, device="cpu", cancel=token, storage=storage,
                    memmap_folder=folder, on_progress=cancel_at(token, 5, []))
        part = info.value.partial
        path = save_trajectory(part, tmp_path / "part.pt")
        assert path.stat().st_size < stored_bytes(part) + 40_000  # 4,000 slots would be > 1 MB
        assert_same_trajectory(load_trajectory(path), part)

    def test_cancelled_before_the_first_step(self, tmp_path):
        policy, env = policy_and_env()
        token = CancelToken()
        token.cancel()
        with pytest.raises(Cancelled, match="cancelled after 0 of 5 steps") as info:
            rollout(policy, env, 5, progress=False, device="cpu", cancel=token, storage="memmap",
                    memmap_folder=tmp_path / "r")
        assert info.value.partial is None and not (tmp_path / "r").exists()

    def test_memmap_keeps_the_steps_finished(self, tmp_path):
        policy, env = policy_and_env(EnvSpec("CartPole-v1", num_envs=2, max_steps=4))
        full = rollout(policy, env, 12, seed=2, progress=False, device="cpu")
        token = CancelToken()
        with pytest.raises(Cancelled) as info:
            rollout(policy, env, 12, seed=2, progress=False, device="cpu", cancel=token, storage="memmap",
                    memmap_folder=tmp_path / "r", on_progress=cancel_at(token, 5, []))
        part = info.value.partial
        assert part.batch_size == (2, 5) and trajectory_metadata(part)["cancelled"] is True
        for key in (KEYS.observation, KEYS.next_hidden, KEYS.episode, KEYS.step):
            assert torch.equal(part[key], full[key][:, :5]), key
        back = load_trajectory(tmp_path / "r")  # the folder: all 12 slots, the metadata says 5 were run
        assert back.batch_size == (2, 5) and torch.equal(back[KEYS.action], full[KEYS.action][:, :5])
        raw = TensorDict.load_memmap(tmp_path / "r")
        assert raw.batch_size == (2, 12) and trajectory_metadata(raw)["steps"] == 5

    def test_parallel_env_cancel_then_run_again(self):
        policy, env = policy_and_env(EnvSpec("CartPole-v1", num_envs=2, parallel=True, max_steps=9))
        token = CancelToken()
        try:
            with pytest.raises(Cancelled) as info:
                rollout(policy, env, 30, seed=0, progress=False, device="cpu", cancel=token,
                        on_progress=cancel_at(token, 4, []))
            again = rollout(policy, env, 6, seed=0, progress=False, device="cpu")
        finally:
            env.close()
        assert info.value.partial.batch_size == (2, 4)
        assert torch.equal(again[KEYS.observation][:, :4], info.value.partial[KEYS.observation])

    def test_session_passes_through_and_closes_the_env(self, tmp_path):
        from workbench.session import Session

        with Session(EnvSpec("CartPole-v1", max_steps=5), PolicySpec(hidden_size=4), device="cpu") as session:
            first = session.rollout(6, seed=0, progress=False)
            token, seen = CancelToken(), []
            with pytest.raises(Cancelled) as info:
                session.rollout(10, seed=0, progress=False, cancel=token, on_progress=cancel_at(token, 3, seen))
            assert session.trajectory is first and info.value.partial.batch_size == (1, 3)
            assert "env: closed" in repr(session)
            traj = session.rollout(7, seed=0, progress=False, storage="memmap", memmap_folder=tmp_path / "s")
            assert on_disk(traj) and session.trajectory is traj
            assert torch.equal(traj[KEYS.action][:, :3], info.value.partial[KEYS.action])
            assert session.diagnose().ok


def test_progress_bar_still_shown(capsys):
    policy, env = policy_and_env()
    token = CancelToken()
    with pytest.raises(Cancelled):
        rollout(policy, env, 5, seed=0, progress=True, device="cpu", cancel=token, on_progress=cancel_at(token, 2, []))
    assert "rollout" in capsys.readouterr().err


# ------------------------------------------------------------------ StepStorage on its own
class TestStepStorage:
    def frames(self, n, envs=2):
        return [TensorDict({"x": torch.full((envs, 3), float(t)), "n": {"i": torch.arange(envs) + t}}, [envs])
                for t in range(n)]

    def test_one_env_and_more_batch_dims(self):
        one = StepStorage(3, batch_dims=0)
        for t in range(3):
            one.write(t, TensorDict({"x": torch.tensor([t, -t])}, []))
        assert one.finish(3)["x"].tolist() == [[[0, 0], [1, -1], [2, -2]]]
        grid = StepStorage(2, batch_dims=2)
        for t in range(2):
            grid.write(t, TensorDict({"x": torch.arange(6).reshape(2, 3) + 10 * t}, [2, 3]))
        assert grid.finish(2)["x"].tolist() == [[i, i + 10] for i in range(6)]  # as torch.stack + reshape(-1, T)

    def test_entries_must_stay_the_same(self):
        store = StepStorage(3)
        frames = self.frames(3)
        store.write(0, frames[0])
        with pytest.raises(ConfigError, match=r"step 1 has the entry 'y' that the first step had not"):
            store.write(1, frames[1].set("y", torch.zeros(2)))
        with pytest.raises(ConfigError, match=r"step 2 lacks the entries \['x'\]"):
            store.write(2, frames[2].exclude("x"))

    def test_non_tensor_entries_are_stacked_in_memory(self, tmp_path):
        store = StepStorage(3)
        for t, frame in enumerate(self.frames(3)):
            store.write(t, frame.set_non_tensor("label", f"step {t}"))
        td = store.finish(3)
        assert td.batch_size == (2, 3) and td[1, 2]["label"] == "step 2"
        disk = StepStorage(3, storage="memmap", folder=tmp_path / "r")
        with pytest.raises(ConfigError, match="stores tensors only"):
            disk.write(0, self.frames(1)[0].set_non_tensor("label", "x"))

    def test_stored_bytes(self):
        store = StepStorage(4)
        for t, frame in enumerate(self.frames(4)):
            store.write(t, frame)
        assert stored_bytes(store.finish(4)) == 2 * 4 * (3 * 4 + 8)
        assert stored_bytes(store.finish(2)) == 2 * 2 * (3 * 4 + 8)


# ------------------------------------------------------------------ GPU
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: the policy on GPU, the env and storage on CPU")
class TestCuda:
    def test_policy_on_cuda_streams_into_cpu_storage(self, tmp_path):
        from test_rollout import assert_hidden_carried

        policy, env = policy_and_env(EnvSpec("CartPole-v1", num_envs=2, max_steps=10),
                                     PolicySpec(hidden_size=8, num_layers=2))
        traj = rollout(policy, env, 40, seed=0, progress=False, device="cuda")
        assert next(policy.parameters()).device.type == "cuda"
        assert {v.device.type for v in traj.values(True, True) if isinstance(v, torch.Tensor)} == {"cpu"}
        assert traj.batch_size == (2, 40) and int(traj[KEYS.is_init][:, 1:].sum()) >= 2
        disk = rollout(policy, env, 40, seed=0, progress=False, device="cuda", storage="memmap",
                       memmap_folder=tmp_path / "r")
        assert_same_trajectory(disk, traj)  # seeded: the same on disk as in memory
        token = CancelToken()
        with pytest.raises(Cancelled) as info:
            rollout(policy, env, 40, seed=0, progress=False, device="cuda", cancel=token,
                    on_progress=cancel_at(token, 15, []))
        assert torch.equal(info.value.partial[KEYS.next_hidden], traj[KEYS.next_hidden][:, :15])
        assert_hidden_carried(policy.to("cpu"), traj)
