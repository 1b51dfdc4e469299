"""The objects the conformance tests share: the backend under test, the reference, and checks.

:class:`Harness` is what the ``conf`` fixture gives each test; it holds the :class:`Adapter`,
records each example for the report, and offers the comparisons every op test needs.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from hypothesis import assume

import gammapo_spec as R
from gammapo_spec.dtype_policy import compute_dtype

from .adapters import Adapter, assert_close, raised
from .tolerances import tolerance

__all__ = ["Harness", "EXAMPLES", "repro", "batch_repro", "input_scale", "loss_scale", "gradient_scale", "margin_scale", "gap_scale"]

#: nodeid → number of Hypothesis examples run (read by the report).
EXAMPLES: dict[str, int] = {}


class Harness:
    """The backend under test for one test function, with comparison helpers."""

    def __init__(self, backend: Any, nodeid: str):
        self.ad = Adapter(backend)
        self.B = backend
        self.nodeid = nodeid

    def example(self, dtype: str = "float64") -> None:
        """Count one example; reject it if the backend does not support ``dtype``."""
        EXAMPLES[self.nodeid] = EXAMPLES.get(self.nodeid, 0) + 1
        # an unsupported dtype (the NumPy reference has no bfloat16) is not an example: reject it
        assume(self.ad.supports(dtype))

    def close(self, actual, expected, dtype: str, family: str, what: str, *, scale: float = 1.0, solver="exact", tau=1.0,
              gamma0=0.0, iters=20):
        """Compare a backend value (converted with ``to_numpy``) with the reference.

        ``solver``, ``tau``, ``gamma0`` and ``iters`` pick the "calibration" tolerance (see
        :func:`~gammapo_conformance.tolerances.tolerance`); other families ignore them.
        """
        tol = tolerance(dtype, family, solver=solver, tau=tau, gamma0=gamma0, iters=iters)
        assert_close(self.ad.numpy(actual), expected, tol, what, scale)

    def same_error(self, reference: Callable[[], Any], backend: Callable[[], Any], what: str) -> BaseException:
        """Both calls raise; same class and same ``.field`` (messages are shown when they differ)."""
        ref = raised(reference)
        assert ref is not None, f"{what}: the reference raised nothing (test bug)"
        got = raised(backend)
        assert got is not None, f"{what}: backend raised nothing; reference raised {type(ref).__name__}: {ref}"
        assert type(got) is type(ref), (
            f"{what}: backend raised {type(got).__name__}({got}), reference {type(ref).__name__}({ref})"
        )
        gf, rf = getattr(got, "field", None), getattr(ref, "field", None)
        assert gf == rf, f"{what}: error field {gf!r} != reference {rf!r} (messages: {got} | {ref})"
        return got


def margin_scale(config: R.GammaPOConfig) -> float:
    """Natural size of margins: 1 + γ0."""
    return 1.0 + abs(config.gamma0)


def gap_scale(gaps: np.ndarray) -> float:
    """Natural size of gaps (for absolute tolerances): 1 + max |h|."""
    return 1.0 + float(np.max(np.abs(gaps))) if np.size(gaps) else 1.0


def repro(backend: str, op: str, config: R.GammaPOConfig, dtype: str, args: str) -> str:
    """A copy-pasteable snippet reproducing one example (printed by Hypothesis on failure)."""
    return (
        "# reproduce:\n"
        "import numpy as np, gammapo, gammapo_spec as R\n"
        "from gammapo._registry import load_backend_object\n"
        "from gammapo_conformance.adapters import Adapter\n"
        f"B = load_backend_object({backend!r}); ad = Adapter(B)\n"
        f"cfg = R.{config!r}\n"
        f"{args}\n"
        f"# then compare B.{op}(...) on ad.inputs(inputs, {dtype!r}) with R.{op}(...) on the rounded inputs\n"
    )


def batch_repro(batch) -> str:
    """Code that rebuilds a drawn batch."""
    return (
        "from gammapo_conformance.strategies import make_batch\n"
        f"inputs = make_batch(cfg, {batch.n}, {batch.pattern!r}, {batch.seed}).inputs"
    )


def input_scale(config: R.GammaPOConfig, inputs: dict) -> float:
    """Natural size of gaps for absolute tolerances: 1 + β·max|log-prob| (cancellation in c − r)."""
    logps = [np.max(np.abs(v)) for k, v in inputs.items() if "logps" in k]
    return 1.0 + config.beta * float(max(logps))


def loss_scale(config: R.GammaPOConfig, ref, scale: float) -> float:
    r"""Natural size of per-pair losses for absolute tolerances: ``scale`` · max(1, max|ℓ'(z)|), z = h − m.

    ``scale`` (:func:`input_scale`) bounds the rounding of the gap h; a gap off by δh moves the loss by
    ℓ'(z)·δh. |ℓ'| ≤ 1 for the logistic and hinge losses, ≤ 1/(1 − 2ε) for robust, and 2|z − ½|/β²
    for IPO, unbounded: a float32 gap off by one rounding (5.7e-7) moved an IPO loss with β = 0.001 by
    0.065 (2.0e-5 relative, just past float32's 2e-5) in a random conformance run of a correct backend.
    ``ref`` is the reference's output (its ``gaps`` and ``margins``).
    """
    z = np.asarray(ref.gaps, dtype=np.float64) - np.asarray(ref.margins, dtype=np.float64)
    slope = float(np.max(np.abs(R.pair_loss_derivative(config, z)))) if z.size else 0.0
    return scale * max(1.0, slope)



def gradient_scale(config: R.GammaPOConfig, grad: np.ndarray, z: np.ndarray, scale: float, dtype: str) -> float:
    r"""Natural size of a loss gradient for absolute tolerances.

    .. math::  \max_i |g_i| + \frac1N + c\,\cdot\,\text{scale}\cdot\max_i|\ell''(z_i)|\,\frac{\beta}{N},
               \qquad c = 8u/\text{atol}

    d loss/d log-prob_i = ℓ'(z_i)·∂z_i/∂log-prob_i / N with |∂z/∂log-prob| ≤ β. A backend computes z in its
    compute dtype (unit roundoff u), a few roundings of ``scale`` (:func:`input_scale`) away from the
    float64 z, and ℓ' then moves by ℓ''(z)·δz (:func:`gammapo_spec.pair_loss_curvature`); the last term
    allows eight such roundings, written in units of the gradient row's atol. It matters only where the
    gap is large against its own rounding: a correct float32 backend at β = 1000 (γ-SimPO, 256 pairs,
    exact solver) was 7.9× past the old bound max|g| + 1/N and is 1/38 of this one (probe over 72 such
    batches); for float64 the term is 9e-6·scale·ℓ''·β/N.
    """
    n = max(1, int(np.size(z)))
    curvature = float(np.max(R.pair_loss_curvature(config, z))) if np.size(z) else 0.0
    u = float(np.finfo(compute_dtype(dtype)).eps) / 2  # unit roundoff of the dtype policy's compute dtype
    c = 8.0 * u / tolerance(dtype, "gradients").atol
    return float(np.max(np.abs(grad))) + 1.0 / n + c * scale * curvature * config.beta / n
