"""Known answers for the study's measurements: AUC, gradient-weight shares, the spread bound, the
Bradley–Terry noise model, paired deltas and the verdict derived from them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gammapo.train.compare import judge, paired_deltas, verdict
from gammapo.train.diagnostics import auc, flipped_weight_share, gradient_weights, margin_diagnostics
from gammapo.train.run import Result
from gammapo.train.task import SyntheticTask

TASK = SyntheticTask()


def test_auc_known_answers():
    flag = np.array([True, False, True, False, False])
    assert auc(flag.astype(float), flag) == 1.0, "a score equal to the flag ranks every flipped pair first"
    assert auc(-flag.astype(float), flag) == 0.0, "its negation ranks every flipped pair last"
    assert auc(np.full(5, 3.0), flag) == 0.5, "all ties: no information"
    assert auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75  # 3 of 4 (pos, neg) pairs ordered
    assert auc([1.0, 1.0, 0.0], [True, False, False]) == 0.75  # one tie (1/2) and one win over 2 pairs
    assert math.isnan(auc([1.0, 2.0], [True, True])), "no negatives: undefined"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-5, 5), st.booleans()), min_size=2, max_size=40))
def test_auc_is_the_pairwise_probability(rows):
    s = np.array([r[0] for r in rows], dtype=float)
    y = np.array([r[1] for r in rows])
    if y.all() or not y.any():
        return
    pos, neg = s[y], s[~y]
    brute = np.mean([(a > b) + 0.5 * (a == b) for a in pos for b in neg])
    assert auc(s, y) == pytest.approx(brute, abs=1e-12)
    assert auc(s, y) + auc(-s, y) == pytest.approx(1.0, abs=1e-12)
    assert auc(np.exp(s / 3.0), y) == pytest.approx(auc(s, y), abs=1e-12), "invariant under a monotone map"


def test_weight_share_and_weights():
    assert flipped_weight_share([1.0, 1.0, 2.0], [True, False, False]) == 0.25
    w = gradient_weights(np.array([0.0, 10.0]), np.array([0.0, 0.0]))
    assert w[0] == pytest.approx(0.5) and w[1] == pytest.approx(1 / (1 + math.exp(10.0)))


def test_margin_diagnostics_on_a_separable_case():
    rng = np.random.default_rng(1)
    flipped = rng.random(512) < 0.2
    h = np.where(flipped, -1.0, 1.0) + 0.05 * rng.standard_normal(512)
    for gamma0, tau in [(1.0, 1.0), (1.0, 10.0)]:
        d = margin_diagnostics(h, flipped, gamma0=gamma0, tau=tau, solver="exact", base_margin=gamma0)
        assert d["auc_flipped"] == 1.0 and d["auc_flipped_gap"] == 1.0
        assert d["spread_bound"] == gamma0 / tau and 0.0 < d["log_spread"] <= d["spread_bound"] + 1e-9
        assert d["gamma_mean"] == pytest.approx(gamma0, rel=1e-6)
        # flipped pairs get the smaller margins, hence less weight than under the constant margin
        assert d["flipped_weight_share"] < d["flipped_weight_share_base"]
        assert d["flipped_share_of_pairs"] == pytest.approx(flipped.mean())
    loose = margin_diagnostics(h, flipped, gamma0=1.0, tau=10.0, solver="exact", base_margin=1.0)
    tight = margin_diagnostics(h, flipped, gamma0=1.0, tau=1.0, solver="exact", base_margin=1.0)
    assert loose["gamma_cv"] < tight["gamma_cv"], "a larger τ lets the margins move less"


def test_bt_noise_matches_the_flip_rate_and_targets_close_pairs():
    values, probs = TASK.gap_distribution()
    assert values[0] == pytest.approx(0.2) and probs.sum() == pytest.approx(1.0)
    t = TASK.bt_temperature(0.2)
    assert float(np.sum(probs / (1 + np.exp(values / t)))) == pytest.approx(0.2, abs=1e-9)
    assert TASK.bt_temperature(0.0) == 0.0
    with pytest.raises(ValueError, match="flip rate"):
        TASK.bt_temperature(0.5)
    uni = TASK.pairs(4000, noise=0.2, seed=3)
    bt = TASK.pairs(4000, noise=0.2, seed=3, noise_model="bt")
    assert [{p["chosen"], p["rejected"]} for p in uni] == [{p["chosen"], p["rejected"]} for p in bt], "same draws"
    g = np.array([TASK.reward_gap(p) for p in bt])
    assert abs((g < 0).mean() - 0.2) < 0.02
    hard, easy = np.isclose(np.abs(g), 0.2), np.abs(g) >= 0.6 - 1e-9
    assert (g[hard] < 0).mean() > 0.28 > 0.12 > (g[easy] < 0).mean(), "close pairs flip more often under BT"
    gu = np.array([TASK.reward_gap(p) for p in uni])
    assert abs((gu[np.isclose(np.abs(gu), 0.2)] < 0).mean() - 0.2) < 0.04, "uniform noise ignores the gap"


def _r(method, loss, seed, acc, data="plain", noise_model="uniform"):
    return Result(method, loss, 0.2, seed, acc, 0.5, 0.0, 1.0, 10, [], data=data, noise_model=noise_model)


def test_paired_deltas_and_verdict_follow_the_numbers():
    base = [0.80, 0.82, 0.78]
    results = [_r("SimPO", "simpo", s, a) for s, a in enumerate(base)]
    results += [_r("γ-SimPO", "gamma-simpo", s, a + d) for s, (a, d) in enumerate(zip(base, [0.01, -0.02, 0.004]))]
    results += [_r("SimPO", "simpo", s, a + 0.07, data="oracle") for s, a in enumerate(base)]
    rows = {(r["method"], r["data"]): r for r in paired_deltas(results)}
    g = rows["γ-SimPO", "plain"]
    assert g["deltas"] == pytest.approx([0.01, -0.02, 0.004]) and g["positive"] == 2
    assert g["judgement"] == "within spread"
    assert rows["SimPO", "oracle"]["mean"] == pytest.approx(0.07)
    lines = verdict(results)
    assert "γ-SimPO vs SimPO (uniform noise 0.20): Δ = -0.002" in lines[0] and "2/3 seeds positive" in lines[0]
    assert "oracle ceiling +0.070" in lines[0] and lines[-1].startswith("Verdict: no γ- method beat")
    better = [_r("γ-SimPO", "gamma-simpo", s, a + 0.03 + 0.001 * s) for s, a in enumerate(base)]
    lines = verdict(results[:3] + better)
    assert "beyond spread (better)" in lines[0] and "in 1 of 1 comparisons (under uniform noise 0.20)" in lines[-1]
    assert judge([0.01, -0.005, 0.02]) == "within spread", "a positive mean inside its 95% interval is not a win"
    assert judge([-0.01, 0.005, -0.02]) == "within spread"
    assert judge([0.1]) == "one seed (no spread)" and judge([-0.03, -0.031, -0.029]) == "beyond spread (worse)"
