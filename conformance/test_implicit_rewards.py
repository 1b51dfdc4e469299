"""Conformance of ``implicit_rewards``: both rewards' values, their difference is the gap, errors."""

import numpy as np
from hypothesis import given, note
from hypothesis import strategies as st

import gammapo_spec as R
from gammapo_conformance._harness import batch_repro, input_scale, repro
from gammapo_conformance.strategies import all_invalid_inputs, batches, configs, dtypes, invalid_inputs, make_batch


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


@given(config=configs(), dtype=st.sampled_from(["bfloat16", "float16", "float32"]), seed=st.integers(0, 2**31 - 1))
def test_implicit_rewards_compute_dtype(conf, config, dtype, seed):
    """The dtype policy: half-precision log-probs are upcast to float32 before any arithmetic (the
    outputs are float32 and meet float32's tolerance, which half-precision arithmetic cannot)."""
    conf.example(dtype, config)
    with conf.ad.precision(dtype):
        bi, rounded = conf.ad.inputs(make_batch(config, 16, "normal", seed).inputs, dtype)
        got = conf.B.implicit_rewards(config, **bi)
        want = R.implicit_rewards(config, **rounded)
    got, want = (got, want) if isinstance(want, tuple) else ((got,), (want,))
    for g, w in zip(got, want):
        conf.close(g, w, "float32", "values", f"implicit_rewards ({dtype} inputs, float32 compute)", scale=input_scale(config, rounded))
        d = str(getattr(g, "dtype", "?"))
        if not (isinstance(g, np.ndarray) and d == "float64"):  # a NumPy reference-style backend: float64
            assert "float32" in d, f"implicit_rewards returned dtype {d} for {dtype} inputs; the dtype policy says float32"


ERROR_CONFIGS = [R.GammaPOConfig(loss="dpo"), R.GammaPOConfig(loss="simpo"), R.GammaPOConfig(loss="rdpo", rdpo_alpha=0.1)]


@given(which=st.sampled_from(range(len(ERROR_CONFIGS))))
def test_implicit_rewards_every_error_path(conf, which):
    """Every field broken in every way: NaN, ±inf, zero and negative lengths, N = 0, shapes, missing
    and extra fields raise the spec's error naming the spec's field."""
    config = ERROR_CONFIGS[which]
    conf.example("float64", config)
    with conf.ad.precision("float64"):
        for bad, how in all_invalid_inputs(config):
            bi = {k: conf.ad.array(v, "float64") for k, v in bad.items()}
            conf.same_error(lambda: R.implicit_rewards(config, **bad), lambda: conf.B.implicit_rewards(config, **bi), f"implicit_rewards ({how})")
