r"""The portable counter-based hash of :mod:`gammapo_spec.random`, on int64 tensors.

``hash32`` is a bijection of the 32-bit integers built from xor-shifts and products modulo
:math:`2^{32}`. Here every value is an ``int64`` tensor holding a number in :math:`[0, 2^{32})`: each
product of such a value and a multiplier (all below :math:`2^{31}`) is below :math:`2^{63}`, so it
never overflows, and masking with ``0xFFFFFFFF`` takes it modulo :math:`2^{32}`. The result equals the
reference's bit for bit, on any device, and stays on the device (no host round trip), so it can run
inside ``torch.compile`` graphs and CUDA graphs.
"""

from __future__ import annotations

import torch

from gammapo_spec.random import HASH_MULTIPLIERS, MASK32

__all__ = ["hash32", "stream_key", "slot_keys"]


def hash32(x: torch.Tensor) -> torch.Tensor:
    """:func:`gammapo_spec.random.hash32` on an int64 tensor (values taken modulo 2**32).

    Example:
        >>> import torch
        >>> from gammapo_spec.random import hash32 as ref
        >>> int(hash32(torch.tensor(12345))) == int(ref(12345))
        True
    """
    a, b, c = HASH_MULTIPLIERS
    x = x.to(torch.int64) & MASK32
    x = x ^ (x >> 16)
    x = (x * a) & MASK32
    x = x ^ (x >> 15)
    x = (x * b) & MASK32
    x = x ^ (x >> 12)
    x = (x * c) & MASK32
    return x ^ (x >> 15)


def stream_key(seed: torch.Tensor, stream: int, counter: torch.Tensor) -> torch.Tensor:
    """``hash32(hash32(seed ^ stream) ^ counter)`` for 0-dim int64 tensors (``counter`` modulo 2**32)."""
    s = hash32(seed ^ stream)
    return hash32(s ^ (counter & MASK32))


def slot_keys(key: torch.Tensor, n: int) -> torch.Tensor:
    """``hash32((key + i) mod 2**32)`` for ``i = 0 .. n-1``: ``[n]`` int64 keys, distinct for distinct slots."""
    return hash32(key + torch.arange(n, device=key.device, dtype=torch.int64))
