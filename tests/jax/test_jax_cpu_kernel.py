"""The compiled CPU calibration kernel of the JAX backend (gammapo_jax._cpu_kernel, XLA FFI custom calls).

Checked: it builds here and is the default CPU path (the jitted step is one custom call); margins match
the reference (float64 1e-10 / the small-τ rows of the policy, float32 2e-5) and the queue bookkeeping is
bit for bit the reference's over several steps, at every fill level; the kernel and the ``lax`` path it
replaces (``GAMMAPO_DISABLE_CPU_KERNEL=1`` while tracing) agree; the caller's state is not modified (the
buffer is aliased to the output) and donating it gives the same result; ``vmap`` over states; a buffer
dtype other than the gaps'; and the fallback when no compiler is found.
"""

from __future__ import annotations

import shutil

import gammapo_spec
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gammapo_spec import GammaPOConfig
from hypothesis import given, settings
from hypothesis import strategies as st

import gammapo_jax as G
from gammapo_jax import _cpu_kernel as K
from jaxtest_utils import F32, assert_close, margin_tol, with_x64

needs_kernel = pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("c++") is None, reason="no C++ compiler to build the kernel"
)


def _cfg(**kw) -> GammaPOConfig:
    base = dict(loss="gamma-simpo", solver="mirror", beta=2.0, gamma_beta_ratio=0.5, tau=1.0, calibration="queue", queue_size=64,
                sample_size=40, queue_warmup=8)
    return GammaPOConfig(**{**base, **kw})


def _step_fn(config, kernel: bool, monkeypatch):
    """A jitted queue step traced with the kernel on or off (the switch is read while tracing)."""
    if kernel:
        monkeypatch.delenv("GAMMAPO_DISABLE_CPU_KERNEL", raising=False)
    else:
        monkeypatch.setenv("GAMMAPO_DISABLE_CPU_KERNEL", "1")
    return jax.jit(lambda s, h: G.calibrate_step(config, s, h))


def _targets(fn, *args) -> str:
    return " ".join(line for line in str(jax.make_jaxpr(fn)(*args)).splitlines() if "target_name" in line)


@needs_kernel
def test_kernel_builds_and_is_the_default_cpu_path(monkeypatch):
    assert K.load() is not None, K.build_error()
    assert K.build_error() is None and K.usable(jnp.float32)
    cfg = _cfg()
    state, h = G.init_state(cfg, seed=1), jnp.ones(5)
    assert "gammapo_queue_step_f32" in _targets(lambda s, x: G.calibrate_step(cfg, s, x), state, h)
    assert "gammapo_mirror_f32" in _targets(lambda x: G.calibrate_margins(x, gamma0=1.0, tau=2.0, solver="mirror"), h)
    assert "gammapo_mirror" not in _targets(lambda x: G.calibrate_margins(x, gamma0=1.0, tau=2.0, solver="exact"), h)
    # the switch is read while tracing, and batch mode's jitted solver keys its cache on it
    batch = G.calibrate_margins(h, gamma0=1.0, tau=2.0, solver="mirror")
    monkeypatch.setenv("GAMMAPO_DISABLE_CPU_KERNEL", "1")
    assert _targets(lambda s, x: G.calibrate_step(cfg, s, x), state, h) == ""
    assert _targets(lambda x: G.calibrate_margins(x, gamma0=1.0, tau=2.0, solver="mirror"), h) == ""
    assert_close(G.calibrate_margins(h, gamma0=1.0, tau=2.0, solver="mirror"), batch, rtol=F32, atol=F32, what="lax vs kernel")


