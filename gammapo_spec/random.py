r"""The portable counter-based random numbers of the calibration queue.

Queue mode samples stored gaps without replacement every step. For a checkpoint to restore the
sampling bit for bit, and for every backend (and every rank of a distributed run) to draw the *same*
sample, the randomness is a pure function of ``(seed, step, slot)`` built from 32-bit integer
operations that NumPy, PyTorch (int64 with masking) and JAX (uint32) all compute identically:

.. math::

    \operatorname{hash32}(x):\; x \mathrel{\hat{}}= x \gg 16;\; x \mathrel{*}= \texttt{0x7feb352d};\;
    x \mathrel{\hat{}}= x \gg 15;\; x \mathrel{*}= \texttt{0x2c1b3c6d};\;
    x \mathrel{\hat{}}= x \gg 12;\; x \mathrel{*}= \texttt{0x297a2d39};\; x \mathrel{\hat{}}= x \gg 15

with every product taken modulo :math:`2^{32}`. Each step of ``hash32`` is invertible (xor-shift, odd
multiplier), so ``hash32`` is a bijection of the 32-bit integers and distinct inputs never collide.
All multipliers are below :math:`2^{31}`, so a product of a 32-bit value and a multiplier fits in a
signed 64-bit integer without overflow.

Keys: ``stream_key(seed, stream, counter) = hash32(hash32(seed ^ STREAM[stream]) ^ counter)`` and
``slot_keys(k, n)[i] = hash32((k + i) mod 2^32)``, which are distinct for distinct slots, so sorting
by key has no ties.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "MASK32",
    "HASH_MULTIPLIERS",
    "STREAM_SAMPLE",
    "STREAM_WARMUP",
    "hash32",
    "stream_key",
    "slot_keys",
    "uniform24",
    "warmup_normals",
]

MASK32 = 0xFFFFFFFF
#: The three multipliers of :func:`hash32` (all odd, all below 2**31).
HASH_MULTIPLIERS = (0x7FEB352D, 0x2C1B3C6D, 0x297A2D39)
#: Stream constants separating the sampling keys from the warm-up draws.
STREAM_SAMPLE = 0x5A3C_9E11
STREAM_WARMUP = 0x1F2E_3D4C


def hash32(x) -> np.ndarray:
    """The 32-bit integer bijection of the module docstring, elementwise (returns uint64 values < 2**32)."""
    x = np.asarray(x, dtype=np.uint64) & MASK32
    a, b, c = (np.uint64(k) for k in HASH_MULTIPLIERS)
    x = x ^ (x >> np.uint64(16))
    x = (x * a) & MASK32
    x = x ^ (x >> np.uint64(15))
    x = (x * b) & MASK32
    x = x ^ (x >> np.uint64(12))
    x = (x * c) & MASK32
    x = x ^ (x >> np.uint64(15))
    return x


def stream_key(seed: int, stream: int, counter: int) -> int:
    """The key of one draw: ``hash32(hash32(seed ^ stream) ^ counter)`` (all modulo 2**32)."""
    s = int(hash32((seed ^ stream) & MASK32))
    return int(hash32((s ^ counter) & MASK32))


def slot_keys(key: int, n: int) -> np.ndarray:
    """``hash32((key + i) mod 2**32)`` for ``i = 0 .. n-1``: distinct, uniformly scrambled keys."""
    return hash32((np.uint64(key) + np.arange(n, dtype=np.uint64)) & MASK32)


def uniform24(keys) -> np.ndarray:
    """Uniforms in (0, 1) from 32-bit keys: ``((key >> 8) + 0.5) / 2**24`` (exact in float32 too)."""
    keys = np.asarray(keys, dtype=np.uint64)
    return ((keys >> np.uint64(8)).astype(np.float64) + 0.5) / float(1 << 24)


def warmup_normals(seed: int, count: int) -> np.ndarray:
    r"""The ``count`` standard-normal draws a new queue starts with (Box–Muller).

    For draw j: ``k = stream_key(seed, STREAM_WARMUP, j)``, ``(u1, u2) = uniform24(slot_keys(k, 2))``,
    :math:`z_j = \sqrt{-2\ln u_1}\,\cos(2\pi u_2)`.
    """
    out = np.empty(count, dtype=np.float64)
    for j in range(count):
        u1, u2 = uniform24(slot_keys(stream_key(seed, STREAM_WARMUP, j), 2))
        out[j] = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
    return out
