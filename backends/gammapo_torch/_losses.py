r"""The base losses as functions of :math:`z = h - m`, and the target margins, on tensors.

Same table and decisions as :mod:`gammapo_spec.losses` (ε = ``label_smoothing``):

========  ===========================================================================================
dpo …     :math:`(1-\varepsilon)\,\operatorname{softplus}(-z) + \varepsilon\,\operatorname{softplus}(z)`
robust    :math:`\big((1-\varepsilon)\operatorname{softplus}(-z) - \varepsilon\operatorname{softplus}(z)\big)/(1-2\varepsilon)`
hinge     :math:`\max(0,\; 1 - z)`
ipo       :math:`\big((z - \tfrac12)/\beta\big)^2`
========  ===========================================================================================

and :math:`m_i = m^\text{base}_i + (\gamma_i - \gamma_0)` with the base margin γ0 (SimPO),
:math:`\alpha(|y_w| - |y_l|)` (R-DPO) or 0. Softplus is ``logaddexp(z, 0)``: the reference's stable
formula with the exact derivative σ(z) (``torch.nn.functional.softplus`` returns z itself above a
threshold, off by up to 2e-9, too far for float64), never ``log(sigmoid(z))``; ``relu`` gives hinge
the subgradient 0 at z = 1, as the reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812

from gammapo_spec.config import GammaPOConfig

from ._dtypes import as_tensor, compute_dtype

__all__ = ["pair_losses", "target_margins", "base_margins"]


def _softplus(z: torch.Tensor) -> torch.Tensor:
    # log(e^z + e^0) = max(z, 0) + log1p(exp(-|z|)), the reference's formula, with the exact derivative
    # σ(z) everywhere (a clamp/abs decomposition would give the wrong one-sided derivative at z = 0)
    return torch.logaddexp(z, torch.zeros_like(z))


def pair_losses(config: GammaPOConfig, z) -> torch.Tensor:
    r"""The per-pair loss :math:`\ell(z)` of ``config.base_loss`` at z = h − m (no SFT term), differentiable.

    Computes in ``z``'s compute dtype (bfloat16 → float32).

    Example:
        >>> import math, torch
        >>> from gammapo_spec import GammaPOConfig
        >>> z = torch.tensor([0.0], dtype=torch.float64)
        >>> float(pair_losses(GammaPOConfig(loss="dpo", beta=0.1), z)[0]) == math.log(2)
        True
    """
    z = as_tensor(z)
    z = z.to(compute_dtype(z))
    eps = config.label_smoothing
    name = config.base_loss
    if name in ("dpo", "simpo", "rdpo"):
        return (1.0 - eps) * _softplus(-z) + eps * _softplus(z)
    if name == "robust":
        return ((1.0 - eps) * _softplus(-z) - eps * _softplus(z)) / (1.0 - 2.0 * eps)
    if name == "hinge":
        return F.relu(1.0 - z)
    if name == "ipo":
        return ((z - 0.5) / config.beta) ** 2
    raise AssertionError(name)  # unreachable: the config validated the name


def base_margins(
    config: GammaPOConfig, n: int, chosen_lengths=None, rejected_lengths=None, *, dtype=None, device=None
) -> torch.Tensor:
    r"""The loss's own target margin per pair: γ0 (SimPO), :math:`\alpha(|y_w| - |y_l|)` (R-DPO), else 0."""
    if config.base_loss == "rdpo":
        lw = as_tensor(chosen_lengths, device)
        ll = as_tensor(rejected_lengths, device)
        return config.rdpo_alpha * (lw.to(dtype) - ll.to(dtype))
    value = config.gamma0 if config.base_loss == "simpo" else 0.0
    return torch.full((n,), value, dtype=dtype, device=device)


def target_margins(
    config: GammaPOConfig, n: int, *, gamma=None, chosen_lengths=None, rejected_lengths=None
) -> torch.Tensor:
    r"""The per-pair target margins :math:`m_i = m^\text{base}_i + (\gamma_i - \gamma_0)` (detached).

    Same contract as :func:`gammapo_spec.target_margins`. The dtype and device follow the tensors
    given (``gamma``, then the lengths) under the dtype policy; with none given, float64 on CPU.

    Raises:
        ValueError: a ``gamma-`` loss without ``gamma`` (as the reference).

    Example:
        >>> import torch
        >>> from gammapo_spec import GammaPOConfig
        >>> target_margins(GammaPOConfig(loss="gamma-dpo", beta=1.0, gamma_beta_ratio=1.0), 2,
        ...                gamma=torch.tensor([0.5, 1.5]))
        tensor([-0.5000,  0.5000])
    """
    given = [v for v in (gamma, chosen_lengths, rejected_lengths) if isinstance(v, torch.Tensor)]
    device = given[0].device if given else None
    if config.dynamic_margins and gamma is None:
        raise ValueError(f"loss {config.loss!r} needs the calibrated gamma")
    g = as_tensor(gamma, device) if (config.dynamic_margins and gamma is not None) else None
    lengths = [as_tensor(v, device) for v in (chosen_lengths, rejected_lengths) if v is not None]
    dtype = compute_dtype(*([g] if g is not None else []), *lengths)
    m = base_margins(config, n, chosen_lengths, rejected_lengths, dtype=dtype, device=device)
    if g is not None:
        m = m + (g.to(dtype) - config.gamma0)
    return m.detach()
