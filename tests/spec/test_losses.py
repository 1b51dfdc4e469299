"""pair_losses / pair_loss_derivative / pair_loss_curvature / target_margins: fixed values from independent formulas, and stability."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gammapo_spec import BASE_LOSSES, GammaPOConfig, pair_loss_curvature, pair_loss_derivative, pair_losses, target_margins


def ls(z):  # log σ(z) in plain Python, for moderate z
    return -math.log1p(math.exp(-z))


def independent_loss(name, z, beta=2.0, eps=0.0):
    if name in ("dpo", "simpo", "rdpo"):
        return -(1 - eps) * ls(z) - eps * ls(-z)
    if name == "robust":
        return ((1 - eps) * -ls(z) + eps * ls(-z)) / (1 - 2 * eps)
    if name == "hinge":
        return max(0.0, 1 - z)
    if name == "ipo":
        return (z / beta - 1 / (2 * beta)) ** 2  # IPO: (Δ − 1/(2β))² with Δ = z/β
    raise AssertionError(name)


def config_for(name, eps=0.0):
    return GammaPOConfig(loss=name, beta=2.0, label_smoothing=eps if name in ("dpo", "simpo", "rdpo", "robust") else 0.0)


@pytest.mark.parametrize("name", BASE_LOSSES)
@pytest.mark.parametrize("z", [-7.5, -1.0, 0.0, 0.3, 1.0, 4.2])
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_pair_losses_fixed_values(name, z, eps):
    got = float(pair_losses(config_for(name, eps), np.array([z]))[0])
    eps_used = eps if name in ("dpo", "simpo", "rdpo", "robust") else 0.0
    assert got == pytest.approx(independent_loss(name, z, eps=eps_used), rel=1e-13, abs=1e-15)


def test_pair_losses_label_smoothing_is_the_cdpo_form():
    """With a margin, cDPO smooths with -log σ(-(h - m)), not the γ-PO repo's -log σ(-h - m)."""
    cfg = GammaPOConfig(loss="simpo", beta=1.0, gamma_beta_ratio=1.0, label_smoothing=0.1)
    h, m = 0.7, 1.0
    expected = -0.9 * ls(h - m) - 0.1 * ls(-(h - m))
    symmetric = -0.9 * ls(h - m) - 0.1 * ls(-h - m)
    got = float(pair_losses(cfg, np.array([h - m]))[0])
    assert got == pytest.approx(expected, rel=1e-13)
    assert abs(got - symmetric) > 1e-3


@pytest.mark.parametrize("name", BASE_LOSSES)
@given(z=st.floats(-30, 30), eps=st.floats(0.0, 0.45))
def test_pair_loss_derivative_matches_finite_differences(name, z, eps):
    if name == "hinge":
        assume(abs(z - 1.0) > 1e-3)
    cfg = config_for(name, eps)
    step = 1e-6 * max(1.0, abs(z))
    fd = (pair_losses(cfg, np.array([z + step]))[0] - pair_losses(cfg, np.array([z - step]))[0]) / (2 * step)
    got = pair_loss_derivative(cfg, np.array([z]))[0]
    assert got == pytest.approx(fd, rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("name", BASE_LOSSES)
@given(z=st.floats(-30, 30), eps=st.floats(0.0, 0.45))
def test_pair_loss_curvature_matches_finite_differences_of_the_derivative(name, z, eps):
    if name == "hinge":
        assume(abs(z - 1.0) > 1e-3)
    cfg = config_for(name, eps)
    step = 1e-5 * max(1.0, abs(z))
    d = pair_loss_derivative(cfg, np.array([z + step, z - step]))
    fd = (d[0] - d[1]) / (2 * step)
    got = pair_loss_curvature(cfg, np.array([z]))[0]
    assert got == pytest.approx(fd, rel=1e-5, abs=1e-9), f"{name}, eps={eps}: curvature {got} vs finite difference {fd}"


def test_pair_loss_curvature_fixed_values():
    """σ(z)σ(−z) at z = ln 3 is (3/4)(1/4) = 3/16; IPO with β = 0.5 is 2/β² = 8; hinge 0."""
    z = np.array([np.log(3.0)])
    assert pair_loss_curvature(GammaPOConfig(loss="simpo", label_smoothing=0.3), z)[0] == pytest.approx(3 / 16, rel=1e-14)
    assert pair_loss_curvature(GammaPOConfig(loss="ipo", beta=0.5), z)[0] == 8.0
    assert pair_loss_curvature(GammaPOConfig(loss="hinge"), z)[0] == 0.0


@pytest.mark.parametrize("name", BASE_LOSSES)
@given(z=st.floats(-1e300, 1e300))
def test_pair_losses_are_finite_for_any_finite_input(name, z):
    cfg = config_for(name, 0.1)
    with np.errstate(over="ignore"):  # ipo squares huge numbers: that is its definition
        val = pair_losses(cfg, np.array([z]))[0]
    if name != "ipo":
        assert math.isfinite(val), f"{name} at z={z} gave {val}"
    assert math.isfinite(pair_loss_derivative(cfg, np.array([z]))[0]) or name == "ipo"


def test_pair_losses_hinge_subgradient_is_zero_at_the_kink():
    assert pair_loss_derivative(GammaPOConfig(loss="hinge"), np.array([1.0]))[0] == 0.0


def test_target_margins_per_loss_family():
    g = np.array([0.5, 1.5])
    dpo = GammaPOConfig(loss="gamma-dpo", beta=1.0, gamma_beta_ratio=1.0)
    simpo = GammaPOConfig(loss="gamma-simpo", beta=1.0, gamma_beta_ratio=1.0)
    rdpo = GammaPOConfig(loss="gamma-rdpo", beta=1.0, gamma_beta_ratio=1.0, rdpo_alpha=0.1)
    np.testing.assert_allclose(target_margins(dpo, 2, gamma=g), g - 1.0)
    np.testing.assert_allclose(target_margins(simpo, 2, gamma=g), g)
    np.testing.assert_allclose(
        target_margins(rdpo, 2, gamma=g, chosen_lengths=[10, 3], rejected_lengths=[4, 3]), [0.6 - 0.5, 0.5]
    )
    np.testing.assert_allclose(target_margins(GammaPOConfig(loss="simpo", beta=2.0, gamma_beta_ratio=0.5), 2), [1.0, 1.0])
    np.testing.assert_allclose(target_margins(GammaPOConfig(loss="ipo"), 3), [0.0, 0.0, 0.0])
