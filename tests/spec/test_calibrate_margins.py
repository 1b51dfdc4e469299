"""calibrate_margins: invariants, the exact solver's KKT conditions, and the mirror arithmetic step by step."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gammapo_spec import (
    ConfigError,
    InputError,
    calibrate_margins,
    calibration_objective,
    exact_log_margins,
    kkt_residual,
)

finite_gap = st.floats(-50.0, 50.0, allow_nan=False)
gap_sets = st.lists(finite_gap, min_size=1, max_size=64).map(np.array)
solvers = st.sampled_from(["mirror", "exact"])
gamma0s = st.floats(0.0, 10.0)
taus = st.floats(0.1, 1000.0)


def released_mirror_step_by_step(gaps, gamma0, tau, iters):
    """The released arithmetic in plain Python floats, written from the iteration on docs/theory/mirror-descent.md."""
    m = len(gaps)
    p = [1.0 / m] * m
    eta = min(0.5 / tau, 1.0)
    gamma = None
    for _ in range(iters):
        gamma = [gamma0 * m * pi for pi in p]
        grad = [
            tau * (1.0 + math.log(m * (pi + 1e-10))) + gamma0 / (1.0 + math.exp(-(gi - hi)))
            for pi, gi, hi in zip(p, gamma, gaps)
        ]
        w = [pi * math.exp(-eta * g) for pi, g in zip(p, grad)]
        total = sum(w)
        p = [wi / total for wi in w]
    return np.array(gamma)


@given(gaps=st.lists(st.floats(-20.0, 20.0), min_size=1, max_size=32), gamma0=st.floats(0.0, 6.0),
       tau=st.floats(0.5, 100.0), iters=st.integers(1, 30))
def test_calibrate_margins_mirror_matches_step_by_step_released_arithmetic(gaps, gamma0, tau, iters):
    expected = released_mirror_step_by_step(gaps, gamma0, tau, iters)
    got = calibrate_margins(gaps, gamma0=gamma0, tau=tau, solver="mirror", iters=iters)
    np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-12 * max(gamma0, 1.0),
                               err_msg="mirror solver departs from the released arithmetic")


def test_calibrate_margins_mirror_returns_gamma_before_last_update():
    gaps = [3.0, -1.0, 0.5]
    # K = 1: no update happens before the returned γ, so it is γ0 everywhere.
    np.testing.assert_array_equal(calibrate_margins(gaps, gamma0=2.0, tau=1.0, solver="mirror", iters=1), [2.0, 2.0, 2.0])
    # K = 2 returns the γ after exactly one update (not two).
    one_update = released_mirror_step_by_step(gaps, 2.0, 1.0, 2)
    two_updates = released_mirror_step_by_step(gaps, 2.0, 1.0, 3)
    got = calibrate_margins(gaps, gamma0=2.0, tau=1.0, solver="mirror", iters=2)
    np.testing.assert_allclose(got, one_update, rtol=1e-13)
    assert np.max(np.abs(got - two_updates)) > 1e-3


@given(gaps=gap_sets, gamma0=gamma0s, tau=taus, solver=solvers)
def test_calibrate_margins_mean_is_gamma0_and_margins_nonnegative(gaps, gamma0, tau, solver):
    gamma = calibrate_margins(gaps, gamma0=gamma0, tau=tau, solver=solver)
    assert gamma.shape == gaps.shape and gamma.dtype == np.float64
    assert np.all(gamma >= 0), f"negative margin {gamma.min()}"
    assert abs(gamma.mean() - gamma0) <= 1e-12 * max(gamma0, 1.0) * 10, f"mean {gamma.mean()} vs γ0 {gamma0}"


@given(gaps=gap_sets, gamma0=gamma0s, tau=taus, solver=solvers, seed=st.integers(0, 2**32 - 1))
def test_calibrate_margins_is_permutation_equivariant(gaps, gamma0, tau, solver, seed):
    perm = np.random.default_rng(seed).permutation(gaps.size)
    a = calibrate_margins(gaps, gamma0=gamma0, tau=tau, solver=solver)[perm]
    b = calibrate_margins(gaps[perm], gamma0=gamma0, tau=tau, solver=solver)
    np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)


@given(gaps=gap_sets, gamma0=st.floats(0.01, 10.0), solver=solvers)
def test_calibrate_margins_large_tau_limit_is_gamma0(gaps, gamma0, solver):
    gamma = calibrate_margins(gaps, gamma0=gamma0, tau=1e9, solver=solver)
    np.testing.assert_allclose(gamma, gamma0, rtol=1e-7, err_msg="τ → ∞ must give γ0 for every pair")


@given(gaps=gap_sets, gamma0=st.floats(0.01, 10.0), tau=taus)
def test_calibrate_margins_exact_is_monotone_in_gap(gaps, gamma0, tau):
    order = np.argsort(gaps, kind="stable")
    gamma = calibrate_margins(gaps, gamma0=gamma0, tau=tau, solver="exact")[order]
    assert np.all(np.diff(gamma) >= -1e-12 * gamma0), "a larger gap got a smaller margin"


@given(gaps=gap_sets, gamma0=st.floats(0.01, 10.0), tau=st.floats(0.5, 1000.0))
def test_calibrate_margins_mirror_is_monotone_in_gap_where_it_converges(gaps, gamma0, tau):
    assume(gamma0**2 / (8 * tau) <= 0.4)
    order = np.argsort(gaps, kind="stable")
    gamma = calibrate_margins(gaps, gamma0=gamma0, tau=tau, solver="mirror")[order]
    assert np.all(np.diff(gamma) >= -1e-12 * gamma0)


@given(
    gaps=st.lists(st.floats(-1e4, 1e4), min_size=1, max_size=64).map(np.array),
    gamma0=st.floats(1e-3, 10.0),
    tau=st.floats(0.1, 1000.0),
)
def test_calibrate_margins_exact_meets_kkt_conditions(gaps, gamma0, tau):
    gamma = calibrate_margins(gaps, gamma0=gamma0, tau=tau, solver="exact")
    residual = kkt_residual(gaps, gamma, gamma0=gamma0, tau=tau)
    assert residual <= 1e-10, f"KKT residual {residual:.2e} for τ={tau}, γ0={gamma0}"


@pytest.mark.parametrize("tau", [0.1, 1.0, 10.0, 1000.0])
@pytest.mark.parametrize("gamma0", [0.1, 10.0])
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_calibrate_margins_exact_meets_kkt_on_large_sets(tau, gamma0, scale):
    gaps = np.random.default_rng(7).normal(size=4096) * scale
    gamma = calibrate_margins(gaps, gamma0=gamma0, tau=tau, solver="exact")
    assert kkt_residual(gaps, gamma, gamma0=gamma0, tau=tau) <= 1e-10


@pytest.mark.parametrize(
    "gaps, gamma0, tau",
    [([1e4, -1.32e-4], 100.0, 0.1), ([1e4, 0.3, -2.0], 100.0, 0.05), ([1e4, -1e4, 5.0], 1000.0, 1.0)],
)
def test_calibrate_margins_exact_converges_when_an_entry_sits_at_the_cap(gaps, gamma0, tau):
    """Regression: with a dominant gap the outer Newton step crawled (0.1 per step) and the 300 steps ran
    out (KKT residual 9.97 on the first case); the rtsafe rule bisects instead.

    Independent check of the first case: p_1 = 1 − p_2 ≈ 1 and σ(γ_1 − h_1) ≈ 0 give the multiplier
    λ = −τ(1 + log 2); pair 2's condition γ0·σ(γ_2 − h_2) + τ(1 + u_2) + λ = 0 with γ_2 ≈ 0 gives
    u_2 = log(γ_2/γ0) = (−λ − γ0·σ(−h_2))/τ − 1 ≈ −495 (γ_2 ≈ 1.4e-215).
    """
    gaps = np.asarray(gaps)
    u = exact_log_margins(gaps, gamma0=gamma0, tau=tau)
    assert kkt_residual(gaps, gamma0=gamma0, tau=tau, log_ratios=u) <= 1e-10
    if gaps.size == 2:
        lam = -tau * (1.0 + np.log(2.0))
        u2 = (-lam - gamma0 / (1.0 + np.exp(gaps[1]))) / tau - 1.0
        assert u[1] == pytest.approx(u2, rel=1e-9), (u, u2)
        assert u[0] == pytest.approx(np.log(2.0), abs=1e-12)


@pytest.mark.parametrize("tau", [1e-3, 3e-3])
def test_calibrate_margins_exact_below_float64_range_solves_in_log_domain(tau):
    """Below τ ≈ γ0/700 some minimiser margins underflow: they round to 0, the log-ratios stay exact."""
    gaps = np.random.default_rng(3).normal(size=512) * 100.0
    u = exact_log_margins(gaps, gamma0=10.0, tau=tau)
    assert u.min() < -745, "this case should reach below float64's smallest positive value"
    assert kkt_residual(gaps, gamma0=10.0, tau=tau, log_ratios=u) <= 1e-10
    gamma = calibrate_margins(gaps, gamma0=10.0, tau=tau, solver="exact")
    assert np.all(np.isfinite(gamma)) and np.any(gamma == 0.0)
    assert gamma.mean() == pytest.approx(10.0, rel=1e-12)


@given(gaps=gap_sets, gamma0=st.floats(0.01, 10.0), tau=taus)
def test_calibrate_margins_exact_minimises_the_objective(gaps, gamma0, tau):
    exact = calibrate_margins(gaps, gamma0=gamma0, tau=tau, solver="exact")
    mirror = calibrate_margins(gaps, gamma0=gamma0, tau=tau, solver="mirror")
    f_exact = calibration_objective(gaps, exact, gamma0=gamma0, tau=tau)
    for other in (mirror, np.full(gaps.size, gamma0)):
        assert f_exact <= calibration_objective(gaps, other, gamma0=gamma0, tau=tau) + 1e-12 * (1 + abs(f_exact))


@given(gaps=st.lists(st.floats(-100.0, 100.0), min_size=2, max_size=256).map(np.array),
       gamma0=st.floats(0.05, 10.0), tau=st.floats(0.5, 1000.0))
def test_calibrate_margins_solvers_agree_in_the_documented_regime(gaps, gamma0, tau):
    """The docstring's claim: τ ≥ 0.5 and γ0²/(8τ) ≤ 0.4 ⇒ |mirror − exact| ≤ 2e-6·γ0 (we test 1e-5)."""
    assume(gamma0**2 / (8 * tau) <= 0.4)
    mirror = calibrate_margins(gaps, gamma0=gamma0, tau=tau, solver="mirror")
    exact = calibrate_margins(gaps, gamma0=gamma0, tau=tau, solver="exact")
    assert np.max(np.abs(mirror - exact)) <= 1e-5 * gamma0


