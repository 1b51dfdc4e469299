"""The JAX backend satisfies the Backend protocol with the reference's names and keyword arguments."""

from __future__ import annotations

import inspect

import gammapo
import gammapo_spec
import pytest
from gammapo.protocol import INTEROP, SPEC_OPS

import gammapo_jax


def test_get_backend_returns_the_module():
    backend = gammapo.get_backend("jax")
    assert backend is gammapo_jax
    assert backend.name == "jax"
    assert gammapo.check_backend(backend) is backend


@pytest.mark.parametrize("op", SPEC_OPS + INTEROP)
def test_signature_matches_reference(op):
    """Every parameter of the reference exists here with the same kind and default
    (the JAX backend may add keyword-only extras such as ``gather=``/``dtype=``)."""
    ref = inspect.signature(getattr(gammapo_spec, op)).parameters
    ours = inspect.signature(getattr(gammapo_jax, op)).parameters
    for name, p in ref.items():
        assert name in ours, f"{op} lacks parameter {name!r}"
        q = ours[name]
        assert q.kind == p.kind, f"{op}({name}) is {q.kind}, reference {p.kind}"
        assert q.default == p.default, f"{op}({name}) default {q.default!r} != {p.default!r}"
    extras = [n for n in ours if n not in ref]
    assert all(ours[n].kind == inspect.Parameter.KEYWORD_ONLY for n in extras), (
        f"{op}: extra parameters {extras} must be keyword-only"
    )


def test_loss_output_is_the_reference_class():
    assert gammapo_jax.LossOutput is gammapo_spec.LossOutput
