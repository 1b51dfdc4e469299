r"""The spec's portable counter-based hash (:mod:`gammapo_spec.random`) in ``uint32`` arithmetic.

JAX's ``uint32`` multiplication wraps modulo :math:`2^{32}`, exactly the arithmetic the spec
defines, so these functions return bit-identical keys under ``jax.jit`` and ``jax.vmap`` with the
seed and step counter as traced arrays:

.. math::

    \operatorname{hash32}(x):\; x \mathrel{\hat{}}= x \gg 16;\; x \mathrel{*}= \texttt{0x7feb352d};\;
    x \mathrel{\hat{}}= x \gg 15;\; x \mathrel{*}= \texttt{0x2c1b3c6d};\;
    x \mathrel{\hat{}}= x \gg 12;\; x \mathrel{*}= \texttt{0x297a2d39};\; x \mathrel{\hat{}}= x \gg 15 .

``jax.random`` is deliberately not used: the queue's sample must be the same on every backend.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from gammapo_spec.random import HASH_MULTIPLIERS, STREAM_SAMPLE

__all__ = ["hash32", "stream_key", "slot_keys", "sample_keys"]

_U32 = jnp.uint32


def hash32(x: jax.Array) -> jax.Array:
    """The 32-bit bijection of :func:`gammapo_spec.random.hash32`, elementwise on ``uint32``.

    Example:
        >>> import numpy as np, jax.numpy as jnp
        >>> from gammapo_spec.random import hash32 as ref
        >>> x = np.arange(5, dtype=np.uint32)
        >>> bool((np.asarray(hash32(jnp.asarray(x))) == ref(x)).all())
        True
    """
    x = jnp.asarray(x).astype(_U32)
    a, b, c = (_U32(k) for k in HASH_MULTIPLIERS)
    x = x ^ (x >> _U32(16))
    x = x * a
    x = x ^ (x >> _U32(15))
    x = x * b
    x = x ^ (x >> _U32(12))
    x = x * c
    x = x ^ (x >> _U32(15))
    return x


def stream_key(seed: jax.Array, stream: int, counter: jax.Array) -> jax.Array:
    """``hash32(hash32(seed ^ stream) ^ counter)``, as :func:`gammapo_spec.random.stream_key`."""
    s = hash32(jnp.asarray(seed).astype(_U32) ^ _U32(stream))
    return hash32(s ^ jnp.asarray(counter).astype(_U32))


def slot_keys(key: jax.Array, n: int) -> jax.Array:
    """``hash32((key + i) mod 2**32)`` for ``i = 0 .. n-1`` (``n`` static)."""
    return hash32(jnp.asarray(key).astype(_U32) + jnp.arange(n, dtype=_U32))


def sample_keys(seed: jax.Array, step: jax.Array, capacity: int) -> jax.Array:
    """The ``[capacity]`` sampling keys of one queue step (spec: ``slot_keys(stream_key(seed, STREAM_SAMPLE, step), cap)``)."""
    return slot_keys(stream_key(seed, STREAM_SAMPLE, step), capacity)
