"""The errors of the specification.

Errors are part of the spec: every backend raises the *same class* with the *same message* for the
same bad input, so a user's ``except`` clause works whatever backend runs underneath. Each error
names the offending field (a config field or an argument name) in its ``field`` attribute.

All classes derive from :class:`GammaPOError` and from the built-in class a Python user would
expect (``ValueError`` for bad values, ``TypeError`` for a wrong kind of object), so code written
against plain Python exceptions keeps working.
"""

from __future__ import annotations

__all__ = [
    "GammaPOError",
    "ConfigError",
    "InputError",
    "StateError",
    "SolverRegimeWarning",
]


class GammaPOError(Exception):
    """Base class of every error gammapo raises on purpose.

    Attributes:
        field: the config field or argument the error is about (``None`` when it is about no
            single field).
    """

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


class ConfigError(GammaPOError, ValueError):
    """A hyper-parameter is out of its domain (for example ``beta <= 0`` or an unknown loss name)."""


class InputError(GammaPOError, ValueError):
    """An input array is unusable: wrong shape, empty, mismatched, non-finite, or a non-positive length."""


class StateError(GammaPOError, ValueError):
    """A calibration state does not fit the config it is used with, or is malformed."""


class SolverRegimeWarning(UserWarning):
    """A solver is asked to run where it is unreliable (it still runs; the message names the alternative)."""