def test_calibrate_margins_solvers_disagree_outside_that_regime():
    gaps = np.random.default_rng(0).normal(size=256) * 10.0
    mirror = calibrate_margins(gaps, gamma0=10.0, tau=10.0, solver="mirror")
    exact = calibrate_margins(gaps, gamma0=10.0, tau=10.0, solver="exact")
    assert np.max(np.abs(mirror - exact)) > 1e-2 * 10.0


@given(gamma0=st.floats(0.0, 10.0), tau=taus, solver=solvers, h=st.floats(-1e6, 1e6))
def test_calibrate_margins_single_gap_is_gamma0(gamma0, tau, solver, h):
    np.testing.assert_allclose(calibrate_margins([h], gamma0=gamma0, tau=tau, solver=solver), [gamma0], rtol=1e-14)


@given(gaps=st.lists(st.floats(-1e300, 1e300), min_size=1, max_size=16).map(np.array),
       gamma0=gamma0s, tau=st.floats(1e-3, 1e3), solver=solvers)
def test_calibrate_margins_finite_for_any_finite_gaps(gaps, gamma0, tau, solver):
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # no overflow, no 0/0, no log(0)
        gamma = calibrate_margins(gaps, gamma0=gamma0, tau=tau, solver=solver)
    assert np.all(np.isfinite(gamma)), gamma


