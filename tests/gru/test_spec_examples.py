"""The examples of the GRUModule spec (shared/spec/GRUModule.txt), run with
``from workbench import GRUModule``, with the printed keys / shapes checked.

Where torchrl 0.14.1 differs on purpose (its ``module.set_recurrent_mode()`` raises),
the spec's documented behaviour is what is asserted: a copy sharing the same ``.gru``,
with a DeprecationWarning.
"""
from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule as Mod
from tensordict.nn import TensorDictSequential as Seq
from torch import nn

from workbench import GRUModule

gym = pytest.importorskip("gymnasium")
from torchrl.envs import GymEnv, InitTracker, TransformedEnv, step_mdp  # noqa: E402
from torchrl.modules import MLP  # noqa: E402

try:  # torchrl < 0.14 name used by the spec
    from torchrl.collectors import SyncDataCollector as _Collector
except ImportError:  # torchrl 0.14: Collector
    from torchrl.collectors import Collector as _Collector


def _shapes(td):
    return {
        k: (tuple(v.shape), v.dtype)
        for k, v in td.items(include_nested=True, leaves_only=True)
    }


def _pendulum(seed=0):
    env = TransformedEnv(GymEnv("Pendulum-v1"), InitTracker())
    env.set_seed(seed)
    return env


def _spec_policy(env, seed=0):
    torch.manual_seed(seed)
    gru_module = GRUModule(
        input_size=env.observation_spec["observation"].shape[-1],
        hidden_size=64,
        in_keys=["observation", "rs"],
        out_keys=["intermediate", ("next", "rs")],
    )
    mlp = MLP(num_cells=[64], out_features=1)
    policy = Seq(gru_module, Mod(mlp, in_keys=["intermediate"], out_keys=["action"]))
    return gru_module, mlp, policy


def test_class_example_single_step_on_reset():
    """policy(env.reset()) prints the documented keys and shapes."""
    env = _pendulum()
    gru_module, mlp, policy = _spec_policy(env)
    td = policy(env.reset())
    assert td.batch_size == torch.Size([])
    shapes = _shapes(td)
    expected = {
        "action": ((1,), torch.float32),
        "done": ((1,), torch.bool),
        "intermediate": ((64,), torch.float32),
        "is_init": ((1,), torch.bool),
        ("next", "rs"): ((1, 64), torch.float32),
        "observation": ((3,), torch.float32),
        "terminated": ((1,), torch.bool),
        "truncated": ((1,), torch.bool),
    }
    assert shapes == expected
    assert td["next"].batch_size == torch.Size([])
    # on reset, is_init is True: the hidden started at zero, so the new hidden is
    # exactly one GRU step from zero on the observation
    assert td["is_init"].all()
    with torch.no_grad():
        _, h1 = gru_module.gru(td["observation"].reshape(1, 1, 3), torch.zeros(1, 1, 64))
    torch.testing.assert_close(td["next", "rs"], h1.reshape(1, 64))
    torch.testing.assert_close(td["intermediate"], h1.reshape(64))
    assert td["next", "rs"].abs().sum() > 0


def test_class_example_training_policy_on_rollout():
    """The class example's second half: rollout(3) through the (deprecated) training copy."""
    env = _pendulum()
    gru_module, mlp, policy = _spec_policy(env)
    policy(env.reset())
    with pytest.warns(DeprecationWarning):
        gru_module_training = gru_module.set_recurrent_mode()
    assert gru_module_training is not gru_module
    assert gru_module_training.recurrent_mode is True
    assert gru_module.recurrent_mode is False
    # the spec literally rebuilds the policy with ``gru_module``; both run
    for module in (gru_module, gru_module_training):
        policy_training = Seq(module, Mod(mlp, in_keys=["intermediate"], out_keys=["action"]))
        torch.manual_seed(0)
        env.set_seed(0)
        traj_td = env.rollout(3)
        traj_td = policy_training(traj_td)
        assert traj_td.batch_size == torch.Size([3])
        shapes = _shapes(traj_td)
        expected = {
            "action": ((3, 1), torch.float32),
            "done": ((3, 1), torch.bool),
            "intermediate": ((3, 64), torch.float32),
            "is_init": ((3, 1), torch.bool),
            ("next", "done"): ((3, 1), torch.bool),
            ("next", "is_init"): ((3, 1), torch.bool),
            ("next", "observation"): ((3, 3), torch.float32),
            ("next", "reward"): ((3, 1), torch.float32),
            ("next", "rs"): ((3, 1, 64), torch.float32),
            ("next", "terminated"): ((3, 1), torch.bool),
            ("next", "truncated"): ((3, 1), torch.bool),
            "observation": ((3, 3), torch.float32),
            "terminated": ((3, 1), torch.bool),
            "truncated": ((3, 1), torch.bool),
        }
        assert shapes == expected, module.recurrent_mode
    # recurrent copy on the trajectory: hidden carried over the 3 steps, so
    # ("next", "rs") is zero except at the last step, where it is the 3-step hidden
    obs = traj_td["observation"]
    with torch.no_grad():
        y, h = gru_module.gru(obs.reshape(1, 3, 3), torch.zeros(1, 1, 64))
    torch.testing.assert_close(traj_td["intermediate"], y.reshape(3, 64))
    torch.testing.assert_close(traj_td["next", "rs"][-1], h.reshape(1, 64))
    assert torch.all(traj_td["next", "rs"][:-1] == 0)


