"""gamma_po_loss on JAX against gammapo_spec: values and gradients (jax.grad vs the analytic
``gammapo_spec.loss_vjp``, margins held fixed) for every loss name, in float64 (x64), float32 and
bfloat16 (dtype policy: half inputs computed in float32)."""

from __future__ import annotations

import gammapo_spec
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gammapo_spec import GammaPOConfig
from gammapo_spec.config import LOSS_NAMES

import gammapo_jax as G
from jaxtest_utils import BF16_GRAD, F32, F64, assert_close, make_inputs, round_to, with_x64

LENGTHS = ("chosen_lengths", "rejected_lengths")


def _config(loss: str, **kw) -> GammaPOConfig:
    extra = {"sft_weight": 0.3} if loss == "simpo" else {}
    return GammaPOConfig(loss=loss, beta=2.0, gamma_beta_ratio=0.5, tau=1.0, calibration="batch", **extra, **kw)


def _run(cfg, inputs_np, dtype):
    """(LossOutput, grads dict) of the JAX backend on inputs cast to ``dtype``."""
    jdt = {"float64": jnp.float64, "float32": jnp.float32, "bfloat16": jnp.bfloat16}[dtype]
    logps = {k: jnp.asarray(v, dtype=jdt) for k, v in inputs_np.items() if k not in LENGTHS}
    lengths = {k: jnp.asarray(v, dtype=jdt) for k, v in inputs_np.items() if k in LENGTHS}

    def loss_fn(lp):
        out, _ = G.gamma_po_loss(cfg, None, **lp, **lengths)
        return out.loss, out

    (_, out), grads = jax.value_and_grad(loss_fn, has_aux=True)(logps)
    return out, grads


def _check(cfg, dtype, tol, grad_tol):
    x = make_inputs(cfg, 9, np.random.default_rng(abs(hash((cfg.loss, dtype))) % 2**31))
    x_ref = {k: round_to(v, dtype) for k, v in x.items()}
    want, _ = gammapo_spec.gamma_po_loss(cfg, None, **x_ref)
    out, grads = _run(cfg, x, dtype)
    want_dtype = jnp.float64 if dtype == "float64" else jnp.float32
    assert out.loss.dtype == want_dtype, f"{cfg.loss}/{dtype}: loss dtype {out.loss.dtype}"
    assert_close(out.loss, want.loss, rtol=tol, atol=tol, what=f"{cfg.loss}/{dtype} loss")
    assert_close(out.losses, want.losses, rtol=tol, atol=tol, what=f"{cfg.loss}/{dtype} per-pair losses")
    assert_close(out.margins, want.margins, rtol=tol, atol=tol * (1 + cfg.gamma0), what=f"{cfg.loss}/{dtype} margins")
    assert_close(out.chosen_rewards, want.chosen_rewards, rtol=tol, atol=tol, what=f"{cfg.loss}/{dtype} rewards")
    vjp = gammapo_spec.loss_vjp(cfg, want.margins, **x_ref)
    assert set(grads) == set(vjp), f"{cfg.loss}: gradient keys {set(grads)} vs {set(vjp)}"
    for k in vjp:
        scale = np.max(np.abs(vjp[k])) + 1e-30
        assert_close(np.asarray(grads[k], np.float64) / scale, vjp[k] / scale, rtol=0, atol=grad_tol,
                     what=f"{cfg.loss}/{dtype} d loss/d {k} (relative to max |grad|)")


@pytest.mark.parametrize("loss", LOSS_NAMES)
@with_x64
def test_jax_gamma_po_loss_float64_values_and_grads(loss):
    _check(_config(loss), "float64", F64, F64)


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_jax_gamma_po_loss_float32_values_and_grads(loss):
    _check(_config(loss), "float32", F32, F32)


@pytest.mark.parametrize("loss", ("gamma-simpo", "gamma-dpo", "simpo", "gamma-ipo"))
@with_x64
def test_jax_gamma_po_loss_bfloat16_upcast(loss):
    # Forward: computed in float32 from the bfloat16-rounded inputs, so float32 tolerance.
    # Gradients: returned in bfloat16 (the input's dtype), hence BF16_GRAD.
    _check(_config(loss), "bfloat16", F32, BF16_GRAD)


@with_x64
def test_jax_loss_vjp_margins_are_stop_gradient():
    """d loss/d logps equals the analytic VJP with the calibrated margins held fixed: no
    gradient flows through the calibration (whose margins do depend on the logps)."""
    cfg = _config("gamma-simpo")
    x = make_inputs(cfg, 16, np.random.default_rng(3))
    out, grads = _run(cfg, x, "float64")
    vjp = gammapo_spec.loss_vjp(cfg, np.asarray(out.margins), **x)
    for k in vjp:
        assert_close(grads[k], vjp[k], rtol=1e-10, atol=1e-12, what=f"d loss/d {k}")
    # Sanity: the margins do depend on the logps, so a gradient through them would differ.
    def margins_sum(c):
        o, _ = G.gamma_po_loss(cfg, None, chosen_logps=c, rejected_logps=jnp.asarray(x["rejected_logps"]),
                               chosen_lengths=jnp.asarray(x["chosen_lengths"]),
                               rejected_lengths=jnp.asarray(x["rejected_lengths"]))
        return jnp.sum(o.margins * jnp.arange(16.0))
    assert float(jnp.max(jnp.abs(jax.grad(margins_sum)(jnp.asarray(x["chosen_logps"]))))) == 0.0
    assert float(np.std(np.asarray(out.margins))) > 1e-3, "margins must vary with the gaps for this test to mean anything"


@pytest.mark.parametrize("loss", ("gamma-simpo", "gamma-dpo"))
@with_x64
def test_jax_gamma_po_loss_vmap_over_problems(loss):
    """vmap over 3 independent problems equals 3 separate reference calls (each its own calibration)."""
    cfg = _config(loss)
    xs = [make_inputs(cfg, 8, np.random.default_rng(10 + i)) for i in range(3)]
    stacked = {k: jnp.asarray(np.stack([x[k] for x in xs])) for k in xs[0]}
    outs = jax.vmap(lambda kw: G.gamma_po_loss(cfg, None, **kw)[0])(stacked)
    for i, x in enumerate(xs):
        want, _ = gammapo_spec.gamma_po_loss(cfg, None, **x)
        assert_close(outs.loss[i], want.loss, rtol=F64, atol=F64, what=f"vmap problem {i} loss")
        assert_close(outs.margins[i], want.margins, rtol=F64, atol=F64, what=f"vmap problem {i} margins")