@needs_kernel
@pytest.mark.parametrize("gamma0,tau", [(4.0, 10.0), (1.0, 1.0), (0.5, 3.0), (3.0, 100.0), (0.0, 2.0), (2.0, 0.3)])
@pytest.mark.parametrize("m", [1, 2, 7, 64, 257, 1000])
@with_x64
def test_kernel_batch_margins_equal_the_reference(gamma0, tau, m):
    h = np.random.default_rng(m).normal(size=m) * 3.0
    want = gammapo_spec.calibrate_margins(h, gamma0=gamma0, tau=tau, solver="mirror")
    got64 = np.asarray(G.calibrate_margins(jnp.asarray(h), gamma0=gamma0, tau=tau, solver="mirror"))
    h32 = h.astype(np.float32)
    want32 = gammapo_spec.calibrate_margins(h32.astype(np.float64), gamma0=gamma0, tau=tau, solver="mirror")
    got32 = np.asarray(G.calibrate_margins(jnp.asarray(h32), gamma0=gamma0, tau=tau, solver="mirror"))
    if gamma0 == 0:
        assert np.all(got64 == 0) and np.all(got32 == 0)
        return
    tol64, tol32 = margin_tol("float64", "mirror", tau, gamma0), margin_tol("float32", "mirror", tau, gamma0)
    assert_close(got64, want, rtol=tol64, atol=tol64 * gamma0, what="float64 margins")
    assert_close(got32, want32, rtol=tol32, atol=tol32 * gamma0, what="float32 margins")


@needs_kernel
@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "lax"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n,warmup,sample", [(5, 0, 40), (12, 8, 40), (30, 64, 40), (90, 20, 40), (50, 64, 30)])
@with_x64
def test_queue_steps_match_the_reference_bit_for_bit_bookkeeping(kernel, dtype, n, warmup, sample, monkeypatch):
    """Fill levels: empty, partial, full; n > capacity (90 > 64); sample_size < n (no stored gap sampled)."""
    cfg = _cfg(queue_warmup=warmup, sample_size=sample)
    ref = gammapo_spec.init_state(cfg, seed=7)
    state = G.init_state(cfg, seed=7, dtype=dtype)
    step = _step_fn(cfg, kernel, monkeypatch)
    rng = np.random.default_rng(n)
    tol = margin_tol(dtype, "mirror", cfg.tau, cfg.gamma0)
    for t in range(5):
        h = (rng.normal(size=n) * 3.0).astype(dtype)
        want, ref = gammapo_spec.calibrate_step(cfg, ref, h.astype(np.float64))
        gamma, state = step(state, jnp.asarray(h))
        assert gamma.dtype == jnp.dtype(dtype) and state.buffer.dtype == jnp.dtype(dtype)
        assert_close(gamma, want, rtol=tol, atol=tol * cfg.gamma0, what=f"step {t} margins")
        d = G.state_to_dict(state)
        for k in ("size", "head", "step", "seed"):
            assert d[k] == getattr(ref, k), f"step {t}: state.{k} = {d[k]}, reference {getattr(ref, k)}"
        np.testing.assert_array_equal(d["buffer"], ref.buffer.astype(dtype).astype(np.float64),
                                      err_msg=f"step {t}: buffer")


@needs_kernel
@settings(max_examples=25, deadline=None)
@given(gamma0=st.floats(0.01, 8.0), tau=st.floats(0.05, 200.0), n=st.integers(1, 80), warmup=st.integers(0, 64),
       seed=st.integers(0, 2**32 - 1), iters=st.integers(1, 30))
def test_kernel_and_lax_path_agree(gamma0, tau, n, warmup, seed, iters):
    cfg = _cfg(gamma_beta_ratio=gamma0 / 2.0, tau=tau, queue_warmup=warmup, iters=iters)
    state = G.init_state(cfg, seed=seed)
    h = jnp.asarray(np.random.default_rng(seed).normal(size=n).astype(np.float32) * 4.0)
    with pytest.MonkeyPatch.context() as mp:
        g_k, s_k = _step_fn(cfg, True, mp)(state, h)
        g_l, s_l = _step_fn(cfg, False, mp)(state, h)
    np.testing.assert_array_equal(np.asarray(s_k.counters), np.asarray(s_l.counters))
    np.testing.assert_array_equal(np.asarray(s_k.buffer), np.asarray(s_l.buffer))
    tol = margin_tol("float32", "mirror", tau, gamma0)
    assert_close(g_k, g_l, rtol=tol, atol=tol * gamma0, what="kernel vs lax margins")


