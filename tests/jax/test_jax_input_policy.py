"""The JAX backend follows the spec's input policy (eagerly, as its other value checks): an overflowing
reward gap of finite inputs is the spec's InputError; text and complex log-probs are InputError."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import gammapo_jax as G
import gammapo_spec as R
from gammapo_spec.errors import InputError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "spec"))
from test_input_policy import LOSSES, overflow_inputs  # noqa: E402


def _overflow32(loss):
    """float32 inputs (the JAX default) whose gap overflows float32."""
    kw = overflow_inputs(loss)
    kw["chosen_logps"] = [-4.0, -3e38]
    return {k: jnp.asarray(v, dtype=jnp.float32 if "logps" in k else jnp.int32) for k, v in kw.items()}


@pytest.mark.parametrize("loss", LOSSES)
def test_an_overflowing_gap_is_the_spec_error(loss):
    cfg = R.GammaPOConfig(loss=loss, beta=10.0, calibration="batch")
    with pytest.raises(InputError) as ours:
        G.gamma_po_loss(cfg, None, **_overflow32(loss))
    with np.errstate(all="ignore"), pytest.raises(InputError) as ref:
        R.gamma_po_loss(cfg, None, **overflow_inputs(loss))
    assert (ours.value.field, str(ours.value)) == (ref.value.field, str(ref.value))


@pytest.mark.parametrize("loss", ["dpo", "gamma-simpo"])
def test_without_value_checks_the_overflow_propagates(loss):
    cfg = R.GammaPOConfig(loss=loss, beta=10.0, calibration="batch", check_values=False)
    out, _ = G.gamma_po_loss(cfg, None, **_overflow32(loss))
    assert not math.isfinite(float(out.loss))


@pytest.mark.parametrize("bad", [["a", "b"], ["3", "4"], np.array([1 + 2j, 3.0])])
def test_text_and_complex_log_probs_are_the_spec_error(bad):
    kw = dict(rejected_logps=[-1.0, -2.0], chosen_lengths=[1, 1], rejected_lengths=[1, 1])
    with pytest.raises(InputError) as ours:
        G.gamma_po_loss(R.GammaPOConfig(loss="simpo"), None, chosen_logps=bad, **kw)
    with pytest.raises(InputError) as ref:
        R.gamma_po_loss(R.GammaPOConfig(loss="simpo"), None, chosen_logps=bad, **kw)
    assert (ours.value.field, str(ours.value)) == (ref.value.field, str(ref.value))
