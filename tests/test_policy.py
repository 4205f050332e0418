"""PolicySpec validation, build_policy on discrete and continuous actions, checkpoints, devices."""

from __future__ import annotations

import json
import os
import re

import pytest
import torch
from tensordict import TensorDict
from torchrl.envs.utils import ExplorationType, set_exploration_type

from workbench import GRUModule
from workbench.envs import EnvSpec, make_env
from workbench.errors import ConfigError
from workbench.keys import KEYS
from workbench.checkpoints import load_checkpoint, save_checkpoint
from workbench.policy import PolicyIO, PolicySpec, build_policy, recurrent_modules, resolve_device


def _batch(io: PolicyIO, n: int = 16, layers: int = 1, hidden: int = 8, seed: int = 0) -> TensorDict:
    g = torch.Generator().manual_seed(seed)
    is_init = torch.zeros(n, 1, dtype=torch.bool)
    is_init[::4] = True
    return TensorDict(
        {
            KEYS.observation: torch.randn(n, io.observation_size, generator=g),
            KEYS.hidden: torch.randn(n, layers, hidden, generator=g),
            KEYS.is_init: is_init,
        },
        [n],
    )


CARTPOLE = PolicyIO(4, "categorical", 2)
CARTPOLE_ONEHOT = PolicyIO(4, "one_hot", 2)
PENDULUM = PolicyIO(2, "continuous", 1, (-2.0,), (2.0,))


class TestPolicySpec:
    @pytest.mark.parametrize(
        "kwargs, field, shown",
        [
            ({"hidden_size": 0}, "hidden_size", "0"),
            ({"num_layers": 1.5}, "num_layers", "1.5"),
            ({"head_cells": (8, 0)}, "head_cells", "(8, 0)"),
            ({"activation": "swish"}, "activation", "'swish'"),
            ({"python_based": "yes"}, "python_based", "'yes'"),
            ({"recurrent_backend": "triton"}, "recurrent_backend", "'triton'"),
            ({"seed": -1}, "seed", "-1"),
            ({"record_gates": True}, "record_gates", "python_based=False"),
        ],
    )
    def test_errors_name_field_and_value(self, kwargs, field, shown):
        """Each bad value raises a ValueError naming the field and echoing what came in."""
        with pytest.raises(ValueError, match=rf"PolicySpec: '{field}.*got {re.escape(shown)}"):
            PolicySpec(**kwargs)

    def test_round_trip_through_json(self):
        """to_dict/from_dict survive JSON; lists become tuples again."""
        spec = PolicySpec(hidden_size=4, num_layers=2, head_cells=[8, 8], python_based=True, record_gates=True)
        assert spec.head_cells == (8, 8)
        assert PolicySpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec

    def test_unknown_field(self):
        with pytest.raises(ValueError, match=r"unknown fields \['hiden_size'\]"):
            PolicySpec.from_dict({"hiden_size": 3})


class TestPolicyIO:
    @pytest.mark.parametrize(
        "env_spec, expected",
        [
            (EnvSpec("CartPole-v1"), CARTPOLE),
            (EnvSpec("CartPole-v1", hide_velocity=True), PolicyIO(2, "categorical", 2)),
            (EnvSpec("CartPole-v1", categorical_actions=False), CARTPOLE_ONEHOT),
            (EnvSpec("Pendulum-v1", hide_velocity=True), PENDULUM),
            (EnvSpec("Acrobot-v1"), PolicyIO(6, "categorical", 3)),
            (EnvSpec("MountainCar-v0", hide_velocity=True), PolicyIO(1, "categorical", 3)),
        ],
    )
    def test_from_env(self, env_spec, expected):
        """Observation size and action space are read from the environment."""
        assert PolicyIO.from_env(make_env(env_spec)) == expected

    def test_bad_kind(self):
        with pytest.raises(ValueError, match="'action_kind'.*got 'box'"):
            PolicyIO(3, "box", 1)


