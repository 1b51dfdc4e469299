"""GammaPOConfig: validation on construction, every error naming its field."""

from __future__ import annotations

import json
import math

import pytest

from gammapo_spec import LOSS_NAMES, ConfigError, GammaPOConfig

BAD_VALUES = [
    ("loss", "gamma-ppo"),
    ("loss", 3),
    ("beta", 0.0),
    ("beta", -1.0),
    ("beta", math.inf),
    ("beta", math.nan),
    ("beta", True),
    ("beta", "1"),
    ("gamma_beta_ratio", -0.1),
    ("tau", 0.0),
    ("tau", -2.0),
    ("tau", math.inf),
    ("solver", "newton"),
    ("iters", 0),
    ("iters", 2.0),
    ("iters", True),
    ("calibration", "ring"),
    ("queue_size", 0),
    ("sample_size", 0),
    ("queue_warmup", -1),
    ("label_smoothing", -0.01),
    ("label_smoothing", 0.5),
    ("sft_weight", -1.0),
    ("rdpo_alpha", math.nan),
    ("check_values", 1),
]


@pytest.mark.parametrize("field,value", BAD_VALUES, ids=[f"{f}={v!r}" for f, v in BAD_VALUES])
def test_config_rejects_bad_value_naming_field(field, value):
    with pytest.raises(ConfigError) as info:
        GammaPOConfig(**{field: value})
    assert info.value.field == field, f"error names {info.value.field!r}, expected {field!r}: {info.value}"
    assert field in str(info.value), f"message should name the field: {info.value}"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(loss="ipo", label_smoothing=0.1), "label_smoothing"),
        (dict(loss="gamma-hinge", label_smoothing=0.1), "label_smoothing"),
        (dict(loss="dpo", sft_weight=0.5), "sft_weight"),
        (dict(loss="gamma-dpo", rdpo_alpha=0.2), "rdpo_alpha"),
        (dict(queue_size=4, queue_warmup=8), "queue_warmup"),
    ],
)
def test_config_rejects_options_the_loss_cannot_use(kwargs, field):
    with pytest.raises(ConfigError) as info:
        GammaPOConfig(**kwargs)
    assert info.value.field == field


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_config_accepts_every_loss_name(loss):
    cfg = GammaPOConfig(loss=loss)
    assert cfg.dynamic_margins == loss.startswith("gamma-")
    assert cfg.base_loss == loss.removeprefix("gamma-")
    assert cfg.reference_free == (cfg.base_loss == "simpo")


def test_config_gamma0_is_beta_times_ratio():
    cfg = GammaPOConfig(beta=2.5, gamma_beta_ratio=0.15)
    assert cfg.gamma0 == pytest.approx(0.375, rel=1e-15)


def test_config_stateful_only_for_dynamic_queue():
    assert GammaPOConfig(loss="gamma-simpo", calibration="queue").stateful
    assert not GammaPOConfig(loss="gamma-simpo", calibration="batch").stateful
    assert not GammaPOConfig(loss="simpo", calibration="queue").stateful


def test_config_round_trips_through_json():
    cfg = GammaPOConfig(loss="gamma-rdpo", rdpo_alpha=0.1, label_smoothing=0.1, tau=3.0)
    assert GammaPOConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_config_from_dict_rejects_unknown_field():
    with pytest.raises(ConfigError) as info:
        GammaPOConfig.from_dict({"betta": 1.0})
    assert info.value.field == "betta"


def test_config_replace_validates_again():
    with pytest.raises(ConfigError):
        GammaPOConfig().replace(tau=-1.0)


def test_config_is_immutable():
    with pytest.raises(Exception):
        GammaPOConfig().beta = 3.0  # type: ignore[misc]
