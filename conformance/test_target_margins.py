"""Conformance of ``target_margins``: base margins, the calibrated shift, length margins of R-DPO."""

import numpy as np
from hypothesis import given, note
from hypothesis import strategies as st

import gammapo_spec as R
from gammapo_conformance.strategies import configs, dtypes


@given(config=configs(), n=st.integers(1, 64), seed=st.integers(0, 2**31), dtype=dtypes())
def test_target_margins_values(conf, config, n, seed, dtype):
    conf.example(dtype)
    rng = np.random.default_rng(seed)
    gamma = np.abs(rng.normal(size=n)) * (1 + config.gamma0) if config.dynamic_margins else None
    lens = {}
    if config.reference_free or config.base_loss == "rdpo":
        lens = {"chosen_lengths": rng.integers(1, 300, n).astype(float), "rejected_lengths": rng.integers(1, 300, n).astype(float)}
    note(f"config=R.{config!r}; n={n}; gamma={None if gamma is None else gamma.tolist()}; lengths={ {k: v.tolist() for k, v in lens.items()} }")
    with conf.ad.precision(dtype):
        bl, rl = conf.ad.inputs(lens, dtype)
        bg = None if gamma is None else conf.ad.array(gamma, dtype)
        rg = None if gamma is None else conf.ad.numpy(bg)
        got = conf.B.target_margins(config, n, gamma=bg, **bl)
        ref = R.target_margins(config, n, gamma=rg, **rl)
        scale = 1 + config.gamma0 + abs(config.rdpo_alpha) * 300
        conf.close(got, ref, dtype, "values", "target_margins", scale=scale)
