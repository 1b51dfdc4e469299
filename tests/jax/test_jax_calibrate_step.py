"""Queue-mode calibration on JAX against gammapo_spec over several steps: bit-exact queue
bookkeeping (slots sampled, size/head/step/seed), gaps and margins to the tolerance policy;
checkpoint round trips (state_to_dict/state_from_dict); a jitted training step traces once."""

from __future__ import annotations

import gammapo_spec
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gammapo_spec import GammaPOConfig
from gammapo_spec.state import sample_slots

import gammapo_jax as G
from gammapo_jax._state import candidate_slots
from jaxtest_utils import F32, F64, assert_close, make_inputs, with_x64

QUEUE_CFG = dict(loss="gamma-simpo", beta=2.0, gamma_beta_ratio=0.5, tau=1.0, calibration="queue",
                 queue_size=16, sample_size=12, queue_warmup=8)


def _assert_same_bookkeeping(got: G.QueueState, want: gammapo_spec.QueueState, what: str) -> None:
    d = G.state_to_dict(got)
    for k in ("size", "head", "step", "seed"):
        assert d[k] == getattr(want, k), f"{what}: state.{k} = {d[k]}, reference {getattr(want, k)}"


@pytest.mark.parametrize("n", (3, 7, 20))  # 20 > queue_size: the push keeps the last 16 gaps
@pytest.mark.parametrize("dtype", ("float64", "float32"))
@with_x64
def test_jax_calibrate_step_queue_matches_reference_over_steps(n, dtype):
    cfg = GammaPOConfig(**QUEUE_CFG)
    rng = np.random.default_rng(n)
    ref = gammapo_spec.init_state(cfg, seed=12345)
    state = G.init_state(cfg, seed=12345, dtype=dtype)
    tol = F64 if dtype == "float64" else F32
    step = jax.jit(lambda s, h: G.calibrate_step(cfg, s, h))
    for t in range(6):
        c = min(ref.capacity, max(cfg.sample_size - n, 0))
        want_slots = sample_slots(ref, min(ref.size, c))
        got_slots = np.asarray(candidate_slots(state, c))[: len(want_slots)]
        np.testing.assert_array_equal(got_slots, want_slots, err_msg=f"step {t}: sampled slots differ")
        h = (rng.normal(size=n) * 3.0).astype(dtype)
        want_gamma, ref = gammapo_spec.calibrate_step(cfg, ref, h.astype(np.float64))
        gamma, state = step(state, jnp.asarray(h))
        assert gamma.dtype == jnp.dtype(dtype)
        assert state.buffer.dtype == jnp.dtype(dtype), "the queue keeps its dtype"
        assert_close(gamma, want_gamma, rtol=tol, atol=tol * cfg.gamma0, what=f"step {t} margins")
        _assert_same_bookkeeping(state, ref, f"step {t}")
        assert_close(state.buffer, ref.buffer, rtol=tol, atol=tol, what=f"step {t} queue gaps")


@with_x64
def test_jax_gamma_po_loss_queue_mode_over_steps():
    cfg = GammaPOConfig(**QUEUE_CFG)
    ref = gammapo_spec.init_state(cfg, seed=7)
    state = G.init_state(cfg, seed=7, dtype="float64")
    for t in range(4):
        x = make_inputs(cfg, 5, np.random.default_rng(100 + t))
        want, ref = gammapo_spec.gamma_po_loss(cfg, ref, **x)
        out, state = G.gamma_po_loss(cfg, state, **{k: jnp.asarray(v) for k, v in x.items()})
        assert_close(out.loss, want.loss, rtol=F64, atol=F64, what=f"step {t} loss")
        assert_close(out.margins, want.margins, rtol=F64, atol=F64, what=f"step {t} margins")
        _assert_same_bookkeeping(state, ref, f"step {t}")
        assert_close(state.buffer, ref.buffer, rtol=F64, atol=F64, what=f"step {t} queue")


