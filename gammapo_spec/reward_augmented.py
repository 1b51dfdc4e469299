"""Deprecated alias of :mod:`gammapo.data.reward_augmented`, where reward-augmented relabelling now lives.

Every name still resolves here, and each use warns (``DeprecationWarning``) naming the new place:
import from ``gammapo.data.reward_augmented`` instead. This alias will be removed in a future release.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

#: Where this module's contents moved (the docs' API coverage check reads this line).
MOVED_TO = "gammapo.data.reward_augmented"

_moved = importlib.import_module(MOVED_TO)

__all__ = list(_moved.__all__)


def __getattr__(name: str) -> Any:
    if name.startswith("__") or not hasattr(_moved, name):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"gammapo_spec.reward_augmented is deprecated: it moved to {MOVED_TO}; "
                  f"import {name} from {MOVED_TO}", DeprecationWarning, stacklevel=2)
    return getattr(_moved, name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
