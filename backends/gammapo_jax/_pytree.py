"""The spec's output dataclasses as JAX pytrees, so a ``jax.jit``-compiled function may return them."""

from __future__ import annotations

import dataclasses

import jax

__all__ = ["register_output"]


def register_output(cls: type) -> None:
    """Register the dataclass ``cls`` as a pytree whose fields are all data (once; a reload is a no-op)."""
    fields = [f.name for f in dataclasses.fields(cls)]
    try:
        jax.tree_util.register_dataclass(cls, data_fields=fields, meta_fields=[])
    except ValueError:  # already registered (e.g. a module reload)
        pass
