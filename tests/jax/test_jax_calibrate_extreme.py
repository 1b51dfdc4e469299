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


# The mirror update normalises with a fixed shift while log M + eta*gamma0 < 40 (float32) / 300
# (float64) and with max(w) above: both sides of each bound, against the spec.
@pytest.mark.parametrize("dtype,gamma0,tau", [
    ("float32", 30.0, 0.5), ("float32", 40.0, 0.5), ("float32", 4.0, 10.0), ("float32", 100.0, 1.0),
    ("float64", 30.0, 0.5), ("float64", 290.0, 0.5), ("float64", 320.0, 0.5),
])
@with_x64
def test_mirror_both_normalisations_match_spec(dtype, gamma0, tau):
    h = np.random.default_rng(5).normal(size=256) * 3.0
    x = jnp.asarray(h, dtype)
    got = np.asarray(G.calibrate_margins(x, gamma0=gamma0, tau=tau), dtype=np.float64)
    want = gammapo_spec.calibrate_margins(np.asarray(x, np.float64), gamma0=gamma0, tau=tau)
    assert np.all(np.isfinite(got))
    tol = margin_tol(dtype, "mirror", tau) * gamma0
    np.testing.assert_allclose(got, want, rtol=0, atol=tol, err_msg=f"{dtype} gamma0={gamma0} tau={tau}")


def test_static_normaliser_choices():
    from gammapo_jax._calibration import static_normaliser

    assert static_normaliser(4.0, 10.0, 256, jnp.float32) == "fixed"
    assert static_normaliser(100.0, 0.1, 2, jnp.float32) == "max"  # eta*gamma0 = 100 >= 40
    assert static_normaliser(35.0, 0.5, 4096, jnp.float32) == "auto"  # depends on how many entries are valid
    assert static_normaliser(35.0, 0.5, 4096, jnp.float64) == "fixed"
    assert static_normaliser(jnp.asarray(4.0), 10.0, 256, jnp.float32) == "auto"


@pytest.mark.parametrize("gamma0,tau", [(35.0, 0.5), (4.0, 10.0), (100.0, 0.1)])
def test_mirror_static_and_runtime_normalisers_agree(gamma0, tau):
    from gammapo_jax._calibration import solve

    h = jnp.asarray(np.random.default_rng(1).normal(size=4096) * 3.0, jnp.float32)
    valid = jnp.arange(4096) < 3000
    auto = np.asarray(solve(h, valid, gamma0, tau, solver="mirror", iters=20, normaliser="auto"))
    for normaliser in ("fixed", "max"):
        other = np.asarray(solve(h, valid, gamma0, tau, solver="mirror", iters=20, normaliser=normaliser))
        if normaliser == "fixed" and np.log(3000) + min(0.5 / tau, 1.0) * gamma0 >= 40:
            continue  # outside the fixed shift's range
        np.testing.assert_allclose(other, auto, rtol=1e-5, atol=1e-5 * gamma0, err_msg=normaliser)
