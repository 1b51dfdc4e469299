"""The one validator of hyper-parameters: every method's config and every op that takes a hyper-parameter.

:class:`~gammapo_spec.config.GammaPOConfig`, :class:`~gammapo_spec.config.BetaDPOConfig`,
:class:`~gammapo_spec.config.EpsilonDPOConfig` and the functions that take hyper-parameters directly
(:func:`~gammapo_spec.beta_dpo.beta_dpo_step`, the ε-DPO ops) check their numbers here, so a bad value
raises the same :class:`~gammapo_spec.errors.ConfigError` wherever it is given: ``error.field`` names
the parameter and the message states its domain, e.g. ``beta must be a finite number > 0, got 0.0``.

Numbers may be Python or NumPy scalars; booleans, complex numbers and strings are refused. The checks
return the value as the Python ``int``/``float`` it equals.

Example:
    >>> from gammapo_spec.hyperparams import check_real
    >>> check_real("rho", 1.0, low=0.0, high=1.0, low_open=True, high_open=False)
    1.0
    >>> check_real("rho", 0.0, low=0.0, high=1.0, low_open=True, high_open=False)
    Traceback (most recent call last):
    ...
    gammapo_spec.errors.ConfigError: rho must be a number in (0, 1], got 0.0
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from .errors import ConfigError

__all__ = [
    "is_int",
    "is_real",
    "check_real",
    "check_int",
    "check_choice",
    "check_bool",
    "check_beta",
    "check_epsilon",
    "check_label_smoothing",
]


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def is_real(value: Any) -> bool:
    """Whether ``value`` is a real number (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def check_real(
    field: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = True,
) -> float:
    """Return ``value`` as a float; :class:`ConfigError` (``field``) unless finite and inside the bounds.

    ``low``/``high`` are inclusive unless ``low_open``/``high_open`` (by default the upper bound is open:
    ``[low, high)``).
    """
    ok = is_real(value) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        if low is None and high is None:
            domain = "a finite number"
        elif high is None:
            domain = f"a finite number {'>' if low_open else '>='} {low:g}"
        elif low is None:
            domain = f"a finite number {'<' if high_open else '<='} {high:g}"
        else:
            domain = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(f"{field} must be {domain}, got {value!r}", field=field)
    return float(value)


def check_int(field: str, value: Any, *, low: int, high: int | None = None) -> int:
    """Return ``value`` as an int; :class:`ConfigError` (``field``) unless an integer in ``[low, high]``."""
    if not is_int(value) or value < low:
        raise ConfigError(f"{field} must be an integer >= {low}, got {value!r}", field=field)
    if high is not None and value > high:
        raise ConfigError(f"{field} must be an integer <= {high}, got {value!r}", field=field)
    return int(value)


def check_choice(field: str, value: Any, choices: tuple[str, ...]) -> str:
    """Return ``value``; :class:`ConfigError` (``field``) unless it is one of the strings ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{field} must be one of {list(choices)}, got {value!r}", field=field)
    return value


def check_bool(field: str, value: Any) -> bool:
    """Return ``value``; :class:`ConfigError` (``field``) unless it is a Python bool."""
    if not isinstance(value, bool):
        raise ConfigError(f"{field} must be a bool, got {value!r}", field=field)
    return value


def check_beta(beta: Any, field: str = "beta") -> float:
    r"""β (the scale of the implicit rewards): a finite number > 0.

    Example:
        >>> check_beta(0.1)
        0.1
    """
    return check_real(field, beta, low=0.0, low_open=True)


def check_epsilon(epsilon: Any) -> float:
    r"""ε-DPO's perturbation size :math:`\varepsilon`: a number in (0, 1) (``field="epsilon"``).

    Example:
        >>> check_epsilon(0.01)
        0.01
    """
    return check_real("epsilon", epsilon, low=0.0, high=1.0, low_open=True)


def check_label_smoothing(label_smoothing: Any) -> float:
    r"""The label smoothing :math:`\varepsilon_\text{ls}` (cDPO form): a number in [0, 0.5).

    Example:
        >>> check_label_smoothing(0.1)
        0.1
    """
    return check_real("label_smoothing", label_smoothing, low=0.0, high=0.5)