class TestBuildPolicy:
    def test_keys_and_sizes_come_from_the_env(self):
        """The GRU reads KEYS.observation and KEYS.hidden; its input size is the env's observation size."""
        policy = build_policy(PolicySpec(hidden_size=8, num_layers=2), PolicyIO(2, "categorical", 3), device="cpu")
        (gru,) = recurrent_modules(policy)
        assert isinstance(gru, GRUModule)
        assert gru.in_keys == [KEYS.observation, KEYS.hidden, KEYS.is_init]
        assert gru.out_keys == ["features", KEYS.next_hidden]
        assert (gru.input_size, gru.hidden_size, gru.num_layers) == (2, 8, 2)
        td = policy(_batch(PolicyIO(2, "categorical", 3), layers=2))
        assert td["logits"].shape == (16, 3)
        assert td[KEYS.next_hidden].shape == (16, 2, 8)
        assert td[KEYS.action].dtype == torch.int64 and set(td[KEYS.action].tolist()) <= {0, 1, 2}

    def test_discrete_deterministic_is_argmax(self):
        """Under ExplorationType.DETERMINISTIC the action is the argmax of the logits."""
        policy = build_policy(PolicySpec(hidden_size=8), CARTPOLE, device="cpu")
        with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
            td = policy(_batch(CARTPOLE))
        assert torch.equal(td[KEYS.action], td["logits"].argmax(-1))

    def test_discrete_random_samples_vary(self):
        """By default actions are sampled: repeated calls on one input give both actions."""
        policy = build_policy(PolicySpec(hidden_size=8), CARTPOLE, device="cpu")
        td = _batch(CARTPOLE, n=1).expand(256).clone()
        torch.manual_seed(0)
        with torch.no_grad():
            actions = policy(td)[KEYS.action]
        assert set(actions.tolist()) == {0, 1}

    def test_one_hot_actions(self):
        policy = build_policy(PolicySpec(hidden_size=8), CARTPOLE_ONEHOT, device="cpu")
        with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
            td = policy(_batch(CARTPOLE_ONEHOT))
        assert td[KEYS.action].shape == (16, 2)
        assert torch.equal(td[KEYS.action].argmax(-1), td["logits"].argmax(-1))
        assert torch.equal(td[KEYS.action].sum(-1), torch.ones(16, dtype=td[KEYS.action].dtype))

    def test_continuous_actions_stay_in_bounds(self):
        """TanhNormal squashes samples into [-2, 2]; the deterministic action is 2 * tanh(loc)."""
        policy = build_policy(PolicySpec(hidden_size=8), PENDULUM, device="cpu")
        td = _batch(PENDULUM, n=200)
        torch.manual_seed(0)
        with torch.no_grad():
            sampled = policy(td.clone())
        assert sampled[KEYS.action].shape == (200, 1)
        assert sampled[KEYS.action].abs().max() <= 2.0
        assert sampled[KEYS.action].std() > 0.1
        with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
            greedy = policy(td.clone())
        torch.testing.assert_close(greedy[KEYS.action], 2.0 * torch.tanh(greedy["loc"]))

    def test_gates_recorded(self):
        """record_gates writes r, z, n gates [L, 3, H] per step, each in its activation's range."""
        spec = PolicySpec(hidden_size=4, num_layers=2, python_based=True, record_gates=True)
        policy = build_policy(spec, CARTPOLE, device="cpu")
        with torch.no_grad():
            gates = policy(_batch(CARTPOLE, layers=2, hidden=4))[KEYS.gates]
        assert gates.shape == (16, 2, 3, 4)
        assert ((gates[:, :, :2] >= 0) & (gates[:, :, :2] <= 1)).all()  # r, z: sigmoid
        assert gates[:, :, 2].abs().max() <= 1  # n: tanh

    def test_seed_sets_the_weights(self):
        a = build_policy(PolicySpec(hidden_size=4, seed=1), CARTPOLE, device="cpu").state_dict()
        b = build_policy(PolicySpec(hidden_size=4, seed=1), CARTPOLE, device="cpu").state_dict()
        c = build_policy(PolicySpec(hidden_size=4, seed=2), CARTPOLE, device="cpu").state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert not torch.equal(a["module.0.module.0.gru.weight_hh_l0"], c["module.0.module.0.gru.weight_hh_l0"])

    def test_seed_leaves_global_rng_alone(self):
        torch.manual_seed(5)
        expected = torch.rand(3)
        torch.manual_seed(5)
        build_policy(PolicySpec(hidden_size=4), CARTPOLE, device="cpu")
        assert torch.equal(torch.rand(3), expected)


