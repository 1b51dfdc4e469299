r"""Conformance of SimPO's NLL term with ``sft_reduction="token"`` (the mean over every chosen token of
the batch, as the released SimPO trainer and TRL's ``cpo_alpha``): every output field against the spec,
and — independently of the reference's code — the term and its gradient."""

import dataclasses

import numpy as np
from hypothesis import example, given, note
from hypothesis import strategies as st

import gammapo_spec as R
from gammapo_conformance._harness import input_scale, repro
from gammapo_conformance.strategies import make_batch

from gammapo_conformance.test_gamma_po_loss import check_step

TOKEN_CONFIGS = st.builds(
    lambda loss, w, beta, cal, ratio: R.GammaPOConfig(loss=loss, sft_weight=w, sft_reduction="token", beta=beta,
                                                      gamma_beta_ratio=ratio, calibration=cal, tau=10.0,
                                                      queue_size=16, sample_size=8),
    st.sampled_from(["simpo", "gamma-simpo"]), st.sampled_from([0.1, 0.5, 1.0, 2.0, 5.0]),
    st.sampled_from([0.5, 2.0, 2.5, 10.0]), st.sampled_from(["batch", "queue"]), st.sampled_from([0.0, 0.4, 1.0]))


@given(config=TOKEN_CONFIGS, n=st.integers(1, 40), seed=st.integers(0, 2**31 - 1),
       dtype=st.sampled_from(["float64", "float32"]))
@example(config=R.GammaPOConfig(sft_weight=1.0, sft_reduction="token"), n=1, seed=0, dtype="float64")
def test_gamma_po_loss_sft_token_mean(conf, config, n, seed, dtype):
    r"""The token-mean NLL term: the batch loss gains :math:`w\,(-\sum_i c_i)/\sum_i|y_{w,i}|` and the
    chosen log-probs the gradient :math:`-w/\sum_j|y_{w,j}|` (the rejected none)."""
    conf.example(dtype, config)
    inputs = make_batch(config, n, "normal", seed).inputs
    note(repro(conf.ad.name, "gamma_po_loss", config, dtype, f"inputs = make_batch(cfg, {n}, 'normal', {seed}).inputs"))
    plain = dataclasses.replace(config, sft_weight=0.0)
    with conf.ad.precision(dtype):
        check_step(conf, config, conf.B.init_state(config, 5), inputs, dtype, "gamma_po_loss (token-mean NLL term)")
        bi, rounded = conf.ad.inputs(inputs, dtype)
        out, _, grads = conf.B.gamma_po_loss_and_grad(config, conf.B.init_state(config, 5), **bi)
        out0, _, grads0 = conf.B.gamma_po_loss_and_grad(plain, conf.B.init_state(plain, 5), **bi)
        c, lengths = rounded["chosen_logps"], rounded["chosen_lengths"]
        term = config.sft_weight * (-np.sum(c) / np.sum(lengths))
        s = 1.0 + abs(term) + input_scale(config, rounded)
        conf.close(np.asarray(float(conf.ad.numpy(out.loss)) - float(conf.ad.numpy(out0.loss))), np.asarray(term),
                   dtype, "values", "gamma_po_loss: loss(sft_weight) - loss(0), the token mean w*(-sum c)/sum |y_w|",
                   scale=s)
        g_term = np.full(n, -config.sft_weight / np.sum(lengths))
        gs = 1.0 / n + float(np.max(np.abs(g_term)))
        conf.close(conf.ad.numpy(grads["chosen_logps"]) - conf.ad.numpy(grads0["chosen_logps"]), g_term, dtype,
                   "gradients", "d loss / d chosen_logps: the token-mean term's part -w/sum |y_w|", scale=gs)
        conf.close(conf.ad.numpy(grads["rejected_logps"]) - conf.ad.numpy(grads0["rejected_logps"]), np.zeros(n),
                   dtype, "gradients", "d loss / d rejected_logps: the NLL term has no part in it", scale=gs)
