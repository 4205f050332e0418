"""Diagnostics on healthy and deliberately broken wiring and trajectories."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from tensordict import TensorDict

from workbench.audit import ResetStatus, reset_audit, reset_status
from workbench.diagnostics import DiagnosticsReport, Finding, diagnose
from workbench.envs import EnvSpec, make_env
from workbench.keys import KEYS
from workbench.policy import PolicySpec, build_policy
from workbench.replay import replay_check
from workbench.rollout import rollout
from workbench.testing import drop_hidden, drop_resets, inject_leak, policy_and_env
from workbench.wiring import WiringError, WiringWarning, check_wiring

SPEC = EnvSpec("CartPole-v1", hide_velocity=True, num_envs=2, max_steps=10)


@pytest.fixture(scope="module")
def healthy():
    """A 2-env, 30-step rollout with resets at steps 10 and 20 of each env."""
    policy, env = policy_and_env(SPEC)
    return policy, env, rollout(policy, env, 30, seed=0, progress=False, device="cpu")


def _titles(findings, severity):
    return [f.title for f in findings if f.severity == severity]


class TestHealthy:
    def test_reset_audit_all_ok(self, healthy):
        _, _, traj = healthy
        findings = reset_audit(traj)
        assert [f.severity for f in findings] == ["ok"] * 4
        restarted = next(f for f in findings if f.title == "Resets restart the memory")
        assert restarted.where == {"resets": 4, "is_init_steps": 6, "env_starts": 2}
        # both counts and their definition, in words (the explorer counts every is_init step: 6)
        assert restarted.explanation == ("All 4 resets restarted from a zero hidden state. Counted: 6 is_init steps "
                                         "= 2 env starts (t = 0) + 4 resets after an episode ended.")
        status = reset_status(traj)
        assert (status[:, [0, 10, 20]] == ResetStatus.RESTARTED).all()
        assert (status[:, 1:10] == ResetStatus.CARRIED).all()

    def test_replay_matches(self, healthy):
        policy, _, traj = healthy
        report = replay_check(policy, traj)
        assert report.passed and report.finding.severity == "ok"
        assert report.gap.shape == (2, 30)
        assert report.max_gap < 1e-5 and report.output_gap < 1e-5
        assert report.first_step_over is None

    def test_diagnose_summary(self, healthy):
        policy, env, traj = healthy
        report = diagnose(traj, policy, env)
        assert report.ok and not report.warnings
        text = report.summary()
        assert text.splitlines()[0] == "0 errors, 0 warnings, 6 ok"
        assert "Replay matches the rollout" in text
        data = json.loads(json.dumps(report.to_dict()))
        assert data["ok"] is True and data["replay"]["passed"] is True


class TestBrokenTrajectories:
    def test_no_primer_is_a_dead_memory(self):
        """No primer (check=False): the hidden state is zero at every step → error; the replay disagrees."""
        policy, _ = policy_and_env(SPEC)
        traj = rollout(policy, make_env(SPEC), 12, seed=0, progress=False, device="cpu", check=False)
        findings = reset_audit(traj)
        assert _titles(findings, "error") == ["Memory never fed back (dead primer)"]
        dead = findings[0]
        assert "no primer" in dead.explanation and "make_tensordict_primer" in dead.fix
        replay = replay_check(policy, traj)
        assert replay.finding.severity == "error"
        assert replay.first_step_over == 1  # step 0 agrees: both start from zero

    def test_leak_is_found_where_it_happens(self, healthy):
        """Hidden carried over at is_init: a leak at each reset (env 0, step 10 first), and the replay diverges there."""
        policy, _, traj = healthy
        leaky = inject_leak(traj)
        findings = reset_audit(leaky)
        (leak,) = [f for f in findings if f.severity == "error"]
        assert leak.title == "Memory leaks across episodes"
        assert leak.where == {"env": 0, "step": 10, "count": 4, "resets": 4, "is_init_steps": 6, "env_starts": 2}
        assert leak.explanation.startswith("At 4 resets of 4 (first: env 0, step 10)")
        assert leak.explanation.endswith("Counted: 6 is_init steps = 2 env starts (t = 0) + 4 resets after an "
                                         "episode ended.")
        status = reset_status(leaky)
        assert (status[:, [10, 20]] == ResetStatus.LEAKED).all()
        replay = replay_check(policy, leaky)
        assert not replay.passed and replay.finding.severity == "error"
        assert replay.first_step_over == 10
        assert replay.gap[:, :10].max() < 1e-5
        assert replay.episode == int(leaky[KEYS.episode][replay.env, replay.step]) and replay.episode >= 1

    def test_is_init_never_set_after_done(self, healthy):
        _, _, traj = healthy
        findings = reset_audit(drop_resets(traj))
        errors = [f for f in findings if f.severity == "error"]
        assert [f.title for f in errors] == ["is_init never set after episodes ended"]
        assert errors[0].where == {"env": 0, "step": 10, "count": 4, "done": 4}

    def test_missing_is_init(self, healthy):
        _, _, traj = healthy
        findings = reset_audit(traj.exclude(KEYS.is_init))
        assert _titles(findings, "error") == ["No is_init"]
        assert "InitTracker" in findings[0].fix

    def test_memory_dropped_mid_episode(self, healthy):
        _, _, traj = healthy
        findings = reset_audit(drop_hidden(traj, [4, 5]))
        (dropped,) = [f for f in findings if f.severity == "error"]
        assert dropped.title == "Memory dropped mid-episode"
        assert dropped.where == {"env": 0, "step": 4, "count": 4}

    def test_memory_rewritten_mid_episode(self, healthy):
        _, _, traj = healthy
        broken = traj.clone()
        broken[KEYS.hidden][1, 7] += 0.5
        (rewritten,) = [f for f in reset_audit(broken) if f.severity == "error"]
        assert rewritten.title == "Memory rewritten mid-episode"
        assert rewritten.where == {"env": 1, "step": 7, "count": 1}

    def test_no_hidden_recorded(self):
        findings = reset_audit(TensorDict({KEYS.is_init: torch.ones(1, 3, 1, dtype=torch.bool)}, [1, 3]))
        assert _titles(findings, "error") == ["No hidden state recorded"]

    @pytest.mark.parametrize("noise, severity", [(1e-3, "warning"), (0.5, "error")])
    def test_replay_gap_bands(self, healthy, noise, severity):
        """Small gaps read as numerical drift (warning); large ones as a disagreement (error), located."""
        policy, _, traj = healthy
        shifted = traj.clone()
        shifted[KEYS.next_hidden][1, 13] += noise
        report = replay_check(policy, shifted)
        assert report.finding.severity == severity
        assert (report.env, report.step, report.episode, report.episode_step) == (1, 13, 1, 3)
        assert report.max_gap == pytest.approx(noise, rel=1e-3)
        assert report.first_step_over == 13


class TestCheckWiring:
    def test_ok(self, healthy):
        policy, env, _ = healthy
        assert _titles(check_wiring(policy, env), "ok") == ["Policy and environment are wired"]

    def test_no_primer(self):
        policy, _ = policy_and_env()
        with pytest.raises(WiringError) as info:
            check_wiring(policy, make_env(EnvSpec()))
        (finding,) = info.value.findings
        assert finding.title == "No primer for 'recurrent_state'"
        assert "make_env(spec, policy=policy)" in str(info.value)

    def test_no_init_tracker(self):
        from torchrl.envs import GymEnv, TransformedEnv

        policy, _ = policy_and_env()
        env = TransformedEnv(GymEnv("CartPole-v1"), policy.module[0][0].make_tensordict_primer())
        findings = check_wiring(policy, env, strict=False)
        assert _titles(findings, "error") == ["No is_init in the environment"]

    def test_observation_size_mismatch(self):
        """A policy built for hidden velocities (2 inputs) on the full CartPole (4)."""
        policy = build_policy(PolicySpec(hidden_size=4), make_env(EnvSpec(hide_velocity=True)), device="cpu")
        findings = check_wiring(policy, make_env(EnvSpec(), policy), strict=False)
        (err,) = [f for f in findings if f.severity == "error"]
        assert err.title == "Observation size mismatch for 'observation'"
        assert "expects 2 input features" in err.explanation and "has 4" in err.explanation

    def test_hidden_shape_and_dtype_mismatch(self):
        """An env primed for another policy: other hidden size, other dtype."""
        policy = build_policy(PolicySpec(hidden_size=4), make_env(EnvSpec()), device="cpu")
        other = build_policy(PolicySpec(hidden_size=6), make_env(EnvSpec()), device="cpu").double()
        findings = check_wiring(policy, make_env(EnvSpec(), other), strict=False)
        assert _titles(findings, "error") == [
            "Hidden shape mismatch for 'recurrent_state'",
            "Hidden dtype mismatch for 'recurrent_state'",
        ]
        assert "[1, 6]" in findings[0].explanation and "[1, 4]" in findings[0].explanation

    def test_observation_key_mismatch(self):
        from tensordict.nn import TensorDictSequential

        from workbench import GRUModule

        gru = GRUModule(4, 3, in_key="pixels", out_key="features")
        with pytest.raises(WiringError, match="No observation 'pixels'"):
            check_wiring(TensorDictSequential(gru), make_env(EnvSpec(), gru))

    def test_no_recurrent_module_warns(self):
        from tensordict.nn import TensorDictModule

        policy = TensorDictModule(torch.nn.Linear(4, 2), [KEYS.observation], ["logits"])
        with pytest.warns(WiringWarning, match="No recurrent module"):
            findings = check_wiring(policy, make_env(EnvSpec()))
        assert [f.severity for f in findings] == ["warning"]


class TestReport:
    def test_finding_validates_severity(self):
        with pytest.raises(ValueError, match="'severity' must be one of.*got 'fatal'"):
            Finding("fatal", "x", "y")

    def test_summary_orders_errors_first(self):
        report = DiagnosticsReport(
            [Finding("ok", "Fine", "all good."), Finding("warning", "Hm", "odd."), Finding("error", "Bad", "broken.", "fix it.")]
        )
        assert report.summary().splitlines() == [
            "1 error, 1 warning, 1 ok",
            "[ERROR] Bad: broken. Fix: fix it.",
            "[warning] Hm: odd.",
            "[ok] Fine: all good.",
        ]
        assert not report.ok

    def test_rollout_emits_wiring_warnings(self):
        """rollout(check=True) turns warning findings into WiringWarning and still runs."""
        from tensordict.nn import TensorDictModule
        from torchrl.modules import ProbabilisticActor

        env = make_env(EnvSpec())
        head = TensorDictModule(torch.nn.Linear(4, 2), [KEYS.observation], ["logits"])
        policy = ProbabilisticActor(head, in_keys=["logits"], spec=env.action_spec,
                                    distribution_class=torch.distributions.Categorical)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            traj = rollout(policy, env, 3, progress=False, device="cpu")
        assert any(issubclass(w.category, WiringWarning) for w in caught)
        assert traj.batch_size == (1, 3) and KEYS.hidden not in traj.keys()


def test_inject_leak_keeps_is_init_of_the_copy():
    """inject_leak must not clear the first step's is_init in the copy (it once edited a view)."""
    from tensordict import TensorDict

    from workbench.testing import inject_leak

    is_init = torch.tensor([[True, False, True, False]]).unsqueeze(-1)
    traj = TensorDict({"is_init": is_init.clone(),
                       "recurrent_state": torch.zeros(1, 4, 1, 1),
                       ("next", "recurrent_state"): torch.ones(1, 4, 1, 1)}, [1, 4])
    leaked = inject_leak(traj)
    assert torch.equal(leaked["is_init"], is_init)
    assert torch.equal(traj["is_init"], is_init)


