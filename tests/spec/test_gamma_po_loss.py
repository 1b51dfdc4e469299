"""gamma_po_loss, reward_gap, loss_vjp: composition, gradients by finite differences, input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gammapo_spec import (
    LOSS_NAMES,
    GammaPOConfig,
    InputError,
    StateError,
    calibrate_margins,
    gamma_po_loss,
    gamma_po_loss_and_grad,
    implicit_rewards,
    init_state,
    loss_vjp,
    loss_with_margins,
    reward_gap,
    target_margins,
)
from gammapo_spec.validation import required_fields


def make_inputs(config: GammaPOConfig, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = {
        "chosen_logps": -rng.uniform(1, 40, n),
        "rejected_logps": -rng.uniform(1, 40, n),
        "ref_chosen_logps": -rng.uniform(1, 40, n),
        "ref_rejected_logps": -rng.uniform(1, 40, n),
        "chosen_lengths": rng.integers(1, 30, n).astype(float),
        "rejected_lengths": rng.integers(1, 30, n).astype(float),
    }
    return {k: v for k, v in data.items() if k in required_fields(config)}


def config_for(loss: str, **kw) -> GammaPOConfig:
    base = dict(loss=loss, beta=0.7, gamma_beta_ratio=0.8, tau=2.0, calibration="batch")
    if loss.removeprefix("gamma-") in ("dpo", "simpo", "rdpo", "robust"):
        base["label_smoothing"] = 0.1
    if loss.removeprefix("gamma-") == "rdpo":
        base["rdpo_alpha"] = 0.05
    if loss.removeprefix("gamma-") == "simpo":
        base["sft_weight"] = 0.3
    base.update(kw)
    return GammaPOConfig(**base)


def test_reward_gap_reference_based_fixed_value():
    cfg = GammaPOConfig(loss="dpo", beta=0.5)
    h = reward_gap(cfg, chosen_logps=[-3.0], rejected_logps=[-6.0], ref_chosen_logps=[-4.0], ref_rejected_logps=[-5.0])
    assert h.tolist() == [0.5 * ((-3 + 4) - (-6 + 5))]


def test_reward_gap_simpo_is_length_normalised_and_reference_free():
    cfg = GammaPOConfig(loss="simpo", beta=2.0)
    u_w, u_l = implicit_rewards(cfg, chosen_logps=[-4.0], rejected_logps=[-9.0], chosen_lengths=[2], rejected_lengths=[3])
    assert (u_w.tolist(), u_l.tolist()) == ([-4.0], [-6.0])


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_gamma_po_loss_is_mean_of_pair_losses_with_calibrated_margins(loss):
    cfg = config_for(loss)
    x = make_inputs(cfg, 9)
    out, state = gamma_po_loss(cfg, None, **x)
    assert state is None
    assert out.loss == pytest.approx(float(np.mean(out.losses)), rel=1e-14)
    h = reward_gap(cfg, **x)
    np.testing.assert_allclose(out.gaps, h, rtol=1e-14)
    gamma = calibrate_margins(h, gamma0=cfg.gamma0, tau=cfg.tau) if cfg.dynamic_margins else None
    expected = target_margins(cfg, 9, gamma=gamma, chosen_lengths=x.get("chosen_lengths"),
                              rejected_lengths=x.get("rejected_lengths"))
    np.testing.assert_allclose(out.margins, expected, rtol=1e-14, atol=1e-15)
    # The same loss, margins passed explicitly, gives the same output.
    again = loss_with_margins(cfg, out.margins, **x)
    np.testing.assert_allclose(again.losses, out.losses, rtol=1e-14)
    assert set(out.metrics) >= {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
                                "margins/mean", "margins/std", "margins/min", "margins/max"}


def test_gamma_po_loss_gamma_simpo_uses_full_gamma_as_margin():
    cfg = GammaPOConfig(loss="gamma-simpo", beta=2.0, gamma_beta_ratio=0.5, tau=1.0, calibration="batch")
    x = dict(chosen_logps=[-4.0, -8.0], rejected_logps=[-9.0, -6.0], chosen_lengths=[2, 4], rejected_lengths=[3, 3])
    out, _ = gamma_po_loss(cfg, None, **x)
    h = np.array([2 * (-2.0) - 2 * (-3.0), 2 * (-2.0) - 2 * (-2.0)])
    gamma = calibrate_margins(h, gamma0=1.0, tau=1.0)
    np.testing.assert_allclose(out.margins, gamma, rtol=1e-14)
    expected = [math.log1p(math.exp(-(hi - gi))) for hi, gi in zip(h, gamma)]
    np.testing.assert_allclose(out.losses, expected, rtol=1e-13)


def test_gamma_po_loss_gamma_dpo_shift_has_mean_zero():
    cfg = config_for("gamma-dpo")
    out, _ = gamma_po_loss(cfg, None, **make_inputs(cfg, 50))
    assert abs(float(np.mean(out.margins))) < 1e-12


def test_gamma_po_loss_queue_mode_advances_state():
    cfg = config_for("gamma-simpo", calibration="queue", queue_size=64, sample_size=32)
    state = init_state(cfg, seed=3)
    for step in range(4):
        out, state = gamma_po_loss(cfg, state, **make_inputs(cfg, 5, seed=step))
    assert state.step == 4 and state.size == 8 + 20


@pytest.mark.parametrize("loss", LOSS_NAMES)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 8))
def test_loss_vjp_matches_finite_differences(loss, seed, n):
    cfg = config_for(loss)
    x = make_inputs(cfg, n, seed)
    out, _ = gamma_po_loss(cfg, None, **x)
    m = out.margins
    if cfg.base_loss == "hinge":
        assume(np.all(np.abs(out.gaps - m - 1.0) > 1e-3))
    grads = loss_vjp(cfg, m, cotangent=1.7, **x)
    for name in x:
        if name.endswith("lengths"):
            assert name not in grads
            continue
        fd = np.empty(n)
        for i in range(n):
            step = 1e-6
            plus = {k: v.copy() for k, v in x.items()}
            minus = {k: v.copy() for k, v in x.items()}
            plus[name][i] += step
            minus[name][i] -= step
            fd[i] = 1.7 * (loss_with_margins(cfg, m, **plus).loss - loss_with_margins(cfg, m, **minus).loss) / (2 * step)
        # central differences lose ~eps·|loss|/step to rounding; allow five times that
        fd_rounding = 5 * np.finfo(float).eps * 1.7 * abs(float(out.loss)) / step
        np.testing.assert_allclose(grads[name], fd, rtol=1e-5, atol=1e-9 + fd_rounding,
                                   err_msg=f"d loss / d {name}")


def test_gamma_po_loss_and_grad_uses_the_calibrated_margins_as_constants():
    cfg = config_for("gamma-dpo")
    x = make_inputs(cfg, 6)
    out, _, grads = gamma_po_loss_and_grad(cfg, None, **x)
    for k, v in loss_vjp(cfg, out.margins, **x).items():
        np.testing.assert_array_equal(grads[k], v)


def test_gamma_po_loss_stable_for_huge_log_probs():
    cfg = config_for("gamma-dpo")
    x = make_inputs(cfg, 4)
    x["chosen_logps"] = np.array([-1e6, 1e6, -1e300, 0.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out, _ = gamma_po_loss(cfg, None, **x)
    assert np.all(np.isfinite(out.losses)) and math.isfinite(out.loss)


BAD_INPUTS = [
    ("missing reference", "dpo", {"ref_chosen_logps": None}, "ref_chosen_logps"),
    ("reference given to simpo", "simpo", {"ref_chosen_logps": [1.0, 2.0, 3.0]}, "ref_chosen_logps"),
    ("missing length", "gamma-simpo", {"rejected_lengths": None}, "rejected_lengths"),
    ("2-D input", "dpo", {"chosen_logps": [[1.0, 2.0, 3.0]]}, "chosen_logps"),
    ("mismatched", "dpo", {"rejected_logps": [1.0, 2.0]}, "rejected_logps"),
    ("nan", "gamma-dpo", {"rejected_logps": [1.0, math.nan, 2.0]}, "rejected_logps"),
    ("inf ref", "gamma-dpo", {"ref_rejected_logps": [1.0, -math.inf, 2.0]}, "ref_rejected_logps"),
    ("zero length", "gamma-simpo", {"chosen_lengths": [1.0, 0.0, 2.0]}, "chosen_lengths"),
    ("negative length", "rdpo", {"rejected_lengths": [1.0, -3.0, 2.0]}, "rejected_lengths"),
]


@pytest.mark.parametrize("label,loss,change,field", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_gamma_po_loss_input_errors_name_the_argument(label, loss, change, field):
    cfg = config_for(loss)
    x = make_inputs(cfg, 3)
    x.update(change)
    with pytest.raises(InputError) as info:
        gamma_po_loss(cfg, None, **x)
    assert info.value.field == field, f"{label}: names {info.value.field!r}"


def test_gamma_po_loss_empty_batch_is_an_error():
    cfg = config_for("dpo")
    x = {k: np.array([]) for k in make_inputs(cfg, 1)}
    with pytest.raises(InputError, match="at least one pair"):
        gamma_po_loss(cfg, None, **x)


def test_gamma_po_loss_value_checks_can_be_switched_off():
    cfg = config_for("dpo", check_values=False)
    x = make_inputs(cfg, 3)
    x["chosen_logps"][1] = math.nan
    out, _ = gamma_po_loss(cfg, None, **x)
    assert math.isnan(out.losses[1]) and not math.isnan(out.losses[0])


def test_gamma_po_loss_rejects_state_in_batch_mode_and_missing_state_in_queue_mode():
    with pytest.raises(StateError):
        gamma_po_loss(config_for("gamma-dpo", calibration="queue"), None, **make_inputs(config_for("dpo"), 2))
    q = config_for("gamma-dpo", calibration="queue")
    with pytest.raises(StateError):
        gamma_po_loss(config_for("gamma-dpo"), init_state(q), **make_inputs(config_for("dpo"), 2))


def test_loss_with_margins_rejects_wrong_margin_shape():
    cfg = config_for("dpo")
    with pytest.raises(InputError) as info:
        loss_with_margins(cfg, [0.0, 0.0], **make_inputs(cfg, 3))
    assert info.value.field == "margins"