class TestCheckpoint:
    @pytest.mark.parametrize(
        "spec, io",
        [
            (PolicySpec(hidden_size=8, head_cells=(16, 16)), CARTPOLE),
            (PolicySpec(hidden_size=8, num_layers=2, python_based=True, record_gates=True), CARTPOLE_ONEHOT),
            (PolicySpec(hidden_size=8, activation="relu", seed=3), PENDULUM),
        ],
    )
    def test_round_trip_is_bitwise(self, tmp_path, spec, io):
        """A loaded checkpoint gives the same spec and bit-identical outputs (and samples, same seed)."""
        policy = build_policy(spec, io, device="cpu")
        with torch.no_grad():  # move the weights away from their initial values
            for p in policy.parameters():
                p.add_(0.01 * torch.randn_like(p))
        path = save_checkpoint(policy, spec, tmp_path / "sub" / "policy.pt")
        assert os.listdir(tmp_path / "sub") == ["policy.pt"]  # no temp file left behind
        loaded, loaded_spec = load_checkpoint(path)
        assert loaded_spec == spec
        td = _batch(io, layers=spec.num_layers, hidden=spec.hidden_size)
        with torch.no_grad():
            torch.manual_seed(0)
            out_a = policy(td.clone())
            torch.manual_seed(0)
            out_b = loaded(td.clone())
        assert set(out_a.keys(True, True)) == set(out_b.keys(True, True))
        for key in out_a.keys(True, True):
            assert torch.equal(out_a[key], out_b[key]), key
        payload = torch.load(path, weights_only=True)
        assert json.loads(payload["spec"]) == spec.to_dict()
        assert set(json.loads(payload["versions"])) == {"workbench", "torch", "torchrl", "tensordict"}

    def test_not_a_checkpoint(self, tmp_path):
        torch.save({"weights": torch.ones(1)}, tmp_path / "x.pt")
        with pytest.raises(ValueError, match="not a GRU Workbench checkpoint"):
            load_checkpoint(tmp_path / "x.pt")

    def test_newer_format_refused(self, tmp_path):
        spec = PolicySpec(hidden_size=4)
        path = save_checkpoint(build_policy(spec, CARTPOLE, device="cpu"), spec, tmp_path / "p.pt")
        payload = torch.load(path, weights_only=True)
        payload["format_version"] = 99
        torch.save(payload, path)
        with pytest.raises(ValueError, match="format version 99"):
            load_checkpoint(path)

    def test_failed_write_keeps_the_old_file(self, tmp_path, monkeypatch):
        """The write is atomic: a failure mid-save leaves the previous checkpoint intact and no temp file."""
        spec = PolicySpec(hidden_size=4)
        policy = build_policy(spec, CARTPOLE, device="cpu")
        path = save_checkpoint(policy, spec, tmp_path / "p.pt")
        before = path.read_bytes()

        def boom(*args, **kwargs):
            raise OSError("disk full")

        monkeypatch.setattr(torch, "save", boom)
        with pytest.raises(OSError, match="disk full"):
            save_checkpoint(policy, spec, path)
        assert path.read_bytes() == before
        assert os.listdir(tmp_path) == ["p.pt"]


class TestDevice:
    def test_auto_and_cpu(self):
        assert resolve_device("cpu") == torch.device("cpu")
        assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")

    @pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here, so asking for it is no error")
    def test_cuda_unavailable_is_a_clear_error(self):
        with pytest.raises(ConfigError, match=r"^device: 'cuda' was asked for but CUDA is not available; use 'auto' or 'cpu'"):
            build_policy(PolicySpec(hidden_size=4), CARTPOLE, device="cuda")

    def test_bad_choice(self):
        with pytest.raises(ValueError, match="got 'gpu'"):
            resolve_device("gpu")

    @pytest.mark.gpu
    @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
    def test_cuda_policy_matches_cpu(self):
        """On CUDA the weights are those of the CPU build (same seed), and outputs agree closely."""
        spec = PolicySpec(hidden_size=8)
        cpu = build_policy(spec, CARTPOLE, device="cpu")
        gpu = build_policy(spec, CARTPOLE, device="cuda")
        assert next(gpu.parameters()).device.type == "cuda"
        td = _batch(CARTPOLE)
        with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
            a, b = cpu(td.clone()), gpu(td.clone().to("cuda")).to("cpu")
        torch.testing.assert_close(a["logits"], b["logits"], atol=1e-4, rtol=1e-4)
