"""Regression: the exact solver on extreme gaps (|h|/τ up to 1e5) keeps mean(γ) = γ0 and equals the spec.

Found by the conformance suite (``gaps=[1e4, -1.32e-4], gamma0=100, tau=0.1`` gave mean 100·e): the
large gap pins its log-ratio at the cap log M + 1 while the outer iteration on c runs out of its 300
steps, and the JAX port lacked the reference's final uniform shift ``u - (logsumexp(u) - log M)``.
"""

from __future__ import annotations

import gammapo_spec
import jax.numpy as jnp
import numpy as np
import pytest

import gammapo_jax as G
from jaxtest_utils import F64, margin_tol, with_x64

CASES = [
    ([1e4, -1.32e-4], 100.0, 0.1),  # the conformance finding
    ([1e4, 0.3, -2.0], 100.0, 0.05),
    ([-1e4, 1e4], 4.0, 0.1),
    ([1e4, 1e4, -1e4, 0.0], 100.0, 1.0),
    ([1e4, -1e4], 0.05, 0.01),
]


@pytest.mark.parametrize("gaps,gamma0,tau", CASES)
@with_x64
def test_exact_extreme_gaps_float64_mean_and_reference(gaps, gamma0, tau):
    got = np.asarray(G.calibrate_margins(jnp.asarray(gaps, jnp.float64), gamma0=gamma0, tau=tau, solver="exact"))
    want = gammapo_spec.calibrate_margins(gaps, gamma0=gamma0, tau=tau, solver="exact")
    assert abs(got.mean() - gamma0) <= 1e-12 * (1 + gamma0), f"mean margin {got.mean()!r} != gamma0 {gamma0}"
    assert np.all(got >= 0)
    np.testing.assert_allclose(got, want, rtol=0, atol=F64 * (1 + gamma0))


def test_exact_extreme_gaps_float32_mean():
    gamma = np.asarray(G.calibrate_margins(jnp.asarray([1e4, -1.32e-4], jnp.float32), gamma0=100.0, tau=0.1,
                                           solver="exact"), dtype=np.float64)
    assert abs(gamma.mean() - 100.0) <= 2e-5 * 100.0, f"mean margin {gamma.mean()!r} != 100"


# Large eta*gamma0 (up to 320), where a constant normaliser shift would overflow or underflow (the CPU
# kernel has one with a logsumexp fallback), against the spec.
@pytest.mark.parametrize("dtype,gamma0,tau", [
    ("float32", 30.0, 0.5), ("float32", 40.0, 0.5), ("float32", 4.0, 10.0), ("float32", 100.0, 1.0),
    ("float64", 30.0, 0.5), ("float64", 290.0, 0.5), ("float64", 320.0, 0.5),
])
@with_x64
def test_mirror_large_eta_gamma0_matches_spec(dtype, gamma0, tau):
    h = np.random.default_rng(5).normal(size=256) * 3.0
    x = jnp.asarray(h, dtype)
    got = np.asarray(G.calibrate_margins(x, gamma0=gamma0, tau=tau, solver="mirror"), dtype=np.float64)
    want = gammapo_spec.calibrate_margins(np.asarray(x, np.float64), gamma0=gamma0, tau=tau, solver="mirror")
    assert np.all(np.isfinite(got))
    tol = margin_tol(dtype, "mirror", tau) * gamma0
    np.testing.assert_allclose(got, want, rtol=0, atol=tol, err_msg=f"{dtype} gamma0={gamma0} tau={tau}")


@pytest.mark.parametrize("gamma0,tau", [(35.0, 0.5), (4.0, 10.0), (100.0, 0.1)])
def test_mirror_lax_path_masked_float32_matches_spec(gamma0, tau):
    # the lax path (not the CPU kernel) on a masked set: the shared solver's max-shifted logsumexp is
    # safe at any eta*gamma0 (here up to 100), so there is no second normaliser to choose
    from gammapo_jax._calibration import solve

    h64 = np.random.default_rng(1).normal(size=4096) * 3.0
    h = jnp.asarray(h64, jnp.float32)
    valid = jnp.arange(4096) < 3000
    got = np.asarray(solve(h, valid, gamma0, tau, solver="mirror", iters=20), dtype=np.float64)
    want = gammapo_spec.calibrate_margins(np.asarray(h, np.float64)[:3000], gamma0=gamma0, tau=tau, solver="mirror")
    assert np.all(got[3000:] == 0), "masked entries get margin 0"
    tol = margin_tol("float32", "mirror", tau, gamma0) * gamma0
    np.testing.assert_allclose(got[:3000], want, rtol=0, atol=tol, err_msg=f"gamma0={gamma0} tau={tau}")
