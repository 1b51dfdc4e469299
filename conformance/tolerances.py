r"""The tolerance policy of the conformance suite, written once.

A backend result ``a`` is compared with the reference ``r`` (:mod:`gammapo_spec`, evaluated in float64
**on the same rounded inputs** the backend saw) as ``|a - r| <= atol * scale + rtol * |r|``, where
``scale`` is the natural size of the quantity (1 for values, ``1 + gamma0`` for margins).

Per dtype and op family:

========  ============  =======  =======  ======================================================
dtype     family        rtol     atol     reason
========  ============  =======  =======  ======================================================
float64   values        1e-10    1e-10    same arithmetic as the reference; only last-bit rounding
float64   calibration   1e-9     1e-9     20 mirror steps amplify last-bit differences (τ < 0.5)
float64   gradients     1e-10    1e-10    autodiff vs analytic VJP: one rounding per op
float32   values        2e-5     2e-5     float32 rounding of O(1) intermediates (~1e-7) x depth
float32   calibration   1e-2     1e-2     mirror with small τ amplifies float32 rounding ~25x/step
float32   gradients     2e-5     2e-5     as values
bfloat16  values        2e-5     2e-5     computed in float32 after upcast (dtype policy)
bfloat16  calibration   1e-2     1e-2     as float32
bfloat16  gradients     1e-2     1e-2     gradients are returned in the input dtype (bfloat16)
========  ============  =======  =======  ======================================================

The calibration tolerance is loosened only for the mirror solver with τ < 0.5 (float64 otherwise
stays at 1e-10, float32 at 2e-5); see :func:`tolerance`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Tolerance", "POLICY", "tolerance", "policy_text"]


@dataclass(frozen=True)
class Tolerance:
    """One row of the policy: relative and absolute tolerance and why."""

    rtol: float
    atol: float
    reason: str


POLICY: dict[tuple[str, str], Tolerance] = {
    ("float64", "values"): Tolerance(1e-10, 1e-10, "same arithmetic as the reference; last-bit rounding only"),
    ("float64", "calibration"): Tolerance(1e-9, 1e-9, "mirror with tau < 0.5: 20 steps amplify last-bit rounding"),
    ("float64", "gradients"): Tolerance(1e-10, 1e-10, "autodiff vs analytic VJP: one rounding per op"),
    ("float32", "values"): Tolerance(2e-5, 2e-5, "float32 rounding of O(1) intermediates times the depth"),
    ("float32", "calibration"): Tolerance(1e-2, 1e-2, "mirror with tau < 0.5 amplifies float32 rounding ~25x/step"),
    ("float32", "gradients"): Tolerance(2e-5, 2e-5, "as float32 values"),
    ("bfloat16", "values"): Tolerance(2e-5, 2e-5, "upcast to float32 before any arithmetic (dtype policy)"),
    ("bfloat16", "calibration"): Tolerance(1e-2, 1e-2, "as float32 calibration"),
    ("bfloat16", "gradients"): Tolerance(1e-2, 1e-2, "gradients come back in the input dtype, bfloat16"),
}


def tolerance(dtype: str, family: str, *, solver: str = "exact", tau: float = 1.0) -> Tolerance:
    """The tolerance for ``dtype`` and op ``family`` ("values", "calibration", "gradients").

    "calibration" is the loose row only for the mirror solver with τ < 0.5; otherwise values apply.

    Example:
        >>> tolerance("float64", "calibration", solver="mirror", tau=10.0).rtol
        1e-10
        >>> tolerance("float32", "calibration", solver="mirror", tau=0.1).rtol
        0.01
    """
    if family == "calibration" and not (solver == "mirror" and tau < 0.5):
        family = "values"
    return POLICY[(dtype, family)]


def policy_text() -> str:
    """The policy as a plain-text table (printed in the report header)."""
    lines = ["tolerance policy: |a - r| <= atol*scale + rtol*|r| (reference in float64 on the rounded inputs)"]
    for (dtype, family), t in POLICY.items():
        lines.append(f"  {dtype:<9} {family:<12} rtol={t.rtol:<6g} atol={t.atol:<6g} {t.reason}")
    return "\n".join(lines)
