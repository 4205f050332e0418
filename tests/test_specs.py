"""workbench.specs: the config base and its shared validators."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from workbench.envs import EnvSpec
from workbench.errors import ConfigError
from workbench.policy import PolicyIO, PolicySpec
from workbench.specs import (
    EXPECTED,
    Spec,
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_ints,
    setting,
    settings,
)
from workbench.train import TrainConfig

CONFIGS = [
    PolicySpec(hidden_size=4, head_cells=(8, 8), python_based=True, record_gates=True),
    PolicyIO(3, "continuous", 2, (-1.0, -2.0), (1.0, 2.0)),
    PolicyIO(4, "categorical", 2),
    EnvSpec("Acrobot-v1", max_steps=50, seed=None),
    TrainConfig(num_envs=4, frames_per_batch=64, head_cells=(16, 16), max_steps=30),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: type(c).__name__)
def test_round_trip_through_json(config):
    """to_dict is JSON-able and from_dict gives the same config back."""
    assert type(config).from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize("cls", [PolicySpec, PolicyIO, EnvSpec, TrainConfig])
def test_unknown_field_is_named(cls):
    with pytest.raises(ConfigError, match=rf"^{cls.__name__}\.from_dict: unknown fields \['bogus'\]"):
        cls.from_dict({"bogus": 1})


def test_missing_field_without_default_is_named():
    with pytest.raises(ConfigError, match=r"^PolicyIO\.from_dict: missing fields \['action_kind', 'action_size'\]"):
        PolicyIO.from_dict({"observation_size": 3})


def test_every_field_is_documented():
    """Every config field has a setting with a help text (what a panel and the docs read)."""
    for cls in (PolicySpec, PolicyIO, EnvSpec, TrainConfig):
        assert all(info.help for info in settings(cls).values()), cls.__name__
        assert list(settings(cls)) == list(cls.__dataclass_fields__), cls.__name__


class TestValidators:
    def test_int(self):
        assert check_int("O", "n", 3, low=1) == 3
        for bad in (0, 1.5, True, None):
            with pytest.raises(ConfigError, match=r"^O: 'n' must be an int >= 1; got "):
                check_int("O", "n", bad, low=1)
        with pytest.raises(ConfigError, match=r"^O: 'n': expected an integer in \[1, 3\]; got 4$"):
            check_int("O", "n", 4, low=1, high=3, wording=EXPECTED)

    def test_float(self):
        assert check_float("O", "x", 1, low=0, low_open=True) == 1
        for bad in (0.0, float("nan"), float("inf"), "1"):
            with pytest.raises(ConfigError, match=r"'x' must be a finite number > 0; got "):
                check_float("O", "x", bad, low=0, low_open=True)

    def test_bool(self):
        assert check_bool("O", "b", False) is False
        with pytest.raises(ConfigError, match=r"'b' must be a bool; got 0"):
            check_bool("O", "b", 0)

    def test_choice(self):
        assert check_choice("O", "c", "a", ("a", "b")) == "a"
        with pytest.raises(ConfigError, match=r"'c' must be one of \['a', 'b'\]; got 'z'"):
            check_choice("O", "c", "z", ("a", "b"))

    def test_ints(self):
        assert check_ints("O", "cells", [4, 5]) == (4, 5) and check_ints("O", "cells", ()) == ()
        with pytest.raises(ConfigError, match=r"'cells' must be a tuple of ints >= 1, e.g. \(32,\); got \[4, 0\]"):
            check_ints("O", "cells", [4, 0])


def test_a_config_checks_its_fields_from_their_settings():
    """A Spec subclass is checked from its settings alone, then by its own _check."""

    @dataclass(frozen=True)
    class Demo(Spec):
        steps: int = setting(4, "steps", low=1)
        rate: float = setting(0.5, "rate", low=0.0, high=1.0)

        def _check(self):
            if self.steps == 3:
                raise ConfigError("Demo: 'steps' must not be 3")

    assert Demo(steps=2, rate=1).to_dict() == {"steps": 2, "rate": 1}
    with pytest.raises(ConfigError, match=r"'rate' must be a finite number in \[0, 1\]; got 2"):
        Demo(rate=2)
    with pytest.raises(ConfigError, match="must not be 3"):
        Demo(steps=3)