# ---------------------------------------------------------------------------------------------- replays
def _loop_hidden(gru_module, obs, is_init):
    """Slow reference: one nn.GRUCell step at a time, zeros at every is_init."""
    gru = gru_module.gru
    cell = torch.nn.GRUCell(gru.input_size, gru.hidden_size)
    cell.load_state_dict({"weight_ih": gru.weight_ih_l0, "weight_hh": gru.weight_hh_l0,
                          "bias_ih": gru.bias_ih_l0, "bias_hh": gru.bias_hh_l0})
    e, t = is_init.shape
    h = torch.zeros(e, gru.hidden_size)
    out = []
    with torch.no_grad():
        for s in range(t):
            h = torch.where(is_init[:, s, None], torch.zeros_like(h), h)
            h = cell(obs[:, s], h)
            out.append(h)
    return torch.stack(out, 1)


def test_replay_hidden_matches_the_rollout_and_a_slow_loop(healthy):
    from workbench.replay import replay_hidden
    from workbench.policy import recurrent_modules

    policy, _, traj = healthy
    gru = recurrent_modules(policy)[0]
    is_init = traj[KEYS.is_init].squeeze(-1)
    h = replay_hidden(policy, traj)
    assert h.shape == traj[KEYS.next_hidden].shape
    torch.testing.assert_close(h, traj[KEYS.next_hidden], atol=1e-5, rtol=0)
    torch.testing.assert_close(h[..., 0, :], _loop_hidden(gru, traj[KEYS.observation], is_init), atol=1e-5, rtol=0)


