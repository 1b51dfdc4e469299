"""Crash-safe file writes for the front door (the trainer's checkpoint records): the one implementation is
:func:`gammapo_native.files.write_atomic`, shared with the native build cache."""

from __future__ import annotations

from gammapo_native.files import write_atomic

__all__ = ["write_atomic"]
