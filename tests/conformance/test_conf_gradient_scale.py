"""The gradient tolerance (gammapo_conformance._harness.gradient_scale) covers a correct float32 backend at
large β, where the float32 gap is off by far more than the gradient's own rounding, and still rejects a
gradient bug.

"A correct float32 backend" here is the γ-SimPO gradient computed in NumPy float32 from float32 inputs
(what the torch and JAX backends do): g = ℓ'(z)·β/(N·len) with z = β(c/|y_w| − r/|y_l|) − m. The
reference computes the same from the same rounded inputs in float64.
"""

import numpy as np
import pytest

import gammapo_spec as R
from gammapo_conformance._harness import gradient_scale, input_scale
from gammapo_conformance.tolerances import tolerance


def _float32_simpo_grad(config, c, r, lw, ll, m):
    f = np.float32
    beta = f(config.beta)
    z = beta * (c.astype(f) / lw.astype(f) - r.astype(f) / ll.astype(f)) - m.astype(f)
    slope = -f(1.0) / (f(1.0) + np.exp(z))  # ℓ'(z) = −σ(−z)
    return (slope * beta / lw.astype(f) / f(c.size)).astype(np.float64)


def _case(beta, seed, n=256):
    """Inputs rounded to float32 and margins that put many pairs near z = 0 (where ℓ'' is largest)."""
    rng = np.random.default_rng(seed)
    config = R.GammaPOConfig(loss="gamma-simpo", beta=beta, gamma_beta_ratio=1.0, calibration="batch")
    c = (-np.abs(rng.normal(scale=20.0, size=n)) - 0.5).astype(np.float32).astype(np.float64)
    r = (-np.abs(rng.normal(scale=20.0, size=n)) - 0.5).astype(np.float32).astype(np.float64)
    lw, ll = rng.integers(1, 512, size=n).astype(np.float64), rng.integers(1, 512, size=n).astype(np.float64)
    inputs = dict(chosen_logps=c, rejected_logps=r, chosen_lengths=lw, rejected_lengths=ll)
    h = R.reward_gap(config, **inputs)
    m = (h + rng.normal(scale=2.0, size=n)).astype(np.float32).astype(np.float64)
    want = R.loss_vjp(config, m, **inputs)["chosen_logps"]
    return config, inputs, m, h - m, want


def _worst(got, want, tol, scale):
    return float(np.max(np.abs(got - want) / (tol.atol * scale + tol.rtol * np.abs(want))))


def test_gradient_scale_covers_a_float32_backend_at_large_beta():
    tol = tolerance("float32", "gradients")
    old_worst = new_worst = 0.0
    for seed in range(20):
        config, x, m, z, want = _case(1000.0, seed)
        got = _float32_simpo_grad(config, x["chosen_logps"], x["rejected_logps"], x["chosen_lengths"], x["rejected_lengths"], m)
        old_worst = max(old_worst, _worst(got, want, tol, float(np.max(np.abs(want))) + 1.0 / z.size))
        new_worst = max(new_worst, _worst(got, want, tol, gradient_scale(config, want, z, input_scale(config, x), "float32")))
    assert old_worst > 1.0, f"the old bound max|g| + 1/N was expected to reject this correct backend (worst {old_worst:.3g})"
    assert new_worst < 0.25, f"a correct float32 backend uses {new_worst:.3g} of the gradient bound"


@pytest.mark.parametrize("beta", [1.0, 1000.0])
def test_gradient_scale_still_rejects_a_gradient_bug(beta):
    """A backend whose gradient forgets SimPO's length normalisation on one pair in 256 fails."""
    tol = tolerance("float32", "gradients")
    config, x, m, z, want = _case(beta, 0)
    got = _float32_simpo_grad(config, x["chosen_logps"], x["rejected_logps"], x["chosen_lengths"], x["rejected_lengths"], m)
    i = int(np.argmax(np.abs(want)))
    got[i] *= x["chosen_lengths"][i] if x["chosen_lengths"][i] > 1 else 2.0
    assert _worst(got, want, tol, gradient_scale(config, want, z, input_scale(config, x), "float32")) > 1.0


@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16"])
def test_gradient_scale_is_the_old_scale_without_curvature(dtype):
    """Hinge has ℓ'' = 0: the scale is max|g| + 1/N as before; float64 adds at most 1e-5 of the curvature term."""
    z = np.linspace(-3, 3, 10)
    g = np.linspace(-0.1, 0.2, 10)
    hinge = R.GammaPOConfig(loss="gamma-hinge", beta=2.0, calibration="batch")
    assert gradient_scale(hinge, g, z, 1e6, dtype) == pytest.approx(0.2 + 0.1)
    if dtype == "float64":
        dpo = R.GammaPOConfig(loss="gamma-dpo", beta=2.0, calibration="batch")
        extra = gradient_scale(dpo, g, z, 100.0, dtype) - 0.3
        assert 0 < extra <= 1e-5 * 100.0 * 0.25 * 2.0 / 10