@with_x64
def test_jax_state_to_dict_round_trip_and_resume():
    """A checkpoint taken mid-training (JAX -> dict -> reference, and back) resumes identically."""
    cfg = GammaPOConfig(**QUEUE_CFG)
    state = G.init_state(cfg, seed=99, dtype="float64")
    rng = np.random.default_rng(0)
    for _ in range(3):
        _, state = G.calibrate_step(cfg, state, jnp.asarray(rng.normal(size=5)))
    d = G.state_to_dict(state)
    assert set(d) == {"buffer", "size", "head", "step", "seed"}
    assert d["buffer"].dtype == np.float64
    restored = G.state_from_dict(d)
    assert restored.buffer.dtype == jnp.float64
    for k in ("buffer", "size", "head", "step", "seed"):
        np.testing.assert_array_equal(np.asarray(getattr(restored, k)), np.asarray(getattr(state, k)), err_msg=k)
    ref = gammapo_spec.state_from_dict(d)  # the reference reads the JAX checkpoint
    h = rng.normal(size=5)
    g_ref, ref2 = gammapo_spec.calibrate_step(cfg, ref, h)
    g_jax, st2 = G.calibrate_step(cfg, restored, jnp.asarray(h))
    assert_close(g_jax, g_ref, rtol=F64, atol=F64, what="margins after resume")
    _assert_same_bookkeeping(st2, ref2, "after resume")
    # ... and the JAX backend reads the reference's checkpoint bit for bit.
    back = G.state_from_dict(gammapo_spec.state_to_dict(ref2))
    np.testing.assert_array_equal(np.asarray(back.buffer), ref2.buffer)
    assert G.state_to_dict(None) is None and G.state_from_dict(None) is None


def test_jax_state_from_dict_float32_default_without_x64():
    cfg = GammaPOConfig(**QUEUE_CFG)
    d = gammapo_spec.state_to_dict(gammapo_spec.init_state(cfg, seed=3))
    s = G.state_from_dict(d)
    assert s.buffer.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(s.buffer), d["buffer"].astype(np.float32))


@pytest.mark.parametrize("mode", ("queue", "batch"))
def test_jax_gamma_po_loss_jitted_step_traces_once(mode):
    """A jitted training step (value_and_grad + state update) compiles once over many steps."""
    cfg = GammaPOConfig(**{**QUEUE_CFG, "calibration": mode})
    traces = []

    @jax.jit
    def train_step(params, state, batch):
        traces.append(1)  # Python side effect: runs only while tracing

        def loss_fn(p):
            out, new_state = G.gamma_po_loss(cfg, state, chosen_logps=batch["c"] * p, rejected_logps=batch["r"] * p,
                                             chosen_lengths=batch["lc"], rejected_lengths=batch["lr"])
            return out.loss, new_state

        (loss, new_state), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
        return params - 0.1 * g, new_state, loss

    params = jnp.float32(1.0)
    state = G.init_state(cfg, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        batch = {"c": jnp.asarray(-rng.uniform(1, 20, 6), jnp.float32), "r": jnp.asarray(-rng.uniform(1, 20, 6), jnp.float32),
                 "lc": jnp.asarray(rng.integers(1, 9, 6), jnp.float32), "lr": jnp.asarray(rng.integers(1, 9, 6), jnp.float32)}
        params, state, loss = train_step(params, state, batch)
        assert np.isfinite(float(loss))
    assert len(traces) == 1, f"the step was traced {len(traces)} times over 5 steps"
    if mode == "queue":
        assert int(state.step) == 5 and int(state.size) == 16


@pytest.mark.parametrize("size", (0, 1, 5, 100, 191, 192, 193, 1000, 2048))
def test_jax_sample_slots_bit_exact(size):
    """The sampled slots (and their order) equal gammapo_spec.state.sample_slots for any fill level."""
    cap, c = 2048, 192
    for step in (0, 1, 17, 2**32 - 1):
        d = {"buffer": np.zeros(cap), "size": size, "head": size % cap, "step": step, "seed": 2024}
        want = sample_slots(gammapo_spec.state_from_dict(d), min(size, c))
        got = np.asarray(candidate_slots(G.state_from_dict(d), c))[: len(want)]
        np.testing.assert_array_equal(got, want, err_msg=f"size={size} step={step}")
