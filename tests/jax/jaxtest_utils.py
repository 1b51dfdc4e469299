"""Shared helpers of the JAX backend tests: input generators, the x64 switch, tolerances.

Tolerance policy of these tests (margins relative to γ0; values relative and absolute):

* float64 (under ``jax.enable_x64``): the reference's arithmetic step for step, so 1e-10
  (``F64``). The one exception is the *mirror* solver with τ < 0.5 (step size η = 1): its 19
  unconverged iterations amplify rounding by up to ~25× per step, and the two implementations'
  last-bit differences grow to ~2e-11 · γ0 (``F64_MIRROR_SMALL_TAU`` = 1e-9).
* float32 and bfloat16 inputs: both compute in float32 (half inputs are upcast before any
  arithmetic), so both are compared with the reference evaluated in float64 *on the same rounded
  inputs*, at 2e-5 (``F32``); mirror with τ < 0.5 at 1e-2 (same amplification, float32 rounding);
  exact with τ < 0.2 at 2e-4. Gradients of bfloat16 inputs are bfloat16 (the input's dtype):
  compared at 1e-2 (``BF16_GRAD``).
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from gammapo_spec.validation import required_fields

F64 = 1e-10
F64_MIRROR_SMALL_TAU = 1e-9
# The spec's unconverged mirror regime (τ < 0.5 and κ = γ0²/(8τ) > 1.5: "often off by more than γ0"):
# the 19 oscillating updates amplify last-bit differences; measured up to 1.5e-7 (γ0 = 10, τ = 0.3,
# 300 gaps of scale 30), while κ ≤ 1.5 stays below 2e-15 and κ ≤ 20 below 4e-10.
F64_MIRROR_UNCONVERGED = 1e-6
F32 = 2e-5
F32_MIRROR_SMALL_TAU = 1e-2
F32_EXACT_SMALL_TAU = 2e-4
BF16_GRAD = 1e-2


def with_x64(fn):
    """Run ``fn`` with ``jax_enable_x64`` on (a context manager: nothing leaks to other tests)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return wrapper


def margin_tol(dtype: str, solver: str, tau: float, gamma0: float = 0.0) -> float:
    """Tolerance on margins relative to γ0 (see the module docstring)."""
    if dtype == "float64":
        if solver == "mirror" and tau < 0.5:
            return F64_MIRROR_UNCONVERGED if gamma0 * gamma0 / (8.0 * tau) > 1.5 else F64_MIRROR_SMALL_TAU
        return F64
    if solver == "mirror" and tau < 0.5:
        return F32_MIRROR_SMALL_TAU
    if solver == "exact" and tau < 0.2:
        return F32_EXACT_SMALL_TAU
    return F32


def make_inputs(config, n: int, rng: np.random.Generator, scale: float = 1.0) -> dict[str, np.ndarray]:
    """Random, plausible per-pair inputs for ``config``'s loss (float64 NumPy arrays)."""
    lengths = {
        "chosen_lengths": rng.integers(1, 40, size=n).astype(np.float64),
        "rejected_lengths": rng.integers(1, 40, size=n).astype(np.float64),
    }
    out = {}
    for name in required_fields(config):
        if name in lengths:
            out[name] = lengths[name]
        else:
            out[name] = -rng.uniform(0.5, 3.0, size=n) * 10.0 * scale
    return out


def round_to(x: np.ndarray, dtype: str) -> np.ndarray:
    """``x`` rounded to ``dtype`` and back to float64 (what the reference should see)."""
    import ml_dtypes

    dt = {"float64": np.float64, "float32": np.float32, "bfloat16": ml_dtypes.bfloat16}[dtype]
    return np.asarray(x, dtype=np.float64).astype(dt).astype(np.float64)


def assert_close(actual, expected, *, rtol: float, atol: float, what: str) -> None:
    """``np.testing.assert_allclose`` on float64 copies, with a message naming ``what``."""
    np.testing.assert_allclose(
        np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64), rtol=rtol, atol=atol,
        err_msg=f"{what}: JAX backend differs from gammapo_spec",
    )
