"""calibrate_margins on JAX: values against gammapo_spec (both solvers, every dtype), the KKT
residual of the exact solver, jit/vmap/grad behaviour."""

from __future__ import annotations

import gammapo_spec
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gammapo_jax as G
from jaxtest_utils import assert_close, margin_tol, round_to, with_x64

SIZES = (1, 2, 7, 64, 300)  # few distinct shapes: each one compiles once
TAUS = (0.05, 0.2, 1.0, 3.0, 10.0, 100.0)
GAMMA0S = (0.0, 0.5, 2.0, 4.0, 10.0)


def _gaps(seed: int, m: int, scale: float) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=m) * scale


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    m=st.sampled_from(SIZES),
    scale=st.sampled_from((0.1, 1.0, 5.0, 30.0)),
    gamma0=st.sampled_from(GAMMA0S),
    tau=st.sampled_from(TAUS),
    solver=st.sampled_from(("mirror", "exact")),
)
@with_x64
def test_calibrate_margins_float64_matches_reference(seed, m, scale, gamma0, tau, solver):
    h = _gaps(seed, m, scale)
    got = G.calibrate_margins(jnp.asarray(h), gamma0=gamma0, tau=tau, solver=solver)
    want = gammapo_spec.calibrate_margins(h, gamma0=gamma0, tau=tau, solver=solver)
    assert got.dtype == jnp.float64
    # the project's policy (conformance/tolerances.py): |a − r| ≤ tol·(1 + γ0) + tol·|r|; a margin of 27 once
    # differed by 1.05e-9 (3.9e-11 relative), past an absolute-only bound of 1e-9
    tol = margin_tol("float64", solver, tau, gamma0)
    assert_close(got, want, rtol=tol, atol=tol * (1.0 + gamma0), what=f"{solver} margins (M={m}, τ={tau}, γ0={gamma0})")


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    m=st.sampled_from(SIZES),
    scale=st.sampled_from((0.1, 1.0, 5.0, 30.0)),
    gamma0=st.sampled_from(GAMMA0S[1:]),
    tau=st.sampled_from(TAUS),
)
@with_x64
def test_calibrate_margins_exact_meets_kkt_residual_float64(seed, m, scale, gamma0, tau):
    h = _gaps(seed, m, scale)
    gamma = np.asarray(G.calibrate_margins(jnp.asarray(h), gamma0=gamma0, tau=tau, solver="exact"))
    residual = gammapo_spec.kkt_residual(h, gamma, gamma0=gamma0, tau=tau)
    assert residual <= 1e-10 * max(1.0, gamma0, tau), f"KKT residual {residual:.2e} (M={m}, τ={tau}, γ0={gamma0})"


@pytest.mark.parametrize("tau", (0.2, 1.0, 10.0))
def test_calibrate_margins_exact_meets_kkt_residual_float32(tau):
    h = _gaps(3, 256, 3.0).astype(np.float32)
    gamma = G.calibrate_margins(jnp.asarray(h), gamma0=4.0, tau=tau, solver="exact")
    assert gamma.dtype == jnp.float32
    residual = float(G.kkt_residual(jnp.asarray(h), gamma, gamma0=4.0, tau=tau))
    assert residual <= 1e-5 * max(4.0, tau), f"float32 KKT residual {residual:.2e} at τ={tau}"


@pytest.mark.parametrize("dtype", ("float32", "bfloat16"))
@pytest.mark.parametrize("solver", ("mirror", "exact"))
@pytest.mark.parametrize("tau", (0.1, 1.0, 10.0))
def test_calibrate_margins_low_precision_inputs(dtype, solver, tau):
    """float32 and bfloat16 gaps both compute in float32 and return float32."""
    h = _gaps(11, 256, 5.0)
    got = G.calibrate_margins(G.asarray(h, dtype), gamma0=2.0, tau=tau, solver=solver)
    assert got.dtype == jnp.float32
    want = gammapo_spec.calibrate_margins(round_to(h, dtype), gamma0=2.0, tau=tau, solver=solver)
    tol = margin_tol("float32", solver, tau) * 2.0
    assert_close(got, want, rtol=0, atol=tol, what=f"{dtype} {solver} margins (τ={tau})")
    assert abs(float(jnp.mean(got)) - 2.0) < 1e-5, "mean margin must stay γ0"


@with_x64
def test_calibrate_margins_vmap_over_a_batch_of_problems():
    hs = np.stack([_gaps(s, 64, 2.0) for s in range(5)])
    for solver in ("mirror", "exact"):
        f = jax.vmap(lambda h: G.calibrate_margins(h, gamma0=2.0, tau=1.0, solver=solver))
        got = np.asarray(f(jnp.asarray(hs)))
        for i, h in enumerate(hs):
            want = gammapo_spec.calibrate_margins(h, gamma0=2.0, tau=1.0, solver=solver)
            assert_close(got[i], want, rtol=0, atol=1e-10, what=f"vmapped {solver}, problem {i}")


def test_calibrate_margins_jit_matches_eager_and_compiles_once():
    h = jnp.asarray(_gaps(5, 100, 2.0), dtype=jnp.float32)
    f = jax.jit(lambda h: G.calibrate_margins(h, gamma0=1.0, tau=10.0))
    eager = G.calibrate_margins(h, gamma0=1.0, tau=10.0)
    for k in range(3):
        np.testing.assert_array_equal(np.asarray(f(h + 0.0 * k)), np.asarray(eager))
    assert f._cache_size() == 1


@pytest.mark.parametrize("solver", ("mirror", "exact"))
def test_calibrate_margins_has_no_gradient(solver):
    """Margins are stop-gradient: differentiating through calibration gives exactly zero."""
    h = jnp.asarray(_gaps(2, 16, 2.0), dtype=jnp.float32)
    g = jax.grad(lambda h: jnp.sum(G.calibrate_margins(h, gamma0=2.0, tau=1.0, solver=solver) * h) - jnp.sum(h * jax.lax.stop_gradient(G.calibrate_margins(h, gamma0=2.0, tau=1.0, solver=solver))))(h)
    np.testing.assert_array_equal(np.asarray(g), 0.0)


def test_calibrate_margins_iters_one_is_uniform_and_large_gaps_stay_finite():
    h = jnp.asarray([1e4, -1e4, 0.0], dtype=jnp.float32)
    np.testing.assert_allclose(np.asarray(G.calibrate_margins(h, gamma0=3.0, tau=1.0, solver="mirror", iters=1)), 3.0, rtol=1e-6)
    for solver in ("mirror", "exact"):
        got = np.asarray(G.calibrate_margins(h, gamma0=3.0, tau=0.05, solver=solver))
        assert np.all(np.isfinite(got)) and abs(got.mean() - 3.0) < 1e-4, f"{solver}: {got}"
