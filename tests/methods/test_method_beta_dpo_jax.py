"""gammapo_jax.beta_dpo matches gammapo_spec.beta_dpo: values, subset, state pytree, jit, grads, errors."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

import gammapo_spec.beta_dpo as spec  # noqa: E402
import gammapo_jax.beta_dpo as jb  # noqa: E402
from gammapo_spec import GammaPOError  # noqa: E402


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _batch(n, seed):
    rng = np.random.default_rng(seed)
    return [rng.normal(-30, 3, n) for _ in range(4)]


def _j(xs, dtype):
    return [jnp.asarray(np.asarray(x, dtype=np.float64), dtype=dtype) for x in xs]


@pytest.mark.parametrize(("dtype", "tol"), [(jnp.float64, 1e-10), (jnp.float32, 2e-5), (jnp.bfloat16, 2e-5)])
@pytest.mark.parametrize("rho", [0.8, 0.5, 1.0])
def test_jax_steps_match_spec(dtype, tol, rho):
    s_state, j_state = spec.init_beta_dpo_state(17), jb.init_beta_dpo_state(17)
    for step in range(5):
        js = _j(_batch(16, step), dtype)
        xs = [np.asarray(x.astype(jnp.float64)) for x in js]
        so = spec.beta_dpo_step(s_state, *xs, rho=rho)
        jo = jb.beta_dpo_step(j_state, *js, rho=rho)
        assert jo.loss.dtype == (jnp.float64 if dtype == jnp.float64 else jnp.float32)
        assert np.asarray(jo.mask, dtype=float).tolist() == so.mask.tolist(), step
        assert float(jo.beta) == pytest.approx(so.beta, rel=1e-12)
        assert float(jo.loss) == pytest.approx(so.loss, rel=tol, abs=tol)
        np.testing.assert_allclose(np.asarray(jo.losses, dtype=float), so.losses, rtol=tol, atol=tol)
        got, want = jb.state_to_dict(jo.state), so.state.to_dict()
        assert (got["step"], got["seed"]) == (want["step"], want["seed"])
        assert got["gap_mean"] == pytest.approx(want["gap_mean"], rel=1e-12, abs=1e-14)
        assert got["gap_std"] == pytest.approx(want["gap_std"], rel=1e-12, abs=1e-14)
        s_state, j_state = so.state, jo.state


def test_jax_jit_state_pytree_and_subsets():
    step = jax.jit(functools.partial(jb.beta_dpo_step, beta0=0.1, alpha=0.6, rho=0.7))
    rng = np.random.default_rng(2)
    for i in range(20):
        st = spec.BetaDPOState(float(rng.normal()), float(rng.uniform(0, 3)), int(rng.integers(0, 2**32)), int(rng.integers(0, 2**32)))
        xs = _batch(24, 50 + i)
        so = spec.beta_dpo_step(st, *xs, beta0=0.1, alpha=0.6, rho=0.7)
        jo = step(jb.state_from_dict(st.to_dict()), *_j(xs, jnp.float64))
        assert np.asarray(jo.mask).tolist() == so.mask.tolist()
        assert float(jo.loss) == pytest.approx(so.loss, rel=1e-10)
    leaves = jax.tree_util.tree_leaves(jo.state)
    assert len(leaves) == 4


def test_jax_grad_matches_spec():
    xs = _batch(10, 3)
    st = spec.BetaDPOState(0.2, 1.0, 2, 4)
    so = spec.beta_dpo_step(st, *xs, rho=0.6)
    js = _j(xs, jnp.float64)

    def f(*a):
        return jb.beta_dpo_step(jb.state_from_dict(st.to_dict()), *a, rho=0.6).loss

    grads = jax.grad(f, argnums=(0, 1, 2, 3))(*js)
    g = spec.masked_loss_grad(so.gaps, so.mask, so.beta)
    for gr, sign in zip(grads, (1.0, -1.0, -1.0, 1.0)):
        np.testing.assert_allclose(np.asarray(gr), sign * g, rtol=1e-10, atol=1e-12)


def test_jax_state_round_trip():
    st = jb.init_beta_dpo_state(5)
    for i in range(3):
        st = jb.beta_dpo_step(st, *_j(_batch(8, i), jnp.float64)).state
    d = json.loads(json.dumps(jb.state_to_dict(st)))
    assert jb.state_to_dict(jb.state_from_dict(d)) == jb.state_to_dict(st)
    assert spec.BetaDPOState.from_dict(d).step == 3


def _err(fn):
    try:
        fn()
    except GammaPOError as e:
        return type(e), str(e), e.field
    raise AssertionError("no error")


def test_jax_errors_equal_spec():
    xs = _batch(4, 0)
    for case in ({"beta0": 0.0}, {"rho": 0.0}, {"rho": 2.0}, {"momentum": 1.0}):
        assert _err(lambda: jb.beta_dpo_step(jb.init_beta_dpo_state(), *_j(xs, jnp.float64), **case)) == \
            _err(lambda: spec.beta_dpo_step(spec.init_beta_dpo_state(), *xs, **case))
    for bad in ([xs[0], xs[1][:3], xs[2], xs[3]], [xs[0], xs[1], xs[2], np.array([0.0, np.nan, 0.0, 0.0])],
                [xs[0].reshape(2, 2), xs[1], xs[2], xs[3]]):
        assert _err(lambda: jb.beta_dpo_step(jb.init_beta_dpo_state(), *_j(bad, jnp.float64))) == \
            _err(lambda: spec.beta_dpo_step(spec.init_beta_dpo_state(), *bad))
    assert _err(lambda: jb.init_beta_dpo_state(-1)) == _err(lambda: spec.init_beta_dpo_state(-1))
