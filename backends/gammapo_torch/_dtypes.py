r"""The dtype policy of the torch backend, and conversion of array-likes to tensors.

Policy (shared by every gammapo backend, :mod:`gammapo_spec.dtype_policy`):

* float64 inputs compute in float64;
* float32 inputs compute in float32;
* half inputs (``bfloat16``, ``float16``) are *upcast*: rewards, gaps, calibration, per-pair losses
  and their mean are computed in float32, and the outputs are float32;
* mixed inputs promote (any float64 input makes the step float64); integer inputs (lengths) take
  part only as values, never in the choice of dtype; an op whose inputs are all integers or plain
  Python numbers computes in float64, like the reference.

Gradients flow back to each input in that input's own dtype (autograd casts them).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gammapo_spec.dtype_policy import compute_dtype as spec_compute_dtype

__all__ = ["compute_dtype", "as_tensor", "DTYPES"]

#: The dtype names :func:`gammapo_torch.asarray` accepts.
DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def compute_dtype(*values: Any) -> torch.dtype:
    """The dtype a step computes in, given its inputs (tensors or ``None``): see the module docstring.

    Example:
        >>> import torch
        >>> compute_dtype(torch.ones(2, dtype=torch.bfloat16), None)
        torch.float32
        >>> compute_dtype(torch.ones(2), torch.ones(2, dtype=torch.float64))
        torch.float64
    """
    names = {str(v.dtype).removeprefix("torch.") for v in values if isinstance(v, torch.Tensor) and v.is_floating_point()}
    computed = {DTYPES[spec_compute_dtype(name)] for name in names}  # the spec's table, per input
    if not computed:
        return torch.float64
    return torch.float64 if torch.float64 in computed else torch.float32


def as_tensor(x: Any, device: torch.device | None = None) -> torch.Tensor:
    """``x`` as a tensor on ``device`` without changing a tensor's dtype.

    Tensors are moved (not copied when already there); NumPy arrays keep their dtype; Python
    numbers and lists become float64 (or int64 for integers), as NumPy would make them.
    """
    if isinstance(x, torch.Tensor):
        return x if device is None or x.device == device else x.to(device)
    return torch.as_tensor(np.asarray(x), device=device)
