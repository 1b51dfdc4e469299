r"""Margin calibration on JAX arrays: the mirror and exact solvers as ``lax`` loops.

The problem (:mod:`gammapo_spec.calibration`): over the simplex,

.. math::

    \min_{p \in \Delta_M}\; \frac{1}{M}\sum_{i} -\log\sigma(h_i - \gamma_i) + \tau \sum_i p_i \log(M p_i),
    \qquad \gamma_i = \gamma_0 M p_i .

Both solvers work on a calibration set with a *validity mask*: a fixed-size array whose entries
with ``valid == False`` take no part (they get γ = 0 and do not count in M). That is how queue
mode keeps static shapes although the number of sampled gaps S changes from step to step (the
queue fills up): the candidate set has a fixed size and the first S candidates are valid.

* ``"mirror"`` — the released exponentiated-gradient arithmetic, K − 1 updates of p in a
  ``lax.fori_loop`` (K static): the solver written once in :mod:`gammapo_spec.mirror_solver`
  (max-shifted logsumexp, p = exp(log p), the compute dtype), run on :class:`JaxOps`:

  .. math::

      g_i = \tau\big(1 + \log(M (p_i + \varepsilon))\big) + \gamma_0 \sigma(\gamma_i - h_i),\quad
      \log p \leftarrow w - \operatorname{logsumexp}(w),\; w = \log p - \eta g,\;
      \eta = \min(0.5/\tau, 1).

* ``"exact"`` (the default) — the minimiser, by the fixed-work KKT root-find written once in
  :mod:`gammapo_spec.kkt_solver` (this module supplies the ``lax`` adapter :class:`JaxOps`): static
  ``lax.fori_loop`` counts from γ0/τ, no data-dependent loop, masked like the mirror solver.

Everything here is ``stop_gradient``-ed by the callers: margins are constants for the policy
gradient, so the loops are never differentiated.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from gammapo_spec import mirror_solver
from gammapo_spec.calibration import check_calibration_args
from gammapo_spec.kkt_solver import iteration_plan, kkt_log_margins
from gammapo_spec.validation import check_finite, check_gaps_shape

from . import _cpu_kernel
from ._dtypes import compute_dtype, concrete_all, to_jax

__all__ = ["calibrate_margins", "solve", "solve_all", "exact_log_margins", "kkt_residual"]

def _sigmoid(z):
    return jax.nn.sigmoid(z)


class JaxOps:
    """The array adapter of the shared solvers (:mod:`gammapo_spec.kkt_solver`, :mod:`gammapo_spec.mirror_solver`)
    for JAX (loops as ``lax.fori_loop``)."""

    exp, log, tanh, where = jnp.exp, jnp.log, jnp.tanh, jnp.where
    minimum, maximum, sum, max, zeros = jnp.minimum, jnp.maximum, jnp.sum, jnp.max, jnp.zeros_like
    sigmoid = staticmethod(jax.nn.sigmoid)

    @staticmethod
    def eps(x) -> float:
        return float(jnp.finfo(x.dtype).eps)

    @staticmethod
    def loop(n, body, carry):
        return lax.fori_loop(0, n, lambda _, c: body(c), carry)


def exact_log_margins(h, valid, count, *, gamma0, tau, plan: tuple[int, int]):
    r"""Log-ratios :math:`u_i = \log(\gamma_i/\gamma_0)` of the minimiser (γ0 > 0), masked (invalid: −∞).

    The fixed-work solver written once in :mod:`gammapo_spec.kkt_solver`, on ``lax`` ops (its loops
    are ``lax.fori_loop`` with the static counts ``plan``, from
    :func:`gammapo_spec.kkt_solver.iteration_plan` of the Python hyper-parameters).
    """
    return kkt_log_margins(JaxOps, h, valid, count, gamma0=gamma0, tau=tau, plan=plan)


@functools.partial(jax.jit, static_argnames=("solver", "iters", "plan"))
def solve(h, valid, gamma0, tau, *, solver: str, iters: int, count=None, plan: tuple[int, int] | None = None):
    r"""Margins γ of the valid entries of ``h`` (0 elsewhere), no validation, no gradient.

    ``gamma0`` and ``tau`` are traced (a sweep over them compiles once per shape); ``solver`` and
    ``iters`` are static.

    Args:
        h: ``[L]`` floating gaps; valid: ``[L]`` bool mask (at least one True).
        gamma0: γ0 ≥ 0; tau: τ > 0 (scalars, cast to h's dtype).
        count: the number of valid entries if the caller already has it (else ``sum(valid)``).
        plan: the exact solver's static ``(outer, inner)`` iteration counts
            (:func:`gammapo_spec.kkt_solver.iteration_plan` of the hyper-parameters; required for it).

    Returns:
        ``[L]`` margins in h's dtype: the calibration of the valid entries (M = their number).
    """
    h = lax.stop_gradient(h)
    dtype = h.dtype
    gamma0 = lax.stop_gradient(jnp.asarray(gamma0, dtype))
    tau = lax.stop_gradient(jnp.asarray(tau, dtype))
    h = jnp.where(valid, h, jnp.zeros_like(h))  # keep invalid entries finite
    count = (jnp.sum(valid) if count is None else jnp.asarray(count)).astype(dtype)
    if solver == "mirror":
        gamma = mirror_solver.mirror_margins(JaxOps, h, valid, count, gamma0=gamma0, tau=tau, iters=iters)
    else:
        if plan is None:
            raise ValueError("the exact solver needs its static iteration plan (iteration_plan(gamma0, tau))")
        # float64 where JAX allows it (x64 enabled): the KKT multiplier's rounding reaches the margins
        # amplified by 1 + γ0/τ, so float32 solves are only ~eps32·(1 + γ0/τ) accurate (as torch does)
        wide = jnp.float64 if jax.config.jax_enable_x64 else dtype
        u = exact_log_margins(h.astype(wide), valid, count.astype(wide), gamma0=jnp.where(gamma0 > 0, gamma0, 1.0).astype(wide),
                              tau=tau.astype(wide), plan=plan)
        gamma = gamma0 * jnp.exp(u).astype(dtype)
    # γ0 = 0: the exact solver's margins are 0; the mirror's are γ0·N·p, so a NaN gap propagates (as the spec)
    keep = valid if solver == "mirror" else valid & (gamma0 > 0)
    return jnp.where(keep, gamma, jnp.zeros_like(gamma))


def solve_all(h, gamma0, tau, *, solver: str, iters: int, plan=None):
    """Margins of every entry of ``h`` (batch mode): :func:`solve` with every entry valid, except that the
    mirror solver on a CPU runs as one call of the compiled kernel (:mod:`gammapo_jax._cpu_kernel`)
    when it is available (decided here, at trace time, and part of the jit cache key)."""
    kernel = solver == "mirror" and _cpu_kernel.usable(h.dtype)
    return _solve_all(h, gamma0, tau, solver=solver, iters=iters, kernel=kernel, plan=plan)


@functools.partial(jax.jit, static_argnames=("solver", "iters", "kernel", "plan"))
def _solve_all(h, gamma0, tau, *, solver: str, iters: int, kernel: bool, plan):
    valid = jnp.ones(h.shape, dtype=bool)

    def lax_path(h, gamma0, tau):
        return solve(h, valid, gamma0, tau, solver=solver, iters=iters, plan=plan)

    if not kernel:
        return lax_path(h, gamma0, tau)

    def kernel_path(h, gamma0, tau):
        return _cpu_kernel.mirror(lax.stop_gradient(h), lax.stop_gradient(gamma0), lax.stop_gradient(tau), iters=iters)

    dtype = h.dtype
    return _cpu_kernel.on_cpu(kernel_path, lax_path, h, jnp.asarray(gamma0, dtype), jnp.asarray(tau, dtype))


def calibrate_margins(gaps, *, gamma0: float, tau: float, solver: str = "exact", iters: int = 20,
                      check_values: bool = True):
    r"""Per-pair target margins γ for a calibration set of reward gaps (JAX; see the spec).

    Solves :math:`\min_{p\in\Delta_M} \frac1M\sum_i -\log\sigma(h_i - \gamma_0 M p_i) + \tau\sum_i p_i\log(M p_i)`
    and returns :math:`\gamma = \gamma_0 M p` (:func:`gammapo_spec.calibrate_margins`). The result
    is ``stop_gradient``-ed; the function works under ``jax.jit`` (hyper-parameters are Python
    numbers, hence static) and ``jax.vmap`` (over a leading batch of gap sets).

    Args:
        gaps: ``[M]`` reward gaps (M ≥ 1); float64/float32 compute in their dtype, half in float32.
        gamma0: γ0 ≥ 0; tau: τ > 0; solver: ``"exact"`` (the minimiser, default) or ``"mirror"``
            (the released arithmetic; warns outside its regime); iters: K ≥ 1 (mirror).
        check_values: raise on non-finite gaps when the values are concrete (skipped under
            ``jax.jit``/``jax.vmap``, where NaN propagates to every margin as in the reference).

    Returns:
        ``[M]`` margins ≥ 0 with mean γ0.

    Raises:
        ConfigError: ``gamma0 < 0``, ``tau <= 0``, an unknown solver, ``iters < 1``.
        InputError: gaps not 1-D, empty, or (eagerly) non-finite.

    Example:
        >>> import jax.numpy as jnp
        >>> from gammapo_jax import calibrate_margins
        >>> gamma = calibrate_margins(jnp.array([2.0, 0.5, -1.0]), gamma0=1.0, tau=1.0)
        >>> [round(float(g), 4) for g in gamma], gamma.dtype.name
        ([1.2806, 0.9621, 0.7573], 'float32')
    """
    check_calibration_args(gamma0, tau, solver, iters)
    h = to_jax(gaps)
    check_gaps_shape(h.shape)
    h = h.astype(compute_dtype(h))
    if check_values:
        ok = concrete_all(lambda: jnp.all(jnp.isfinite(h)))
        if ok is not None:
            check_finite("gaps", ok)
    plan = iteration_plan(float(gamma0), float(tau))
    return solve_all(h, gamma0, tau, solver=solver, iters=iters, plan=plan)


def kkt_residual(gaps, margins, *, gamma0: float, tau: float):
    r"""The KKT residual of :func:`gammapo_spec.kkt_residual` on JAX arrays (a 0-d array).

    With :math:`u_i = \log(\gamma_i/\gamma_0)` and :math:`s_i = \tau(1+u_i) + \gamma_0\sigma(\gamma_i - h_i)`:
    :math:`\max(\max_i|s_i - \bar s|,\; |\frac1M\sum_i e^{u_i} - 1|)`.
    """
    h = jnp.asarray(gaps)
    u = jnp.log(jnp.asarray(margins) / gamma0)
    s = tau * (1.0 + u) + gamma0 * _sigmoid(gamma0 * jnp.exp(u) - h)
    stationarity = jnp.max(jnp.abs(s - jnp.mean(s)))
    feasibility = jnp.abs(jnp.exp(jax.nn.logsumexp(u) - math.log(h.shape[0])) - 1.0)
    return jnp.maximum(stationarity, feasibility)
