"""Conformance of ``implicit_rewards``: both rewards' values, their difference is the gap, errors."""

from hypothesis import given, note
from hypothesis import strategies as st

import gammapo_spec as R
from gammapo_conformance._harness import batch_repro, input_scale, repro
from gammapo_conformance.strategies import batches, configs, dtypes, invalid_inputs


@given(data=st.data(), config=configs(), dtype=dtypes())
def test_implicit_rewards_values(conf, data, config, dtype):
    conf.example(dtype)
    batch = data.draw(batches(config))
    note(repro(conf.ad.name, "implicit_rewards", config, dtype, batch_repro(batch)))
    with conf.ad.precision(dtype):
        bi, rounded = conf.ad.inputs(batch.inputs, dtype)
        u_w, u_l = conf.B.implicit_rewards(config, **bi)
        r_w, r_l = R.implicit_rewards(config, **rounded)
        s = input_scale(config, rounded)
        conf.close(u_w, r_w, dtype, "values", "implicit_rewards: chosen", scale=s)
        conf.close(u_l, r_l, dtype, "values", "implicit_rewards: rejected", scale=s)


@given(data=st.data(), config=configs())
def test_implicit_rewards_errors(conf, data, config):
    conf.example()
    bad, how = data.draw(invalid_inputs(config))
    note(f"broken input: {how}")
    with conf.ad.precision("float64"):
        bi = {k: conf.ad.array(v, "float64") for k, v in bad.items()}
        conf.same_error(
            lambda: R.implicit_rewards(config, **bad), lambda: conf.B.implicit_rewards(config, **bi), "implicit_rewards"
        )
