"""The default solver (gammapo_spec.kkt_solver): the minimiser over the whole valid range, with fixed work.

Checked against the adaptive reference (gammapo_spec.calibration.exact_log_margins, which iterates to
convergence), and for the properties the KKT conditions force: monotone in the gaps, mean γ0,
permutation-equivariant, spread below e^{γ0/τ}. The mirror solver's regime warning is tested here too.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gammapo_spec import GammaPOConfig, calibrate_margins, kkt_residual
from gammapo_spec import calibration as C
from gammapo_spec.errors import SolverRegimeWarning
from gammapo_spec.kkt_solver import TOLERANCE, NumpyOps, iteration_plan, kkt_log_margins, kkt_margins

#: Over the whole range the issue names: τ ∈ [0.01, 100], γ0 ∈ [0.01, 20]; gap sets of any scale.
taus = st.floats(0.01, 100.0)
gamma0s = st.floats(0.01, 20.0)


@st.composite
def gap_sets(draw, max_size=256):
    n = draw(st.integers(1, max_size))
    scale = draw(st.sampled_from([0.1, 1.0, 3.0, 30.0, 300.0]))
    kind = draw(st.sampled_from(["normal", "heavy", "ties", "equal"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "normal":
        h = rng.normal(rng.normal() * scale, scale, n)
    elif kind == "heavy":
        h = rng.standard_t(2, n) * scale
    elif kind == "ties":
        h = np.round(rng.normal(0.0, scale, n))
    else:
        h = np.full(n, rng.normal() * scale)
    return h


def _reference(h, gamma0, tau):
    return C.exact_margins(h, gamma0=gamma0, tau=tau)


@settings(max_examples=150, deadline=None)
@given(h=gap_sets(), gamma0=gamma0s, tau=taus)
def test_kkt_margins_are_the_minimiser_over_the_whole_range(h, gamma0, tau):
    got = kkt_margins(h, gamma0=gamma0, tau=tau)
    err = float(np.max(np.abs(got - _reference(h, gamma0, tau))))
    assert err <= TOLERANCE * gamma0, f"{err / gamma0:.2e}·γ0 from the minimiser at γ0={gamma0}, τ={tau}, M={h.size}"


@settings(max_examples=150, deadline=None)
@given(h=gap_sets(), gamma0=gamma0s, tau=taus)
def test_kkt_margins_are_monotone_in_the_gaps_with_mean_gamma0(h, gamma0, tau):
    gamma = calibrate_margins(h, gamma0=gamma0, tau=tau)  # the default solver
    order = np.argsort(h, kind="stable")
    assert np.all(np.diff(gamma[order]) >= -1e-12 * gamma0), "a larger gap got a smaller margin"
    assert np.all(gamma >= 0)
    assert abs(float(np.mean(gamma)) - gamma0) <= 1e-12 * gamma0 * 10


@settings(max_examples=60, deadline=None)
@given(h=gap_sets(64), gamma0=gamma0s, tau=taus, seed=st.integers(0, 2**32 - 1))
def test_kkt_margins_are_permutation_equivariant(h, gamma0, tau, seed):
    perm = np.random.default_rng(seed).permutation(h.size)
    a = kkt_margins(h, gamma0=gamma0, tau=tau)[perm]
    b = kkt_margins(h[perm], gamma0=gamma0, tau=tau)
    np.testing.assert_allclose(b, a, rtol=0, atol=2 * TOLERANCE * gamma0)


@settings(max_examples=80, deadline=None)
@given(h=gap_sets(), gamma0=st.floats(0.01, 20.0), tau=st.floats(0.05, 100.0))
def test_kkt_margins_meet_the_kkt_conditions_and_the_spread_bound(h, gamma0, tau):
    gamma = kkt_margins(h, gamma0=gamma0, tau=tau)
    if np.all(gamma > 0):
        assert kkt_residual(h, gamma, gamma0=gamma0, tau=tau) <= 1e-8 * max(1.0, gamma0)
        assert C.log_spread(gamma) < C.spread_bound(gamma0, tau) + 1e-9


def test_kkt_margins_masked_slots_take_no_part():
    rng = np.random.default_rng(3)
    h = rng.normal(0, 3, 40)
    valid = np.zeros(40, dtype=bool)
    valid[:7] = True
    valid[20:] = True
    u = kkt_log_margins(NumpyOps, h, valid, np.float64(valid.sum()), gamma0=4.0, tau=1.0)
    assert np.all(np.isneginf(u[~valid]))
    np.testing.assert_allclose(4.0 * np.exp(u[valid]), _reference(h[valid], 4.0, 1.0), atol=TOLERANCE * 4.0)


def test_kkt_margins_edge_cases():
    assert kkt_margins([3.0], gamma0=2.0, tau=0.01).tolist() == [2.0]  # M = 1: γ0 exactly
    assert kkt_margins([1.0, 2.0], gamma0=0.0, tau=1.0).tolist() == [0.0, 0.0]
    np.testing.assert_allclose(kkt_margins(np.full(9, 5.0), gamma0=3.0, tau=0.02), 3.0, rtol=1e-12)
    # a dominant gap at a tiny τ: the reference's hard case (one entry takes almost all the mass)
    h = np.array([1e4, -1.32e-4])
    np.testing.assert_allclose(kkt_margins(h, gamma0=100.0, tau=0.1), _reference(h, 100.0, 0.1), atol=1e-7)


def test_iteration_plan_is_static_and_grows_with_the_ratio():
    plans = [iteration_plan(1.0, tau) for tau in (100.0, 10.0, 1.0, 0.1, 0.01)]
    assert plans == sorted(plans)
    assert iteration_plan(4.0, 10.0) == (7, 2)  # the released recipe: 7 outer iterations of 2 + 1 evaluations


def test_default_solver_is_rank_consistent_where_the_released_mirror_is_not():
    """The failure the default fixes: at τ = 1, γ0 = 4 the mirror iterate ranks pairs wrongly."""
    gaps = np.array([3.2, 5.3, -7.7, -0.4, 3.0, 4.1, 2.0, 4.5])
    order = np.argsort(gaps)
    with pytest.warns(SolverRegimeWarning):
        C._WARNED.discard((4.0, 1.0))
        mirror = calibrate_margins(gaps, gamma0=4.0, tau=1.0, solver="mirror")
    assert np.any(np.diff(mirror[order]) < -1e-3)  # the released arithmetic: not monotone here
    default = calibrate_margins(gaps, gamma0=4.0, tau=1.0)
    assert np.all(np.diff(default[order]) > 0)
    assert kkt_residual(gaps, default, gamma0=4.0, tau=1.0) <= 1e-12


@pytest.mark.parametrize("gamma0, tau, warns", [(4.0, 10.0, False), (4.0, 1.0, True), (0.2, 0.1, True),
                                               (2.0, 1.0, False), (2.0, 0.99, True)])
def test_mirror_warns_once_outside_its_regime_naming_kappa_and_the_alternative(gamma0, tau, warns):
    C._WARNED.discard((gamma0, tau))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        GammaPOConfig(beta=1.0, gamma_beta_ratio=gamma0, tau=tau, solver="mirror")
        calibrate_margins([1.0, 2.0], gamma0=gamma0, tau=tau, solver="mirror")
        GammaPOConfig(beta=1.0, gamma_beta_ratio=gamma0, tau=tau)  # the default solver never warns
    ours = [w for w in caught if issubclass(w.category, SolverRegimeWarning)]
    assert len(ours) == (1 if warns else 0)
    if warns:
        text = str(ours[0].message)
        assert "solver='exact'" in text and ("kappa" in text or "tau" in text)
