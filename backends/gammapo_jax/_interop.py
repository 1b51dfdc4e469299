"""Moving arrays in and out of the JAX backend (the interop half of the Backend protocol)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._dtypes import default_float

__all__ = ["DTYPES", "asarray", "to_numpy"]

#: The dtype names :func:`asarray` accepts.
DTYPES = ("float64", "float32", "bfloat16")


def asarray(x: Any, dtype: str = "float64") -> jax.Array:
    """A JAX array of ``x`` in ``dtype`` (``"float64"``, ``"float32"`` or ``"bfloat16"``).

    ``"float64"`` needs ``jax_enable_x64``; without it the result is float32 (JAX has no float64
    arrays then), which callers can see from the result's dtype.

    Raises:
        ValueError: an unknown dtype name.

    Example:
        >>> from gammapo_jax import asarray
        >>> asarray([1.0, 2.0], "bfloat16").dtype.name
        'bfloat16'
    """
    if dtype not in DTYPES:
        raise ValueError(f"the jax backend supports dtypes {sorted(DTYPES)}, got {dtype!r}")
    dt = default_float() if dtype == "float64" else jnp.dtype(dtype)
    if isinstance(x, jax.Array):
        return x.astype(dt)
    return jnp.asarray(np.asarray(x, dtype=np.float64).astype(dt))  # one rounding, on the host


def to_numpy(x: Any) -> np.ndarray:
    """``x`` as a float64 NumPy array (a host copy; not usable under ``jax.jit``)."""
    return np.asarray(jax.device_get(x)).astype(np.float64)
