"""Loaders refuse bad files with one CheckpointError naming the path and what is wrong; the weights are
checked against the spec before anything is built; the CLI prints that error on one line."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from tensordict import TensorDict

import workbench.checkpoints
import workbench.files
from workbench.cli import main
from workbench.errors import CheckpointError
from workbench.checkpoints import checkpoint_metadata, load_checkpoint, save_checkpoint
from workbench.policy import PolicyIO, PolicySpec, build_policy
from workbench.rollout import load_trajectory, save_trajectory

REPO = Path(__file__).resolve().parent.parent
CARTPOLE = PolicyIO(4, "categorical", 2)
SPEC = PolicySpec(hidden_size=4, head_cells=(8,))


def checkpoint_versions(path):
    """The library versions a checkpoint was written with: a third loader for these tests (the library reads them nowhere)."""
    payload = workbench.checkpoints._load_payload(path, "checkpoint_versions")
    return workbench.files.json_entry(payload, "versions", path, "checkpoint_versions", "{}")


LOADERS = [load_checkpoint, checkpoint_metadata, checkpoint_versions]


def checkpoint_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = save_checkpoint(build_policy(SPEC, CARTPOLE, device="cpu"), SPEC, Path(tmp) / "p.pt",
                               metadata={"env_id": "CartPole-v1"})
        return path.read_bytes()


def trajectory_bytes() -> bytes:
    td = TensorDict({"observation": torch.arange(30.0).reshape(2, 5, 3)}, [2, 5])
    with tempfile.TemporaryDirectory() as tmp:
        return save_trajectory(td, Path(tmp) / "t.pt").read_bytes()


GOOD = checkpoint_bytes()
GOOD_TRAJECTORY = trajectory_bytes()


def payload_with(path: Path, **changes) -> Path:
    """The good checkpoint with some payload entries replaced (None: removed), saved at ``path``."""
    payload = torch.load(io.BytesIO(GOOD), weights_only=True)
    for key, value in changes.items():
        if value is None:
            payload.pop(key)
        else:
            payload[key] = value
    torch.save(payload, path)
    return path


def refused(load, path, match: str) -> str:
    """The loader raises a CheckpointError naming the path, matching ``match``, never suggesting weights_only."""
    with pytest.raises(CheckpointError, match=match) as info:
        load(path)
    message = str(info.value)
    assert repr(str(path)) in message and "\n" not in message
    assert "weights_only" not in message
    return message


class TestBadFiles:
    @pytest.mark.parametrize("load", [*LOADERS, load_trajectory])
    def test_empty_file(self, tmp_path, load):
        (tmp_path / "x.pt").write_bytes(b"")
        refused(load, tmp_path / "x.pt", r"is not a GRU Workbench (checkpoint|trajectory): the file is empty$")

    @pytest.mark.parametrize("load", [*LOADERS, load_trajectory])
    def test_text_file(self, tmp_path, load):
        """Used to raise KeyError: 101 (torch reading 'e' as a legacy magic number)."""
        (tmp_path / "x.pt").write_text("env_id: CartPole-v1\nhidden: 16\n")
        refused(load, tmp_path / "x.pt", r"is not a GRU Workbench \w+: the file is text, not a checkpoint$")

    def test_truncated_trajectory(self, tmp_path):
        """Used to raise OSError: [Errno 22] Invalid argument."""
        (tmp_path / "t.pt").write_bytes(GOOD_TRAJECTORY[: len(GOOD_TRAJECTORY) // 2])
        refused(load_trajectory, tmp_path / "t.pt", r"not a GRU Workbench trajectory: the file is truncated \(\d+ bytes")

    def test_missing_file_and_folder(self, tmp_path):
        refused(load_checkpoint, tmp_path / "none.pt", r"expected a GRU Workbench checkpoint; no such file$")
        refused(load_checkpoint, tmp_path, r"expected a GRU Workbench checkpoint; it is not a regular file$")

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.binary(min_size=1, max_size=3000))
    def test_random_bytes(self, tmp_path, data):
        """Random bytes: torch would suggest weights_only=False; we say what the file is not."""
        path = tmp_path / "random.pt"
        path.write_bytes(data)
        refused(load_checkpoint, path, r"not a (readable )?GRU Workbench checkpoint: ")

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.data())
    def test_truncated_at_any_offset(self, tmp_path, data):
        for name, good, load in (("p.pt", GOOD, load_checkpoint), ("t.pt", GOOD_TRAJECTORY, load_trajectory)):
            cut = data.draw(st.integers(4, len(good) - 1), label=name)
            path = tmp_path / name
            path.write_bytes(good[:cut])
            refused(load, path, rf"the file is truncated \({cut} bytes; the end of the archive is missing\)$")

    def test_python_objects_are_never_unpickled(self, tmp_path):
        """A file holding arbitrary Python objects: refused without advice to drop weights_only."""
        torch.save({"format": "gru-workbench-checkpoint", "x": Path("/")}, tmp_path / "obj.pt")
        message = refused(load_checkpoint, tmp_path / "obj.pt", r"holds Python objects other than tensors")
        assert "unsafe" in message

    @pytest.mark.parametrize("load", LOADERS)
    def test_format_version_must_be_an_integer(self, tmp_path, load):
        """Used to raise TypeError ('>' between str and int)."""
        path = payload_with(tmp_path / "v.pt", format_version="2")
        refused(load, path, r"format_version must be an integer; got '2'$")

    def test_foreign_and_newer_files_keep_their_messages(self, tmp_path):
        torch.save({"weights": torch.ones(1)}, tmp_path / "x.pt")
        refused(load_checkpoint, tmp_path / "x.pt", r"is not a GRU Workbench checkpoint \(no 'gru-workbench-checkpoint' tag\)")
        refused(load_checkpoint, payload_with(tmp_path / "n.pt", format_version=99), r"has format version 99; .*Upgrade")

    def test_malformed_entries(self, tmp_path):
        refused(load_checkpoint, payload_with(tmp_path / "a.pt", spec="{not json"), r"the stored 'spec' is unreadable")
        refused(load_checkpoint, payload_with(tmp_path / "b.pt", io=None), r"the stored 'io' is unreadable")
        refused(load_checkpoint, payload_with(tmp_path / "c.pt", spec=json.dumps({"hidden_size": -1})),
                r"the stored spec is invalid: PolicySpec: 'hidden_size' must be an int >= 1; got -1")
        refused(checkpoint_metadata, payload_with(tmp_path / "d.pt", metadata="[1, 2]"),
                r"the stored 'metadata' must be a JSON object; got list")

    def test_inconsistent_trajectory(self, tmp_path):
        payload = torch.load(io.BytesIO(GOOD_TRAJECTORY), weights_only=True)
        payload["batch_size"] = [3, 5]
        torch.save(payload, tmp_path / "t.pt")
        refused(load_trajectory, tmp_path / "t.pt",
                r"entry 'observation' should start with the batch size \[3, 5\]; stored shape \[2, 5, 3\]")


class TestWeightsAgainstSpec:
    @pytest.fixture
    def no_build(self, monkeypatch):
        """Fails the test if the loader builds a policy (and so allocates its weights)."""
        def refuse(*args, **kwargs):
            raise AssertionError("build_policy was called before the weights were checked")

        monkeypatch.setattr(workbench.checkpoints, "build_policy", refuse)

    def test_huge_hidden_size_is_refused_before_building(self, tmp_path, no_build):
        """hidden_size=10**6 used to start a 12 TB allocation; now the stored shapes are compared first."""
        spec = json.dumps({**SPEC.to_dict(), "hidden_size": 10**6})
        refused(load_checkpoint, payload_with(tmp_path / "h.pt", spec=spec),
                r"parameter 'module\.0\.module\.0\.gru\.weight_ih_l0' should have shape \[3000000, 4\] for its spec "
                r"\(hidden_size=1000000, observation_size=4\); stored \[12, 4\]$")

    def test_huge_num_layers_is_refused_before_building(self, tmp_path, no_build):
        spec = json.dumps({**SPEC.to_dict(), "num_layers": 10**6})
        refused(load_checkpoint, payload_with(tmp_path / "l.pt", spec=spec),
                r"num_layers=1000000.* needs at least 4000004 weight tensors; the file stores 8$")

    def test_missing_wrong_and_extra_weights(self, tmp_path, no_build):
        state = torch.load(io.BytesIO(GOOD), weights_only=True)["state_dict"]
        name = "module.0.module.1.module.0.weight"
        missing = {k: v for k, v in state.items() if k != name} | {"extra": torch.ones(1)}
        refused(load_checkpoint, payload_with(tmp_path / "m.pt", state_dict=missing),
                rf"parameter '{name}' \(shape \[8, 4\]\) is missing from the stored weights$")
        wrong = {**state, name: torch.ones(8, 5)}
        refused(load_checkpoint, payload_with(tmp_path / "w.pt", state_dict=wrong),
                rf"parameter '{name}' should have shape \[8, 4\] .*; stored \[8, 5\]$")
        extra = {**state, "surprise": torch.ones(2)}
        refused(load_checkpoint, payload_with(tmp_path / "e.pt", state_dict=extra),
                r"entries its spec does not make: \['surprise'\]$")
        ints = {**state, name: torch.ones(8, 4, dtype=torch.int64)}
        refused(load_checkpoint, payload_with(tmp_path / "i.pt", state_dict=ints), r"should be floating point")

    def test_good_checkpoint_still_loads(self, tmp_path):
        (tmp_path / "p.pt").write_bytes(GOOD)
        policy, spec = load_checkpoint(tmp_path / "p.pt")
        assert spec == SPEC and checkpoint_metadata(tmp_path / "p.pt") == {"env_id": "CartPole-v1"}


def bad_files(folder: Path) -> dict[str, Path]:
    """One file of each kind the evaluate command must refuse."""
    files = {"empty": b"", "truncated": GOOD[: len(GOOD) - 100], "random": bytes(range(7, 250)) * 4,
             "text": b"mean_return=500\n"}
    paths = {}
    for name, data in files.items():
        paths[name] = folder / f"{name}.pt"
        paths[name].write_bytes(data)
    spec = json.dumps({**SPEC.to_dict(), "hidden_size": 10**6})
    paths["wrong-weights"] = payload_with(folder / "wrong-weights.pt", spec=spec)
    return paths


class TestCLI:
    def test_evaluate_bad_files_in_process(self, tmp_path, capsys):
        for name, path in bad_files(tmp_path).items():
            assert main(["evaluate", str(path), "--episodes", "1"]) == 2, name
            captured = capsys.readouterr()
            lines = captured.err.splitlines()
            assert len(lines) == 1 and lines[0].startswith("workbench evaluate: error: "), (name, captured.err)
            assert str(path) in lines[0] and "Traceback" not in captured.err
            assert "weights_only" not in captured.err + captured.out
            assert captured.out == ""

    def test_evaluate_bad_file_subprocess(self, tmp_path):
        path = bad_files(tmp_path)["truncated"]
        proc = subprocess.run([sys.executable, "-m", "workbench", "evaluate", str(path)], capture_output=True,
                              text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.splitlines() == [
            f"workbench evaluate: error: load_checkpoint: {str(path)!r} is not a GRU Workbench checkpoint: "
            f"the file is truncated ({len(GOOD) - 100} bytes; the end of the archive is missing)"
        ]
