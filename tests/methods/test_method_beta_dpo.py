"""gammapo_spec.beta_dpo: hand-computed values, properties, gradients, state round trips, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gammapo_spec.beta_dpo as bd
from gammapo_spec.errors import ConfigError, InputError, StateError


def _sp(x):  # softplus, by hand
    return math.log1p(math.exp(-abs(x))) + max(x, 0.0)


def _logps(gaps):
    """Log-probs whose gaps are exactly ``gaps`` (references 0, rejected -10)."""
    g = np.asarray(gaps, dtype=float)
    return g - 10.0, np.full_like(g, -10.0), np.zeros_like(g), np.zeros_like(g)


def test_hand_computed_step_keep_all():
    state = bd.BetaDPOState(gap_mean=1.0, gap_std=2.0, step=3, seed=11)
    out = bd.beta_dpo_step(state, *_logps([1.0, 3.0, -1.0, 5.0]), beta0=0.1, alpha=0.6, rho=1.0)
    # batch mean 2, sample std sqrt(20/3); M0 = 0.9 + 0.2, sigma = 1.8 + 0.1 sqrt(20/3)
    assert out.state.gap_mean == pytest.approx(1.1, abs=1e-15)
    assert out.state.gap_std == pytest.approx(1.8 + 0.1 * math.sqrt(20.0 / 3.0), abs=1e-15)
    assert out.state.step == 4 and out.state.seed == 11
    assert out.mask.tolist() == [1.0, 1.0, 1.0, 1.0]
    beta = 0.1 * (1.0 + 0.6 * (2.0 - 1.1))
    assert out.beta == pytest.approx(beta, abs=1e-15)
    want = sum(_sp(-beta * g) for g in (1.0, 3.0, -1.0, 5.0)) / 4
    assert out.loss == pytest.approx(want, abs=1e-14)


def test_hand_computed_beta_uses_kept_mean_and_clamp():
    assert bd.batch_beta([1.0, 3.0, 9.0], [1, 1, 0], 1.0, beta0=0.1, alpha=0.5) == pytest.approx(0.15, abs=1e-15)
    # a large negative shift clamps at beta_min
    assert bd.batch_beta([-100.0], [1], 0.0, beta0=0.1, alpha=1.0) == 1e-3
    assert bd.batch_beta([-100.0], [1], 0.0, beta0=0.1, alpha=1.0, beta_min=0.02) == 0.02


def test_hand_computed_selection_from_the_hash():
    # sigma = 0 gives uniform weights: the kept pairs are the k largest Gumbel draws, computed here by hand
    from gammapo_spec.random import hash32

    seed, step, n = 5, 2, 6
    s = int(hash32((seed ^ bd.STREAM_BETA_DPO) & 0xFFFFFFFF))
    key = int(hash32((s ^ step) & 0xFFFFFFFF))
    u = [((int(hash32((key + i) & 0xFFFFFFFF)) >> 8) + 0.5) / 2**24 for i in range(n)]
    g = [-math.log(-math.log(v)) for v in u]
    top = sorted(range(n), key=lambda i: (-g[i], i))[:4]
    state = bd.BetaDPOState(gap_mean=0.0, gap_std=0.0, step=step, seed=seed)
    out = bd.beta_dpo_step(state, *_logps([0.0] * n), rho=0.7)  # all gaps 0: sigma stays 0, k = 4
    assert out.state.gap_std == 0.0
    assert np.flatnonzero(out.mask).tolist() == sorted(top)
    assert out.beta == pytest.approx(0.1, abs=1e-15) and out.loss == pytest.approx(math.log(2.0), abs=1e-15)


def test_keep_count_values():
    assert [bd.keep_count(n, 0.8) for n in (1, 2, 4, 5, 10, 64)] == [1, 1, 3, 4, 8, 51]
    assert bd.keep_count(100, 0.29) == 29 and bd.keep_count(7, 1.0) == 7


def test_sampling_frequencies_follow_the_gaussian_weights():
    # k = 1: the kept pair is pair i with probability w_i / sum(w) (Gumbel-max), checked over many steps
    logw = np.array([0.0, -1.0, -2.0])
    counts = np.zeros(3)
    for step in range(6000):
        st_ = bd.BetaDPOState(0.0, 0.0, step, 123)
        counts += bd.select_pairs(logw, bd.gumbel_noise(st_, 3), 1)
    p = np.exp(logw) / np.exp(logw).sum()
    np.testing.assert_allclose(counts / counts.sum(), p, atol=0.02)


def test_sampling_without_replacement_k2_inclusion():
    # k = 2 of 3 with weights w: P(i excluded) = sum over first picks j != i of p_j * w_k/(w_i + w_k) ...
    w = np.array([4.0, 2.0, 1.0])
    logw = np.log(w)
    excluded = np.zeros(3)
    for step in range(6000):
        m = bd.select_pairs(logw, bd.gumbel_noise(bd.BetaDPOState(0.0, 0.0, step, 9), 3), 2)
        excluded += 1.0 - m
    tot = w.sum()
    # the excluded pair is the last of a sequential draw: P(excl = i) = sum_{j != i} (w_j/tot) * (w_k/(tot - w_j))
    want = []
    for i in range(3):
        j, k = [x for x in range(3) if x != i]
        want.append(w[j] / tot * w[k] / (tot - w[j]) + w[k] / tot * w[j] / (tot - w[k]))
    np.testing.assert_allclose(excluded / 6000, want, atol=0.02)


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.floats(-50, 50), min_size=1, max_size=40),
    mean=st.floats(-5, 5), std=st.floats(0, 5), step=st.integers(0, 2**40), seed=st.integers(0, 2**32 - 1),
    rho=st.floats(0.01, 1.0), alpha=st.floats(-3, 3), beta0=st.floats(1e-3, 2.0),
)
def test_properties(gaps, mean, std, step, seed, rho, alpha, beta0):
    state = bd.BetaDPOState(mean, std, step, seed)
    out = bd.beta_dpo_step(state, *_logps(gaps), beta0=beta0, alpha=alpha, rho=rho)
    g = np.asarray(gaps)
    n = len(gaps)
    # kept count
    assert out.mask.sum() == bd.keep_count(n, rho) == max(1, min(n, math.floor(rho * n + 1e-9)))
    assert set(np.unique(out.mask)) <= {0.0, 1.0}
    # beta positive and the formula
    kept_mean = float(np.sum(out.gaps * out.mask) / out.mask.sum())
    assert out.beta >= 1e-3 and out.beta == max(1e-3, beta0 * (1 + alpha * (kept_mean - out.state.gap_mean)))
    # state update formula
    np.testing.assert_allclose(out.gaps, g, atol=1e-12)
    s = float(np.std(out.gaps, ddof=1)) if n > 1 else 0.0
    assert out.state.gap_mean == 0.9 * mean + (1 - 0.9) * float(np.mean(out.gaps))
    assert out.state.gap_std == 0.9 * std + (1 - 0.9) * s
    assert out.state.step == step + 1 and out.state.seed == seed
    assert math.isfinite(out.loss) and out.loss >= 0
    assert out.loss == pytest.approx(bd.masked_loss(out.gaps, out.mask, out.beta), rel=1e-12)
    # same state, same inputs: same subset
    again = bd.beta_dpo_step(state, *_logps(gaps), beta0=beta0, alpha=alpha, rho=rho)
    assert again.mask.tolist() == out.mask.tolist()


def test_alpha_zero_gives_beta0_and_rho_one_keeps_all():
    rng = np.random.default_rng(0)
    out = bd.beta_dpo_step(bd.init_beta_dpo_state(1), *_logps(rng.normal(0, 3, 17)), beta0=0.3, alpha=0.0, rho=1.0)
    assert out.beta == 0.3 and out.mask.sum() == 17


def test_underflowing_weights_still_select_the_closest_pairs():
    # sigma tiny and every gap far away: all weights underflow in linear space, the log-space scores rank them
    state = bd.BetaDPOState(gap_mean=0.0, gap_std=1e-300, step=0, seed=0)
    out = bd.beta_dpo_step(state, *_logps([1e3, 2e3, 3e3, 4e3, 5e3]), rho=0.4, momentum=0.999999)
    assert out.mask.sum() == 2 and math.isfinite(out.loss)


def test_fd_gradient_wrt_logps():
    rng = np.random.default_rng(3)
    n = 9
    c, r, cr, rr = (rng.normal(-20, 4, n) for _ in range(4))
    out = bd.beta_dpo_step(bd.BetaDPOState(0.5, 1.5, 4, 2), c, r, cr, rr, beta0=0.2, alpha=0.4, rho=0.6)
    grad = bd.masked_loss_grad(out.gaps, out.mask, out.beta)

    def f(c_, r_, cr_, rr_):  # beta and the mask held fixed (stop-gradient)
        return bd.masked_loss(bd.reward_discrepancy(c_, r_, cr_, rr_), out.mask, out.beta)

    h = 1e-6
    for which, sign in ((0, 1.0), (1, -1.0), (2, -1.0), (3, 1.0)):
        for i in range(n):
            args_p = [a.copy() for a in (c, r, cr, rr)]
            args_m = [a.copy() for a in (c, r, cr, rr)]
            args_p[which][i] += h
            args_m[which][i] -= h
            fd = (f(*args_p) - f(*args_m)) / (2 * h)
            assert fd == pytest.approx(sign * grad[i], abs=1e-9), (which, i)
    # filtered pairs get no gradient
    assert np.all(grad[out.mask == 0] == 0.0)


def test_state_round_trip_bit_exact():
    rng = np.random.default_rng(7)
    batches = [rng.normal(0, 2, (4, 8)) for _ in range(6)]
    state = bd.init_beta_dpo_state(42)
    outs = []
    for i, b in enumerate(batches):
        if i == 3:  # checkpoint through JSON in the middle
            state = bd.BetaDPOState.from_dict(json.loads(json.dumps(state.to_dict())))
        o = bd.beta_dpo_step(state, *b)
        outs.append(o)
        state = o.state
    state2 = bd.init_beta_dpo_state(42)
    for b, o in zip(batches, outs):
        o2 = bd.beta_dpo_step(state2, *b)
        assert o2.loss == o.loss and o2.beta == o.beta and o2.mask.tolist() == o.mask.tolist()
        state2 = o2.state
    assert state2 == state


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"beta0": 0.0}, "beta0"), ({"beta0": -1.0}, "beta0"), ({"beta0": float("nan")}, "beta0"),
    ({"rho": 0.0}, "rho"), ({"rho": 1.5}, "rho"), ({"alpha": float("inf")}, "alpha"),
    ({"momentum": 1.0}, "momentum"), ({"beta_min": 0.0}, "beta_min"),
])
def test_config_errors(kwargs, field):
    with pytest.raises(ConfigError) as e:
        bd.beta_dpo_step(bd.init_beta_dpo_state(), *_logps([1.0, 2.0]), **kwargs)
    assert e.value.field == field


def test_input_errors():
    c, r, cr, rr = _logps([1.0, 2.0])
    with pytest.raises(InputError) as e:
        bd.beta_dpo_step(bd.init_beta_dpo_state(), c, r[:1], cr, rr)
    assert e.value.field == "rejected_logps"
    with pytest.raises(InputError) as e:
        bd.beta_dpo_step(bd.init_beta_dpo_state(), c, r, cr, np.array([0.0, np.nan]))
    assert e.value.field == "ref_rejected_logps"
    with pytest.raises(InputError) as e:
        bd.beta_dpo_step(bd.init_beta_dpo_state(), c.reshape(1, 2), r, cr, rr)
    assert e.value.field == "chosen_logps"
    with pytest.raises(InputError) as e:
        bd.beta_dpo_step(bd.init_beta_dpo_state(), [], [], [], [])
    assert e.value.field == "chosen_logps"


def test_state_errors():
    with pytest.raises(StateError) as e:
        bd.init_beta_dpo_state(-1)
    assert e.value.field == "seed"
    good = bd.init_beta_dpo_state().to_dict()
    for key, bad in (("gap_std", -1.0), ("gap_mean", float("nan")), ("step", -2), ("seed", 2**32)):
        with pytest.raises(StateError) as e:
            bd.BetaDPOState.from_dict({**good, key: bad})
        assert e.value.field == key
    with pytest.raises(StateError) as e:
        bd.BetaDPOState.from_dict({k: v for k, v in good.items() if k != "step"})
    assert e.value.field == "step"
    with pytest.raises(StateError) as e:
        bd.beta_dpo_step({"gap_mean": 0.0}, *_logps([1.0]))
    assert e.value.field == "state"


def test_equal_gaps_have_exactly_zero_std():
    # mean([0.1] * 3) != 0.1, so the rounded formula gives a ~1e-17 std; the spec defines it as 0
    out = bd.beta_dpo_step(bd.init_beta_dpo_state(), *_logps([0.1, 0.1, 0.1]), rho=0.5)
    assert out.state.gap_std == 0.0 and out.mask.sum() == 1


def test_loss_and_grad_matches_masked_loss_grad():
    rng = np.random.default_rng(11)
    xs = [rng.normal(-10, 3, 7) for _ in range(4)]
    out, grads = bd.beta_dpo_loss_and_grad(bd.init_beta_dpo_state(3), *xs, beta0=0.3)
    g = bd.masked_loss_grad(out.gaps, out.mask, out.beta)
    for name, sign in zip(("chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps"), (1, -1, -1, 1)):
        np.testing.assert_array_equal(grads[name], sign * g)
    assert bd.beta_dpo_state_from_dict(bd.beta_dpo_state_to_dict(out.state)) == out.state
