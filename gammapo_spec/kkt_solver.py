r"""The default calibration solver, written once for every backend: a fixed-work KKT root-find.

It solves the KKT conditions of the calibration problem (:mod:`gammapo_spec.calibration`),

.. math::

    F_i(u_i) := \tau (1 + u_i) + \gamma_0\, \sigma(\gamma_0 e^{u_i} - h_i) = c \quad\text{for every } i,
    \qquad \frac{1}{M}\sum_i e^{u_i} = 1, \qquad \gamma_i = \gamma_0 e^{u_i},

with a **fixed, static amount of work**: the iteration counts depend on γ0/τ only (a Python float,
known before any data is seen, :func:`iteration_plan`), every branch is an elementwise select, and no
value is read back to the host. So the same arithmetic runs in NumPy, eager PyTorch, under
``torch.compile(fullgraph=True)``, in a CUDA graph and under ``jax.jit``. Backends call
:func:`kkt_log_margins` with a small adapter of array operations (:class:`NumpyOps` is the
reference one); the algorithm is not re-written per framework.

The numerics, as one written decision
-------------------------------------
* **Inner equation** (each i, c fixed): :math:`F_i` is strictly increasing with :math:`F_i' \ge \tau`
  and has exactly one inflection point :math:`x_i^*` (convex below it, concave above): with
  :math:`y = \gamma_0 e^{x}`, :math:`F_i'' = 0` exactly where :math:`y \tanh((y - h_i)/2) = 1`, which
  has one root :math:`y^* > \max(h_i, 0)`. Newton's method on an increasing function converges
  monotonically from the side of the root where the function bends away from its tangent: from
  above on the convex part (root below :math:`x^*`), from below on the concave part. An iterate on
  the other side is first moved to the safe side by the Lipschitz bound :math:`F' \ge \tau`
  (the root lies within :math:`|c - F_i(u)|/\tau` of any u), clipped at :math:`x^*`.
* **Outer equation**: c lies in :math:`(\tau, \tau + \gamma_0)`. Each outer iteration takes a Newton
  step on :math:`\log\sum_i e^{u_i(c)} = \log M` with the implicit derivative
  :math:`du_i/dc = 1/F_i'(u_i)`; the bracket on c shrinks only on *certain* evidence (the Lipschitz
  bounds of every :math:`u_i` put the sum above or below M by more than rounding, or the iterates have
  stopped moving at this c and the linearised sum decides), and a step outside the bracket bisects
  it; without evidence (the bracket unchanged) it steps toward the Newton point, an eighth of the
  bracket inside it, instead.
* **Cap**: iterates stay below :math:`\log M + 1` (any :math:`u_i` above it already makes the mean of
  :math:`e^{u}` exceed 1), so nothing overflows in float32.
* **Finish**: a uniform shift of u makes :math:`\operatorname{mean}(\gamma) = \gamma_0` exact to
  rounding (and M = 1 return γ0 exactly).
* **Dtype**: the compute dtype of the dtype policy (float64 for float64 gaps, float32 otherwise).

How close it gets (stated tolerance, measured by ``tests/spec/test_kkt_solver.py`` against the
adaptive reference :func:`gammapo_spec.calibration.exact_log_margins` over random
:math:`\tau \in [0.01, 100]`, :math:`\gamma_0 \in [0.01, 20]`, :math:`M \le 4096`, gaps of scale
0.1–300): :math:`\max_i |\gamma_i - \gamma_i^\star| \le` :data:`TOLERANCE` :math:`\cdot\,\gamma_0` in
float64. The margins are monotone in the gaps and their mean is γ0 for every input.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from .numerics import sigmoid

__all__ = ["TOLERANCE", "NumpyOps", "iteration_plan", "kkt_log_margins", "kkt_margins"]

#: The stated float64 tolerance of :func:`kkt_margins`, relative to γ0 (max over pairs).
TOLERANCE = 1e-9

#: Newton iterations for the inflection points (quadratic convergence from max(h, 0) + 1).
INFLECTION_ITERS = 8


def iteration_plan(gamma0: float, tau: float) -> tuple[int, int]:
    r"""``(outer, inner)`` iteration counts for ratio ρ = γ0/τ: static, data-independent work.

    The counts grow with ρ, which bounds how far apart the log-margins can be
    (:math:`\log(\gamma_{\max}/\gamma_{\min}) < \gamma_0/\tau`). Chosen from a measured scan with a
    safety factor of at least 1.7 on the worst case seen in 500 random problems (``M`` up to 4096,
    gap scales 0.1–300, heavy tails and ties; the outer iterations each needed for 1e-10 · γ0 and
    kept when the count is doubled): ρ < 1: 4; ρ < 3: 5; ρ < 10: 8; ρ < 30: 14 (with 2 inner steps;
    12 with 3); ρ < 100: 14; ρ < 500: 20 (3 inner steps above ρ = 10).

    Example:
        >>> iteration_plan(4.0, 10.0), iteration_plan(4.0, 0.04)
        ((7, 2), (44, 3))
    """
    rho = gamma0 / tau
    inner = 2 if rho <= 10.0 else 3
    outer = 4 + math.ceil(6.0 * math.log2(1.0 + rho))
    return outer, inner


class NumpyOps:
    """The array operations :func:`kkt_log_margins` needs, for NumPy (the reference adapter).

    A backend's adapter offers the same names with the same meaning on its own arrays:
    elementwise ``exp, log, sigmoid, tanh, where, minimum, maximum``; ``sum(x)`` and ``max(x)`` over
    all elements (0-d results); ``zeros(x)``, zeros of ``x``'s shape and dtype; ``eps(x)``, the machine
    epsilon of ``x``'s dtype (a Python float); ``loop(n, body, carry)``, which applies
    ``carry = body(carry)`` n times (a Python loop, or ``lax.fori_loop``). The solvers of
    :mod:`gammapo_spec.kkt_solver` and :mod:`gammapo_spec.mirror_solver` use only these.
    """

    exp = staticmethod(np.exp)
    log = staticmethod(np.log)
    tanh = staticmethod(np.tanh)
    where = staticmethod(np.where)
    minimum = staticmethod(np.minimum)
    maximum = staticmethod(np.maximum)
    zeros = staticmethod(np.zeros_like)

    sigmoid = staticmethod(sigmoid)

    @staticmethod
    def eps(x):
        return float(np.finfo(x.dtype).eps)

    @staticmethod
    def sum(x):
        return np.sum(x)

    @staticmethod
    def max(x):
        return np.max(x)

    @staticmethod
    def loop(n: int, body: Callable[[Any], Any], carry: Any) -> Any:
        for _ in range(n):
            carry = body(carry)
        return carry


def kkt_log_margins(ops: Any, h, valid, count, *, gamma0: float, tau: float, plan: tuple[int, int] | None = None):
    r"""Log-ratios :math:`u_i = \log(\gamma_i/\gamma_0)` of the calibration minimiser (γ0 > 0), fixed work.

    Args:
        ops: the array adapter (:class:`NumpyOps` or a backend's).
        h: ``[L]`` gaps in the compute dtype (finite).
        valid: ``[L]`` bool, the slots that take part, or ``None`` (all).
        count: M, the number of valid slots, as a 0-d array of ``h``'s dtype (or a float).
        gamma0, tau: γ0 > 0, τ > 0 (not validated here; Python floats, or traced scalars when ``plan``
            is given).
        plan: ``(outer, inner)`` counts; default :func:`iteration_plan` of ``gamma0, tau``.

    Returns:
        ``[L]`` log-ratios; invalid slots hold −∞ (so γ0·exp(u) is 0 there).
    """
    k_out, k_in = iteration_plan(gamma0, tau) if plan is None else plan
    log_m = ops.log(count)
    cap = log_m + 1.0
    # evidence on c counts only beyond rounding: log-sums are good to a few ulps of log M + 1, and each
    # bound u + (c − F)/τ carries the rounding of c − F (c < τ + γ0) divided by τ
    slack = 16.0 * ops.eps(h) * (cap + 2.0 + gamma0 / tau)
    zero = h * 0.0
    neg_inf = zero - math.inf

    def masked(x, fill):
        return x if valid is None else ops.where(valid, x, fill)

    def lse(x):  # log Σ_valid exp(x)
        x = masked(x, neg_inf)
        top = ops.max(x)
        return top + ops.log(ops.sum(ops.exp(x - top)))

    # inflection points x*_i: y tanh((y − h)/2) = 1 with y = γ0 e^x, Newton from y = max(h, 0) + 1
    def infl(y):
        t = ops.tanh(0.5 * (y - h))
        q = y * t - 1.0
        dq = t + 0.5 * y * (1.0 - t * t)
        return ops.maximum(y - q / dq, 0.5 * ops.maximum(h, zero) + 1e-30)

    y_star = ops.loop(INFLECTION_ITERS, infl, ops.maximum(h, zero) + 1.0)
    x_star = ops.minimum(ops.log(y_star) - ops.log(zero + gamma0), cap)  # not log(y/γ0): γ0 may be tiny
    f_star = tau * (1.0 + x_star) + gamma0 * ops.sigmoid(gamma0 * ops.exp(x_star) - h)

    def evaluate(u):
        z = gamma0 * ops.exp(u)
        s = ops.sigmoid(z - h)
        return tau * (1.0 + u) + gamma0 * s, tau + gamma0 * z * s * (1.0 - s)

    def outer(carry):
        u, c, c_lo, c_hi = carry
        u_start = u
        convex = f_star > c  # the root lies on the convex side of x*

        def inner(u):
            f, df = evaluate(u)
            safe_side = ops.where(convex, f >= c, f <= c)
            lipschitz = u + (c - f) / tau
            jump = ops.where(convex, ops.minimum(x_star, lipschitz), ops.maximum(x_star, lipschitz))
            return ops.minimum(ops.where(safe_side, u + (c - f) / df, jump), cap)

        u = ops.loop(k_in, inner, u)
        f, df = evaluate(u)
        r = (c - f) / tau  # every root lies in [u + min(r, 0), u + max(r, 0)]
        f_lo = lse(u + ops.minimum(r, zero)) - log_m
        f_hi = lse(u + ops.maximum(r, zero)) - log_m
        above = f_lo > slack  # certain: the sum exceeds M at c
        below = (f_lo <= slack) & (f_hi < -slack)  # certain: it falls short
        # one more Newton step, u(c) to first order; the outer step uses it uncapped (a capped entry
        # would hide how far c is from the root, and the outer step would crawl)
        u_lin = u + (c - f) / df
        total = lse(u_lin)
        weights = masked(ops.exp(u_lin - total), zero)
        f_lin = total - log_m
        c_new = c - f_lin / ops.sum(weights / df)
        u = ops.minimum(u_lin, cap)
        # no certain evidence, but the iterates have stopped moving at this c (a steep F_i whose float32
        # rounding keeps its Lipschitz bounds wide): then the linearised sign is the inner solution's own
        moved = ops.max(masked(ops.maximum(u - u_start, u_start - u), zero))
        settled = ~above & ~below & (moved <= 64.0 * ops.eps(h) * (1.0 + ops.max(masked(ops.maximum(u, -u), zero))))
        above = above | (settled & (f_lin > 0))
        below = below | (settled & (f_lin < 0))
        evidence = above | below
        c_hi = ops.where(above, c, c_hi)
        c_lo = ops.where(below, c, c_lo)
        inside = (c_new >= c_lo) & (c_new <= c_hi)
        # without certain evidence the bracket is unchanged, so bisecting it would return the same c again
        # (seen in float32, where a steep F_i keeps its Lipschitz bounds wide): step toward the Newton
        # point instead, kept an eighth of the bracket inside it
        width = c_hi - c_lo
        toward = ops.minimum(ops.maximum(c_new, c_lo + 0.125 * width), c_hi - 0.125 * width)
        c = ops.where(inside, c_new, ops.where(evidence, 0.5 * (c_lo + c_hi), toward))
        return u, c, c_lo, c_hi

    c_lo = ops.max(zero) + tau
    c_hi = ops.max(zero) + (tau + gamma0)
    s0 = masked(ops.sigmoid(gamma0 - h), zero)
    c0 = ops.minimum(ops.maximum(tau + gamma0 * ops.sum(s0) / count, c_lo), c_hi)
    u, *_ = ops.loop(k_out, outer, (zero, c0, c_lo, c_hi))
    u = u - (lse(u) - log_m)
    return masked(u, neg_inf)


def kkt_margins(gaps, *, gamma0: float, tau: float) -> np.ndarray:
    """The default solver's margins γ = γ0 · exp(u) on NumPy float64 (no validation)."""
    h = np.asarray(gaps, dtype=np.float64)
    if gamma0 == 0:
        return np.zeros(h.shape[0])
    u = kkt_log_margins(NumpyOps, h, None, np.float64(h.shape[0]), gamma0=float(gamma0), tau=float(tau))
    return gamma0 * np.exp(u)
