"""workbench.provenance: versions, module description, checkpoint identity, one run record."""

from __future__ import annotations

import hashlib
import json

import torch

from workbench import GRUModule, __version__, provenance
from workbench.envs import EnvSpec, make_env
from workbench.checkpoints import checkpoint_of, load_checkpoint, save_checkpoint
from workbench.policy import PolicySpec, build_policy
from workbench.rollout import rollout, trajectory_metadata


class TestVersions:
    def test_core_selection_is_what_a_checkpoint_records(self):
        """The default selection is the workbench and the three core libraries."""
        assert set(provenance.versions()) == {"workbench", "torch", "torchrl", "tensordict"}
        assert provenance.versions()["workbench"] == __version__

    def test_unknown_library_is_none(self):
        assert provenance.versions(("python", "no-such-dist"))["no-such-dist"] is None


class TestDescribeModule:
    def test_gru_module_and_torch_gru(self):
        """A GRUModule is described by its inner GRU's sizes and its own keys and cell."""
        info = provenance.describe_module(GRUModule(3, 5, num_layers=2, in_key="x", out_key="y"))
        assert (info["class"], info["input_size"], info["hidden_size"], info["num_layers"]) == ("GRUModule", 3, 5, 2)
        assert info["in_keys"][0] == "x" and info["python_based"] is False
        plain = provenance.describe_module(torch.nn.GRU(2, 4))
        assert plain["class"] == "GRU" and "in_keys" not in plain
        json.dumps([info, plain])


class TestCheckpointIdentity:
    def test_path_and_hash_of_the_loaded_file(self, tmp_path):
        """A loaded policy names its file and the file's sha256; the rollout's record carries it."""
        spec = PolicySpec(hidden_size=4)
        env_spec = EnvSpec("CartPole-v1")
        path = save_checkpoint(build_policy(spec, make_env(env_spec), device="cpu"), spec, tmp_path / "p.pt")
        policy, _ = load_checkpoint(path)
        identity = checkpoint_of(policy)
        assert identity == {"path": str(path.resolve()), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        traj = rollout(policy, make_env(env_spec, policy), 3, seed=0, progress=False, device="cpu")
        assert trajectory_metadata(traj)["checkpoint"] == identity


class TestRecord:
    def test_one_record_for_trajectories_and_exports(self):
        """A trajectory's metadata is a provenance record: completing it changes none of its entries."""
        policy = build_policy(PolicySpec(hidden_size=4), make_env(EnvSpec("CartPole-v1")), device="cpu")
        meta = trajectory_metadata(rollout(policy, make_env(EnvSpec("CartPole-v1"), policy), 3, seed=0,
                                           progress=False, device="cpu"))
        assert {"created", "versions", "platform"} <= set(meta)
        assert set(provenance.versions(provenance.LIBRARIES)) == set(meta["versions"])
        assert provenance.complete(meta) == meta

    def test_complete_merges_versions_theirs_winning(self):
        meta = provenance.complete({"versions": {"torch": "9.9"}, "seed": 1})
        assert meta["versions"]["torch"] == "9.9" and meta["versions"]["python"] and meta["seed"] == 1
