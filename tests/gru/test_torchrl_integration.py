"""workbench.GRUModule inside torchrl: primers, collectors, ParallelEnv, the recurrent-mode
context managers, a PPO loss with GAE, and vmap over stacked parameters."""
from __future__ import annotations

import threading

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import NormalParamExtractor
from tensordict.nn import TensorDictModule as Mod
from tensordict.nn import TensorDictSequential as Seq

import gru_test_helpers as H
import workbench
from workbench import GRUModule, set_recurrent_mode

pytest.importorskip("gymnasium")
from torchrl.collectors import Collector  # noqa: E402
from torchrl.envs import (  # noqa: E402
    Compose,
    GymEnv,
    InitTracker,
    ParallelEnv,
    SerialEnv,
    TensorDictPrimer,
    TransformedEnv,
)
from torchrl.modules.utils import get_primers_from_module  # noqa: E402

OBS = 3  # Pendulum-v1
EP_LEN = 4  # short episodes so that a batch has resets in the middle
HID = 8


def _policy(num_layers=2, seed=0, dtype=torch.float32, **kw):
    torch.manual_seed(seed)
    gru = GRUModule(OBS, HID, num_layers=num_layers, in_keys=["observation", "rs"],
                    out_keys=["feat", ("next", "rs")], dtype=dtype, **kw)
    head = Mod(torch.nn.Linear(HID, 1, dtype=dtype), in_keys=["feat"], out_keys=["action"])
    return gru, Seq(gru, head)


def _base_env():
    return GymEnv("Pendulum-v1", max_episode_steps=EP_LEN)


class _EnvWithPrimer:
    """Env factory run inside each ParallelEnv worker: InitTracker + our module's primer."""

    def __init__(self, primer):
        self.primer = primer

    def __call__(self):
        return TransformedEnv(_base_env(), Compose(InitTracker(), self.primer.clone()))


def _collect(env, policy, frames, **kw):
    collector = Collector(env, policy, frames_per_batch=frames, total_frames=frames, **kw)
    try:
        return next(iter(collector))
    finally:
        collector.shutdown()


