r"""Margin calibration on tensors: the mirror solver (sync-free, static shapes) and the exact solver.

The problem and both solvers are those of :mod:`gammapo_spec.calibration`:

.. math::

    \min_{p \in \Delta_M}\; \frac{1}{M}\sum_{i} -\log\sigma(h_i - \gamma_i)
        + \tau \sum_i p_i \log(M p_i), \qquad \gamma_i = \gamma_0 M p_i .

``solver="exact"`` (default) returns the minimiser through the fixed-work KKT root-find written once in
:mod:`gammapo_spec.kkt_solver` (this module only supplies the torch adapter, :class:`TorchOps`): no
host synchronisation, loop counts fixed by γ0/τ, masked like the mirror solver below, so it compiles
into one graph and runs under CUDA graphs. It computes in float64 whatever the gaps' dtype (the KKT
multiplier's rounding reaches the margins amplified by 1 + γ0/τ) and returns margins in the compute
dtype; on eager CPU tensors it is one call of the compiled kernel of :mod:`gammapo_torch._cpu_calibration`.

``solver="mirror"`` runs the released exponentiated-gradient arithmetic, K − 1 updates of

.. math::

    g_i = \tau\,(1 + \log(M (p_i + \epsilon))) + \gamma_0\,\sigma(\gamma_i - h_i),\qquad
    \log p \leftarrow w - \operatorname{logsumexp}(w),\quad w = \log p - \eta g,

with :math:`\eta = \min(0.5/\tau, 1)`, :math:`\epsilon = 10^{-10}`, and returns γ from the start of the
last iteration. It is the solver written once in :mod:`gammapo_spec.mirror_solver` (max-shifted
logsumexp, p = exp(log p)), run on :class:`TorchOps`, with *masking*: the calibration set may hold slots that do not take
part (queue mode samples a data-dependent number S of stored gaps; the set has a fixed number of
candidates and a mask), masked slots have :math:`\log p = -\infty`, and M is the number of valid
slots, kept as a 0-dim tensor. Shapes therefore never depend on data, nothing is read back to the
host, and the loop compiles into one graph. On CPU (float32/float64, no mask) the same iteration runs
(normalised with a constant shift, :func:`normaliser_shift`; equal to rounding) as one call of the compiled C++ kernel of :mod:`gammapo_torch._cpu_calibration` by default. On CUDA, sets of up to
:data:`~gammapo_torch._triton_calibration.MAX_FUSED` gaps run all iterations in one Triton kernel
launch (:mod:`gammapo_torch._triton_calibration`), with the torch-ops path elsewhere.

Dtypes follow :mod:`gammapo_torch._dtypes`: float64 gaps calibrate in float64, everything else in
float32. Margins never carry gradient (the gaps are detached first).
"""

from __future__ import annotations

import math

import torch

from gammapo_spec import mirror_solver
from gammapo_spec.calibration import check_calibration_args
from gammapo_spec.kkt_solver import NumpyOps, kkt_log_margins

from . import _cpu_calibration, _triton_calibration
from ._dtypes import compute_dtype
from ._validation import check_gaps

__all__ = ["calibrate_margins", "mirror_margins", "normaliser_shift", "exact_log_margins", "exact_margins", "solve"]


def normaliser_shift(length: int, gamma0: float, tau: float, dtype: torch.dtype) -> float | None:
    r"""The compiled C++ kernel's normaliser: a constant :math:`D` that makes :math:`\sum_j e^{w_j + D}`
    safe to evaluate, or ``None`` (then the kernel takes ``logsumexp``).

    The kernel (:mod:`gammapo_torch._cpu_calibration`) normalises each update with this shift instead
    of the maximum (one pass over the set instead of two); the torch ops path and the spec use the
    max-shifted logsumexp (:mod:`gammapo_spec.mirror_solver`), equal to rounding.

    With :math:`\rho = \eta\tau \le 1/2` and :math:`p \in [0, 1]`, every update argument
    :math:`w_i = \log p_i - \eta g_i` satisfies :math:`w_i \le 0`, and the slot with the largest
    :math:`p_i \ge 1/M` has :math:`w_i \ge -(1 + \rho)\log M - \rho - \eta\gamma_0`. So with
    :math:`D = 1.5 \log L + \eta\gamma_0 + 1.5` (L ≥ M slots) the largest exponent lies in
    :math:`[1, D]`: the sum is at least e and cannot underflow, and it cannot overflow while
    :math:`D + \log L` stays 8 below the log of the dtype's largest number. That holds unless
    :math:`\eta\gamma_0` is huge (above ~60 in float32, ~680 in float64); then this returns ``None``
    and the caller uses ``logsumexp`` (which finds the maximum with an extra pass).
    """
    shift = 1.5 * math.log(length) + mirror_solver.step_size(tau) * gamma0 + 1.5
    if shift + math.log(length) > math.log(torch.finfo(dtype).max) - 8.0:
        return None
    return shift


