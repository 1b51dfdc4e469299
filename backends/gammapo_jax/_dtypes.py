r"""The dtype policy of the JAX backend, and the eager-only value checks.

Dtype policy (shared by every gammapo backend):

* float64 inputs compute in float64 (needs ``jax_enable_x64``; without it JAX has no float64
  arrays and everything is float32);
* float32 inputs compute in float32;
* half inputs (bfloat16, float16) are *upcast*: rewards, gaps, calibration, per-pair losses and
  their mean are computed in float32 and returned as float32;
* integer or Python-number inputs compute in JAX's default float dtype (float64 under x64,
  float32 otherwise).

The compute dtype of a loss step is decided by its log-prob inputs only; lengths (usually
integers) are cast to it.

Value checks (non-finite log-probs, non-positive lengths) need the *values*: they run when the
values are concrete (eager calls, including eager ``jax.grad``) and are skipped when the inputs
are abstract tracers (inside ``jax.jit``, ``jax.vmap``, ``shard_map``), where a Python exception
cannot depend on data. Shape checks always run: shapes are static under every transformation.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["HALF_DTYPES", "compute_dtype", "default_float", "concrete_all", "to_jax"]

#: Half-precision dtypes, upcast to float32 for all arithmetic.
HALF_DTYPES = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


def default_float() -> jnp.dtype:
    """JAX's default float dtype right now: float64 under ``jax_enable_x64``, else float32."""
    return jnp.dtype(jnp.float64) if jax.config.jax_enable_x64 else jnp.dtype(jnp.float32)


def compute_dtype(*arrays: Any) -> jnp.dtype:
    """The dtype the policy computes in for ``arrays`` (``None`` entries are ignored).

    Example:
        >>> import jax.numpy as jnp
        >>> compute_dtype(jnp.ones(2, jnp.bfloat16), None).name
        'float32'
    """
    dtypes = [jnp.result_type(a) for a in arrays if a is not None]
    if not dtypes:
        return default_float()
    dt = jnp.dtype(jnp.result_type(*dtypes))
    if dt in HALF_DTYPES:
        return jnp.dtype(jnp.float32)
    if not jnp.issubdtype(dt, jnp.floating):
        return default_float()
    return dt


def concrete_all(predicate: Callable[[], jax.Array]) -> bool | None:
    """``bool(predicate())`` if the values are concrete, ``None`` if they are abstract tracers.

    Eager calls (and eager ``jax.grad``, whose tracers carry concrete values) get a real answer;
    under ``jax.jit``/``jax.vmap``/``shard_map`` the predicate cannot be turned into a Python bool
    and the check is skipped.
    """
    try:
        return bool(predicate())
    except jax.errors.ConcretizationTypeError:
        return None


def to_jax(x: Any) -> jax.Array:
    """``x`` as a JAX array, dtype kept (JAX arrays and tracers pass through; lists, NumPy arrays
    and scalars are converted, float64 becoming float32 when ``jax_enable_x64`` is off)."""
    if isinstance(x, jax.Array):
        return x
    return jnp.asarray(np.asarray(x))
