"""gammapo_jax.epsilon_dpo matches gammapo_spec.epsilon_dpo (values, gradients, jit, errors, state, psum)."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

import gammapo_jax.epsilon_dpo as J  # noqa: E402
import gammapo_spec.epsilon_dpo as S  # noqa: E402
from gammapo_spec import GammaPOError  # noqa: E402


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _tokens(seed=0, B=3, Tn=9, V=13):
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(B, Tn, V)) * 2
    q = p + rng.normal(size=(B, Tn, V))
    y = rng.integers(0, V, size=(B, Tn))
    m = rng.random((B, Tn)) < 0.7
    m[:, 0] = True
    return p, q, y, m


@pytest.mark.parametrize("chunk", [1, 4, 9, 50, None])
@pytest.mark.parametrize(("dtype", "tol"), [(jnp.float64, 1e-10), (jnp.float32, 2e-5), (jnp.bfloat16, 2e-5)])
def test_token_op_matches_spec(chunk, dtype, tol):
    p, q, y, m = _tokens()
    pj, qj = jnp.asarray(p, dtype), jnp.asarray(q, dtype)
    if dtype == jnp.bfloat16:
        p, q = np.asarray(pj.astype(jnp.float64)), np.asarray(qj.astype(jnp.float64))
    ref = S.epsilon_sequence_logps(p, q, y, m, epsilon=0.3)
    got = J.epsilon_sequence_logps(pj, qj, jnp.asarray(y), jnp.asarray(m), epsilon=0.3, chunk_size=chunk)
    for name, a, b in zip(ref._fields, ref, got):
        assert b.dtype == (jnp.float64 if dtype == jnp.float64 else jnp.float32)
        np.testing.assert_allclose(np.asarray(b, np.float64), a, rtol=tol, atol=tol, err_msg=name)


@pytest.mark.parametrize(("dtype", "tol"), [(jnp.float64, 1e-10), (jnp.float32, 2e-5)])
@pytest.mark.parametrize("jit", [False, True])
def test_token_op_gradient_matches_spec(dtype, tol, jit):
    p, q, y, m = _tokens(1)
    g = np.array([0.5, -1.5, 2.0])

    def f(pp):
        out = J.epsilon_sequence_logps(pp, jnp.asarray(q, dtype), jnp.asarray(y), jnp.asarray(m), epsilon=0.2,
                                       chunk_size=4)
        return (out.logps * g).sum() + 0.0 * (out.logps_plus.sum() + out.logps_minus.sum())

    grad_fn = jax.jit(jax.grad(f)) if jit else jax.grad(f)
    got = grad_fn(jnp.asarray(p, dtype))
    assert got.dtype == dtype
    np.testing.assert_allclose(np.asarray(got, np.float64), S.sequence_logps_vjp(p, y, m, g), rtol=tol, atol=tol)
    # the perturbed log-probs carry no gradient
    gp = jax.grad(lambda pp: J.epsilon_sequence_logps(pp, jnp.asarray(q), jnp.asarray(y), jnp.asarray(m),
                                                      epsilon=0.2).logps_plus.sum())(jnp.asarray(p))
    assert not np.any(np.asarray(gp))


def test_jit_token_op_and_ignore_index():
    p, q, y, m = _tokens(2)
    yi = jnp.asarray(np.where(m, y, -100))
    f = jax.jit(lambda a, b, c: J.epsilon_sequence_logps(a, b, c, epsilon=0.1, chunk_size=2))
    ref = S.epsilon_sequence_logps(p, q, y, m, epsilon=0.1)
    for a, b in zip(ref, f(jnp.asarray(p), jnp.asarray(q), yi)):
        np.testing.assert_allclose(np.asarray(b), a, rtol=1e-10, atol=1e-10)


def test_policy_equal_reference_gives_zero_steps():
    p, _, y, m = _tokens(3)
    for dtype in (jnp.float64, jnp.float32, jnp.bfloat16):
        pj = jnp.asarray(p, dtype)
        out = J.epsilon_sequence_logps(pj, pj, jnp.asarray(y), jnp.asarray(m), epsilon=0.4, chunk_size=3)
        assert np.array_equal(np.asarray(out.logps_plus), np.asarray(out.logps))
        assert np.array_equal(np.asarray(out.logps_minus), np.asarray(out.logps))


def _pairs(n=16, seed=4):
    rng = np.random.default_rng(seed)
    x = {k: -rng.uniform(1, 30, n) for k in ("c", "r", "c0", "r0")}
    x["cp"], x["rp"] = x["c"] + rng.normal(size=n), x["r"] + rng.normal(size=n)
    x["cm"], x["rm"] = x["c"] + rng.normal(size=n), x["r"] + rng.normal(size=n)
    return x


@pytest.mark.parametrize(("dtype", "tol"), [(jnp.float64, 1e-10), (jnp.float32, 2e-5)])
def test_pair_ops_match_spec_eager_and_jit(dtype, tol):
    x = _pairs()
    t = {k: jnp.asarray(v, dtype) for k, v in x.items()}
    s_ref = S.epsilon_steps(x["c"], x["r"], x["cp"], x["rp"], x["cm"], x["rm"])
    s = J.epsilon_steps(t["c"], t["r"], t["cp"], t["rp"], t["cm"], t["rm"])
    assert np.asarray(s).tolist() == s_ref.tolist() and set(s_ref.tolist()) == {-1, 0, 1}
    margins = np.linspace(-0.5, 0.5, 16)
    kw = dict(beta=0.7, epsilon=0.25, label_smoothing=0.1)
    ref = S.epsilon_dpo_loss(x["c"], x["r"], x["c0"], x["r0"], s_ref, margins=margins, **kw)
    grad = S.epsilon_dpo_grad(x["c"], x["r"], x["c0"], x["r0"], s_ref, margins=margins, **kw)

    def loss(c, r):
        return J.epsilon_dpo_loss(c, r, t["c0"], t["r0"], s, margins=jnp.asarray(margins, dtype), **kw).loss

    for fn in (loss, jax.jit(loss)):
        assert float(fn(t["c"], t["r"])) == pytest.approx(ref.loss, rel=tol, abs=tol)
    gc, gr = jax.jit(jax.grad(loss, argnums=(0, 1)))(t["c"], t["r"])
    np.testing.assert_allclose(np.asarray(gc, np.float64), grad["chosen_logps"], rtol=tol, atol=tol)
    np.testing.assert_allclose(np.asarray(gr, np.float64), grad["rejected_logps"], rtol=tol, atol=tol)
    out = J.epsilon_dpo_loss(t["c"], t["r"], t["c0"], t["r0"], s, margins=margins, **kw)
    for name in ("losses", "betas", "gaps", "chosen_rewards", "rejected_rewards"):
        np.testing.assert_allclose(np.asarray(getattr(out, name), np.float64), getattr(ref, name), rtol=tol, atol=tol)
    gaps = J.epsilon_dpo_gaps(t["c"], t["r"], t["c0"], t["r0"], s, beta=jnp.asarray(0.7), epsilon=0.25)
    np.testing.assert_allclose(np.asarray(gaps, np.float64), ref.gaps, rtol=tol, atol=tol)


def _same_error(spec_call, jax_call):
    with pytest.raises(GammaPOError) as a:
        spec_call()
    with pytest.raises(GammaPOError) as b:
        jax_call()
    assert type(a.value) is type(b.value) and str(a.value) == str(b.value) and a.value.field == b.value.field


@pytest.mark.parametrize(
    "kw",
    [{"ref_logits": np.zeros((2, 3, 5))}, {"labels": np.zeros((2, 4), int)}, {"mask": np.ones((2, 4), bool)},
     {"labels": np.full((2, 3), 4)}, {"labels": np.full((2, 3), -1)}, {"labels": np.zeros((2, 3))},
     {"mask": np.array([[1, 1, 1], [0, 0, 0]])}, {"policy_logits": np.full((2, 3, 4), np.nan)},
     {"ref_logits": np.full((2, 3, 4), np.inf)}, {"epsilon": 1.0}],
)
def test_token_op_errors_identical(kw):
    args = {"policy_logits": np.zeros((2, 3, 4)), "ref_logits": np.zeros((2, 3, 4)),
            "labels": np.zeros((2, 3), int), "mask": np.ones((2, 3), bool)}
    eps = kw.pop("epsilon", 0.1) if "epsilon" in kw else 0.1
    args.update(kw)
    jargs = {k: jnp.asarray(v) for k, v in args.items()}
    _same_error(lambda: S.epsilon_sequence_logps(epsilon=eps, **args),
                lambda: J.epsilon_sequence_logps(epsilon=eps, **jargs))


@pytest.mark.parametrize(
    "call",
    [
        lambda M, a: M.epsilon_steps(a([0.0, 1.0]), a([0.0]), a([0.0]), a([0.0]), a([0.0]), a([0.0])),
        lambda M, a: M.epsilon_dpo_loss(a([0.0]), a([0.0]), a([0.0]), a([np.inf]), a([0]), beta=1.0, epsilon=0.1),
        lambda M, a: M.epsilon_dpo_loss(a([0.0]), a([0.0]), a([0.0]), a([0.0]), a([2]), beta=1.0, epsilon=0.1),
        lambda M, a: M.epsilon_dpo_loss(a([0.0]), a([0.0]), a([0.0]), a([0.0]), a([0]), beta=1.0, epsilon=0.1,
                                        margins=a([0.0, 1.0])),
        lambda M, a: M.epsilon_dpo_loss(a([0.0]), a([0.0]), a([0.0]), a([0.0]), a([0]), beta=0.0, epsilon=0.1),
        lambda M, a: M.epsilon_betas(1.0, a([3]), 0.1),
        lambda M, a: M.epsilon_state_from_dict({"beta": 0.1, "epsilon": 0.1, "step_sum": 3, "step_count": 2,
                                                "updates": 0}),
    ],
)
def test_pair_errors_identical(call):
    _same_error(lambda: call(S, np.asarray), lambda: call(J, jnp.asarray))


def test_state_sequence_equals_spec_and_psum():
    rng = np.random.default_rng(9)
    spec_state, st = S.init_epsilon_state(0.1, 0.05), J.init_epsilon_state(0.1, 0.05)
    for _ in range(6):
        for _ in range(3):
            s = rng.integers(-1, 2, size=int(rng.integers(1, 8)))
            spec_state, st = S.epsilon_accumulate(spec_state, s), J.epsilon_accumulate(st, jnp.asarray(s))
        assert J.epsilon_state_to_dict(st) == S.epsilon_state_to_dict(spec_state)
        spec_state, st = S.epsilon_update_beta(spec_state), J.epsilon_update_beta(st)
        assert float(st.beta) == spec_state.beta
    back = J.epsilon_state_from_dict(J.epsilon_state_to_dict(st))
    assert J.epsilon_state_to_dict(back) == J.epsilon_state_to_dict(st)
    # two "devices" under vmap with axis_name: the update uses the counters summed over the axis
    sums, counts = jnp.asarray([2, 2]), jnp.asarray([4, 6])  # global mean 4/10

    def upd(ss, cc):
        return J.epsilon_update_beta(J.init_epsilon_state(0.2, 0.1)._replace(step_sum=ss, step_count=cc),
                                     axis_name="d").beta

    betas = jax.vmap(upd, axis_name="d")(sums, counts)
    assert np.asarray(betas).tolist() == [0.2 / (1 + 0.1 * 0.4)] * 2
