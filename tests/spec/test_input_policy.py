"""Input policy of the reference: finite inputs whose reward gap overflows raise InputError (field
"gaps") in every loss with value checks on and propagate as non-finite values with them off; text,
complex and NumPy-scalar inputs and config numbers are handled as documented."""

from __future__ import annotations

import numpy as np
import pytest

import gammapo_spec as R
from gammapo_spec.errors import ConfigError, InputError

LOSSES = ["dpo", "simpo", "ipo", "hinge", "robust", "rdpo", "gamma-dpo", "gamma-simpo"]


def overflow_inputs(loss: str) -> dict:
    """Finite float64 inputs whose implicit reward β·(−1e308) overflows (β = 10)."""
    kw = dict(chosen_logps=[-4.0, -1e308], rejected_logps=[-5.0, -1.0])
    base = loss.removeprefix("gamma-")
    if base != "simpo":
        kw.update(ref_chosen_logps=[0.0, 0.0], ref_rejected_logps=[0.0, 0.0])
    if base in ("simpo", "rdpo"):
        kw.update(chosen_lengths=[1, 1], rejected_lengths=[1, 1])
    return kw


@pytest.mark.parametrize("loss", LOSSES)
def test_an_overflowing_gap_is_an_input_error(loss):
    cfg = R.GammaPOConfig(loss=loss, beta=10.0, calibration="batch")
    with pytest.raises(InputError, match="reward gaps u_w - u_l are not finite") as info:
        R.gamma_po_loss(cfg, None, **overflow_inputs(loss))
    assert info.value.field == "gaps"


@pytest.mark.parametrize("loss", LOSSES)
def test_without_value_checks_the_overflow_propagates(loss):
    cfg = R.GammaPOConfig(loss=loss, beta=10.0, calibration="batch", check_values=False)
    with np.errstate(all="ignore"):
        out, _ = R.gamma_po_loss(cfg, None, **overflow_inputs(loss))
    assert not np.isfinite(out.loss) and not np.isfinite(out.gaps[1])


def test_a_large_but_representable_gap_is_fine():
    cfg = R.GammaPOConfig(loss="dpo", beta=10.0)
    kw = dict(overflow_inputs("dpo"), chosen_logps=[-4.0, -1e306])
    out, _ = R.gamma_po_loss(cfg, None, **kw)
    assert np.isfinite(out.loss)


@pytest.mark.parametrize("bad,match", [(["a", "b"], "must hold numbers"), (["3", "4"], "must hold numbers"),
                                       (np.array([1 + 2j, 3.0]), "must be real"), ([[1.0], 2.0], "array of numbers")])
def test_text_and_complex_log_probs_are_input_errors(bad, match):
    with pytest.raises(InputError, match=match) as info:
        R.gamma_po_loss(R.GammaPOConfig(loss="simpo"), None, chosen_logps=bad, rejected_logps=[-1.0, -2.0],
                        chosen_lengths=[1, 1], rejected_lengths=[1, 1])
    assert info.value.field == "chosen_logps"


def test_config_takes_numpy_scalars_as_python_numbers():
    cfg = R.GammaPOConfig(beta=np.float32(2.0), tau=np.float64(3.0), queue_size=np.int64(64), sample_size=np.int32(16),
                          iters=np.uint8(20))
    assert cfg == R.GammaPOConfig(beta=2.0, tau=3.0, queue_size=64, sample_size=16, iters=20)
    assert all(type(v) in (int, float, str, bool) for v in cfg.to_dict().values())


@pytest.mark.parametrize("field,value", [("iters", 10**9), ("queue_size", 10**12), ("sample_size", 2**25),
                                         ("queue_size", np.int64(2**25)), ("beta", np.bool_(True)),
                                         ("beta", 1 + 0j), ("tau", np.complex128(1.0))])
def test_config_numbers_are_bounded(field, value):
    with pytest.raises(ConfigError) as info:
        R.GammaPOConfig(**{field: value, **({"solver": "mirror"} if field == "iters" else {})})
    assert info.value.field == field


def test_config_bounds_are_inclusive():
    cfg = R.GammaPOConfig(queue_size=R.config.MAX_QUEUE_SIZE, sample_size=R.config.MAX_SAMPLE_SIZE, iters=R.config.MAX_ITERS)
    assert cfg.queue_size == 1 << 24