def test_replay_hidden_without_resets_leaks_after_the_first_reset(healthy):
    from workbench.replay import replay_hidden
    from workbench.policy import recurrent_modules

    policy, _, traj = healthy
    gru = recurrent_modules(policy)[0]
    leaked = replay_hidden(policy, traj, resets=False)[..., 0, :]
    honest = replay_hidden(policy, traj)[..., 0, :]
    first = torch.zeros(2, 30, dtype=torch.bool)
    first[:, 0] = True
    torch.testing.assert_close(leaked, _loop_hidden(gru, traj[KEYS.observation], first), atol=1e-5, rtol=0)
    assert torch.equal(leaked[:, :10], honest[:, :10])  # the same until the first reset (step 10)
    assert (leaked[:, 10] - honest[:, 10]).abs().amax() > 1e-3
    assert traj[KEYS.is_init][:, 10].all()  # the trajectory itself is left as it was


def test_replay_hidden_runs_any_gru_of_the_right_input_size(healthy):
    """An untrained GRU of another width: nothing is read from the recorded hidden states."""
    from workbench.replay import replay_hidden
    from workbench.gru import GRUModule

    _, _, traj = healthy
    other = GRUModule(input_size=2, hidden_size=5, num_layers=2, in_key=KEYS.observation, out_key="features")
    h = replay_hidden(other, traj)
    assert h.shape == (2, 30, 2, 5)
    assert torch.equal(h[:, 10], replay_hidden(other, traj[:, 10:])[:, 0])  # a reset restarts from zeros


