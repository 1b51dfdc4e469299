"""Conformance of ``loss_with_margins``: every field of the output for given margins, margin shape errors."""

import numpy as np
from hypothesis import given, note
from hypothesis import strategies as st

import gammapo_spec as R
from gammapo_spec.dtype_policy import compute_dtype
from gammapo_conformance._harness import OUTPUT_FIELDS, batch_repro, input_scale, loss_scale, repro
from gammapo_conformance.strategies import batches, configs, dtypes

@given(data=st.data(), config=configs(), dtype=dtypes())
def test_loss_with_margins_values(conf, data, config, dtype):
    """Every field of the output (loss, losses, margins, gaps, both rewards, every metric)."""
    conf.example(dtype, config)
    batch = data.draw(batches(config))
    margins = np.random.default_rng(batch.seed).uniform(0, 2 * (1 + config.gamma0), batch.n)
    note(repro(conf.ad.name, "loss_with_margins", config, dtype, batch_repro(batch)))
    with conf.ad.precision(dtype):
        bi, rounded = conf.ad.inputs(batch.inputs, dtype)
        bm = conf.ad.array(margins, dtype)
        out = conf.B.loss_with_margins(config, bm, **bi)
        ref = R.loss_with_margins(config, conf.ad.numpy(bm), **rounded)
        s = input_scale(config, rounded)
        ls = loss_scale(config, ref, s)  # the gap's rounding times the loss's slope (IPO: 2|z − ½|/β²)
        conf.loss_output(out, ref, config, dtype, "loss_with_margins", scale=s, loss_scale=ls)
    want = compute_dtype(dtype)
    for f in OUTPUT_FIELDS:
        v = getattr(out, f)
        d = str(getattr(v, "dtype", type(v).__name__))
        if not (isinstance(out.losses, np.ndarray) and "float64" in str(out.losses.dtype)):  # NumPy-style: float64
            assert want in d, f"loss_with_margins: {f} has dtype {d} for {dtype} inputs; the dtype policy says {want}"


@given(config=configs(), extra=st.sampled_from([-1, 1, "2d"]))
def test_loss_with_margins_errors(conf, config, extra):
    conf.example()
    from gammapo_conformance.strategies import make_batch

    x = make_batch(config, 4, "normal", 0).inputs
    m = np.zeros((4, 1)) if extra == "2d" else np.zeros(4 + extra)
    with conf.ad.precision("float64"):
        bi, _ = conf.ad.inputs(x, "float64")
        bm = conf.ad.array(m, "float64")
        conf.same_error(lambda: R.loss_with_margins(config, m, **x), lambda: conf.B.loss_with_margins(config, bm, **bi),
                        "loss_with_margins")