def _check_hidden_carried(data, gru):
    """data: [*envs, T] collected with ``gru`` (keys rs / ("next", rs)).

    - ("next", rs) is non-zero at every step; rs is zero exactly at resets and
      equals the previous ("next", rs) elsewhere;
    - a serial single-step recomputation from the recorded observations and
      is_init gives the same hidden states;
    - a recurrent replay gives the same features.
    """
    is_init = data["is_init"].squeeze(-1)
    assert is_init[..., 0].all()
    assert is_init[..., 1:].any(), "expected resets inside the batch"
    nh = data["next", "rs"]
    rs = data["rs"]
    assert torch.all(nh.flatten(-2).norm(dim=-1) > 0), "('next', rs) is zero somewhere"
    assert torch.all(rs[is_init] == 0)
    assert torch.all(rs[~is_init].flatten(-2).norm(dim=-1) > 0), "hidden state lost between steps"
    carried = ~is_init[..., 1:]
    torch.testing.assert_close(rs[..., 1:, :, :][carried], nh[..., :-1, :, :][carried])

    # serial recomputation, one step at a time
    T = data.shape[-1]
    h = torch.zeros_like(rs[..., 0, :, :])
    with torch.no_grad():
        for t in range(T):
            td = TensorDict({"observation": data["observation"][..., t, :], "rs": h,
                             "is_init": data["is_init"][..., t, :]}, data.shape[:-1])
            out = gru(td)
            torch.testing.assert_close(out["next", "rs"], nh[..., t, :, :], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out["feat"], data["feat"][..., t, :], atol=1e-5, rtol=1e-5)
            h = out["next", "rs"]
        # recurrent replay of the whole batch
        with set_recurrent_mode(True):
            replay = gru(data.select("observation", "rs", "is_init").clone())
    torch.testing.assert_close(replay["feat"], data["feat"], atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- primers
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("num_layers", [1, 3])
def test_get_primers_from_module_finds_our_primer(num_layers, dtype):
    gru, policy = _policy(num_layers=num_layers, dtype=dtype)
    primer = get_primers_from_module(policy)
    assert isinstance(primer, TensorDictPrimer)
    spec = primer.primers["rs"]
    assert tuple(spec.shape) == (num_layers, HID)
    assert spec.dtype == dtype
    # the primer puts a zero hidden of the right shape/dtype in the env
    env = TransformedEnv(_base_env(), Compose(InitTracker(), primer))
    td = env.reset()
    assert td["rs"].shape == (num_layers, HID)
    assert td["rs"].dtype == dtype
    assert torch.all(td["rs"] == 0)
    # batched env: the primer expands to the env batch
    env2 = TransformedEnv(SerialEnv(2, _base_env), Compose(InitTracker(), gru.make_tensordict_primer()))
    td2 = env2.reset()
    assert td2["rs"].shape == (2, num_layers, HID)
    env2.close()


def test_two_grus_give_two_primers():
    torch.manual_seed(0)
    a = GRUModule(OBS, 4, in_keys=["observation", "ra"], out_keys=["fa", ("next", "ra")])
    b = GRUModule(OBS, 6, num_layers=2, in_keys=["observation", "rb"], out_keys=["fb", ("next", "rb")])
    primers = get_primers_from_module(Seq(a, b))
    env = TransformedEnv(_base_env(), Compose(InitTracker(), primers))
    td = env.reset()
    assert td["ra"].shape == (1, 4)
    assert td["rb"].shape == (2, 6)


# ---------------------------------------------------------------- collectors
def test_collector_auto_register_policy_transforms():
    """An env with neither InitTracker nor primer: the collector adds them from our module."""
    gru, policy = _policy()
    data = _collect(_base_env(), policy, 10, auto_register_policy_transforms=True)
    assert data.shape == (10,)
    assert "rs" in data.keys() and "is_init" in data.keys()
    assert data["rs"].shape == (10, 2, HID)
    _check_hidden_carried(data, gru)


def test_collector_with_primer_batched_serial_env():
    gru, policy = _policy(seed=1)
    env = TransformedEnv(SerialEnv(2, _base_env), Compose(InitTracker(), gru.make_tensordict_primer()))
    env.set_seed(1)
    data = _collect(env, policy, 20)
    assert data.shape == (2, 10)
    _check_hidden_carried(data, gru)


@pytest.mark.parametrize("primer_inside", [True, False], ids=["primer-in-workers", "primer-outside"])
def test_parallel_env_carries_hidden(primer_inside):
    """ParallelEnv(2): hidden is carried across steps (not zeroed, TR #1406) and equals
    a serial recomputation, with the primer inside the workers or outside."""
    gru, policy = _policy(seed=2)
    if primer_inside:
        env = ParallelEnv(2, _EnvWithPrimer(gru.make_tensordict_primer()), mp_start_method="fork")
    else:
        env = TransformedEnv(ParallelEnv(2, _base_env, mp_start_method="fork"),
                             Compose(InitTracker(), gru.make_tensordict_primer()))
    env.set_seed(2)
    try:
        data = _collect(env, policy, 20)
    finally:
        if not env.is_closed:
            env.close()
    assert data.shape == (2, 10)
    _check_hidden_carried(data, gru)


# ---------------------------------------------------------------- modes
def test_set_recurrent_mode_interchangeable_and_nestable():
    from torchrl.modules import set_recurrent_mode as trl_set
    from torchrl.modules.tensordict_module.rnn import recurrent_mode as trl_mode

    gru, _ = _policy()
    assert gru.recurrent_mode is False
    B, T = 2, 5
    gen = torch.Generator().manual_seed(0)
    is_init = H.random_is_init((B, T), 0.3, generator=gen)
    seq = TensorDict({"observation": torch.randn(B, T, OBS, generator=gen), "is_init": is_init[..., None]}, [B, T])
    step = seq[:, 0]

    for outer, inner in ((trl_set, set_recurrent_mode), (set_recurrent_mode, trl_set)):
        with outer(True):
            assert gru.recurrent_mode is True
            assert trl_mode() is True and workbench.recurrent_mode() is True
            rec = gru(seq.clone())
            assert rec["feat"].shape == (B, T, HID)
            with inner(False):
                assert gru.recurrent_mode is False
                assert trl_mode() is False and workbench.recurrent_mode() is False
                one = gru(step.clone())
                assert one["feat"].shape == (B, HID)
                # single-step mode treats [B, T] as a batch of independent steps
                flat = gru(seq.clone())
                assert flat["feat"].shape == (B, T, HID)
                torch.testing.assert_close(flat["feat"][:, 0], one["feat"])
                with outer("recurrent"):
                    assert gru.recurrent_mode is True
                assert gru.recurrent_mode is False
            assert gru.recurrent_mode is True
        assert gru.recurrent_mode is False
        assert trl_mode() is None
    # the first recurrent step equals the single step (both start from zero at is_init)
    torch.testing.assert_close(rec["feat"][:, 0], one["feat"])

    # decorator form, string modes
    @trl_set("recurrent")
    def f():
        return gru.recurrent_mode

    @set_recurrent_mode("sequential")
    def g():
        return gru.recurrent_mode

    assert f() is True and g() is False

    # a module built with default_recurrent_mode=True is overridden by either manager
    gru_rec = GRUModule(OBS, HID, in_key="observation", out_key="feat", default_recurrent_mode=True)
    assert gru_rec.recurrent_mode is True
    with trl_set(False):
        assert gru_rec.recurrent_mode is False
    with set_recurrent_mode(False):
        assert gru_rec.recurrent_mode is False


def test_recurrent_mode_is_thread_local():
    gru, _ = _policy()
    seen = {}

    def worker():
        seen["mode"] = gru.recurrent_mode

    with set_recurrent_mode(True):
        t = threading.Thread(target=worker)
        t.start()
        t.join()
        assert gru.recurrent_mode is True
    assert seen["mode"] is False


# ---------------------------------------------------------------- losses
def _ppo_modules(cls, seed, **kw):
    torch.manual_seed(seed)
    ga = cls(input_size=OBS, hidden_size=HID, in_keys=["observation", "rs_a"],
             out_keys=["feat_a", ("next", "rs_a")], **kw)
    gv = cls(input_size=OBS, hidden_size=HID, in_keys=["observation", "rs_v"],
             out_keys=["feat_v", ("next", "rs_v")], **kw)
    from torchrl.modules import ProbabilisticActor, TanhNormal

    backbone = Seq(ga, Mod(torch.nn.Sequential(torch.nn.Linear(HID, 2), NormalParamExtractor()),
                           in_keys=["feat_a"], out_keys=["loc", "scale"]))
    actor = ProbabilisticActor(backbone, in_keys=["loc", "scale"], distribution_class=TanhNormal,
                               distribution_kwargs={"low": -2.0, "high": 2.0}, return_log_prob=True)
    critic = Seq(gv, Mod(torch.nn.Linear(HID, 1), in_keys=["feat_v"], out_keys=["state_value"]))
    return ga, gv, actor, critic


def _gae_and_ppo(actor, critic, data):
    from torchrl.objectives import ClipPPOLoss
    from torchrl.objectives.value import GAE

    adv = GAE(gamma=0.99, lmbda=0.95, value_network=critic, deactivate_vmap=True, shifted=False)
    loss = ClipPPOLoss(actor, critic)
    with set_recurrent_mode(True):
        data = adv(data)
        torch.manual_seed(0)  # the TanhNormal entropy is a sampled estimate
        losses = loss(data)
    return data, losses


@pytest.mark.parametrize("python_based", [False, True], ids=["cudnn", "python"])
def test_ppo_loss_with_gae_on_collected_batch(python_based, diff_recorder):
    """ClipPPOLoss + GAE(deactivate_vmap=True, shifted=False) on a [B, T] batch with resets:
    finite loss, gradients reaching both GRUs, and the same advantage / losses as
    torchrl's GRUModule with the same weights."""
    ga, gv, actor, critic = _ppo_modules(GRUModule, 0, python_based=python_based)
    env = TransformedEnv(SerialEnv(2, _base_env),
                         Compose(InitTracker(), ga.make_tensordict_primer(), gv.make_tensordict_primer()))
    env.set_seed(0)
    data = _collect(env, actor, 24)
    assert data.shape == (2, 12)
    assert data["is_init"][..., 1:, :].any()
    data_t = data.clone()

    data, losses = _gae_and_ppo(actor, critic, data)
    total = losses["loss_objective"] + losses["loss_critic"] + losses["loss_entropy"]
    assert torch.isfinite(total)
    for name in ("loss_objective", "loss_critic", "loss_entropy"):
        assert torch.isfinite(losses[name]), name
    assert torch.isfinite(data["advantage"]).all()
    total.backward()
    for mod in (ga, gv):
        for n, p in mod.gru.named_parameters():
            assert p.grad is not None, n
            assert torch.isfinite(p.grad).all(), n
        assert sum(p.grad.abs().sum() for p in mod.gru.parameters()) > 0

    # torchrl oracle with the same weights
    from torchrl.modules import GRUModule as TorchRLGRUModule

    ta, tv, tactor, tcritic = _ppo_modules(TorchRLGRUModule, 0)
    tactor.load_state_dict(actor.state_dict())
    tcritic.load_state_dict(critic.state_dict())
    data_t, losses_t = _gae_and_ppo(tactor, tcritic, data_t)
    for key in ("advantage", "value_target", "state_value"):
        diff_recorder.record(torch.float32, "ppo_" + key, data[key], data_t[key])
        torch.testing.assert_close(data[key], data_t[key], atol=1e-5, rtol=1e-5, msg=lambda m, k=key: f"{k}\n{m}")
    for key in ("loss_objective", "loss_critic", "loss_entropy"):
        torch.testing.assert_close(losses[key].detach(), losses_t[key].detach(), atol=1e-5, rtol=1e-5,
                                   msg=lambda m, k=key: f"{k}\n{m}")


# ---------------------------------------------------------------- vmap
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_python_cell_vmap_over_stacked_params(dtype):
    """torch.vmap over 3 parameter copies (TensorDict.from_module(...).expand(3), to_module
    inside vmap, as torchrl losses do) in recurrent mode with resets: every copy gives
    the plain call's output and gradient."""
    torch.manual_seed(0)
    m = GRUModule(OBS, 5, num_layers=2, python_based=True, in_keys=["x", "h"], out_keys=["y", ("next", "h")],
                  dtype=dtype)
    params = TensorDict.from_module(m)
    gen = torch.Generator().manual_seed(0)
    stacked = params.expand(3).clone().apply(
        lambda p: (p + 0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype)).detach().requires_grad_()
    )
    B, T = 2, 7
    is_init = H.random_is_init((B, T), 0.35, generator=gen)
    is_init[0, 3] = True
    td, _ = H.make_input((B, T), OBS, 5, 2, dtype, is_init, requires_grad=False, generator=gen)

    def call(p, data):
        with p.to_module(m):
            return m(data)

    with set_recurrent_mode(True):
        out = torch.vmap(call, (0, None))(stacked, td.copy())
    assert out["y"].shape == (3, B, T, 5)
    (out["y"].sum() + out["next", "h"].pow(2).sum()).backward()
    tol = H.tol(dtype)
    for i in range(3):
        p_i = stacked[i].detach().clone().apply(lambda p: p.requires_grad_())
        with set_recurrent_mode(True), p_i.to_module(m):
            plain = m(td.copy())
        torch.testing.assert_close(out["y"][i], plain["y"], **tol)
        torch.testing.assert_close(out["next", "h"][i], plain["next", "h"], **tol)
        (plain["y"].sum() + plain["next", "h"].pow(2).sum()).backward()
        for key, g in p_i.items(include_nested=True, leaves_only=True):
            torch.testing.assert_close(stacked.get(key).grad[i], g.grad, **tol)
        # and the copies really differ
        if i:
            assert (out["y"][i] - out["y"][0]).abs().max() > 1e-3


