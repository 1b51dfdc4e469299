r"""Margin calibration: from a calibration set of reward gaps to per-pair target margins γ.

The objective (γ-PO; docs page ``docs/theory/objective.md``): over the probability simplex,

.. math::

    \min_{p \in \Delta_M}\; \frac{1}{M}\sum_{i=1}^{M} -\log\sigma(h_i - \gamma_i)
        \;+\; \tau \sum_{i=1}^{M} p_i \log(M p_i),
    \qquad \gamma_i = \gamma_0 M p_i ,

so that :math:`\operatorname{mean}(\gamma) = \gamma_0` and :math:`\gamma_i \ge 0`. Pairs with a large gap
(confident) get a large margin, ambiguous ones a small one; τ pulls p toward uniform
(τ → ∞ gives γ_i = γ0 everywhere).

The problem is strictly convex. Writing :math:`u_i = \log(M p_i) = \log(\gamma_i/\gamma_0)`, its unique
minimiser satisfies, for one multiplier :math:`c`,

.. math::

    \tau (1 + u_i) + \gamma_0\, \sigma(\gamma_0 e^{u_i} - h_i) = c \quad\text{for every } i,
    \qquad \frac{1}{M}\sum_i e^{u_i} = 1 ,

(the KKT conditions; :math:`c = -\lambda`). The left side is strictly increasing in :math:`u_i`, and
:math:`c \in (\tau, \tau + \gamma_0)`, so two nested monotone root-finds solve it exactly
(``solver="exact"``).

Two solvers
-----------
``"exact"`` (the default) returns the minimiser: the KKT system above solved by the fixed-work
root-find of :mod:`gammapo_spec.kkt_solver`, written once and shared by every backend (no host
synchronisation, a static amount of work that depends on γ0/τ only). Its margins are within
:data:`gammapo_spec.kkt_solver.TOLERANCE` · γ0 of the minimiser in float64, monotone in the gaps
(a larger gap gets a larger margin: the KKT conditions force it), permutation-equivariant, with
mean γ0. By the KKT conditions every :math:`u_i = \log(\gamma_i/\gamma_0)` lies in
:math:`((c - \gamma_0)/\tau - 1,\; c/\tau - 1)`, an interval of width γ0/τ, so

.. math:: \gamma_{\max}/\gamma_{\min} < e^{\gamma_0/\tau}

(:func:`spread_bound`): at the released τ = 10, γ0 = 4 the margins move at most ±20% around γ0.

``"mirror"`` is the released code's exponentiated-gradient arithmetic, step for step (what reproduces
the paper):

.. code-block:: text

    p ← 1/M;  η = min(0.5/τ, 1);  ε = 1e-10
    repeat K times:
        γ = γ0 · M · p
        g_i = τ (1 + log(M (p_i + ε))) + γ0 · σ(γ_i − h_i)
        p ← p ⊙ exp(−η g) / Σ_j p_j exp(−η g_j)
    return γ          # the γ computed at the start of the last iteration: K − 1 updates of p

The normalisation is evaluated in the log domain (``log p − η g − logsumexp(log p − η g)``, with the
maximum as the logsumexp's shift), which is the same arithmetic up to rounding but cannot turn into
0/0 when every ``exp(−η g_j)`` underflows. The iteration is written once, in
:mod:`gammapo_spec.mirror_solver` (its numerics as one written decision), and the torch and JAX
backends run that same function on their arrays.

How far the mirror iterate is from the minimiser (measured by ``python -m benchmarks.solver_agreement``,
whose table is in ``benchmarks/results/solver_agreement.md``): the iterate is K − 1 = 19 steps with a
fixed step η = min(0.5/τ, 1), and the curvature its step has to match grows like γ0²/τ. With
:math:`\kappa = \gamma_0^2/(8\tau)`:

* τ ≥ 0.5 and κ ≤ 0.4: the two agree to ≤ 2e-6 · γ0 for Gaussian gaps of any scale (0.3 to 100).
  Every released recipe is in this regime (κ = 0.2 Llama-3, 0.16 Gemma-2, 0.002 Mistral, 0.375 Qwen-2.5);
* κ ≈ 0.5 – 1.3 (e.g. γ0 = 4–5 at τ = 3, or γ0 = τ = 10): 1e-3 to ~0.4 · γ0;
* κ > 1.5 or τ < 0.5 (η capped at 1, so the entropy step ητ = τ is small): the iterate is far from
  converged, often by more than γ0 itself, and its margins need not be monotone in the gaps.

So asking for ``"mirror"`` with κ > :data:`MIRROR_KAPPA_MAX` or τ < :data:`MIRROR_TAU_MIN` warns
(:class:`~gammapo_spec.errors.SolverRegimeWarning`, once per setting) and names ``"exact"``.

Tiny τ: below τ ≈ γ0/700 the minimiser's smallest margins are smaller than float64 can represent
(:math:`u_i < -745`). The exact solver works in the log domain throughout, so it still solves the
problem; those γ_i round to exactly 0 (their log-ratios are available from
:func:`exact_log_margins`, which never underflows).

:func:`exact_log_margins` is the adaptive reference the default solver is tested against: nested
safeguarded Newton iterations that stop on convergence (KKT residual ≤ 1e-10 in float64). It runs on
the host with data-dependent loop counts, so it is a check, not a backend path.
"""

