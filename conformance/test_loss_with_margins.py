"""Conformance of ``loss_with_margins``: every field of the output for given margins, margin shape errors."""

import numpy as np
from hypothesis import given, note
from hypothesis import strategies as st

import gammapo_spec as R
from gammapo_conformance._harness import batch_repro, input_scale, loss_scale, repro
from gammapo_conformance.strategies import batches, configs, dtypes

FIELDS = ("losses", "margins", "gaps", "chosen_rewards", "rejected_rewards")


@given(data=st.data(), config=configs(), dtype=dtypes())
def test_loss_with_margins_values(conf, data, config, dtype):
    conf.example(dtype)
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
        conf.close(out.loss, ref.loss, dtype, "values", "loss_with_margins: loss", scale=ls)
        for f in FIELDS:
            conf.close(getattr(out, f), getattr(ref, f), dtype, "values", f"loss_with_margins: {f}",
                       scale=ls if f == "losses" else s)


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
