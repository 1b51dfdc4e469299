"""gammapo_spec.epsilon_dpo: hand values, properties, finite differences, errors, state."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gammapo_spec.epsilon_dpo as E
from gammapo_spec import ConfigError, GammaPOConfig, InputError, StateError, gamma_po_loss


# --- an independent, loop-by-loop computation of the token op -----------------------------------------
def _hand_logps(p, q, labels, mask, eps):
    """Plain Python: probabilities by exp/normalise, one token at a time."""
    out = {"0": [], "+": [], "-": []}
    for b in range(len(p)):
        tot = {"0": 0.0, "+": 0.0, "-": 0.0}
        for t in range(len(p[b])):
            if not mask[b][t]:
                continue
            for key, coef in (("0", 0.0), ("+", eps), ("-", -eps)):
                z = [(1 + coef) * p[b][t][v] - coef * q[b][t][v] for v in range(len(p[b][t]))]
                w = [math.exp(x) for x in z]
                tot[key] += math.log(w[labels[b][t]] / sum(w))
        for key in out:
            out[key].append(tot[key])
    return out


def _tokens(seed=0, B=2, T=3, V=4):
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(B, T, V))
    q = rng.normal(size=(B, T, V))
    y = rng.integers(0, V, size=(B, T))
    m = np.ones((B, T), bool)
    m[0, 0] = False
    m[1, T - 1] = False
    return p, q, y, m


def test_sequence_logps_hand_values_tiny():
    # V = 2, one token: log_softmax([a, b])[0] = -log(1 + e^(b-a))
    p = np.array([[[1.0, 0.0]]])
    q = np.array([[[0.0, 2.0]]])
    out = E.epsilon_sequence_logps(p, q, [[0]], epsilon=0.5)
    # z+ = 1.5*[1,0] - 0.5*[0,2] = [1.5, -1];  z- = 0.5*[1,0] + 0.5*[0,2] = [0.5, 1]
    assert out.logps[0] == pytest.approx(-math.log1p(math.exp(-1.0)), abs=1e-15)
    assert out.logps_plus[0] == pytest.approx(-math.log1p(math.exp(-2.5)), abs=1e-15)
    assert out.logps_minus[0] == pytest.approx(-math.log1p(math.exp(0.5)), abs=1e-15)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sequence_logps_match_loop_computation(seed):
    p, q, y, m = _tokens(seed)
    got = E.epsilon_sequence_logps(p, q, y, m, epsilon=0.3)
    ref = _hand_logps(p.tolist(), q.tolist(), y.tolist(), m.tolist(), 0.3)
    np.testing.assert_allclose(got.logps, ref["0"], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(got.logps_plus, ref["+"], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(got.logps_minus, ref["-"], rtol=1e-13, atol=1e-13)


def test_ignore_index_convention_equals_explicit_mask():
    p, q, y, m = _tokens(3)
    y_ignored = np.where(m, y, E.IGNORE_INDEX)
    a = E.epsilon_sequence_logps(p, q, y_ignored, epsilon=0.2)
    b = E.epsilon_sequence_logps(p, q, y, m.astype(int), epsilon=0.2)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    # labels outside the mask may hold anything (here: out of range)
    c = E.epsilon_sequence_logps(p, q, np.where(m, y, 999), m, epsilon=0.2)
    np.testing.assert_array_equal(c.logps, b.logps)


def test_sequence_logps_vjp_matches_finite_differences():
    p, q, y, m = _tokens(4, B=2, T=2, V=3)
    g = np.array([0.7, -1.3])
    grad = E.sequence_logps_vjp(p, y, m, g)
    h = 1e-6
    num = np.zeros_like(p)
    for idx in np.ndindex(p.shape):
        pp, pm = p.copy(), p.copy()
        pp[idx] += h
        pm[idx] -= h
        f = lambda z: float(g @ E.epsilon_sequence_logps(z, q, y, m, epsilon=0.1).logps)  # noqa: E731
        num[idx] = (f(pp) - f(pm)) / (2 * h)
    np.testing.assert_allclose(grad, num, rtol=1e-7, atol=1e-8)
    assert np.all(grad[~m] == 0.0)


# --- steps and β_i -------------------------------------------------------------------------------
def test_steps_hand_values_and_ties():
    c, r = [-3.0] * 5, [-5.0] * 5  # ρ = 2
    cp = [-2.0, -3.5, -3.0, -2.0, -2.0]  # ρ+ = 3, 1.5, 2, 3, 3
    cm = [-4.0, -2.5, -3.0, -3.0, -2.5]  # ρ- = 1, 2.5, 2, 2, 2.5
    s = E.epsilon_steps(c, r, cp, r, cm, r)
    assert s.dtype == np.int64
    assert s.tolist() == [1, -1, 0, 0, 0]  # ties and "both above" give 0


finite = st.floats(-50, 50, allow_nan=False)
cols = st.integers(1, 8).flatmap(lambda n: st.lists(st.lists(finite, min_size=n, max_size=n), min_size=6, max_size=6))


@given(cols)
def test_steps_properties(x):
    c, r, cp, rp, cm, rm = (np.array(v) for v in x)
    s = E.epsilon_steps(c, r, cp, rp, cm, rm)
    assert set(s.tolist()) <= {-1, 0, 1}
    # swapping the two perturbations flips the step; so does swapping chosen and rejected
    assert E.epsilon_steps(c, r, cm, rm, cp, rp).tolist() == (-s).tolist()
    assert E.epsilon_steps(r, c, rp, cp, rm, cm).tolist() == (-s).tolist()
    # no perturbation: s = 0
    assert not E.epsilon_steps(c, r, c, r, c, r).any()


@given(st.integers(0, 10_000), st.floats(1e-3, 0.9))
def test_reference_equal_policy_or_tiny_epsilon_gives_plain_dpo(seed, eps):
    p, q, y, m = _tokens(seed % 50, B=3, T=2, V=5)
    out = E.epsilon_sequence_logps(p, p, y, m, epsilon=eps)  # ref == policy: z± = z
    c, r = out.logps, out.logps[::-1].copy()
    assert not E.epsilon_steps(c, r, out.logps_plus, out.logps_plus[::-1], out.logps_minus, out.logps_minus[::-1]).any()
    tiny = E.epsilon_sequence_logps(p, q, y, m, epsilon=1e-20)  # (1 ± 1e-20) rounds to 1
    np.testing.assert_array_equal(tiny.logps_plus, tiny.logps)
    s = E.epsilon_steps(tiny.logps, tiny.logps[::-1], tiny.logps_plus, tiny.logps_plus[::-1],
                        tiny.logps_minus, tiny.logps_minus[::-1])
    assert not s.any()
    assert np.all(E.epsilon_betas(0.3, s, 1e-20) == 0.3)


def test_betas_hand_values():
    np.testing.assert_allclose(E.epsilon_betas(0.1, [1, 0, -1], 0.25), [0.08, 0.1, 0.1 / 0.75], rtol=1e-15)


# --- the loss -------------------------------------------------------------------------------------
def test_loss_hand_values_with_margin_and_smoothing():
    # pair 0: Δ = (−1+2) − (−3+2) = 2, s = +1, β_0 = 1/1.25 = 0.8, h = 1.6, m = 0.5 → z = 1.1
    # pair 1: Δ = −1, s = −1, β_1 = 1/0.75, h = −4/3, m = −0.2 → z = −17/15
    out = E.epsilon_dpo_loss([-1.0, -2.0], [-3.0, -1.0], [-2.0, -2.0], [-2.0, -2.0], [1, -1], beta=1.0,
                             epsilon=0.25, label_smoothing=0.1, margins=[0.5, -0.2])
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731
    z = [1.1, -4 / 3 + 0.2]
    want = [0.9 * sp(-zi) + 0.1 * sp(zi) for zi in z]
    np.testing.assert_allclose(out.losses, want, rtol=1e-14)
    assert out.loss == pytest.approx(sum(want) / 2, rel=1e-14)
    np.testing.assert_allclose(out.chosen_rewards, [0.8 * 1.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(out.rejected_rewards, [0.8 * -1.0, (1 / 0.75) * 1.0], rtol=1e-15)
    np.testing.assert_allclose(out.gaps, E.epsilon_dpo_gaps([-1.0, -2.0], [-3.0, -1.0], [-2.0, -2.0], [-2.0, -2.0],
                                                            [1, -1], beta=1.0, epsilon=0.25), rtol=1e-15)


@given(st.integers(0, 10_000), st.floats(0.0, 0.45))
def test_zero_steps_is_dpo_of_the_spec(seed, ls):
    rng = np.random.default_rng(seed)
    c, r, c0, r0 = (-rng.uniform(1, 30, 7) for _ in range(4))
    out = E.epsilon_dpo_loss(c, r, c0, r0, np.zeros(7, int), beta=0.3, epsilon=0.1, label_smoothing=ls)
    ref, _ = gamma_po_loss(GammaPOConfig(loss="dpo", beta=0.3, label_smoothing=ls), None, chosen_logps=c,
                           rejected_logps=r, ref_chosen_logps=c0, ref_rejected_logps=r0)
    np.testing.assert_allclose(out.losses, ref.losses, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("ls", [0.0, 0.2])
def test_loss_gradient_matches_finite_differences(ls):
    rng = np.random.default_rng(7)
    x = {k: -rng.uniform(1, 10, 5) for k in ("chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps")}
    kw = dict(steps=[1, -1, 0, 1, -1], beta=0.7, epsilon=0.3, label_smoothing=ls, margins=rng.normal(size=5))
    grad = E.epsilon_dpo_grad(**x, **kw)
    h = 1e-6
    for name in x:
        num = np.zeros(5)
        for i in range(5):
            up = {k: v.copy() for k, v in x.items()}
            dn = {k: v.copy() for k, v in x.items()}
            up[name][i] += h
            dn[name][i] -= h
            num[i] = (E.epsilon_dpo_loss(**up, **kw).loss - E.epsilon_dpo_loss(**dn, **kw).loss) / (2 * h)
        np.testing.assert_allclose(grad[name], num, rtol=1e-6, atol=1e-10, err_msg=name)


# --- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("eps", [0.0, 1.0, -0.1, float("nan"), "x", True])
def test_bad_epsilon(eps):
    with pytest.raises(ConfigError) as e:
        E.epsilon_betas(0.1, [0], eps)
    assert e.value.field == "epsilon"


@pytest.mark.parametrize("beta", [0.0, -1.0, float("inf"), None])
def test_bad_beta(beta):
    with pytest.raises(ConfigError) as e:
        E.epsilon_dpo_loss([0.0], [0.0], [0.0], [0.0], [0], beta=beta, epsilon=0.1)
    assert e.value.field == "beta"


def test_bad_label_smoothing():
    with pytest.raises(ConfigError) as e:
        E.epsilon_dpo_loss([0.0], [0.0], [0.0], [0.0], [0], beta=1.0, epsilon=0.1, label_smoothing=0.5)
    assert e.value.field == "label_smoothing"


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"ref_logits": np.zeros((2, 3, 5))}, "ref_logits"),
        ({"policy_logits": np.zeros((2, 3))}, "policy_logits"),
        ({"labels": np.zeros((2, 4), int)}, "labels"),
        ({"mask": np.ones((2, 4), bool)}, "mask"),
        ({"labels": np.full((2, 3), 4)}, "labels"),  # V = 4: out of range
        ({"labels": np.full((2, 3), -1)}, "labels"),
        ({"labels": np.zeros((2, 3))}, "labels"),  # floats
        ({"mask": np.array([[1, 1, 1], [0, 0, 0]])}, "mask"),  # an empty row
        ({"policy_logits": np.full((2, 3, 4), np.nan)}, "policy_logits"),
    ],
)
def test_token_op_errors_name_the_field(kw, field):
    args = {"policy_logits": np.zeros((2, 3, 4)), "ref_logits": np.zeros((2, 3, 4)),
            "labels": np.zeros((2, 3), int), "mask": np.ones((2, 3), bool)}
    args.update(kw)
    if "ref_logits" not in kw and args["policy_logits"].shape != (2, 3, 4):
        args["ref_logits"] = args["policy_logits"]
    with pytest.raises(InputError) as e:
        E.epsilon_sequence_logps(epsilon=0.1, **args)
    assert e.value.field == field


def test_pair_errors_name_the_field():
    with pytest.raises(InputError) as e:
        E.epsilon_steps([0.0, 1.0], [0.0], [0.0], [0.0], [0.0], [0.0])
    assert e.value.field == "rejected_logps"
    with pytest.raises(InputError) as e:
        E.epsilon_dpo_loss([0.0], [0.0], [0.0], [np.inf], [0], beta=1.0, epsilon=0.1)
    assert e.value.field == "ref_rejected_logps"
    with pytest.raises(InputError) as e:
        E.epsilon_dpo_loss([0.0], [0.0], [0.0], [0.0], [2], beta=1.0, epsilon=0.1)
    assert e.value.field == "steps"
    with pytest.raises(InputError) as e:
        E.epsilon_dpo_loss([0.0], [0.0], [0.0], [0.0], [0], beta=1.0, epsilon=0.1, margins=[0.0, 1.0])
    assert e.value.field == "margins"
    with pytest.raises(InputError) as e:
        E.epsilon_dpo_loss([], [], [], [], [], beta=1.0, epsilon=0.1)
    assert e.value.field == "chosen_logps"


# --- the state ------------------------------------------------------------------------------------
def test_state_accumulate_update_hand_values():
    st0 = E.init_epsilon_state(0.5, 0.2)
    st1 = E.epsilon_accumulate(E.epsilon_accumulate(st0, [1, 1, 0]), [1, -1])  # Σ = 2 over 5 pairs
    assert (st1.step_sum, st1.step_count) == (2, 5)
    st2 = E.epsilon_update_beta(st1)
    assert st2.beta == pytest.approx(0.5 / (1 + 0.2 * 0.4), rel=1e-15)
    assert (st2.step_sum, st2.step_count, st2.updates) == (0, 0, 1)
    assert E.epsilon_update_beta(st2).beta == st2.beta  # nothing accumulated: unchanged


@given(st.lists(st.sampled_from([-1, 0, 1]), min_size=1, max_size=30), st.floats(0.01, 0.9))
def test_state_update_properties(steps, eps):
    st0 = E.init_epsilon_state(1.0, eps)
    st1 = E.epsilon_update_beta(E.epsilon_accumulate(st0, steps))
    mean = sum(steps) / len(steps)
    assert st1.beta == pytest.approx(1.0 / (1 + eps * mean), rel=1e-14)
    assert (1.0 / (1 + eps)) - 1e-15 <= st1.beta <= (1.0 / (1 - eps)) + 1e-15
    # micro-batch split does not matter
    half = len(steps) // 2
    split = E.epsilon_accumulate(E.epsilon_accumulate(st0, steps[:half] or [0]), steps[half:]) if half else None
    if split is not None and steps[:half]:
        assert E.epsilon_update_beta(split).beta == st1.beta
    assert E.epsilon_state_from_dict(E.epsilon_state_to_dict(st1)) == st1


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"beta": 0.1, "epsilon": 0.1, "step_sum": 0, "step_count": 0}, "updates"),
        ({"beta": -0.1, "epsilon": 0.1, "step_sum": 0, "step_count": 0, "updates": 0}, "beta"),
        ({"beta": 0.1, "epsilon": 1.5, "step_sum": 0, "step_count": 0, "updates": 0}, "epsilon"),
        ({"beta": 0.1, "epsilon": 0.1, "step_sum": 3, "step_count": 2, "updates": 0}, "step_sum"),
        ({"beta": 0.1, "epsilon": 0.1, "step_sum": 0, "step_count": 1.5, "updates": 0}, "step_count"),
    ],
)
def test_state_from_dict_errors(data, field):
    with pytest.raises(StateError) as e:
        E.epsilon_state_from_dict(data)
    assert e.value.field == field