@needs_kernel
def test_the_callers_state_is_not_modified_and_donation_gives_the_same_result():
    cfg = _cfg(queue_warmup=64)
    state = G.init_state(cfg, seed=3)
    before = np.asarray(state.buffer).copy(), np.asarray(state.counters).copy()
    h = jnp.linspace(-2.0, 3.0, 10)
    g1, s1 = jax.jit(lambda s, x: G.calibrate_step(cfg, s, x))(state, h)
    np.testing.assert_array_equal(np.asarray(state.buffer), before[0])
    np.testing.assert_array_equal(np.asarray(state.counters), before[1])
    copy = G.QueueState(buffer=jnp.array(before[0]), counters=jnp.array(before[1]))
    g2, s2 = jax.jit(lambda s, x: G.calibrate_step(cfg, s, x), donate_argnums=0)(copy, h)
    np.testing.assert_array_equal(np.asarray(g1), np.asarray(g2))
    np.testing.assert_array_equal(np.asarray(s1.buffer), np.asarray(s2.buffer))


@needs_kernel
def test_vmap_over_states_equals_one_state_at_a_time():
    cfg = _cfg()
    states = [G.init_state(cfg, seed=s) for s in (0, 1, 2)]
    hs = jnp.asarray(np.random.default_rng(0).normal(size=(3, 9)).astype(np.float32))
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *states)
    g, new = jax.jit(jax.vmap(lambda s, h: G.calibrate_step(cfg, s, h)))(stacked, hs)
    for i, s in enumerate(states):
        gi, si = G.calibrate_step(cfg, s, hs[i])
        np.testing.assert_array_equal(np.asarray(g[i]), np.asarray(gi))
        np.testing.assert_array_equal(np.asarray(new.buffer[i]), np.asarray(si.buffer))
        np.testing.assert_array_equal(np.asarray(new.counters[i]), np.asarray(si.counters))


@needs_kernel
@with_x64
def test_buffer_dtype_other_than_the_gaps():
    """float32 buffer, float64 gaps: the kernel runs in float64 on the upcast buffer; float64 buffer,
    float32 gaps: the lax path (the buffer stays float64). Both as the reference."""
    cfg = _cfg(queue_warmup=64)
    for buf_dtype, gap_dtype, kernel in (("float32", "float64", True), ("float64", "float32", False)):
        state = G.init_state(cfg, seed=5, dtype=buf_dtype)
        h = jnp.asarray(np.linspace(-3.0, 2.0, 8), dtype=gap_dtype)
        fn = lambda s, x: G.calibrate_step(cfg, s, x)  # noqa: E731
        assert ("gammapo_queue_step" in _targets(fn, state, h)) == kernel
        gamma, new = jax.jit(fn)(state, h)
        ref = gammapo_spec.state_from_dict(G.state_to_dict(state))
        want, ref = gammapo_spec.calibrate_step(cfg, ref, np.asarray(h, np.float64))
        tol = margin_tol(gap_dtype, "mirror", cfg.tau, cfg.gamma0)
        assert_close(gamma, want, rtol=tol, atol=tol * cfg.gamma0, what=f"{buf_dtype} buffer, {gap_dtype} gaps")
        assert new.buffer.dtype == jnp.promote_types(buf_dtype, gap_dtype)
        assert G.state_to_dict(new)["step"] == ref.step == 1


def test_without_a_compiler_the_lax_path_runs(monkeypatch, tmp_path):
    monkeypatch.setattr(K, "_LIBRARY", K._LIBRARY.fresh())  # not yet built: the next load() builds
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("GAMMAPO_CACHE_DIR", str(tmp_path / "cache"))
    assert K.load() is None and "no-such-compiler" in K.build_error()
    assert not K.usable(jnp.float32)
    h = np.array([2.0, 0.5, -1.0], dtype=np.float32)
    fn = lambda x: G.calibrate_margins(x, gamma0=1.0, tau=1.0, solver="mirror")  # noqa: E731
    assert _targets(fn, jnp.asarray(h)) == ""
    want = gammapo_spec.calibrate_margins(h.astype(np.float64), gamma0=1.0, tau=1.0, solver="mirror")
    assert_close(fn(jnp.asarray(h)), want, rtol=F32, atol=F32, what="lax margins")
