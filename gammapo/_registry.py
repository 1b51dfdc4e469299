"""The backend registry: built-ins resolved lazily by name, third parties through entry points.

Nothing here imports a framework until a backend is asked for (the pattern of einops' lazy backends):
``import gammapo`` stays cheap and never imports torch or jax.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from typing import Any

from .protocol import check_backend

__all__ = ["get_backend", "list_backends", "register_backend", "BackendNotFoundError", "BackendUnavailableError"]

#: The entry-point group third-party packages register their backends in (``NAME = "module:attr"``).
ENTRY_POINT_GROUP = "gammapo.backends"


class BackendNotFoundError(LookupError):
    """No backend of that name is known."""


class BackendUnavailableError(ImportError):
    """The backend is known, but its framework is not installed."""


# name -> (import target "module" or "module:attr", framework module to probe, pip extra)
_BUILTINS: dict[str, tuple[str, str | None, str | None]] = {
    "numpy": ("gammapo_spec", None, None),
    "torch": ("gammapo_torch", "torch", "torch"),
    "jax": ("gammapo_jax", "jax", "jax"),
}
_REGISTERED: dict[str, Any] = {}
_CACHE: dict[str, Any] = {}


def register_backend(name: str, backend: Any) -> None:
    """Register a backend object (or a ``"module:attr"`` string) under ``name`` for this process."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a backend name must be a non-empty str, got {name!r}")
    _REGISTERED[name] = backend
    _CACHE.pop(name, None)


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def list_backends() -> list[str]:
    """Names of every backend gammapo knows: built-ins, registered ones and entry points.

    A name being listed does not mean its framework is installed; see :func:`available_backends`.
    """
    return sorted(set(_BUILTINS) | set(_REGISTERED) | set(_entry_points()))


def available_backends() -> list[str]:
    """The listed backends whose framework is importable here (without importing it)."""
    out = []
    for name in list_backends():
        spec = _BUILTINS.get(name)
        if spec is None or spec[1] is None or importlib.util.find_spec(spec[1]) is not None:
            out.append(name)
    return out


def _load_target(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr) if attr else module


def load_backend_object(spec: str) -> Any:
    """Resolve ``NAME`` (registry) or ``MODULE[:ATTR]`` (any importable object) to a checked backend."""
    if spec in list_backends():
        return get_backend(spec)
    try:
        obj = _load_target(spec)
    except (ImportError, AttributeError) as exc:
        raise BackendNotFoundError(
            f"{spec!r} is neither a known backend ({', '.join(list_backends())}) nor an importable "
            f"MODULE:ATTR ({exc})"
        ) from exc
    return check_backend(obj, spec)


def get_backend(name: str) -> Any:
    """The backend called ``name``: ``"numpy"`` (the reference), ``"torch"``, ``"jax"`` or a plug-in.

    Args:
        name: a name from :func:`list_backends`.

    Returns:
        The backend object, checked against :class:`gammapo.Backend`.

    Raises:
        BackendNotFoundError: unknown name (the message lists the known ones).
        BackendUnavailableError: the backend's framework is missing (the message names the extra
            to install, e.g. ``pip install 'gammapo[torch]'``).
        gammapo.protocol.BackendProtocolError: a plug-in that does not satisfy the protocol.

    Example:
        >>> import gammapo
        >>> gammapo.get_backend("numpy").name
        'numpy'
    """
    if name in _CACHE:
        return _CACHE[name]
    if name in _REGISTERED:
        obj = _REGISTERED[name]
        backend = _load_target(obj) if isinstance(obj, str) else obj
    elif name in _BUILTINS:
        target, framework, extra = _BUILTINS[name]
        if framework is not None and importlib.util.find_spec(framework) is None:
            raise BackendUnavailableError(
                f"the {name!r} backend needs {framework}, which is not installed: "
                f"pip install 'gammapo[{extra}]'"
            )
        backend = _load_target(target)
    else:
        eps = _entry_points()
        if name not in eps:
            raise BackendNotFoundError(
                f"unknown backend {name!r}; known backends: {', '.join(list_backends())}"
            )
        backend = eps[name].load()
    check_backend(backend, f"backend {name!r}")
    _CACHE[name] = backend
    return backend
