r"""The tolerance policy of the conformance suite, written once.

A backend result ``a`` is compared with the reference ``r`` (:mod:`gammapo_spec`, evaluated in float64
**on the same rounded inputs** the backend saw) as ``|a - r| <= atol * scale + rtol * |r|``, where
``scale`` is the natural size of the quantity (1 for values, ``1 + gamma0`` for margins, the gap scale
times the loss's largest slope max(1, |ℓ'(z)|) for per-pair losses, since a gap rounded by δ moves the
loss by ℓ'(z)·δ: IPO's slope 2|z − ½|/β² is unbounded; for gradients max|g| + 1/N plus eight roundings
of the gap times ℓ''(z)·β/N, since the same δ moves the slope by ℓ''(z)·δ:
:func:`gammapo_conformance._harness.gradient_scale`).

Per dtype and op family:

========  ============  =======  =======  ======================================================
dtype     family        rtol     atol     reason
========  ============  =======  =======  ======================================================
float64   values        1e-10    1e-10    same arithmetic as the reference; only last-bit rounding
float64   gradients     1e-10    1e-10    autodiff vs analytic VJP: one rounding per op
float32   values        2e-5     2e-5     float32 rounding of O(1) intermediates (~1e-7) x depth
float32   gradients     2e-5     2e-5     as values
bfloat16  values        2e-5     2e-5     computed in float32 after upcast (dtype policy)
bfloat16  gradients     1e-2     1e-2     gradients are returned in the input dtype (bfloat16)
========  ============  =======  =======  ======================================================

Margins ("calibration") are held to the values row, loosened only for the exact solver in float32 and
bfloat16 and where the mirror updates amplify rounding (both below); see :func:`tolerance`. Until
2026-12-01 the mirror solver with τ < 0.5 had rows of its own (1e-9 float64, 1e-2 float32) and the
amplifying regime started at κ = 1.5; a probe (``scripts/probe_calibration_tolerance.py``: 24,000
sets with κ ∈ [0, 2] and 50,000 with κ ∈ [0.3, 0.5], torch and jax, CPU kernels and op paths) showed
both wrong: with κ ≤ 0.5 every backend path stays ≤ 9e-15 (float64) and ≤ 2.0e-6 (float32) at any τ,
while κ between 0.7 and 1.5 already amplifies (float32 1.05e-3 at κ = 1.15, τ = 1.16, K = 20 against
the values row's 2e-5; 3.6e-2 at κ = 1.45, τ = 0.26, K = 30 against the old 1e-2).

The exact solver in float32 and bfloat16: the KKT multiplier c ∈ (τ, τ + γ0) rounds by ~eps·(τ + γ0),
which moves the log-margins by that over τ, so the margins are only determined to ~eps·(1 + γ0/τ):
the bound is max(row, 32·2⁻²³·(1 + γ0/τ)) (:data:`EXACT_LOW_PRECISION`; measured below) for
γ0/τ ≤ :data:`EXACT_LOW_PRECISION_RHO_MAX` = 1000. Beyond it float32 leaves the margins undetermined
(the bound would exceed 4e-3 relative, and the fixed-work default solver, measured on 300 float32
sets, was off by up to 6× its value at γ0/τ = 3.7e4), so only NaN/inf must match there: a backend that
needs such settings computes in float64 (torch always does for this solver; JAX with x64 enabled).

The mirror solver's amplifying regime
-------------------------------------
In log-ratios :math:`u_i = \log(\gamma_i/\gamma_0)` a mirror update is :math:`u \leftarrow u - \eta g(u)` plus
a shift, whose Jacobian has the diagonal
:math:`1 - \eta(\tau + \gamma_0\gamma_i\,\sigma(\gamma_i - h_i)\sigma(h_i - \gamma_i))`, η = min(0.5/τ, 1). With
:math:`\kappa = \gamma_0^2/(8\tau)` (:mod:`gammapo_spec.calibration`) and η = 0.5/τ that is
:math:`\tfrac12 - 4\kappa\, e^{u_i} s_i` with :math:`s_i \le \tfrac14`: its magnitude passes 1 once
:math:`\kappa\, e^{u_i} > 1.5` for a pair near :math:`\gamma_i \approx h_i`, i.e. from κ = 0.5 for a pair
whose margin is 3γ0, and from κ = 1.5 only when every margin is γ0. Measured, the onset is κ ≈ 0.7
(above); the policy takes κ > 0.5 (:data:`KAPPA_UNCONVERGED`), which leaves every released recipe
(κ ≤ 0.375) on the values row. There the K − 1 updates amplify rounding geometrically: the reference
itself, fed the same gaps with one last bit flipped, moves by up to ~1e-3 relative at K = 30 in float64. A backend's vectorised exp/log
and summation order are such a perturbation, so its margins can only be held to a bound that grows
with K (:data:`UNCONVERGED`, applied for K ≥ 2; K = 1 returns γ0 and has no update):

========  =================================  ================================================
dtype     rtol = atol                        measured (torch and jax vs the reference)
========  =================================  ================================================
float64   min(1e-10 · 2.5^(K−1), 0.1)        ≤ 1/12 of the bound; largest 2.4e-3 (K = 30)
float32   3e-3 · 4^(K−1); none from K = 10   ≤ 1/5 of the bound; O(M) (saturated) from K = 10
bfloat16  as float32                         computed in float32 after upcast
========  =================================  ================================================

never tighter than the values row. Measured (κ > 1.5) with ``calibrate_margins`` on 69,000 (torch: CPU kernel and ops path) and 8,900 (jax: CPU
kernel and lax path) float64 and 57,000 / 6,900 float32 calibration sets in the regime (γ0 ∈ [0.05, 5000], τ log-uniform in [1e-3, 1e3], M = 2..4096,
gap scales 1e-3..300 with ties and 1e4 outliers, K = 1..30): the largest error relative to the bound
was 0.081 (torch) and 0.026 (jax) in float64, 0.19 and 0.030 in float32; the conformance runs
that failed under the old rows (float32, γ0 = 100, τ = 1, K = 14: 2.7e-5 relative against 2e-5)
pass. float32 rounding is amplified to O(1) — the margins are not determined by float32 arithmetic —
from K ≈ 8 on (up to O(M) relative from K = 10: 1e3 at M = 4096), so there the bound no longer
constrains the values and from K = 10 there is none (only NaN/inf must match). Between κ = 0.5 and
1.5 (probe of 2026-12-01: 24,000 sets, jax CPU kernel and lax path, torch CPU kernel and ops path,
τ ∈ [1e-3, 1e3], M ≤ 4096, K ≤ 30, ties and 1e4 outliers) the largest errors were 4.6e-10 (float64,
K = 30) and 3.6e-2 (float32, K = 30), inside the bounds, which grow faster than the amplification
there.

What the bound costs in teeth, inside the regime only: an iteration ±1 bug moves the float64 margins
past the bound in 99% of such sets at K = 2, 75% at K = 14, 50% at K = 20 and 35–40% at K = 30 (the
rest sit at a fixed point that one update does not move); in float32 in 75% at K = 2, under 10% from
K = 8 (measured for κ > 1.5). Outside the regime the values row applies, and
``test_calibrate_margins_mirror_steps`` checks the mirror steps where every update moves the margins
and rounding is not amplified (τ < 0.5, κ ≤ 0.5; backends agree to ~9e-15 there), which rejects the
iteration ±1 mutants (``tests/conformance/test_conf_tolerances.py`` shows the gap on fixed sets).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Tolerance", "Amplified", "POLICY", "UNCONVERGED", "KAPPA_UNCONVERGED", "EXACT_LOW_PRECISION",
           "EXACT_LOW_PRECISION_RHO_MAX", "is_unconverged",
           "tolerance", "policy_text"]


@dataclass(frozen=True)
class Tolerance:
    """One row of the policy: relative and absolute tolerance and why."""

    rtol: float
    atol: float
    reason: str


@dataclass(frozen=True)
class Amplified:
    """A bound that grows per mirror update: ``min(base * growth**(K - 1), cap)`` for K iterations, and
    no bound at all (``inf``: only NaN/inf must match) from ``K = unbounded_from`` on."""

    base: float
    growth: float
    cap: float
    reason: str
    unbounded_from: int = 2**31

    def at(self, iters: int) -> float:
        """The bound after ``iters`` mirror iterations (``iters - 1`` updates)."""
        if iters >= self.unbounded_from:
            return float("inf")
        return min(self.base * self.growth ** (iters - 1), self.cap)


POLICY: dict[tuple[str, str], Tolerance] = {
    ("float64", "values"): Tolerance(1e-10, 1e-10, "same arithmetic as the reference; last-bit rounding only"),
    ("float64", "gradients"): Tolerance(1e-10, 1e-10, "autodiff vs analytic VJP: one rounding per op"),
    ("float32", "values"): Tolerance(2e-5, 2e-5, "float32 rounding of O(1) intermediates times the depth"),
    ("float32", "gradients"): Tolerance(2e-5, 2e-5, "as float32 values"),
    ("bfloat16", "values"): Tolerance(2e-5, 2e-5, "upcast to float32 before any arithmetic (dtype policy)"),
    ("bfloat16", "gradients"): Tolerance(1e-2, 1e-2, "gradients come back in the input dtype, bfloat16"),
}

#: κ = γ0²/(8τ) above which the mirror updates may amplify rounding (module docstring; measured onset ≈ 0.7).
KAPPA_UNCONVERGED = 0.5

#: Mirror solver with κ > 0.5 and K ≥ 2: the bound grows with the K − 1 updates (module docstring).
UNCONVERGED: dict[str, Amplified] = {
    "float64": Amplified(1e-10, 2.5, 0.1, "mirror, kappa > 0.5: each update amplifies rounding (measured max "
                                          "<= 1/12 of this; 2.4e-3 at K=30)"),
    "float32": Amplified(3e-3, 4.0, float("inf"), "mirror, kappa > 0.5: float32 rounding amplified (measured max "
                                                  "<= 1/5 of this); from K=10 up to O(M): values undetermined", 10),
    "bfloat16": Amplified(3e-3, 4.0, float("inf"), "as float32 (computed in float32 after upcast)", 10),
}


#: float32/bfloat16, exact solver: the KKT multiplier c ∈ (τ, τ + γ0) rounds by ~eps·(τ + γ0), which moves
#: log-margins u = log(γ/γ0) by that over τ, so the margins' relative error is ~eps·(1 + γ0/τ). Bound:
#: this factor times (1 + γ0/τ), never below the values row. Measured (jax, which solves in float32, CPU
#: kernel and lax path, 3,300 sets: γ0 ∈ [0.05, 5000], τ ∈ [1e-3, 1e3], M = 1..4096, ties, 1e4 outliers):
#: ≤ 4.6·eps·(1 + γ0/τ), i.e. ≤ 1/7 of the bound (up to 0.81 relative at γ0/τ = 4e6); a random
#: conformance run failed jax at γ0 = 100, τ = 0.1, gaps [1e4, ~1e-3 ...]: 1.26e-4 relative against
#: 2e-5. torch solves in float64 internally (≤ 5.3e-8 on 4,000 sets).
EXACT_LOW_PRECISION: dict[str, float] = {"float32": 32 * 2.0**-23, "bfloat16": 32 * 2.0**-23}
#: Above this γ0/τ the exact solver's low-precision margins are not bounded (module docstring). The
#: fixed-work default solver in float32 (torch ops path, the arithmetic JAX runs without x64; 366 random
#: sets with γ0/τ ≤ 1000, ties and 1e4 outliers) stayed ≤ 1/45 of the bound.
EXACT_LOW_PRECISION_RHO_MAX = 1000.0


def is_unconverged(solver: str, tau: float, gamma0: float, iters: int) -> bool:
    """Whether the mirror solver runs where its updates may amplify rounding (κ = γ0²/(8τ) > 0.5, K ≥ 2)."""
    return solver == "mirror" and iters >= 2 and gamma0 * gamma0 / (8.0 * tau) > KAPPA_UNCONVERGED


def tolerance(dtype: str, family: str, *, solver: str = "exact", tau: float = 1.0, gamma0: float = 0.0,
              iters: int = 20) -> Tolerance:
    """The tolerance for ``dtype`` and op ``family`` ("values", "calibration", "gradients").

    "calibration" (margins) is the values row, except: the exact solver in float32/bfloat16 (the
    :data:`EXACT_LOW_PRECISION` bound), and the mirror solver with κ = γ0²/(8τ) > 0.5 and ``iters`` =
    K ≥ 2, where it is the larger of the row and the :data:`UNCONVERGED` bound after K iterations.

    Example:
        >>> tolerance("float64", "calibration", solver="mirror", tau=10.0).rtol
        1e-10
        >>> tolerance("float32", "calibration", solver="mirror", tau=0.1, gamma0=0.5).rtol  # κ = 0.31
        2e-05
        >>> tolerance("float32", "calibration", solver="mirror", tau=1.0, gamma0=3.0, iters=5).rtol  # κ = 1.1
        0.768
        >>> tolerance("float64", "calibration", solver="mirror", tau=0.3, gamma0=10.0, iters=20).rtol  # κ = 41.7
        0.003637978807091713
    """
    if family != "calibration":
        return POLICY[(dtype, family)]
    row = POLICY[(dtype, "values")]
    if solver == "exact" and dtype in EXACT_LOW_PRECISION:
        if gamma0 / tau > EXACT_LOW_PRECISION_RHO_MAX:
            return Tolerance(0.0, float("inf"), f"exact solver in {dtype} at gamma0/tau = {gamma0 / tau:.3g} > "
                                                f"{EXACT_LOW_PRECISION_RHO_MAX:g}: margins undetermined in {dtype}")
        t = max(row.rtol, EXACT_LOW_PRECISION[dtype] * (1.0 + gamma0 / tau))
        if t > row.rtol:
            return Tolerance(t, t, f"exact solver in {dtype}: KKT rounding scaled by 1 + gamma0/tau = {1 + gamma0 / tau:.3g}")
        return row
    if not is_unconverged(solver, tau, gamma0, iters):
        return row
    amp = UNCONVERGED[dtype]
    t = max(row.rtol, amp.at(iters))
    reason = f"{amp.reason}; K={iters}, kappa={gamma0 * gamma0 / (8.0 * tau):.3g}"
    if math.isinf(t):  # no bound: atol = inf passes any finite pair (rtol = inf would give inf * 0 = NaN at r = 0)
        return Tolerance(0.0, t, reason)
    return Tolerance(t, max(row.atol, t), reason)


def policy_text() -> str:
    """The policy as a plain-text table (printed in the report header)."""
    lines = ["tolerance policy: |a - r| <= atol*scale + rtol*|r| (reference in float64 on the rounded inputs)"]
    for (dtype, family), t in POLICY.items():
        lines.append(f"  {dtype:<9} {family:<12} rtol={t.rtol:<6g} atol={t.atol:<6g} {t.reason}")
    for dtype, f in EXACT_LOW_PRECISION.items():
        lines.append(f"  {dtype:<9} exact        max(row, {f:.2g}*(1 + gamma0/tau))  exact solver: the KKT multiplier's "
                     f"rounding is scaled by 1 + gamma0/tau; no bound above gamma0/tau = {EXACT_LOW_PRECISION_RHO_MAX:g}")
    lines.append(f"  mirror solver with kappa = gamma0^2/(8 tau) > {KAPPA_UNCONVERGED:g} and K >= 2 iterations: "
                 "rtol = atol = max(row above, bound after K iterations)")
    for dtype, a in UNCONVERGED.items():
        bound = f"{a.base:g}*{a.growth:g}^(K-1)"
        bound = bound if a.cap == float("inf") else f"min({bound}, {a.cap:g})"
        bound = bound if a.unbounded_from >= 2**31 else f"{bound}, K<{a.unbounded_from}"
        lines.append(f"  {dtype:<9} {'unconverged':<12} {bound:<26} {a.reason}")
    return "\n".join(lines)