def test_replay_errors_name_the_problem(healthy):
    from workbench.replay import replay_hidden, replay_policy

    policy, _, traj = healthy
    with pytest.raises(KeyError, match="replay_hidden: the trajectory has no 'observation' entry"):
        replay_hidden(policy, traj.exclude(KEYS.observation))
    with pytest.raises(KeyError, match="replay_policy: the trajectory has no 'recurrent_state' entry"):
        replay_policy(policy, traj.exclude(KEYS.hidden))
    with pytest.raises(ValueError, match="replay_hidden: the policy must hold exactly one workbench GRUModule"):
        replay_hidden(torch.nn.Linear(2, 2), traj)


def test_replay_policy_reproduces_the_rollout_and_shows_the_leak(healthy):
    from workbench.replay import replay_policy

    policy, _, traj = healthy
    same = replay_policy(policy, traj)
    torch.testing.assert_close(same["logits"], traj["logits"], atol=1e-5, rtol=0)
    assert torch.equal(same[KEYS.action], traj["logits"].argmax(-1))  # greedy
    leaked = replay_policy(policy, traj, resets=False)
    torch.testing.assert_close(leaked["logits"][:, :10], traj["logits"][:, :10], atol=1e-5, rtol=0)
    assert (leaked["logits"][:, 10:] - traj["logits"][:, 10:]).abs().amax() > 1e-3


class TestResetCounts:
    """One owner of reset counting (workbench.episodes.reset_counts): the explorer's and the audit's numbers."""

    def test_counts_on_a_hand_built_is_init(self):
        from workbench.episodes import reset_counts

        is_init = torch.zeros(4, 12, dtype=torch.bool)
        is_init[:, 0] = True  # 4 env starts
        done = torch.zeros(4, 12, dtype=torch.bool)
        for env, step in ((0, 3), (0, 7), (1, 5), (3, 10), (3, 11)):  # 5 episodes end; the last at t = T-1
            done[env, step] = True
            if step + 1 < 12:
                is_init[env, step + 1] = True
        is_init[2, 6] = True  # a reset without a done before it
        counts = reset_counts(is_init.unsqueeze(-1), done.unsqueeze(-1))
        assert (counts.is_init_steps, counts.env_starts, counts.resets, counts.episode_starts_after_done,
                counts.unmarked_resets, counts.envs) == (9, 4, 5, 4, 1, 4)
        assert counts.differ
        assert counts.describe() == "9 is_init steps = 4 env starts (t = 0) + 5 resets (4 after a done, 1 without one)"
        plain = reset_counts(is_init)
        assert plain.episode_starts_after_done is None and plain.unmarked_resets is None
        assert plain.describe() == "9 is_init steps = 4 env starts (t = 0) + 5 resets after an episode ended"

    def test_no_env_start_means_one_count(self):
        from workbench.episodes import reset_counts

        counts = reset_counts(torch.tensor([[False, True, False, True]]))
        assert (counts.is_init_steps, counts.env_starts, counts.resets, counts.differ) == (2, 0, 2, False)
        assert counts.describe() == "2 resets after an episode ended (is_init at t = 0: none)"

    def test_bad_shape_is_named(self):
        from workbench.episodes import reset_counts
        from workbench.errors import AnalysisError

        with pytest.raises(AnalysisError, match="is_init must have shape"):
            reset_counts(torch.zeros(5, dtype=torch.bool))
        with pytest.raises(AnalysisError, match=r"'done' must have the shape of is_init, \(1, 4\).*got \(1, 3\)"):
            reset_counts(torch.zeros(1, 4, dtype=torch.bool), torch.zeros(1, 3, dtype=torch.bool))

    def test_a_healthy_rollout_says_both_counts(self, healthy):
        from workbench.episodes import reset_counts

        _, _, traj = healthy
        counts = reset_counts(traj["is_init"], traj["next", "done"])
        assert (counts.is_init_steps, counts.env_starts, counts.resets, counts.episode_starts_after_done) == (6, 2, 4, 4)
        text = diagnose(traj).summary()
        assert "All 4 resets restarted from a zero hidden state. Counted: 6 is_init steps" in text
