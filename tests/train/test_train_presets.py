"""Presets carry the released γ-SimPO recipes (docs/howto/train.md) and build valid losses for every method."""

import pytest

pytest.importorskip("torch")

from gammapo.integrations.losses import make_pair_loss, registered_pair_losses  # noqa: E402
from gammapo.train.cli import _plan, build_parser  # noqa: E402
from gammapo.train.presets import PRESETS, loss_kwargs  # noqa: E402
from gammapo_spec import LOSS_NAMES  # noqa: E402

RELEASED = {  # the released recipes: base model -> (β, γ0/β, τ, lr)
    "llama3": (10.0, 0.4, 10.0, 1e-6),
    "gemma2": (10.0, 0.5, 20.0, 8e-7),
    "mistral": (2.5, 0.15, 10.0, 6e-7),
    "qwen2.5": (10.0, 0.3, 3.0, 1e-6),
}


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_presets_match_released_gamma_simpo_recipes(name):
    beta, ratio, tau, lr = RELEASED[name]
    assert loss_kwargs("gamma-simpo", PRESETS[name]) == {"beta": beta, "gamma_beta_ratio": ratio, "tau": tau}
    assert PRESETS[name].learning_rate == lr and PRESETS[name].epochs == 1.0


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_presets_build_a_valid_loss_for_every_spec_loss(preset, loss):
    assert loss in registered_pair_losses()
    pl = make_pair_loss(loss, **loss_kwargs(loss, PRESETS[preset]))
    assert pl.config.loss == loss


def test_plan_applies_preset_and_overrides():
    args = build_parser().parse_args(["--preset", "mistral", "--methods", "simpo,gamma-simpo,gamma-dpo", "--tau", "7",
                                      "--calibration", "batch"])
    plan = _plan(args)
    assert plan["lr"] == 6e-7 and plan["epochs"] == 1.0
    assert plan["loss_kwargs"]["simpo"] == {"beta": 2.5, "gamma_beta_ratio": 0.15}
    assert plan["loss_kwargs"]["gamma-simpo"] == {"beta": 2.5, "gamma_beta_ratio": 0.15, "tau": 7.0,
                                                  "calibration": "batch"}
    assert plan["loss_kwargs"]["gamma-dpo"]["beta"] == 0.1
