r"""The one shape of every method on JAX arrays: :func:`init` and :func:`step` of :mod:`gammapo_spec.methods`.

The same :class:`~gammapo_spec.methods.Pairs` (a ``NamedTuple``, so a pytree), the spec's config
classes (frozen and hashable: pass them as static arguments) and the spec's dispatch
(:class:`~gammapo_spec.methods.MethodOps`), run on this backend's functions:
:func:`gammapo_jax.gamma_po_loss`, :func:`gammapo_jax.beta_dpo.beta_dpo_step` and the ops of
:mod:`gammapo_jax.epsilon_dpo`. States are pytrees, returned never mutated. The data-parallel hooks
(``gather=``, ``axis_name=``) are those of the functions themselves; ``step`` runs on one shard's batch.

Example:
    >>> import jax.numpy as jnp, gammapo_spec as S, gammapo_jax as J
    >>> pairs = J.Pairs(jnp.array([-1.0, -2.0]), jnp.array([-3.0, -2.0]), jnp.array([-2.0, -2.0]),
    ...                 jnp.array([-2.0, -2.0]))
    >>> cfg = S.BetaDPOConfig(beta0=0.1, alpha=0.5, rho=1.0)
    >>> out, state = J.step(cfg, J.init(cfg), pairs)
    >>> round(float(out.loss), 5), int(state.step)
    (0.62589, 1)
"""

from __future__ import annotations

from typing import Any

from gammapo_spec.methods import MethodOps, Pairs

from . import beta_dpo, epsilon_dpo
from ._loss import gamma_po_loss
from ._state import init_state

__all__ = ["Pairs", "init", "step"]

_OPS = MethodOps(gamma_po_loss, init_state, beta_dpo, epsilon_dpo)


def init(config, seed: int = 0) -> Any:
    """:func:`gammapo_spec.init` on this backend: the method's initial state as a pytree.

    Raises:
        ConfigError, StateError: as the reference.
    """
    return _OPS.init(config, seed)


def step(config, state, pairs: Pairs) -> tuple[Any, Any]:
    """:func:`gammapo_spec.step` on JAX arrays: ``(output, new_state)`` of the method ``config`` chooses,
    in the reference's order (for ε-DPO: steps, loss with the current β, accumulate, then the β update).

    Raises:
        ConfigError, InputError, StateError: as the reference, same class and message.
    """
    return _OPS.step(config, state, pairs)