def _mask(h: torch.Tensor, count: torch.Tensor | None, n_candidates: int) -> tuple[torch.Tensor | None, torch.Tensor]:
    """``(valid, M)`` of a masked calibration set: the first ``count`` of ``n_candidates`` candidate slots
    and every later slot take part (``count=None``: all, ``valid=None``); M as a 0-dim tensor of h's dtype."""
    length = h.shape[0]
    if count is None:
        return None, torch.full((), float(length), dtype=h.dtype, device=h.device)
    idx = torch.arange(length, device=h.device)
    return (idx < count) | (idx >= n_candidates), (count + (length - n_candidates)).to(h.dtype)


def mirror_margins(
    h: torch.Tensor,
    *,
    gamma0: float,
    tau: float,
    iters: int = 20,
    count: torch.Tensor | None = None,
    n_candidates: int = 0,
) -> torch.Tensor:
    r"""The released mirror-descent arithmetic on torch ops, over a masked calibration set.

    The solver written once in :mod:`gammapo_spec.mirror_solver` (its numerics: max-shifted
    logsumexp, p = exp(log p), the compute dtype), on :class:`TorchOps`.

    Args:
        h: ``[L]`` gaps in the compute dtype. The first ``n_candidates`` slots are candidates of
            which only the first ``count`` take part; the remaining ``L − n_candidates`` always do.
        gamma0, tau, iters: as :func:`calibrate_margins` (not validated here).
        count: 0-dim int64 tensor, the number of valid candidates (``None``: all slots valid).
        n_candidates: number of candidate slots at the front of ``h``.

    Returns:
        ``[L]`` margins; masked slots hold 0. No host synchronisation, static shapes.

    Example:
        >>> import torch
        >>> mirror_margins(torch.tensor([2.0, 0.5, -1.0], dtype=torch.float64), gamma0=1.0, tau=1.0)
        tensor([1.2806, 0.9621, 0.7573], dtype=torch.float64)
    """
    valid, m = _mask(h, count, n_candidates)
    return mirror_solver.mirror_margins(TorchOps, h, valid, m, gamma0=gamma0, tau=tau, iters=iters)


class TorchOps:
    """The array adapter of :func:`gammapo_spec.kkt_solver.kkt_log_margins` for torch tensors."""

    exp, log, tanh, sigmoid, where = torch.exp, torch.log, torch.tanh, torch.sigmoid, torch.where
    minimum, maximum, sum, max, zeros = torch.minimum, torch.maximum, torch.sum, torch.amax, torch.zeros_like

    loop = staticmethod(NumpyOps.loop)  # a Python loop, as for NumPy

    @staticmethod
    def eps(x: torch.Tensor) -> float:
        return torch.finfo(x.dtype).eps


def exact_log_margins(
    h: torch.Tensor, *, gamma0: float, tau: float, count: torch.Tensor | None = None, n_candidates: int = 0
) -> torch.Tensor:
    r"""Log-ratios :math:`u_i = \log(\gamma_i/\gamma_0)` of the minimiser (γ0 > 0), masked like :func:`mirror_margins`.

    The shared fixed-work solver of :mod:`gammapo_spec.kkt_solver` on torch ops, in ``h``'s dtype:
    no host synchronisation, static shapes and loop counts (γ0/τ decides them), so it compiles with
    ``torch.compile(fullgraph=True)`` and can be captured in a CUDA graph. Masked slots hold −∞.
    """
    valid, m = _mask(h, count, n_candidates)
    return kkt_log_margins(TorchOps, h, valid, m, gamma0=gamma0, tau=tau)


def exact_margins(
    h: torch.Tensor, *, gamma0: float, tau: float, count: torch.Tensor | None = None, n_candidates: int = 0
) -> torch.Tensor:
    """The minimiser's margins γ = γ0 · exp(u) in ``h``'s dtype (masked slots 0; no validation)."""
    h = h.detach()
    if gamma0 == 0:
        return torch.zeros_like(h)
    return gamma0 * torch.exp(exact_log_margins(h, gamma0=gamma0, tau=tau, count=count, n_candidates=n_candidates))