def test_python_cell_vmap_functional_call():
    """torch.func.functional_call under vmap with stacked parameter dicts."""
    torch.manual_seed(1)
    m = GRUModule(OBS, 5, python_based=True, in_keys=["x", "h"], out_keys=["y", ("next", "h")],
                  dtype=torch.float64)
    base = dict(m.named_parameters())
    gen = torch.Generator().manual_seed(1)
    stacked = {k: v.detach().unsqueeze(0) + 0.3 * torch.randn(3, *v.shape, generator=gen, dtype=v.dtype)
               for k, v in base.items()}
    B, T = 3, 6
    is_init = H.random_is_init((B, T), 0.4, generator=gen)
    td, _ = H.make_input((B, T), OBS, 5, 1, torch.float64, is_init, requires_grad=False, generator=gen)

    def call(p, x, h, init):
        data = TensorDict({"x": x, "h": h, "is_init": init}, [B, T])
        out = torch.func.functional_call(m, p, (data,))
        return out["y"], out["next", "h"]

    with set_recurrent_mode(True):
        y, nh = torch.vmap(call, (0, None, None, None))(stacked, td["x"], td["h"], td["is_init"])
        for i in range(3):
            out = torch.func.functional_call(m, {k: v[i] for k, v in stacked.items()}, (td.copy(),))
            torch.testing.assert_close(y[i], out["y"], atol=1e-12, rtol=1e-12)
            torch.testing.assert_close(nh[i], out["next", "h"], atol=1e-12, rtol=1e-12)


