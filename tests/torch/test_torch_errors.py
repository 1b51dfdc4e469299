"""Every bad input the spec names raises the reference's error (same class, message and field) in torch.

A sweep over every loss name × every malformed-input kind × every public entry point that takes
per-pair inputs (``gamma_po_loss`` in batch and queue mode, ``reward_gap``, ``implicit_rewards``,
``loss_with_margins``, ``gamma_po_loss_and_grad`` and the ``GammaPOLoss`` module). Config, state and
calibration-argument errors are swept in ``test_torch_calibrate_margins.py`` and ``test_torch_state.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gammapo_spec as R
import gammapo_torch as T
from gammapo_spec.config import LOSS_NAMES
from gammapo_spec.validation import LENGTH_FIELDS
from _torch_helpers import assert_same_error, make_inputs


def config(name: str, calibration: str = "batch") -> R.GammaPOConfig:
    return R.GammaPOConfig(loss=name, beta=2.0, gamma_beta_ratio=0.5, tau=3.0, calibration=calibration,
                           queue_size=16, sample_size=8, queue_warmup=4)


def bad_inputs(c: R.GammaPOConfig):
    """``(label, inputs)`` for every malformed input kind of ``gammapo_spec.validation``."""
    good = make_inputs(c, 4)
    first = next(iter(good))
    yield "missing", {k: v for k, v in good.items() if k != "rejected_logps"}
    yield "unexpected-ref" if c.reference_free else "unexpected-lengths", (
        {**good, "ref_chosen_logps": good["chosen_logps"]} if c.reference_free else {**good, "chosen_lengths": good["chosen_logps"]}
    )
    yield "0-D", {**good, first: np.float64(-1.0)}
    yield "2-D", {**good, "chosen_logps": good["chosen_logps"][None]}
    yield "empty", {k: v[:0] for k, v in good.items()}
    yield "mismatched", {**good, "rejected_logps": good["rejected_logps"][:3]}
    for name in good:
        kind = "length" if name in LENGTH_FIELDS else "logps"
        yield f"nan-{name}", {**good, name: np.where(np.arange(4) == 1, np.nan, good[name])}
        yield f"inf-{name}", {**good, name: np.where(np.arange(4) == 2, np.inf, good[name])}
        if kind == "length":
            yield f"zero-{name}", {**good, name: np.where(np.arange(4) == 0, 0.0, good[name])}
            yield f"negative-{name}", {**good, name: np.where(np.arange(4) == 3, -2.0, good[name])}
        else:
            yield f"-inf-{name}", {**good, name: np.where(np.arange(4) == 2, -np.inf, good[name])}


CASES = [
    (name, calibration, label, inputs)
    for name in LOSS_NAMES
    for calibration in (("batch", "queue") if name.startswith("gamma-") else ("batch",))
    for label, inputs in bad_inputs(config(name, calibration))
]


def as_tensors(inputs: dict) -> dict:
    return {k: torch.tensor(v) for k, v in inputs.items()}


@pytest.mark.parametrize("name,calibration,label,inputs", CASES, ids=[f"{n}-{c}-{lab}" for n, c, lab, _ in CASES])
def test_every_bad_input_raises_the_reference_error_in_every_entry_point(name, calibration, label, inputs):
    c = config(name, calibration)
    tensors = as_tensors(inputs)
    assert_same_error(lambda: R.gamma_po_loss(c, R.init_state(c, 1), **inputs),
                      lambda: T.gamma_po_loss(c, T.init_state(c, 1), **tensors))
    assert_same_error(lambda: R.gamma_po_loss_and_grad(c, R.init_state(c, 1), **inputs),
                      lambda: T.gamma_po_loss_and_grad(c, T.init_state(c, 1), **tensors))
    assert_same_error(lambda: R.gamma_po_loss(c, R.init_state(c, 1), **inputs), lambda: T.GammaPOLoss(c, seed=1)(**tensors))
    if calibration == "batch":
        assert_same_error(lambda: R.reward_gap(c, **inputs), lambda: T.reward_gap(c, **tensors))
        assert_same_error(lambda: R.implicit_rewards(c, **inputs), lambda: T.implicit_rewards(c, **tensors))
        assert_same_error(lambda: R.loss_with_margins(c, np.zeros(4), **inputs),
                          lambda: T.loss_with_margins(c, torch.zeros(4), **tensors))


def test_error_sweep_covers_every_loss_and_kind():
    names = {n for n, _, _, _ in CASES}
    assert names == set(LOSS_NAMES)
    kinds = {lab.split("-")[0] for _, _, lab, _ in CASES}
    assert {"missing", "unexpected", "0", "2", "empty", "mismatched", "nan", "inf", "zero", "negative"} <= kinds


def test_bad_input_leaves_the_module_state_untouched():
    c = config("gamma-simpo", "queue")
    module = T.GammaPOLoss(c, seed=1)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    bad = make_inputs(c, 4)
    bad["chosen_logps"][0] = np.nan
    with pytest.raises(R.InputError):
        module(**as_tensors(bad))
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items()), "a failed step must not advance the queue"