from __future__ import annotations

import math

import numpy as np

import warnings

from .errors import ConfigError, InputError, SolverRegimeWarning
from .kkt_solver import NumpyOps, kkt_margins
from .mirror_solver import MIRROR_EPS, mirror_margins as _mirror_margins
from .numerics import logsumexp, sigmoid
from .validation import check_finite, check_gaps_shape

__all__ = [
    "MIRROR_EPS",
    "MIRROR_KAPPA_MAX",
    "MIRROR_TAU_MIN",
    "calibrate_margins",
    "kkt_margins",
    "spread_bound",
    "log_spread",
    "mirror_unreliable",
    "warn_mirror_regime",
    "mirror_margins",
    "exact_margins",
    "exact_log_margins",
    "kkt_residual",
    "calibration_objective",
    "check_calibration_args",
]

#: The mirror iterate is reliable for κ = γ0²/(8τ) up to this value (and τ ≥ :data:`MIRROR_TAU_MIN`).
MIRROR_KAPPA_MAX = 0.5
#: Below this τ the mirror step η is capped at 1 and the iterate does not converge in 19 steps.
MIRROR_TAU_MIN = 0.5

_WARNED: set[tuple[float, float]] = set()


def mirror_unreliable(gamma0: float, tau: float, iters: int = 20) -> bool:
    """Whether the released mirror arithmetic is outside the regime where it reaches the minimiser.

    Example:
        >>> mirror_unreliable(4.0, 10.0), mirror_unreliable(4.0, 1.0), mirror_unreliable(0.2, 0.1)
        (False, True, True)
    """
    if iters < 2 or gamma0 == 0:
        return False  # K = 1 returns γ0 everywhere; γ0 = 0 returns 0: both exactly what is asked
    return gamma0 * gamma0 / (8.0 * tau) > MIRROR_KAPPA_MAX or tau < MIRROR_TAU_MIN


def warn_mirror_regime(gamma0: float, tau: float, iters: int = 20) -> None:
    """Warn once per (γ0, τ) when ``solver="mirror"`` runs where it does not converge."""
    gamma0, tau = float(gamma0), float(tau)
    if not mirror_unreliable(gamma0, tau, iters) or (gamma0, tau) in _WARNED:
        return
    _WARNED.add((gamma0, tau))
    kappa = gamma0 * gamma0 / (8.0 * tau)
    why = f"kappa = gamma0^2/(8 tau) = {kappa:.3g} > {MIRROR_KAPPA_MAX}" if kappa > MIRROR_KAPPA_MAX else (
        f"tau = {tau:g} < {MIRROR_TAU_MIN}")
    warnings.warn(
        f"solver='mirror' (the released arithmetic) does not converge at gamma0={gamma0:g}, tau={tau:g} "
        f"({why}): its margins can be far from the minimiser and need not grow with the gap; "
        "use solver='exact' (the default)",
        SolverRegimeWarning,
        stacklevel=3,
    )


