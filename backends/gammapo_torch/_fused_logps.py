r"""Chunked per-sequence log-probs through an LM head, without the full ``[rows, V]`` logits.

For token rows :math:`x_r \in \mathbb R^H` (final hidden states), an LM head :math:`W \in \mathbb
R^{V\times H}` (bias :math:`b`), labels :math:`y_r` and the sequence :math:`s(r)` each row belongs to:

.. math::

    z_r = W x_r + b,\qquad \ell_r = z_{r,y_r} - \operatorname{logsumexp}_v z_{r,v},\qquad
    \text{logp}_s = \sum_{r:\,s(r)=s} \ell_r .

**Forward** (no graph): rows are processed ``chunk_size`` at a time; each chunk's logits live only
until its target logit and its ``logsumexp`` (computed in place) are read, so the extra memory is
one ``chunk × V`` buffer instead of ``O(rows · V)``. The per-row logsumexp is kept for pass 2.

**Backward** (the second pass, again one ``chunk × V`` buffer, updated in place): with
:math:`g_s = \partial\mathcal L/\partial\,\text{logp}_s` (the incoming gradient, one scalar per
sequence), the logits of each chunk are recomputed and

.. math::

    \frac{\partial\mathcal L}{\partial z_r} = g_{s(r)}\,\big(e_{y_r} - \operatorname{softmax}(z_r)\big),\quad
    \frac{\partial\mathcal L}{\partial x_r} = W^\top \frac{\partial\mathcal L}{\partial z_r},\quad
    \frac{\partial\mathcal L}{\partial W} \mathrel{+}= \Big(\frac{\partial\mathcal L}{\partial z}\Big)^{\!\top}_{\text{chunk}} x_\text{chunk},\quad
    \frac{\partial\mathcal L}{\partial b} \mathrel{+}= \sum_{r\in\text{chunk}} \frac{\partial\mathcal L}{\partial z_r}.

Half-precision inputs (bfloat16/float16) multiply in their own dtype and take the softmax, the
log-probs and the gradient accumulators in float32 (gradients are returned in each input's dtype).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

__all__ = ["chunked_row_logps"]

_HALF = (torch.bfloat16, torch.float16)


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in _HALF else dtype


def _chunk_logits(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x W^T + b`` in the accumulation dtype (float32 for half inputs)."""
    z = x @ weight.t() if bias is None else torch.addmm(bias, x, weight.t())
    return z.to(_acc_dtype(z.dtype))


def _logsumexp_(z: torch.Tensor) -> torch.Tensor:
    """Row-wise logsumexp that overwrites ``z`` (no second ``[rows, V]`` buffer, unlike ``torch.logsumexp``)."""
    top = z.amax(dim=1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    return z.sub_(top).exp_().sum(dim=1).log_() + top.squeeze(1)


class _ChunkedLogps(torch.autograd.Function):
    """Forward: chunked sums of token log-probs per sequence; backward: chunked recomputation."""

    @staticmethod
    def forward(ctx, x, weight, bias, labels, seq_index, n_seq, chunk_size):  # noqa: D102
        acc = _acc_dtype(x.dtype)
        logps = torch.zeros(n_seq, dtype=acc, device=x.device)
        lse = torch.empty(x.shape[0], dtype=acc, device=x.device)  # kept for pass 2: one number per row
        for start in range(0, x.shape[0], chunk_size):
            stop = start + chunk_size
            z = _chunk_logits(x[start:stop], weight, bias)
            target = z.gather(1, labels[start:stop, None]).squeeze(1)
            lse[start:stop] = _logsumexp_(z)
            logps.index_add_(0, seq_index[start:stop], target - lse[start:stop])
            del z
        ctx.save_for_backward(x, weight, bias, labels, seq_index, lse)
        ctx.chunk_size = chunk_size
        return logps

    @staticmethod
    @once_differentiable  # pass 2 is not itself differentiable (no double backward)
    def backward(ctx, grad_logps):  # noqa: D102
        x, weight, bias, labels, seq_index, lse = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        acc = _acc_dtype(x.dtype)
        grad_x = torch.empty_like(x) if need_x else None
        grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_w else None
        grad_b = torch.zeros(weight.shape[0], dtype=acc, device=weight.device) if (need_b and bias is not None) else None
        g_rows = grad_logps.to(acc)[seq_index]  # g_{s(r)} for every row
        for start in range(0, x.shape[0], ctx.chunk_size):
            stop = start + ctx.chunk_size
            xc = x[start:stop]
            g = g_rows[start:stop, None]
            dz = _chunk_logits(xc, weight, bias)  # the chunk's one [rows, V] buffer, updated in place
            dz.sub_(lse[start:stop, None]).exp_()  # softmax(z), with the logsumexp of pass 1
            dz.mul_(-g)
            dz.scatter_add_(1, labels[start:stop, None], g)  # g (e_y - softmax(z))
            if grad_b is not None:
                grad_b += dz.sum(0)
            dz = dz.to(weight.dtype)
            if grad_x is not None:
                torch.matmul(dz, weight, out=grad_x[start:stop])
            if grad_w is not None:
                grad_w.addmm_(dz.t().to(acc), xc.to(acc))
            del dz
        grad_w = grad_w.to(weight.dtype) if grad_w is not None else None
        grad_b = grad_b.to(bias.dtype) if grad_b is not None else None
        return grad_x, grad_w, grad_b, None, None, None, None


def chunked_row_logps(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    seq_index: torch.Tensor,
    n_seq: int,
    chunk_size: int,
) -> torch.Tensor:
    """Per-sequence sums of token log-probs of rows ``x`` ``[R, H]`` (differentiable in x, W, b).

    Args:
        x: ``[R, H]`` hidden states of the scored tokens only.
        weight: ``[V, H]`` LM-head weight; bias: ``[V]`` or ``None``.
        labels: ``[R]`` int64 targets in ``[0, V)``.
        seq_index: ``[R]`` int64 sequence of each row, in ``[0, n_seq)``.
        n_seq: number of sequences; chunk_size: rows per chunk (≥ 1).

    Returns:
        ``[n_seq]`` summed log-probs (float32 for half inputs, else x's dtype).
    """
    return _ChunkedLogps.apply(x, weight, bias, labels, seq_index, n_seq, chunk_size)
