"""The ``Backend`` protocol: what every backend object must offer.

A backend is any object (usually a module) with these attributes. The spec ops have the same names,
keyword arguments, errors and state semantics as :mod:`gammapo_spec`; arrays are the backend's own.
:func:`check_backend` verifies an object against the protocol and says exactly what is missing.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["Backend", "SPEC_OPS", "INTEROP", "METHOD_OPS", "REQUIRED_ATTRIBUTES", "check_backend",
           "BackendProtocolError"]

#: The ops of the specification every backend implements.
SPEC_OPS: tuple[str, ...] = (
    "reward_gap",
    "implicit_rewards",
    "calibrate_margins",
    "init_state",
    "calibrate_step",
    "target_margins",
    "pair_losses",
    "loss_with_margins",
    "gamma_po_loss",
)
#: The interoperability functions (see :mod:`gammapo_spec.interop`).
INTEROP: tuple[str, ...] = ("asarray", "to_numpy", "state_to_dict", "state_from_dict", "gamma_po_loss_and_grad")
REQUIRED_ATTRIBUTES: tuple[str, ...] = ("name",) + SPEC_OPS + INTEROP
#: The one shape of every method (:mod:`gammapo_spec.methods`: ``Pairs``, ``init(config, seed)``,
#: ``step(config, state, pairs)``). Optional, like the ``beta_dpo`` and ``epsilon_dpo`` op modules: a
#: backend provides them in its submodule ``methods`` by running
#: :class:`gammapo_spec.methods.MethodOps` on its own functions (this project's backends also export
#: them at top level); the conformance suite checks them where present.
METHOD_OPS: tuple[str, ...] = ("Pairs", "init", "step")


class BackendProtocolError(TypeError):
    """An object registered or loaded as a backend lacks part of the :class:`Backend` protocol."""


@runtime_checkable
class Backend(Protocol):
    """Structural type of a backend (see :mod:`gammapo_spec` for each op's contract)."""

    name: str

    def reward_gap(self, config, **inputs) -> Any: ...
    def implicit_rewards(self, config, **inputs) -> Any: ...
    def calibrate_margins(self, gaps, *, gamma0, tau, solver="exact", iters=20, check_values=True) -> Any: ...
    def init_state(self, config, seed=0) -> Any: ...
    def calibrate_step(self, config, state, gaps) -> Any: ...
    def target_margins(self, config, n, *, gamma=None, chosen_lengths=None, rejected_lengths=None) -> Any: ...
    def pair_losses(self, config, z) -> Any: ...
    def loss_with_margins(self, config, margins, **inputs) -> Any: ...
    def gamma_po_loss(self, config, state, **inputs) -> Any: ...
    def asarray(self, x, dtype="float64") -> Any: ...
    def to_numpy(self, x) -> Any: ...
    def state_to_dict(self, state) -> Any: ...
    def state_from_dict(self, data) -> Any: ...
    def gamma_po_loss_and_grad(self, config, state, **inputs) -> Any: ...


def check_backend(obj: Any, label: str | None = None) -> Any:
    """Return ``obj`` if it satisfies the protocol; raise :class:`BackendProtocolError` naming what is missing."""
    missing = [a for a in REQUIRED_ATTRIBUTES if not hasattr(obj, a)]
    not_callable = [a for a in SPEC_OPS + INTEROP if hasattr(obj, a) and not callable(getattr(obj, a))]
    if missing or not_callable:
        what = label or repr(obj)
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if not_callable:
            parts.append(f"not callable {not_callable}")
        raise BackendProtocolError(f"{what} is not a gammapo backend: " + "; ".join(parts))
    if not isinstance(obj.name, str):
        raise BackendProtocolError(f"{label or repr(obj)}.name must be a str, got {type(obj.name).__name__}")
    return obj
