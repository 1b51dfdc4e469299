r"""The mirror calibration solver, written once for every backend: the released arithmetic.

``solver="mirror"`` is the released code's exponentiated-gradient iteration on the probability simplex
(:mod:`gammapo_spec.calibration`; the paper's Algorithm 1), step for step:

.. code-block:: text

    log p ← −log M;  η = min(0.5/τ, 1);  ε = 1e-10
    repeat K − 1 times:
        p = exp(log p);  γ = γ0 · M · p
        g_i = τ (1 + log(M (p_i + ε))) + γ0 · σ(γ_i − h_i)
        w = log p − η g
        log p ← w − logsumexp(w)
    return γ0 · M · exp(log p)       # the γ of the start of the released code's last iteration

:func:`mirror_margins` runs it over the array adapter of :mod:`gammapo_spec.kkt_solver`
(:class:`~gammapo_spec.kkt_solver.NumpyOps` for the reference; ``TorchOps`` and ``JaxOps`` in the
backends): the spec, the torch ops path and the JAX ``lax`` path are this one function. It works
on a *masked* calibration set (queue mode keeps static shapes with a fixed number of candidate slots
of which a data-dependent number take part): a masked slot has log p = −∞ (so p = 0 and γ = 0) and
M, the number of valid slots, is a 0-d array. Nothing is read back to the host and the number of
updates is static, so it runs eagerly, under ``torch.compile(fullgraph=True)``, in a CUDA graph and
under ``jax.jit``.

The numerics, as one written decision
-------------------------------------
* **Normaliser**: the max-shifted logsumexp, :math:`\operatorname{logsumexp}(w) = t + \log\sum_j
  e^{w_j - t}` with :math:`t = \max_j w_j` over the valid slots. It is the one choice that is safe for
  every input in every dtype: the largest term is :math:`e^0 = 1`, so the sum neither underflows nor
  overflows, whatever γ0, τ and M. A constant shift D (one reduction per update instead of two) is
  only safe while :math:`\log M + \eta\gamma_0` stays below a dtype bound (about 40–60 in float32), so
  it needs a second, fallback path chosen per setting (or by ``lax.cond`` at run time); the
  compiled C++ kernels keep that trade (below), the shared path does not.
* **Iterate**: p = exp(log p) (the reference's), not the e/S of the normaliser's terms: the two are
  equal up to rounding, but that rounding shows in the unconverged regime (κ > 0.5, τ < 0.5).
* **Dtype**: everything (log-weights included) in the compute dtype of the dtype policy: float64
  for float64 gaps, float32 otherwise. The step size η is computed once, by :func:`step_size`.

Fast paths held to the conformance tolerances rather than to this arithmetic: the Triton kernel
(``gammapo_torch._triton_calibration``) runs exactly these operations in registers; the compiled C++
kernels (``gammapo_native``, the default mirror path on CPU for torch and JAX) normalise with the
constant shift :math:`D = 1.5\log L + \eta\gamma_0 + 1.5` where it is safe (``logsumexp``
otherwise) and, in float32, take the next p as e/S.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

__all__ = ["MIRROR_EPS", "step_size", "mirror_margins"]

#: The ε inside the log of the released mirror-descent gradient.
MIRROR_EPS = 1e-10


def step_size(tau, minimum=None):
    r"""The mirror step :math:`\eta = \min(0.5/\tau, 1)` (so that :math:`\eta\tau \le 1/2`).

    ``tau`` is a Python number (the result is a float) or a 0-d array, then ``minimum`` is the
    backend's elementwise minimum (``jnp.minimum``: a traced τ).

    Example:
        >>> step_size(10.0), step_size(0.25)
        (0.05, 1.0)
    """
    if isinstance(tau, Real):
        return min(0.5 / float(tau), 1.0)
    return minimum(0.5 / tau, 1.0)


def mirror_margins(ops: Any, h, valid, count, *, gamma0, tau, iters: int):
    r"""Margins γ after the released mirror iteration with K = ``iters`` (K − 1 updates), masked.

    Args:
        ops: the array adapter (:class:`~gammapo_spec.kkt_solver.NumpyOps` or a backend's).
        h: ``[L]`` gaps in the compute dtype (finite in masked slots; a NaN in a valid slot propagates).
        valid: ``[L]`` bool, the slots that take part, or ``None`` (all).
        count: M, the number of valid slots, as a 0-d array of ``h``'s dtype.
        gamma0, tau: γ0 ≥ 0, τ > 0 (not validated here): Python floats or 0-d arrays of ``h``'s dtype.
        iters: K ≥ 1 (static).

    Returns:
        ``[L]`` margins γ0·M·p; masked slots hold 0.

    Example:
        >>> import numpy as np
        >>> from gammapo_spec.kkt_solver import NumpyOps
        >>> h = np.array([2.0, 0.5, -1.0])
        >>> np.round(mirror_margins(NumpyOps, h, None, np.float64(3), gamma0=1.0, tau=1.0, iters=20), 4).tolist()
        [1.2806, 0.9621, 0.7573]
    """
    eta = step_size(tau, ops.minimum)
    zero = ops.zeros(h)  # not h * 0: a NaN gap must not reach log p before the first update
    neg_inf = zero - math.inf

    def masked(x):
        return x if valid is None else ops.where(valid, x, neg_inf)

    scale = gamma0 * count

    def update(log_p):
        p = ops.exp(log_p)
        grad = tau * (1.0 + ops.log(count * (p + MIRROR_EPS))) + gamma0 * ops.sigmoid(scale * p - h)
        w = masked(log_p - eta * grad)
        top = ops.max(w)
        return w - (top + ops.log(ops.sum(ops.exp(w - top))))

    log_p = ops.loop(iters - 1, update, masked(zero - ops.log(count)))
    return scale * ops.exp(log_p)