def test_primer_collector_example():
    """make_tensordict_primer example: collector batch of 10 frames carries the hidden."""
    env = _pendulum(seed=1)
    gru_module, mlp, policy = _spec_policy(env, seed=1)
    policy(env.reset())
    env = env.append_transform(gru_module.make_tensordict_primer())
    collector = _Collector(env, policy, frames_per_batch=10, total_frames=10)
    try:
        data = next(iter(collector))
    finally:
        collector.shutdown()
    assert data.batch_size == torch.Size([10])
    assert data["next", "rs"].shape == (10, 1, 64)
    assert data["rs"].shape == (10, 1, 64)
    assert data["is_init"][0].all()
    assert not data["is_init"][1:].any()  # Pendulum episodes last 200 steps
    # hidden is carried: non-zero after the first step, and rs[t] == next.rs[t-1]
    assert torch.all(data["next", "rs"].flatten(1).norm(dim=-1) > 0)
    assert torch.all(data["rs"][1:].flatten(1).norm(dim=-1) > 0)
    torch.testing.assert_close(data["rs"][1:], data["next", "rs"][:-1])
    # and it is what stepping the GRU by hand gives
    with torch.no_grad():
        _, h = gru_module.gru(data["observation"].reshape(1, 10, 3), torch.zeros(1, 1, 64))
    torch.testing.assert_close(data["next", "rs"][-1], h.reshape(1, 64), atol=1e-5, rtol=1e-5)


def test_deprecated_set_recurrent_mode_example():
    """The deprecated ``set_recurrent_mode`` example, including its replay check."""
    env = _pendulum(seed=2)
    torch.manual_seed(2)
    gru = nn.GRU(input_size=env.observation_spec["observation"].shape[-1], hidden_size=64, batch_first=True)
    gru_module = GRUModule(gru=gru, in_keys=["observation", "hidden"], out_keys=["intermediate", ("next", "hidden")])
    assert gru_module.gru is gru
    mlp = MLP(num_cells=[64], out_features=1)
    policy_inference = Seq(gru_module, Mod(mlp, in_keys=["intermediate"], out_keys=["action"]))
    with pytest.warns(DeprecationWarning, match="set_recurrent_mode"):
        training_module = gru_module.set_recurrent_mode(True)
    # a copy, sharing the same GRU (and therefore the same parameters)
    assert training_module is not gru_module
    assert type(training_module) is type(gru_module)
    assert training_module.gru is gru_module.gru
    assert training_module.recurrent_mode is True
    assert gru_module.recurrent_mode is False
    assert list(training_module.in_keys) == list(gru_module.in_keys)
    assert list(training_module.out_keys) == list(gru_module.out_keys)
    policy_training = Seq(training_module, Mod(mlp, in_keys=["intermediate"], out_keys=["action"]))

    torch.manual_seed(2)
    env.set_seed(2)
    traj_td = env.rollout(3)  # some random temporal data
    traj_td = policy_training(traj_td)
    # let's check that both return the same results
    td_inf = TensorDict(batch_size=traj_td.shape[:-1])
    intermediates = []
    for td in traj_td.unbind(-1):
        td_inf = td_inf.update(td.select("is_init", "observation", ("next", "observation")))
        td_inf = policy_inference(td_inf)
        intermediates.append(td_inf["intermediate"])
        td_inf = step_mdp(td_inf)
    torch.testing.assert_close(td_inf["hidden"], traj_td[..., -1]["next", "hidden"])
    torch.testing.assert_close(torch.stack(intermediates, 0), traj_td["intermediate"])
    assert td_inf["hidden"].abs().sum() > 0

    # the copy shares the GRU: updating the weights changes both policies
    with torch.no_grad():
        gru.weight_hh_l0.mul_(0.5)
    out_seq = policy_inference(traj_td[0].select("is_init", "observation").clone())
    out_rec = policy_training(traj_td.select("is_init", "observation").clone())
    torch.testing.assert_close(out_rec["intermediate"][0], out_seq["intermediate"])

    # switching back gives a sequential module again (still sharing the GRU)
    with pytest.warns(DeprecationWarning):
        back = training_module.set_recurrent_mode(False)
    assert back.recurrent_mode is False and back.gru is gru
    assert training_module.recurrent_mode is True
