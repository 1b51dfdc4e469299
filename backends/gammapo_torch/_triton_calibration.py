r"""A fused Triton kernel for the mirror calibration: every iteration in one launch.

The released code spends the calibration in kernel launches: about 17 small kernels per mirror
iteration, 20 iterations, plus a device→host copy. Here one Triton program holds the whole
calibration set in registers (a block of ``next_power_of_2(L)`` lanes, L ≤ :data:`MAX_FUSED`), runs
the K − 1 updates of :func:`gammapo_spec.mirror_solver.mirror_margins` with the same arithmetic
(the max-shifted logsumexp and p = exp(log p) of its written decision, including the masked
candidate slots of queue mode, whose count is read on the device from a 0-dim tensor), and writes
the margins once:

.. math::

    g_i = \tau (1 + \log(M (p_i + \epsilon))) + \gamma_0 \sigma(\gamma_i - h_i),\quad
    w = \log p - \eta g,\quad \log p \leftarrow w - \max w - \log\textstyle\sum_j e^{w_j - \max w}.

Scalars (γ0, τ, η) are passed in a small tensor of the compute dtype, so float64 calibrations
compute in float64 (Triton would otherwise pass Python floats as float32); the tensor is filled on
the device, so a call never synchronises with the host.

Selection: :func:`use_fused` is true on CUDA tensors when Triton imports and L ≤ ``MAX_FUSED``; the
torch-ops path runs everywhere else. The kernel itself also runs under ``TRITON_INTERPRET=1`` on
CPU tensors, which is how the tests check it without a GPU.
"""

from __future__ import annotations

import math
import os

import torch

from gammapo_spec.mirror_solver import MIRROR_EPS, step_size

__all__ = ["MAX_FUSED", "HAVE_TRITON", "use_fused", "mirror_margins_fused"]

#: The largest calibration set (candidates + current gaps) the fused kernel takes in one program.
MAX_FUSED = 4096

try:  # Triton is optional: without it (or without CUDA) the torch-ops path runs.
    import triton
    import triton.language as tl

    HAVE_TRITON = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_TRITON = False


def use_fused(h: torch.Tensor) -> bool:
    """Whether :func:`mirror_margins_fused` handles ``h``: CUDA, Triton present, ``len(h) <= MAX_FUSED``.

    ``GAMMAPO_DISABLE_TRITON=1`` in the environment turns the kernel off (for A/B timing).
    """
    return (
        HAVE_TRITON
        and h.is_cuda
        and h.shape[0] <= MAX_FUSED
        and os.environ.get("GAMMAPO_DISABLE_TRITON", "0") != "1"
    )


if HAVE_TRITON:

    @triton.jit
    def _mirror_kernel(
        z_ptr,
        out_ptr,
        params_ptr,
        count_ptr,
        length,
        n_candidates,
        iters,
        HAS_COUNT: tl.constexpr,
        EPS: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        offs = tl.arange(0, BLOCK)
        inb = offs < length
        if HAS_COUNT:
            count = tl.load(count_ptr)
            valid = inb & ((offs < count) | (offs >= n_candidates))
        else:
            valid = inb
        h = tl.load(z_ptr + offs, mask=valid, other=0.0)
        gamma0 = tl.load(params_ptr)
        tau = tl.load(params_ptr + 1)
        eta = tl.load(params_ptr + 2)
        m = tl.sum(valid.to(tl.int32), axis=0).to(h.dtype)
        scale = gamma0 * m
        log_p = tl.where(valid, -tl.log(m), float("-inf"))
        for _ in range(iters - 1):
            p = tl.exp(log_p)
            gamma = scale * p
            grad = tau * (1.0 + tl.log(m * (p + EPS))) + gamma0 * tl.sigmoid(gamma - h)
            w = tl.where(valid, log_p - eta * grad, float("-inf"))
            top = tl.max(w, axis=0)
            log_p = w - (top + tl.log(tl.sum(tl.exp(w - top), axis=0)))
        gamma = scale * tl.exp(log_p)
        tl.store(out_ptr + offs, gamma, mask=inb)


def mirror_margins_fused(
    h: torch.Tensor,
    *,
    gamma0: float,
    tau: float,
    iters: int = 20,
    count: torch.Tensor | None = None,
    n_candidates: int = 0,
) -> torch.Tensor:
    """:func:`gammapo_torch._calibration.mirror_margins` in one Triton launch (same arguments and result).

    Raises:
        RuntimeError: Triton is not importable, or the set is longer than :data:`MAX_FUSED`.
    """
    if not HAVE_TRITON:
        raise RuntimeError("the fused calibration kernel needs triton, which is not installed")
    length = h.shape[0]
    if length > MAX_FUSED:
        raise RuntimeError(f"the fused calibration kernel takes at most {MAX_FUSED} gaps, got {length}")
    h = h.contiguous()
    out = torch.empty_like(h)
    # filled on the device (three fill kernels), not copied from the host: torch.tensor([...], device=cuda)
    # would be a synchronising host-to-device copy on every call
    params = torch.empty(3, dtype=h.dtype, device=h.device)
    for i, value in enumerate((gamma0, tau, step_size(tau))):
        params[i].fill_(value)
    count_arg = count.reshape(1).to(torch.int64) if count is not None else params
    block = max(16, 1 << math.ceil(math.log2(max(length, 1))))
    _mirror_kernel[(1,)](
        h,
        out,
        params,
        count_arg,
        length,
        n_candidates,
        iters,
        HAS_COUNT=count is not None,
        EPS=MIRROR_EPS,
        BLOCK=block,
        num_warps=4 if block <= 1024 else 8,
    )
    return out