def solve(
    h: torch.Tensor,
    *,
    gamma0: float,
    tau: float,
    solver: str,
    iters: int,
    count: torch.Tensor | None = None,
    n_candidates: int = 0,
) -> torch.Tensor:
    """Margins of a (possibly masked) calibration set in ``h``'s dtype: the dispatch of both solvers.

    The mirror solver runs the fused Triton kernel when :func:`_triton_calibration.use_fused` says so
    (CUDA, Triton importable, at most ``MAX_FUSED`` slots), the compiled CPU kernel of
    :mod:`gammapo_torch._cpu_calibration` on eager CPU tensors without a mask, else torch ops.
    Masked slots get 0.
    """
    h = h.detach()
    if solver == "mirror":
        if _triton_calibration.use_fused(h):
            return _triton_calibration.mirror_margins_fused(
                h, gamma0=gamma0, tau=tau, iters=iters, count=count, n_candidates=n_candidates
            )
        if count is None and _cpu_calibration.usable(h):
            shift = normaliser_shift(h.shape[0], gamma0, tau, h.dtype)
            return _cpu_calibration.mirror_margins(h, gamma0=gamma0, tau=tau, iters=iters, shift=shift)
        if count is None and torch.compiler.is_compiling() and _cpu_calibration.traced_usable(h):
            shift = normaliser_shift(h.shape[0], gamma0, tau, h.dtype)  # the kernel inside a compiled graph
            return torch.ops.gammapo.cpu_mirror(h, gamma0, tau, iters, shift is not None, 0.0 if shift is None else shift)
        return mirror_margins(h, gamma0=gamma0, tau=tau, iters=iters, count=count, n_candidates=n_candidates)
    # the exact solver computes in float64 (the KKT multiplier's rounding is amplified by 1 + γ0/τ: float32
    # leaves the margins only ~eps32·(1 + γ0/τ) relative accuracy) and returns the compute dtype
    h64 = h.to(torch.float64)
    if gamma0 > 0 and _cpu_calibration.usable(h64) and (count is None or count.is_cpu):  # eager CPU: one kernel call
        out = _cpu_calibration.exact_margins(h64, gamma0=gamma0, tau=tau, count=count, n_candidates=n_candidates)
    else:
        out = exact_margins(h64, gamma0=gamma0, tau=tau, count=count, n_candidates=n_candidates)
    return out.to(h.dtype)


def calibrate_margins(
    gaps,
    *,
    gamma0: float,
    tau: float,
    solver: str = "exact",
    iters: int = 20,
    check_values: bool = True,
) -> torch.Tensor:
    r"""Per-pair target margins γ for a calibration set of reward gaps (torch tensors).

    Same contract as :func:`gammapo_spec.calibrate_margins` (the objective and both solvers are in this
    module's docstring). The result is detached (margins are constants for the gradient), on the
    gaps' device, in the compute dtype: float64 for float64 gaps, float32 otherwise (bfloat16 and
    float16 gaps are upcast).

    Args:
        gaps: ``[M]`` reward gaps (a tensor, or anything ``numpy.asarray`` takes).
        gamma0: γ0 ≥ 0, the mean margin.
        tau: τ > 0, the entropy weight.
        solver: ``"exact"`` (the minimiser, default) or ``"mirror"`` (the released arithmetic); both
            sync-free with static work (see the module docstring).
        iters: K ≥ 1 mirror iterations (ignored by ``"exact"``).
        check_values: raise on non-finite gaps (one host sync; skipped under ``torch.compile``).

    Returns:
        ``[M]`` margins, each ≥ 0, with mean γ0 (to rounding).

    Raises:
        ConfigError: ``gamma0 < 0``, ``tau <= 0``, an unknown solver, ``iters < 1`` (field named).
        InputError: gaps not 1-D, empty, or non-finite (field ``"gaps"``).

    Example:
        >>> import torch
        >>> from gammapo_torch import calibrate_margins
        >>> gamma = calibrate_margins(torch.tensor([2.0, 0.5, -1.0], dtype=torch.float64), gamma0=1.0, tau=1.0)
        >>> [round(v, 4) for v in gamma.tolist()], round(float(gamma.mean()), 12)
        ([1.2806, 0.9621, 0.7573], 1.0)
    """
    check_calibration_args(gamma0, tau, solver, iters)
    h = check_gaps(gaps, check_values)
    h = h.detach().to(compute_dtype(h))
    return solve(h, gamma0=float(gamma0), tau=float(tau), solver=solver, iters=iters)
