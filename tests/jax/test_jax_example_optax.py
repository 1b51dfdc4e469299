"""examples/jax_optax_gamma_simpo.py runs: an Equinox model trained with γ-SimPO (queue mode) and
optax AdamW; the loss decreases over a few jitted steps on a tiny synthetic batch."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

pytest.importorskip("optax")
pytest.importorskip("equinox")

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "jax_optax_gamma_simpo.py"


def test_jax_gamma_po_loss_optax_example_loss_decreases():
    spec = importlib.util.spec_from_file_location("jax_optax_gamma_simpo_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    losses = module.train(steps=5, verbose=False)
    assert all(l == l for l in losses), f"NaN loss: {losses}"
    assert losses[-1] < 0.5 * losses[0], f"loss did not decrease: {losses}"
