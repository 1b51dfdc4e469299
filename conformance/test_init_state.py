"""Conformance of ``init_state``: the warm-up queue bit for bit (to float rounding), None when stateless, errors."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import gammapo_spec as R
from gammapo_conformance.strategies import configs


@given(config=configs(), seed=st.integers(0, 2**32 - 1))
def test_init_state_values(conf, config, seed):
    conf.example()
    ref = R.state_to_dict(R.init_state(config, seed))
    with conf.ad.precision("float64"):
        got = conf.ad.state(conf.B.init_state(config, seed))
    if ref is None:
        assert got is None, f"init_state must return None for {config.loss!r}/{config.calibration!r}"
        return
    assert got is not None, "init_state returned None for a queue config"
    for k in ("size", "head", "step", "seed"):
        assert got[k] == ref[k], f"init_state: {k} {got[k]} != reference {ref[k]}"
    np.testing.assert_allclose(got["buffer"], ref["buffer"], rtol=1e-6, atol=1e-6, err_msg="init_state: buffer")


@given(seed=st.sampled_from([-1, 2**32, 1.5, True, "0"]))
def test_init_state_errors(conf, seed):
    conf.example()
    config = R.GammaPOConfig(queue_size=8)
    conf.same_error(lambda: R.init_state(config, seed), lambda: conf.B.init_state(config, seed), "init_state")