# ---------------------------------------------------------------- replay
@pytest.mark.parametrize("python_based", [False, True], ids=["cudnn", "python"])
def test_slice_sampler_replay_restarts_from_stored_hidden(python_based, diff_recorder):
    """Collector -> TensorDictReplayBuffer(SliceSampler) -> recurrent replay of the flat
    [B*T] sample: SliceSampler marks every slice start with is_init, the module restarts
    from the hidden stored there (non-zero mid-episode), so the replay reproduces the
    features computed during collection; torchrl's module gives the same."""
    from torchrl.data import LazyTensorStorage, SliceSampler, TensorDictReplayBuffer
    from torchrl.modules import GRUModule as TorchRLGRUModule

    gru, policy = _policy(seed=3, python_based=python_based)
    env = TransformedEnv(SerialEnv(2, lambda: GymEnv("Pendulum-v1", max_episode_steps=6)),
                         Compose(InitTracker(), gru.make_tensordict_primer()))
    env.set_seed(3)
    data = _collect(env, policy, 24)
    torch.manual_seed(3)
    rb = TensorDictReplayBuffer(
        storage=LazyTensorStorage(100, ndim=2),
        sampler=SliceSampler(slice_len=4, strict_length=False, traj_key=("collector", "traj_ids")),
        batch_size=16,
    )
    rb.extend(data)
    sample = rb.sample()
    assert sample.ndim == 1
    is_init = sample["is_init"].squeeze(-1)
    starts = torch.arange(0, sample.shape[0], 4)
    assert is_init[starts].all()
    # some slice starts mid-episode: the stored hidden there is non-zero
    assert (sample["rs"][is_init].flatten(1).norm(dim=-1) > 0).any()
    inputs = sample.select("observation", "rs", "is_init").clone()
    with set_recurrent_mode(True):
        replay = gru(inputs.clone())
    torch.testing.assert_close(replay["feat"], sample["feat"], atol=1e-5, rtol=1e-5)

    theirs = TorchRLGRUModule(input_size=OBS, hidden_size=HID, num_layers=2, in_keys=["observation", "rs"],
                              out_keys=["feat", ("next", "rs")])
    theirs.gru.load_state_dict(gru.gru.state_dict())
    with set_recurrent_mode(True):
        ref = theirs(inputs.clone())
    diff_recorder.record(torch.float32, "output", replay["feat"], ref["feat"])
    diff_recorder.record(torch.float32, "next_hidden", replay["next", "rs"], ref["next", "rs"])
    torch.testing.assert_close(replay["feat"], ref["feat"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(replay["next", "rs"], ref["next", "rs"], atol=1e-5, rtol=1e-5)

    # leak demo: without the slice-start markers the hidden crosses slice boundaries
    # and the replay no longer reproduces the collected features
    leaky = inputs.clone()
    leaky["is_init"][starts[1:]] = False
    with set_recurrent_mode(True):
        leaked = gru(leaky)
    assert not torch.allclose(leaked["feat"], sample["feat"], atol=1e-4)
