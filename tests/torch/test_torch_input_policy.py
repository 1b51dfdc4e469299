"""The torch backend follows the spec's input policy: an overflowing reward gap of finite inputs is
the spec's InputError (field "gaps") with value checks on, non-finite with them off; text and complex
log-probs are the spec's InputError."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import gammapo_spec as R
import gammapo_torch as T
from gammapo_spec.errors import InputError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "spec"))
from test_input_policy import LOSSES, overflow_inputs  # noqa: E402


def _t(kw):
    return {k: torch.tensor(v, dtype=torch.float64) if "logps" in k else torch.tensor(v) for k, v in kw.items()}


@pytest.mark.parametrize("loss", LOSSES)
def test_an_overflowing_gap_is_the_spec_error(loss):
    cfg = R.GammaPOConfig(loss=loss, beta=10.0, calibration="batch")
    with pytest.raises(InputError) as ours:
        T.gamma_po_loss(cfg, None, **_t(overflow_inputs(loss)))
    with np.errstate(all="ignore"), pytest.raises(InputError) as ref:
        R.gamma_po_loss(cfg, None, **overflow_inputs(loss))
    assert (ours.value.field, str(ours.value)) == (ref.value.field, str(ref.value)) == ("gaps", str(ref.value))


def test_float32_overflow_is_caught_in_the_compute_dtype():
    cfg = R.GammaPOConfig(loss="simpo", beta=10.0)
    kw = dict(chosen_logps=torch.tensor([-4.0, -3e38]), rejected_logps=torch.tensor([-5.0, -1.0]),
              chosen_lengths=torch.tensor([1, 1]), rejected_lengths=torch.tensor([1, 1]))
    with pytest.raises(InputError, match="not finite for finite inputs"):
        T.gamma_po_loss(cfg, None, **kw)


@pytest.mark.parametrize("loss", ["dpo", "gamma-simpo"])
def test_without_value_checks_the_overflow_propagates(loss):
    cfg = R.GammaPOConfig(loss=loss, beta=10.0, calibration="batch", check_values=False)
    out, _ = T.gamma_po_loss(cfg, None, **_t(overflow_inputs(loss)))
    assert not math.isfinite(float(out.loss))


@pytest.mark.parametrize("bad", [["a", "b"], ["3", "4"], np.array([1 + 2j, 3.0]), torch.tensor([1 + 2j, 3.0])])
def test_text_and_complex_log_probs_are_the_spec_error(bad):
    kw = dict(rejected_logps=[-1.0, -2.0], chosen_lengths=[1, 1], rejected_lengths=[1, 1])
    with pytest.raises(InputError) as ours:
        T.gamma_po_loss(R.GammaPOConfig(loss="simpo"), None, chosen_logps=bad, **kw)
    plain = bad.numpy() if isinstance(bad, torch.Tensor) else bad
    with pytest.raises(InputError) as ref:
        R.gamma_po_loss(R.GammaPOConfig(loss="simpo"), None, chosen_logps=plain, **kw)
    assert (ours.value.field, str(ours.value)) == (ref.value.field, str(ref.value))