def test_calibrate_margins_fixed_value_from_independent_calculation():
    """Two gaps, γ0 = 1, τ = 1: solve the KKT system by hand-rolled bisection on p_1 (p_2 = 1 − p_1)."""
    h1, h2, g0, tau = 2.0, -1.0, 1.0, 1.0

    def dfdp1(p1):  # derivative of the objective along the simplex
        sig = lambda z: 1.0 / (1.0 + math.exp(-z))
        d1 = g0 * sig(2 * g0 * p1 - h1) + tau * (1 + math.log(2 * p1))
        d2 = g0 * sig(2 * g0 * (1 - p1) - h2) + tau * (1 + math.log(2 * (1 - p1)))
        return d1 - d2

    lo, hi = 1e-12, 1 - 1e-12
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if dfdp1(mid) < 0 else (lo, mid)
    expected = [2 * g0 * lo, 2 * g0 * (1 - lo)]
    np.testing.assert_allclose(calibrate_margins([h1, h2], gamma0=g0, tau=tau, solver="exact"), expected, rtol=1e-12)


@pytest.mark.parametrize(
    "kwargs,error,field",
    [
        (dict(gaps=[1.0], gamma0=-1.0, tau=1.0), ConfigError, "gamma0"),
        (dict(gaps=[1.0], gamma0=1.0, tau=0.0), ConfigError, "tau"),
        (dict(gaps=[1.0], gamma0=1.0, tau=1.0, solver="lbfgs"), ConfigError, "solver"),
        (dict(gaps=[1.0], gamma0=1.0, tau=1.0, iters=0), ConfigError, "iters"),
        (dict(gaps=[], gamma0=1.0, tau=1.0), InputError, "gaps"),
        (dict(gaps=[[1.0, 2.0]], gamma0=1.0, tau=1.0), InputError, "gaps"),
        (dict(gaps=[1.0, math.nan], gamma0=1.0, tau=1.0), InputError, "gaps"),
        (dict(gaps=[1.0, math.inf], gamma0=1.0, tau=1.0), InputError, "gaps"),
    ],
)
def test_calibrate_margins_errors_name_the_field(kwargs, error, field):
    gaps = kwargs.pop("gaps")
    with pytest.raises(error) as info:
        calibrate_margins(gaps, **kwargs)
    assert info.value.field == field


def test_calibrate_margins_nan_propagates_when_checks_are_off():
    gamma = calibrate_margins([1.0, math.nan, 2.0], gamma0=1.0, tau=1.0, check_values=False)
    assert np.all(np.isnan(gamma)), "documented policy: a NaN gap poisons the whole calibration set"
