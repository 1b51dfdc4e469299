r"""The base losses as functions of :math:`z = h - m`, and the target margins (JAX).

Same table and decisions as :mod:`gammapo_spec.losses`, with ε = ``label_smoothing``:

========  ===========================================================================================
dpo       :math:`(1-\varepsilon)\,\operatorname{softplus}(-z) + \varepsilon\,\operatorname{softplus}(z)`
simpo     same as dpo (SimPO's optional NLL term is added by the loss step)
rdpo      same as dpo
robust    :math:`\big((1-\varepsilon)\operatorname{softplus}(-z) - \varepsilon\operatorname{softplus}(z)\big)/(1-2\varepsilon)`
hinge     :math:`\max(0,\; 1 - z)`
ipo       :math:`\big((z - \tfrac12)/\beta\big)^2`
========  ===========================================================================================

Target margins: :math:`m_i = m^\text{base}_i + (\gamma_i - \gamma_0)` with the base margin γ0
(SimPO), :math:`\alpha(|y_w| - |y_l|)` (R-DPO) or 0, and γ stop-gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from gammapo_spec.config import GammaPOConfig

from ._dtypes import compute_dtype, to_jax

__all__ = ["softplus", "base_margins", "target_margins", "pair_losses"]


def softplus(z: jax.Array) -> jax.Array:
    r""":math:`\log(1 + e^z) = \max(z, 0) + \operatorname{log1p}(e^{-|z|})`, the spec's formula.

    Written as ``logaddexp(z, 0)``, which evaluates exactly that expression and whose derivative
    is σ(z) everywhere (differentiating the max/abs form directly gives 0 at z = 0).
    """
    return jnp.logaddexp(z, 0.0)


def base_margins(config: GammaPOConfig, n: int, chosen_lengths=None, rejected_lengths=None, *, dtype=None):
    r"""The loss's own margin: γ0 (SimPO), :math:`\alpha(|y_w| - |y_l|)` (R-DPO), else 0; ``[n]``."""
    dt = dtype or compute_dtype()
    if config.base_loss == "simpo":
        return jnp.full((n,), config.gamma0, dtype=dt)
    if config.base_loss == "rdpo":
        lw = jax.lax.stop_gradient(to_jax(chosen_lengths).astype(dt))
        ll = jax.lax.stop_gradient(to_jax(rejected_lengths).astype(dt))
        return config.rdpo_alpha * (lw - ll)
    return jnp.zeros((n,), dtype=dt)


def target_margins(config: GammaPOConfig, n: int, *, gamma=None, chosen_lengths=None, rejected_lengths=None):
    r"""Per-pair target margins :math:`m_i = m^\text{base}_i + (\gamma_i - \gamma_0)` (stop-gradient).

    Args:
        config: the loss configuration; n: the number of pairs N (static).
        gamma: ``[N]`` calibrated margins (required with the ``gamma-`` prefix, ignored without).
        chosen_lengths, rejected_lengths: ``[N]`` lengths (R-DPO only).

    Returns:
        ``[N]`` margins in the dtype of ``gamma`` (half upcast to float32), else JAX's default float.

    Raises:
        ValueError: a ``gamma-`` loss without ``gamma`` (the reference's message).

    Example:
        >>> import jax.numpy as jnp
        >>> from gammapo_spec import GammaPOConfig
        >>> from gammapo_jax import target_margins
        >>> cfg = GammaPOConfig(loss="gamma-dpo", beta=1.0, gamma_beta_ratio=1.0)
        >>> target_margins(cfg, 2, gamma=jnp.array([0.5, 1.5])).tolist()
        [-0.5, 0.5]
    """
    g = None if gamma is None else to_jax(gamma)
    dt = compute_dtype(g)
    m = base_margins(config, n, chosen_lengths, rejected_lengths, dtype=dt)
    if config.dynamic_margins:
        if g is None:
            raise ValueError(f"loss {config.loss!r} needs the calibrated gamma")
        m = m + (g.astype(dt) - config.gamma0)
    return jax.lax.stop_gradient(m)


def pair_losses(config: GammaPOConfig, z):
    r"""The per-pair loss :math:`\ell(z)` of ``config.base_loss`` (table above; no SFT term).

    Half inputs are upcast to float32; differentiable in z.

    Example:
        >>> import jax.numpy as jnp, math
        >>> from gammapo_spec import GammaPOConfig
        >>> from gammapo_jax import pair_losses
        >>> abs(float(pair_losses(GammaPOConfig(loss="dpo", beta=0.1), jnp.zeros(1))[0]) - math.log(2)) < 1e-7
        True
    """
    z = to_jax(z)
    z = z.astype(compute_dtype(z))
    eps = config.label_smoothing
    name = config.base_loss
    if name in ("dpo", "simpo", "rdpo"):
        if eps == 0:
            return softplus(-z)
        return (1.0 - eps) * softplus(-z) + eps * softplus(z)
    if name == "robust":
        return ((1.0 - eps) * softplus(-z) - eps * softplus(z)) / (1.0 - 2.0 * eps)
    if name == "hinge":
        return jax.nn.relu(1.0 - z)  # subgradient 0 at z = 1, as the spec
    if name == "ipo":
        return ((z - 0.5) / config.beta) ** 2
    raise AssertionError(name)  # unreachable: the config validated the name
