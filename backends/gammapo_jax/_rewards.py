r"""Input validation and the implicit rewards / reward gap on JAX arrays.

.. math::

    \text{reference-based:}\; u_w = \beta (c - c_\text{ref}),\; u_l = \beta (r - r_\text{ref});\qquad
    \text{SimPO:}\; u_w = \beta\, c / |y_w|,\; u_l = \beta\, r / |y_l|;\qquad h = u_w - u_l .

Validation reuses :mod:`gammapo_spec.validation` (same errors, same messages). Shape checks always
run; the value checks (``config.check_values``) run only on concrete values (see
:mod:`gammapo_jax._dtypes`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from gammapo_spec.config import GammaPOConfig
from gammapo_spec.validation import (
    LENGTH_FIELDS,
    LOGP_FIELDS,
    REFERENCE_FIELDS,
    as_real_array,
    check_finite,
    check_pair_shapes,
    check_real_dtype,
    check_positive,
    required_fields,
)

from ._dtypes import compute_dtype, concrete_all, to_jax

__all__ = ["prepare_inputs", "cast_inputs", "rewards_from_arrays", "implicit_rewards", "reward_gap"]

DIFFERENTIABLE_FIELDS = LOGP_FIELDS + REFERENCE_FIELDS


def prepare_inputs(config: GammaPOConfig, **inputs: Any) -> dict[str, jax.Array]:
    """Validate the per-pair inputs and return them as JAX arrays in their own dtypes.

    ``None`` arguments are dropped. Raises :class:`~gammapo_spec.InputError` as the reference.
    """
    arrays = {}
    for k, v in inputs.items():
        if v is None:
            continue
        if not isinstance(v, jax.Array):
            v = as_real_array(k, v)
        check_real_dtype(k, jnp.dtype(v.dtype).kind, jnp.dtype(v.dtype).name)
        arrays[k] = to_jax(v)
    check_pair_shapes(config, {k: a.shape for k, a in arrays.items()})
    if config.check_values:
        for name in required_fields(config):
            a = arrays[name]
            if name in LENGTH_FIELDS:
                ok = concrete_all(lambda: jnp.all(jnp.isfinite(a) & (a > 0)))
                if ok is not None:
                    check_positive(name, ok)
            else:
                ok = concrete_all(lambda: jnp.all(jnp.isfinite(a)))
                if ok is not None:
                    check_finite(name, ok)
    return arrays


def cast_inputs(x: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Cast to the compute dtype of the log-probs (dtype policy); lengths get ``stop_gradient``."""
    dt = compute_dtype(*(x.get(k) for k in DIFFERENTIABLE_FIELDS))
    out = {k: v.astype(dt) for k, v in x.items()}
    for k in LENGTH_FIELDS:
        if k in out:
            out[k] = jax.lax.stop_gradient(out[k])
    return out


def rewards_from_arrays(config: GammaPOConfig, x: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """``(u_w, u_l)`` from cast arrays (the spec's formulas and operation order)."""
    beta = config.beta
    if config.reference_free:
        return beta * x["chosen_logps"] / x["chosen_lengths"], beta * x["rejected_logps"] / x["rejected_lengths"]
    return (
        beta * (x["chosen_logps"] - x["ref_chosen_logps"]),
        beta * (x["rejected_logps"] - x["ref_rejected_logps"]),
    )


def implicit_rewards(
    config: GammaPOConfig,
    *,
    chosen_logps,
    rejected_logps,
    ref_chosen_logps=None,
    ref_rejected_logps=None,
    chosen_lengths=None,
    rejected_lengths=None,
) -> tuple[jax.Array, jax.Array]:
    r"""The implicit rewards :math:`(u_w, u_l)` (:func:`gammapo_spec.implicit_rewards`), differentiable.

    Args:
        config: selects the family and β.
        chosen_logps, rejected_logps: ``[N]`` policy log-probs; ref_*: ``[N]`` reference log-probs
            (reference-based losses); chosen_lengths, rejected_lengths: ``[N]`` lengths (SimPO, R-DPO).

    Returns:
        ``(chosen_rewards, rejected_rewards)`` in the compute dtype (float64/float32; half → float32).

    Raises:
        InputError: missing, unexpected, mismatched inputs; non-finite values (eagerly only).

    Example:
        >>> import jax.numpy as jnp
        >>> from gammapo_spec import GammaPOConfig
        >>> from gammapo_jax import implicit_rewards
        >>> cfg = GammaPOConfig(loss="simpo", beta=2.0)
        >>> [r.tolist() for r in implicit_rewards(cfg, chosen_logps=jnp.array([-4.0]),
        ...     rejected_logps=jnp.array([-9.0]), chosen_lengths=jnp.array([2]), rejected_lengths=jnp.array([3]))]
        [[-4.0], [-6.0]]
    """
    x = prepare_inputs(
        config,
        chosen_logps=chosen_logps,
        rejected_logps=rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
    )
    return rewards_from_arrays(config, cast_inputs(x))


def reward_gap(
    config: GammaPOConfig,
    *,
    chosen_logps,
    rejected_logps,
    ref_chosen_logps=None,
    ref_rejected_logps=None,
    chosen_lengths=None,
    rejected_lengths=None,
) -> jax.Array:
    r"""The reward gap :math:`h = u_w - u_l` (:func:`gammapo_spec.reward_gap`), differentiable.

    Arguments, errors and dtype as :func:`implicit_rewards`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gammapo_spec import GammaPOConfig
        >>> from gammapo_jax import reward_gap
        >>> cfg = GammaPOConfig(loss="gamma-dpo", beta=0.5)
        >>> reward_gap(cfg, chosen_logps=jnp.array([-3.0, -5.0]), rejected_logps=jnp.array([-6.0, -4.0]),
        ...            ref_chosen_logps=jnp.array([-4.0, -5.0]), ref_rejected_logps=jnp.array([-5.0, -5.0])).tolist()
        [1.0, -0.5]
    """
    u_w, u_l = implicit_rewards(
        config,
        chosen_logps=chosen_logps,
        rejected_logps=rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
    )
    return u_w - u_l