def spread_bound(gamma0: float, tau: float) -> float:
    r"""The KKT bound on the spread of the margins: :math:`\log(\gamma_{\max}/\gamma_{\min}) < \gamma_0/\tau`.

    Example:
        >>> spread_bound(4.0, 10.0)
        0.4
    """
    return float(gamma0) / float(tau)


def log_spread(margins) -> float:
    r"""The realised :math:`\log(\gamma_{\max}/\gamma_{\min})` of positive margins (0 for γ0 = 0)."""
    gamma = np.asarray(margins, dtype=np.float64)
    if gamma.size == 0 or float(np.max(gamma)) <= 0.0:
        return 0.0
    low = float(np.min(gamma))
    return math.inf if low <= 0.0 else math.log(float(np.max(gamma)) / low)


def check_calibration_args(gamma0, tau, solver: str = "exact", iters=20) -> None:
    """Validate the hyper-parameters of :func:`calibrate_margins` (shared by every backend).

    Warns (:class:`~gammapo_spec.errors.SolverRegimeWarning`, once per setting) when ``solver="mirror"``
    is asked for where it does not converge.

    Raises:
        ConfigError: naming ``gamma0``, ``tau``, ``solver`` or ``iters``.
    """
    from .config import SOLVERS, _check_choice, _check_int, _check_real

    _check_real("gamma0", gamma0, low=0.0)
    _check_real("tau", tau, low=0.0, low_open=True)
    _check_choice("solver", solver, SOLVERS)
    _check_int("iters", iters, low=1)
    if solver == "mirror":
        warn_mirror_regime(gamma0, tau, iters)


def calibrate_margins(
    gaps,
    *,
    gamma0: float,
    tau: float,
    solver: str = "exact",
    iters: int = 20,
    check_values: bool = True,
) -> np.ndarray:
    r"""Per-pair target margins γ for a calibration set of reward gaps.

    Solves :math:`\min_{p\in\Delta_M} \frac1M\sum_i -\log\sigma(h_i - \gamma_0 M p_i) + \tau\sum_i p_i\log(M p_i)`
    and returns :math:`\gamma = \gamma_0 M p` (module docstring: the objective, its KKT conditions
    and the two solvers). The margins are constants for the policy gradient: no gradient flows
    through them in any backend.

    Args:
        gaps: ``[M]`` reward gaps h (M ≥ 1), in reward units (already multiplied by β).
        gamma0: γ0 ≥ 0, the mean margin.
        tau: τ > 0, the entropy weight.
        solver: ``"exact"`` (the minimiser, default; :mod:`gammapo_spec.kkt_solver`) or ``"mirror"``
            (the released arithmetic; warns outside its regime).
        iters: K ≥ 1 mirror iterations (ignored by ``"exact"``); K = 1 returns γ0 everywhere.
        check_values: raise on non-finite gaps (otherwise NaN propagates to every margin).

    Returns:
        ``[M]`` float64 margins, each ≥ 0, with mean γ0 (to rounding).

    Raises:
        ConfigError: ``gamma0 < 0``, ``tau <= 0``, an unknown solver, ``iters < 1`` (field named).
        InputError: gaps not 1-D, empty, or non-finite (field ``"gaps"``).

    Example:
        >>> import numpy as np
        >>> from gammapo_spec import calibrate_margins
        >>> gamma = calibrate_margins([2.0, 0.5, -1.0], gamma0=1.0, tau=1.0)
        >>> np.round(gamma, 4).tolist(), round(float(gamma.mean()), 12)
        ([1.2806, 0.9621, 0.7573], 1.0)
        >>> np.round(calibrate_margins([2.0, 0.5, -1.0], gamma0=1.0, tau=1.0, solver="mirror"), 4).tolist()
        [1.2806, 0.9621, 0.7573]

    References:
        Sun et al., *Robust Preference Optimization via Dynamic Target Margins*, ACL 2025 Findings
        (arXiv:2506.03690).
    """
    check_calibration_args(gamma0, tau, solver, iters)
    h = np.asarray(gaps, dtype=np.float64)
    check_gaps_shape(h.shape)
    if check_values:
        check_finite("gaps", bool(np.all(np.isfinite(h))))
    if solver == "mirror":
        return mirror_margins(h, gamma0=gamma0, tau=tau, iters=iters)
    return kkt_margins(h, gamma0=float(gamma0), tau=float(tau))


