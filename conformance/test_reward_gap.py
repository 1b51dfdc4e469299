"""Conformance of ``reward_gap``: values, permutation equivariance, errors."""

import numpy as np
from hypothesis import given, note
from hypothesis import strategies as st

import gammapo_spec as R
from gammapo_conformance._harness import batch_repro, input_scale, repro
from gammapo_conformance.strategies import batches, configs, dtypes, invalid_inputs


@given(data=st.data(), config=configs(), dtype=dtypes())
def test_reward_gap_values(conf, data, config, dtype):
    conf.example(dtype)
    batch = data.draw(batches(config))
    note(repro(conf.ad.name, "reward_gap", config, dtype, batch_repro(batch)))
    with conf.ad.precision(dtype):
        bi, rounded = conf.ad.inputs(batch.inputs, dtype)
        got = conf.B.reward_gap(config, **bi)
        conf.close(got, R.reward_gap(config, **rounded), dtype, "values", "reward_gap", scale=input_scale(config, rounded))


@given(data=st.data(), config=configs())
def test_reward_gap_permutation_equivariance(conf, data, config):
    conf.example()
    batch = data.draw(batches(config, max_size=64))
    perm = np.random.default_rng(batch.seed).permutation(batch.n)
    with conf.ad.precision("float64"):
        bi, _ = conf.ad.inputs(batch.inputs, "float64")
        pi, _ = conf.ad.inputs({k: v[perm] for k, v in batch.inputs.items()}, "float64")
        a = conf.ad.numpy(conf.B.reward_gap(config, **bi))
        b = conf.ad.numpy(conf.B.reward_gap(config, **pi))
    np.testing.assert_array_equal(a[perm], b, err_msg="reward_gap is not permutation-equivariant")


@given(data=st.data(), config=configs())
def test_reward_gap_errors(conf, data, config):
    conf.example()
    bad, how = data.draw(invalid_inputs(config))
    note(f"broken input: {how}; inputs={ {k: v.tolist() for k, v in bad.items()} }")
    with conf.ad.precision("float64"):
        bi = {k: conf.ad.array(v, "float64") for k, v in bad.items()}
        conf.same_error(lambda: R.reward_gap(config, **bad), lambda: conf.B.reward_gap(config, **bi), "reward_gap")
