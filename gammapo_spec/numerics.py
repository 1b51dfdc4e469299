"""Numerically stable scalar functions, elementwise on float64 arrays.

Every loss in the spec is written with these, never with ``log(sigmoid(z))``: for any finite input
they return finite values (``softplus`` of a huge argument returns the argument itself, ``sigmoid``
saturates to exactly 0 or 1 without overflow warnings).
"""

from __future__ import annotations

import numpy as np

__all__ = ["sigmoid", "softplus", "log_sigmoid", "logsumexp"]


def sigmoid(z: np.ndarray) -> np.ndarray:
    r"""The logistic function :math:`\sigma(z) = 1 / (1 + e^{-z})`, evaluated without overflow.

    Example:
        >>> import numpy as np
        >>> sigmoid(np.array([-1e4, 0.0, 1e4])).tolist()
        [0.0, 0.5, 1.0]
    """
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(-np.abs(z))  # in (0, 1]: never overflows
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def softplus(z: np.ndarray) -> np.ndarray:
    r""":math:`\operatorname{softplus}(z) = \log(1 + e^{z}) = -\log\sigma(-z)`, evaluated stably.

    Written as :math:`\max(z, 0) + \operatorname{log1p}(e^{-|z|})`.

    Example:
        >>> import numpy as np
        >>> softplus(np.array([-1e4, 0.0, 1e4])).tolist() == [0.0, float(np.log(2.0)), 1e4]
        True
    """
    z = np.asarray(z, dtype=np.float64)
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))


def log_sigmoid(z: np.ndarray) -> np.ndarray:
    r""":math:`\log\sigma(z) = -\operatorname{softplus}(-z)`."""
    return -softplus(-np.asarray(z, dtype=np.float64))


def logsumexp(x: np.ndarray) -> float:
    r""":math:`\log\sum_i e^{x_i}` of a 1-D array, shifted by its maximum so it never overflows."""
    x = np.asarray(x, dtype=np.float64)
    top = np.max(x)
    return float(top + np.log(np.sum(np.exp(x - top))))