def mirror_margins(gaps: np.ndarray, *, gamma0: float, tau: float, iters: int = 20) -> np.ndarray:
    """The released mirror-descent arithmetic on NumPy float64 (no validation; see :func:`calibrate_margins`
    and :func:`gammapo_spec.mirror_solver.mirror_margins`, which every backend runs)."""
    h = np.asarray(gaps, dtype=np.float64)
    return _mirror_margins(NumpyOps, h, None, np.float64(h.shape[0]), gamma0=float(gamma0), tau=float(tau),
                           iters=iters)


def exact_log_margins(gaps, *, gamma0: float, tau: float) -> np.ndarray:
    r"""The exact minimiser's log-ratios :math:`u_i = \log(\gamma_i/\gamma_0)`, which never underflow.

    Solves the KKT system of the module docstring: an outer safeguarded Newton iteration on the
    multiplier :math:`c \in (\tau, \tau + \gamma_0)` for :math:`\operatorname{logsumexp}(u(c)) = \log M`,
    and for each :math:`c` an inner, vectorised, safeguarded Newton iteration on each
    :math:`u_i \in ((c-\gamma_0)/\tau - 1,\; c/\tau - 1)`. Both functions are strictly increasing.
    Both iterations are safeguarded as in ``rtsafe``: a Newton step is taken only if it lands inside the
    bracket and is at most half the step before last; otherwise the bracket is bisected. So the bracket
    at least halves every two iterations and both converge (a slow Newton crawl, e.g. while an entry
    sits at the cap below, is cut short by bisection).

    Raises ``ValueError`` if ``gamma0 == 0`` (then γ ≡ 0 and log-ratios are undefined).
    """
    h = np.asarray(gaps, dtype=np.float64)
    if gamma0 <= 0:
        raise ValueError("log-ratios need gamma0 > 0")
    m = h.shape[0]
    log_m = math.log(m)
    # A cap on u that keeps exp(u) finite yet preserves the sign of the outer function: any u_i above
    # log(M) + 1 already makes the mean of exp(u) exceed 1.
    u_cap = log_m + 1.0

    def inner(c: float, u_start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lo = np.full(m, (c - gamma0) / tau - 1.0)
        hi = np.full(m, min(c / tau - 1.0, u_cap))
        lo = np.minimum(lo, hi)
        u = np.clip(u_start, lo, hi)
        step = step_old = hi - lo
        for _ in range(300):
            gamma = gamma0 * np.exp(u)
            s = sigmoid(gamma - h)
            g = tau * (1.0 + u) + gamma0 * s - c
            dg = tau + gamma0 * gamma * s * (1.0 - s)
            hi = np.where(g > 0, u, hi)
            lo = np.where(g <= 0, u, lo)
            newton = u - g / dg
            # Newton where it stays inside the bracket and is at most half the step before last; else bisect.
            use_newton = (newton > lo) & (newton < hi) & (np.abs(newton - u) <= 0.5 * np.abs(step_old))
            u_new = np.where(use_newton, newton, 0.5 * (lo + hi))
            step_old, step = step, u_new - u
            tol = 1e-15 * (1.0 + np.abs(u))
            done = np.all((np.abs(u_new - u) <= tol) | (hi - lo <= tol))
            u = u_new
            if done:
                break
        gamma = gamma0 * np.exp(u)
        s = sigmoid(gamma - h)
        dg = tau + gamma0 * gamma * s * (1.0 - s)
        return u, dg

    c_lo, c_hi = float(tau), float(tau + gamma0)
    c = 0.5 * (c_lo + c_hi)
    step = step_old = c_hi - c_lo
    u = np.zeros(m)
    for _ in range(300):
        u, dg = inner(c, u)
        lse = logsumexp(u)
        f = lse - log_m
        if f > 0:
            c_hi = c
        else:
            c_lo = c
        if f == 0.0 or c_hi - c_lo <= 4 * np.spacing(c):
            break
        df = float(np.sum(np.exp(u - lse) / dg))
        c_new = c - f / df if df > 0 else c_lo
        # Newton while it stays inside the bracket and is at most half the step before last; else bisect.
        if not (c_lo < c_new < c_hi) or abs(c_new - c) > 0.5 * abs(step_old):
            c_new = 0.5 * (c_lo + c_hi)
        if c_new == c:
            break
        step_old, step = step, c_new - c
        c = c_new
    # Remove the outer iteration's last residual with a uniform shift: it makes mean(γ) = γ0 exact to
    # rounding (and M = 1 return γ0 exactly) while changing every s_i alike, to first order.
    return u - (logsumexp(u) - log_m)


def exact_margins(gaps, *, gamma0: float, tau: float) -> np.ndarray:
    """The adaptive reference minimiser γ = γ0 · exp(u) (no validation; the check of the default solver)."""
    h = np.asarray(gaps, dtype=np.float64)
    if gamma0 == 0:
        return np.zeros(h.shape[0])
    return gamma0 * np.exp(exact_log_margins(h, gamma0=gamma0, tau=tau))


def kkt_residual(gaps, margins=None, *, gamma0: float, tau: float, log_ratios=None) -> float:
    r"""How far ``margins`` are from satisfying the KKT conditions of the calibration problem.

    With :math:`u_i = \log(\gamma_i/\gamma_0)` and
    :math:`s_i = \tau(1 + u_i) + \gamma_0\sigma(\gamma_i - h_i)` (which the minimiser makes equal for
    every i), returns

    .. math:: \max\Big(\max_i |s_i - \bar s|,\; \big|\tfrac{1}{M}\textstyle\sum_i e^{u_i} - 1\big|\Big),

    with :math:`\bar s` the mean of s. Give either ``margins`` (γ, all > 0) or ``log_ratios`` (u).
    """
    h = np.asarray(gaps, dtype=np.float64)
    if log_ratios is None:
        u = np.log(np.asarray(margins, dtype=np.float64) / gamma0)
    else:
        u = np.asarray(log_ratios, dtype=np.float64)
    s = tau * (1.0 + u) + gamma0 * sigmoid(gamma0 * np.exp(u) - h)
    stationarity = float(np.max(np.abs(s - np.mean(s))))
    feasibility = abs(math.exp(logsumexp(u) - math.log(h.shape[0])) - 1.0)
    return max(stationarity, feasibility)


def calibration_objective(gaps, margins, *, gamma0: float, tau: float) -> float:
    r"""The calibration objective at γ: :math:`\frac1M\sum_i \operatorname{softplus}(\gamma_i - h_i) + \tau\sum_i p_i\log(M p_i)`."""
    from .numerics import softplus

    h = np.asarray(gaps, dtype=np.float64)
    gamma = np.asarray(margins, dtype=np.float64)
    m = h.shape[0]
    if gamma0 == 0:
        return float(np.mean(softplus(-h)))
    p = gamma / (gamma0 * m)
    entropy = float(np.sum(np.where(p > 0, p * np.log(np.where(p > 0, m * p, 1.0)), 0.0)))
    return float(np.mean(softplus(gamma - h))) + tau * entropy
