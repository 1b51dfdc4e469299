r"""Moving values in and out of the torch backend, and the loss with its autograd gradient.

The five interoperability functions of :mod:`gammapo_spec.interop`, on tensors:

* :func:`asarray` / :func:`to_numpy`;
* :func:`state_to_dict` / :func:`state_from_dict` (in :mod:`gammapo_torch._state`): the checkpoint
  form, ``{"buffer": tensor, "size": int, "head": int, "step": int, "seed": int}``;
* :func:`gamma_po_loss_and_grad`: the loss step plus ``torch.autograd.grad`` of its scalar loss with
  respect to the log-prob inputs, keyed like :func:`gammapo_spec.loss_vjp`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gammapo_spec.config import GammaPOConfig
from gammapo_spec.gamma_po import LossOutput
from gammapo_spec.validation import LOGP_FIELDS, REFERENCE_FIELDS

from ._dtypes import DTYPES
from ._gamma_po import gamma_po_loss
from ._state import QueueState

__all__ = ["asarray", "to_numpy", "gamma_po_loss_and_grad"]


def asarray(x: Any, dtype: str = "float64", *, device: Any = None) -> torch.Tensor:
    """A tensor of ``x`` in ``dtype`` ("float64", "float32", "bfloat16" or "float16") on ``device``.

    Raises:
        ValueError: an unsupported dtype name.

    Example:
        >>> asarray([1.0, 2.0], "bfloat16")
        tensor([1., 2.], dtype=torch.bfloat16)
    """
    if dtype not in DTYPES:
        raise ValueError(f"the torch backend supports dtypes {sorted(DTYPES)}, got {dtype!r}")
    if isinstance(x, torch.Tensor):
        return x.to(device=device if device is not None else x.device, dtype=DTYPES[dtype])
    return torch.as_tensor(np.asarray(x, dtype=np.float64), device=device).to(DTYPES[dtype])


def to_numpy(x: Any) -> np.ndarray:
    """``x`` (a tensor on any device, in any dtype, with or without grad) as a float64 NumPy array."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def gamma_po_loss_and_grad(
    config: GammaPOConfig, state: QueueState | None, **inputs: Any
) -> tuple[LossOutput, QueueState | None, dict[str, torch.Tensor]]:
    """:func:`gamma_po_loss` plus the autograd gradient of ``output.loss`` w.r.t. each log-prob input.

    The log-prob inputs are detached copies that require grad (the caller's tensors are untouched);
    each gradient has its input's dtype and device.

    Returns:
        ``(output, new_state, grads)``, ``grads`` keyed as :func:`gammapo_spec.loss_vjp`
        (``chosen_logps``, ``rejected_logps``, and the two reference log-probs for reference-based losses).

    Example:
        >>> import torch
        >>> from gammapo_spec import GammaPOConfig
        >>> z = torch.zeros(1, dtype=torch.float64)
        >>> _, _, g = gamma_po_loss_and_grad(GammaPOConfig(loss="dpo", beta=1.0), None, chosen_logps=z,
        ...                                  rejected_logps=z, ref_chosen_logps=z, ref_rejected_logps=z)
        >>> {k: float(v[0]) for k, v in g.items()}
        {'chosen_logps': -0.5, 'rejected_logps': 0.5, 'ref_chosen_logps': 0.5, 'ref_rejected_logps': -0.5}
    """
    wrt = LOGP_FIELDS if config.reference_free else LOGP_FIELDS + REFERENCE_FIELDS
    leaves = {}
    for name in wrt:
        value = inputs.get(name)
        if value is None:
            continue
        t = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
        if t.is_floating_point():
            leaves[name] = t.detach().requires_grad_(True)
    call = {**inputs, **leaves}
    with torch.enable_grad():
        out, new_state = gamma_po_loss(config, state, **call)
        names = [k for k in wrt if k in leaves]
        grads = torch.autograd.grad(out.loss, [leaves[k] for k in names], allow_unused=True)
    result = {k: (g if g is not None else torch.zeros_like(leaves[k])) for k, g in zip(names, grads)}
    detached = LossOutput(**{**out.__dict__, "loss": out.loss.detach(), "losses": out.losses.detach()})
    return detached, new_state, result
