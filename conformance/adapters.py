r"""Moving values between NumPy and a backend, and comparing a backend with the reference.

Everything goes through the backend's own interop functions (``asarray``, ``to_numpy``,
``state_to_dict``), so the suite works for any object satisfying :class:`gammapo.Backend`.
Lengths are passed as Python lists of integers (every backend accepts array-likes).

Example:
    >>> import gammapo
    >>> ad = Adapter(gammapo.get_backend("numpy"))
    >>> ad.supports("float32"), ad.supports("bfloat16")
    (True, False)
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import numpy as np

from gammapo_spec.validation import LENGTH_FIELDS

from .tolerances import Tolerance

__all__ = ["Adapter", "assert_close", "assert_equal", "raised"]


class Adapter:
    """A backend plus conversions; ``precision(dtype)`` is the context to run float64 work in."""

    def __init__(self, backend: Any):
        self.backend = backend
        self.name = getattr(backend, "name", repr(backend))
        self._supported: dict[str, bool] = {}

    def precision(self, dtype: str):
        """JAX needs ``jax.enable_x64`` for float64; other backends need nothing."""
        mod = type(self.backend).__module__ if not hasattr(self.backend, "__name__") else self.backend.__name__
        if dtype == "float64" and ("jax" in str(mod) or "jax" in self.name):
            import jax

            return jax.enable_x64(True)
        return contextlib.nullcontext()

    def supports(self, dtype: str) -> bool:
        """Whether ``asarray(..., dtype)`` works and keeps the dtype (numpy: no bfloat16)."""
        if dtype not in self._supported:
            try:
                with self.precision(dtype):
                    a = self.backend.asarray([1.0, 2.0], dtype=dtype)
                self._supported[dtype] = dtype in str(getattr(a, "dtype", ""))
            except (ValueError, TypeError):
                self._supported[dtype] = False
        return self._supported[dtype]

    def array(self, x, dtype: str):
        """``x`` as a backend array of ``dtype``."""
        return self.backend.asarray(np.asarray(x, dtype=np.float64), dtype=dtype)

    def inputs(self, inputs: dict[str, np.ndarray], dtype: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(backend_inputs, rounded)``: log-probs in ``dtype``, lengths as int lists; ``rounded`` is
        what the reference must be fed (the float64 values of the rounded backend inputs)."""
        out, rounded = {}, {}
        for k, v in inputs.items():
            if k in LENGTH_FIELDS and np.all(np.isfinite(v)) and np.all(v == np.round(v)):
                out[k] = [int(t) for t in v]
                rounded[k] = np.asarray(v, dtype=np.float64)
            else:
                out[k] = self.array(v, dtype)
                rounded[k] = self.numpy(out[k])
        return out, rounded

    def numpy(self, x) -> np.ndarray:
        """A backend array (or scalar) as float64 NumPy."""
        return np.asarray(self.backend.to_numpy(x), dtype=np.float64)

    def module(self, name: str) -> Any | None:
        """The backend's optional op module ``name`` (e.g. ``"alignment_potential"``), or ``None``.

        Ops outside :data:`gammapo.protocol.SPEC_OPS` live in submodules of the same name:
        ``gammapo_spec.<name>`` for the reference, ``gammapo_torch.<name>``, ``gammapo_jax.<name>``.
        A backend object may also carry it as an attribute of that name (a namespace of functions).
        A backend object that is neither a module with that submodule nor has the attribute has none.
        """
        import importlib

        attr = getattr(self.backend, name, None)
        if attr is not None and not callable(attr):
            return attr
        base = getattr(self.backend, "__name__", None)
        if not isinstance(base, str):
            return None
        try:
            return importlib.import_module(f"{base}.{name}")
        except ImportError:
            return None

    def state(self, state) -> dict | None:
        """The state as a dict of NumPy values (buffer float64)."""
        d = self.backend.state_to_dict(state)
        if d is None:
            return None
        return {k: (self.numpy(v) if k == "buffer" else int(v)) for k, v in d.items()}


def assert_close(actual, expected, tol: Tolerance, what: str, scale: float = 1.0) -> None:
    """``|actual - expected| <= tol.atol*scale + tol.rtol*|expected|`` elementwise, shapes equal.

    A failure names the backend as the side that differs and gives the largest difference in units of
    the allowed one (``k×tol``); the policy row's reason is quoted only for differences a few times the
    bound, since a difference many times it is a different computation, not rounding.
    """
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"{what}: the backend returned shape {a.shape}, the spec's is {e.shape}"
    allowed = tol.atol * scale + tol.rtol * np.abs(e)
    diff = np.abs(a - e)
    bad = ~(diff <= allowed)
    bad &= ~((a == e) | (np.isnan(a) & np.isnan(e)))
    if np.any(bad):
        with np.errstate(divide="ignore", invalid="ignore"):
            units = np.where(np.isfinite(diff), diff / np.where(allowed > 0, allowed, np.inf), np.inf)
        units = np.where(bad, np.where(np.isnan(units), np.inf, units), -1.0).ravel()
        i = int(np.argmax(units))
        first = int(np.flatnonzero(bad.ravel())[0])
        k = units[i]
        size = "non-finite mismatch" if not np.isfinite(k) else f"{k:.3g}x the tolerance"
        why = (f"tolerance: {tol.reason}" if np.isfinite(k) and k < 16 else
               "far beyond the tolerance: the backend computes something else, not a rounding of the same value")
        raise AssertionError(
            f"{what}: backend differs from the spec at {int(bad.sum())}/{bad.size} entries; worst at [{i}]: "
            f"backend {a.ravel()[i]!r} vs spec {e.ravel()[i]!r} ({size}; allowed rtol={tol.rtol:g}, "
            f"atol={tol.atol:g}*{scale:.3g}); first at [{first}]; {why}"
        )


def assert_equal(actual, expected, what: str) -> None:
    """``actual == expected`` exactly (shapes and every entry), with a short message.

    Used instead of ``assert a.tolist() == b.tolist()``: on a failure pytest diffs the two lists with
    ``difflib``, which is quadratic, and when the ``CI`` variable is set it does so untruncated. Hypothesis
    replays a failing example many times while it shrinks (under ``sys.settrace`` on Python < 3.12),
    so a mismatch on a mask of 1024 entries made one mutant run take minutes in CI instead of seconds.
    """
    a, e = np.asarray(actual), np.asarray(expected)
    if a.shape != e.shape:
        raise AssertionError(f"{what}: shape {a.shape} != reference {e.shape}")
    bad = a != e
    if np.any(bad):
        idx = np.flatnonzero(bad.ravel())
        shown = ", ".join(f"[{i}]: {a.ravel()[i].item()!r} vs {e.ravel()[i].item()!r}" for i in idx[:5])
        raise AssertionError(f"{what}: {idx.size}/{bad.size} entries differ; first {shown}")


def raised(call: Callable[[], Any]) -> BaseException | None:
    """The exception ``call`` raises, or ``None``."""
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - we compare whatever is raised
        return exc
    return None
