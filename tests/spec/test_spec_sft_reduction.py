"""SimPO's NLL term, both reductions: the token mean equals the cross-entropy over every chosen token of a
batch computed from token logits (as a trainer computes it, ignore-index padding and all), the pair mean
the mean of per-response averages; fixed values; the analytic gradient against finite differences; the
two agree when all lengths are equal; the option is validated."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gammapo_spec as R
from gammapo_spec.errors import ConfigError
from gammapo_spec.losses import sft_terms


def _batch(rng, n, vocab=11, max_len=9):
    """Random token logits of n chosen responses, padded with the ignore index -100 like a collated batch,
    and the summed log-probs / lengths a trainer would hand to the loss."""
    lengths = rng.integers(1, max_len + 1, size=n)
    logits = rng.normal(size=(n, max_len, vocab)) * 2.0
    labels = np.full((n, max_len), -100)
    for i, k in enumerate(lengths):
        labels[i, :k] = rng.integers(0, vocab, size=k)
    logz = np.log(np.exp(logits).sum(-1))
    safe = np.where(labels < 0, 0, labels)
    token_logp = np.take_along_axis(logits, safe[..., None], -1)[..., 0] - logz
    token_logp = np.where(labels < 0, 0.0, token_logp)
    return token_logp, labels, token_logp.sum(1), lengths.astype(np.float64)


def _cross_entropy(token_logp, labels):
    """Mean NLL over every non-ignored token of the batch (what nn.CrossEntropyLoss(ignore_index=-100) gives)."""
    keep = labels != -100
    return float(-token_logp[keep].sum() / keep.sum())


def _losses(cfg, c, lengths, r):
    return R.loss_with_margins(cfg, np.full(len(c), cfg.gamma0), chosen_logps=c, rejected_logps=r,
                               chosen_lengths=lengths, rejected_lengths=lengths)


@pytest.mark.parametrize("seed", range(5))
def test_token_mean_is_the_batch_cross_entropy(seed):
    rng = np.random.default_rng(seed)
    token_logp, labels, c, lengths = _batch(rng, 6)
    r = c - rng.normal(size=6)
    w = 0.7
    base = R.GammaPOConfig(loss="simpo", beta=2.0)
    token = base.replace(sft_weight=w, sft_reduction="token")
    pair = base.replace(sft_weight=w)
    plain = _losses(base, c, lengths, r).loss
    ce = _cross_entropy(token_logp, labels)
    assert _losses(token, c, lengths, r).loss - plain == pytest.approx(w * ce, rel=1e-12)
    per_response = np.mean([-token_logp[i][labels[i] != -100].mean() for i in range(6)])
    assert _losses(pair, c, lengths, r).loss - plain == pytest.approx(w * per_response, rel=1e-12)
    assert abs(ce - per_response) > 1e-3, "the batch does not tell the two reductions apart"


def test_fixed_values():
    # c = [-3, -6], |y_w| = [1, 3]: pair mean (3 + 2)/2 = 2.5, token mean 9/4 = 2.25
    cfg = R.GammaPOConfig(loss="simpo", sft_weight=2.0)
    assert sft_terms(cfg, [-3.0, -6.0], [1.0, 3.0]).mean() == pytest.approx(5.0)
    assert sft_terms(cfg.replace(sft_reduction="token"), [-3.0, -6.0], [1.0, 3.0]).mean() == pytest.approx(4.5)
    assert sft_terms(cfg.replace(sft_weight=0.0), [-3.0, -6.0], [1.0, 3.0]).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("reduction", ["pair", "token"])
@pytest.mark.parametrize("loss", ["simpo", "gamma-simpo"])
def test_gradient_matches_finite_differences(reduction, loss):
    rng = np.random.default_rng(3)
    n = 7
    c, r = rng.normal(-8, 3, n), rng.normal(-9, 3, n)
    lw, ll = rng.integers(1, 12, n).astype(float), rng.integers(1, 12, n).astype(float)
    cfg = R.GammaPOConfig(loss=loss, beta=2.0, sft_weight=1.5, sft_reduction=reduction, calibration="batch")
    m = rng.normal(1.0, 0.2, n)  # the margins are constants for the gradient
    f = lambda cc: R.loss_with_margins(cfg, m, chosen_logps=cc, rejected_logps=r, chosen_lengths=lw,  # noqa: E731
                                       rejected_lengths=ll).loss
    g = R.loss_vjp(cfg, m, chosen_logps=c, rejected_logps=r, chosen_lengths=lw, rejected_lengths=ll)["chosen_logps"]
    eps = 1e-6
    fd = np.array([(f(c + eps * e) - f(c - eps * e)) / (2 * eps) for e in np.eye(n)])
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 20), length=st.integers(1, 50), seed=st.integers(0, 2**32 - 1))
def test_reductions_agree_on_equal_lengths(n, length, seed):
    c = np.random.default_rng(seed).normal(-10, 5, n)
    lengths = np.full(n, float(length))
    cfg = R.GammaPOConfig(loss="simpo", sft_weight=1.0)
    np.testing.assert_allclose(sft_terms(cfg, c, lengths), sft_terms(cfg.replace(sft_reduction="token"), c, lengths),
                               rtol=1e-12)


def test_reduction_is_validated():
    with pytest.raises(ConfigError) as info:
        R.GammaPOConfig(loss="simpo", sft_weight=1.0, sft_reduction="tokens")
    assert info.value.field == "sft_reduction"
