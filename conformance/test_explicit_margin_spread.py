"""Conformance of ``explicit_margin_spread`` (the authors' explicit margin, max − min over every scored
response of a prompt, NaN marking a missing one) in a backend's ``alignment_potential`` module: values
against the reference in every dtype, and its errors. A backend without the module, or without the op,
skips."""

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import gammapo_spec.alignment_potential as AP
from gammapo_conformance.strategies import dtypes


def _op(conf):
    mod = conf.ad.module("alignment_potential")
    if mod is None or not hasattr(mod, "explicit_margin_spread"):
        pytest.skip(f"backend {conf.ad.name!r} has no alignment_potential.explicit_margin_spread")
    return mod.explicit_margin_spread


def _scores(n, k, seed, scale):
    """[n, k] normal scores times ``scale``, with up to k − 2 NaN (missing responses) per row."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, k)) * scale
    for i in range(n):
        a[i, rng.permutation(k)[: rng.integers(0, k - 1)]] = np.nan
    return a


@given(n=st.integers(1, 64), k=st.integers(2, 6), seed=st.integers(0, 2**31 - 1),
       scale=st.sampled_from([1e-3, 1.0, 10.0, 1e4]), dtype=dtypes())
def test_explicit_margin_spread_values(conf, n, k, seed, scale, dtype):
    conf.example(dtype)
    op = _op(conf)
    note(f"# reproduce: scores = _scores({n}, {k}, {seed}, {scale})  # backend {conf.ad.name}, dtype {dtype}")
    with conf.ad.precision(dtype):
        bi, rounded = conf.ad.inputs({"scores": _scores(n, k, seed, scale)}, dtype)
        want = AP.explicit_margin_spread(rounded["scores"])
        conf.close(op(bi["scores"]), want, dtype, "values", "explicit_margin_spread",
                   scale=1.0 + float(np.nanmax(np.abs(rounded["scores"]))))


@pytest.mark.parametrize("scores", [[1.0, 2.0], [[1.0, float("inf")]], [[1.0, float("nan")], [1.0, 2.0]]],
                         ids=["1-D", "infinite", "one-score-row"])
def test_explicit_margin_spread_errors(conf, scores):
    op = _op(conf)
    with pytest.raises(AP.InputError) as want:
        AP.explicit_margin_spread(scores)
    bi, _ = conf.ad.inputs({"scores": np.asarray(scores, dtype=np.float64)}, "float64")
    with pytest.raises(AP.InputError) as got:
        op(bi["scores"])
    assert (str(got.value), got.value.field) == (str(want.value), want.value.field)
