"""The mirror solver written once (gammapo_spec.mirror_solver): masking, the step size, NaN handling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gammapo_spec import calibrate_margins
from gammapo_spec.kkt_solver import NumpyOps
from gammapo_spec.mirror_solver import mirror_margins, step_size


def _masked(h, valid, gamma0, tau, iters):
    return mirror_margins(NumpyOps, h, valid, np.float64(valid.sum()), gamma0=gamma0, tau=tau, iters=iters)


@pytest.mark.parametrize("gamma0,tau,iters", [(2.0, 3.0, 20), (1.0, 0.3, 20), (4.0, 10.0, 7), (0.0, 1.0, 5)])
def test_masked_set_equals_the_valid_slots_alone(gamma0, tau, iters):
    rng = np.random.default_rng(7)
    h = rng.normal(scale=3.0, size=40)
    valid = rng.random(40) < 0.6
    h_masked = np.where(valid, h, np.nan)  # values in masked slots must not matter, even NaN
    got = _masked(h_masked, valid, gamma0, tau, iters)
    want = calibrate_margins(h[valid], gamma0=gamma0, tau=tau, solver="mirror", iters=iters)
    # equal up to the summation order of the normaliser (NumPy sums pairwise over the array it is given)
    np.testing.assert_allclose(got[valid], want, rtol=1e-13, atol=1e-13 * max(gamma0, 1.0))
    assert np.all(got[~valid] == 0.0), "masked slots get margin 0"


def test_step_size_is_min_of_half_over_tau_and_one_for_floats_and_arrays():
    assert step_size(10.0) == 0.05 and step_size(0.5) == 1.0 and step_size(0.1) == 1.0
    got = step_size(np.array([10.0, 0.25]), np.minimum)
    np.testing.assert_array_equal(got, [0.05, 1.0])


def test_a_nan_gap_does_not_reach_the_margins_before_the_first_update():
    h = np.array([1.0, math.nan, -2.0])
    one = mirror_margins(NumpyOps, h, None, np.float64(3), gamma0=2.0, tau=1.0, iters=1)
    np.testing.assert_array_equal(one, [2.0, 2.0, 2.0])  # K = 1 returns γ0 everywhere, as the released code
    more = mirror_margins(NumpyOps, h, None, np.float64(3), gamma0=2.0, tau=1.0, iters=2)
    assert np.all(np.isnan(more)), "after an update the NaN gap propagates to every margin"


def test_the_normaliser_is_safe_where_a_constant_shift_would_underflow():
    # η γ0 = 1000 (τ = 0.5): every exp(w) underflows float64 without the max shift
    h = np.random.default_rng(3).normal(scale=5.0, size=16)
    gamma = mirror_margins(NumpyOps, h, None, np.float64(16), gamma0=1000.0, tau=0.5, iters=20)
    assert np.all(np.isfinite(gamma))
    assert abs(float(gamma.mean()) - 1000.0) <= 1e-9 * 1000.0
