"""The fused, chunked γ-PO loss (gammapo_torch.fused_loss) against the unfused path and the spec.

The unfused path is the TRL-style computation: full ``[B, T, V]`` logits → log-softmax → gather →
masked sum → :func:`gammapo_torch.gamma_po_loss` → autograd. The fused path must give the same
values, margins, state and gradients (hidden states, LM-head weight and bias) to 1e-10 in float64
and 2e-5 in float32, for every chunk size, with padding and prompt masks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gammapo_spec as R
import gammapo_torch as T
from gammapo_spec.errors import InputError
from gammapo_torch.fused_loss import (
    fused_gamma_po_loss,
    sequence_logps,
    unfused_gamma_po_loss,
    unfused_sequence_logps,
)

TOL = {torch.float64: (1e-10, 1e-10), torch.float32: (2e-5, 2e-5)}
IGNORE = -100


def _batch(dtype, *, b=3, tw=7, tl=5, h=6, v=13, bias=True, seed=0, reference=False):
    """Random hidden states, head and labels with a masked prompt and right padding per sequence."""
    g = torch.Generator().manual_seed(seed)

    def labels(t):
        y = torch.randint(0, v, (b, t), generator=g)
        for i in range(b):
            y[i, : (i % 2) + 1] = IGNORE  # prompt tokens
            if i:
                y[i, t - i :] = IGNORE  # right padding of varying length
        return y

    batch = {
        "chosen_hidden": torch.randn(b, tw, h, generator=g, dtype=torch.float64).to(dtype).requires_grad_(),
        "rejected_hidden": torch.randn(b, tl, h, generator=g, dtype=torch.float64).to(dtype).requires_grad_(),
        "weight": (0.7 * torch.randn(v, h, generator=g, dtype=torch.float64)).to(dtype).requires_grad_(),
        "bias": (0.3 * torch.randn(v, generator=g, dtype=torch.float64)).to(dtype).requires_grad_() if bias else None,
        "chosen_labels": labels(tw),
        "rejected_labels": labels(tl),
    }
    if reference:
        batch["ref_chosen_logps"] = -torch.rand(b, generator=g, dtype=torch.float64).to(dtype) * 10 - 5
        batch["ref_rejected_logps"] = -torch.rand(b, generator=g, dtype=torch.float64).to(dtype) * 10 - 5
    return batch


def _params(batch):
    return [batch[k] for k in ("chosen_hidden", "rejected_hidden", "weight", "bias") if batch.get(k) is not None]


def _run(fn, config, state, batch, **kw):
    out, new_state = fn(config, state, **batch, **kw)
    grads = torch.autograd.grad(out.loss, _params(batch))
    return out, new_state, grads


def _assert_close(actual, expected, dtype, what):
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(actual.detach(), expected.detach(), rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("chunk_size", [1, 4, 1000])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sequence_logps_matches_full_logits(chunk_size, dtype):
    batch = _batch(dtype)
    args = (batch["chosen_hidden"], batch["weight"], batch["chosen_labels"])
    fused = sequence_logps(*args, bias=batch["bias"], chunk_size=chunk_size)
    full = unfused_sequence_logps(*args, bias=batch["bias"])
    _assert_close(fused, full, dtype, f"sequence_logps, chunk {chunk_size}")
    grads_f = torch.autograd.grad(fused.sum() * 0.5 + fused[0], _params(batch)[:1] + _params(batch)[2:])
    grads_u = torch.autograd.grad(full.sum() * 0.5 + full[0], _params(batch)[:1] + _params(batch)[2:])
    for name, gf, gu in zip(("hidden", "weight", "bias"), grads_f, grads_u):
        _assert_close(gf, gu, dtype, f"d/d{name}, chunk {chunk_size}")


def test_sequence_logps_matches_numpy_log_softmax():
    batch = _batch(torch.float64)
    h, w, b, y = (batch[k].detach().numpy() for k in ("chosen_hidden", "weight", "bias", "chosen_labels"))
    z = h @ w.T + b
    logp = z - (np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)) + z.max(-1, keepdims=True))
    mask = y != IGNORE
    expected = (np.take_along_axis(logp, np.where(mask, y, 0)[..., None], -1)[..., 0] * mask).sum(-1)
    got = sequence_logps(batch["chosen_hidden"], batch["weight"], batch["chosen_labels"], bias=batch["bias"], chunk_size=5)
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-12, atol=1e-12, err_msg="log-probs vs NumPy")


@pytest.mark.parametrize("bias", [True, False])
def test_sequence_logps_gradcheck(bias):
    batch = _batch(torch.float64, b=2, tw=4, h=3, v=5, bias=bias)
    fn = lambda hid, w, *bb: sequence_logps(  # noqa: E731
        hid, w, batch["chosen_labels"][:, :4], bias=bb[0] if bb else None, chunk_size=3
    )
    inputs = (batch["chosen_hidden"], batch["weight"]) + ((batch["bias"],) if bias else ())
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-6)


# ------------------------------------------------------------------------------------------------
LOSSES = [
    ("gamma-simpo", "batch"),
    ("gamma-simpo", "queue"),
    ("gamma-dpo", "batch"),
    ("gamma-dpo", "queue"),
    ("simpo", "batch"),
    ("dpo", "batch"),
]


def _config(loss, calibration):
    kw = dict(loss=loss, calibration=calibration, queue_size=16, sample_size=8, queue_warmup=4)
    if loss.endswith("simpo"):
        return R.GammaPOConfig(beta=2.0, gamma_beta_ratio=0.5, tau=1.0, **kw)
    return R.GammaPOConfig(beta=0.5, gamma_beta_ratio=2.0, tau=1.0, **kw)


@pytest.mark.parametrize("chunk_size", [3, 64])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("loss,calibration", LOSSES)
def test_fused_gamma_po_loss_matches_unfused(loss, calibration, dtype, chunk_size):
    config = _config(loss, calibration)
    batch = _batch(dtype, reference=not config.reference_free, seed=1)
    state = T.init_state(config, seed=3, dtype=dtype)
    fused, state_f, grads_f = _run(fused_gamma_po_loss, config, state, batch, chunk_size=chunk_size)
    full, state_u, grads_u = _run(unfused_gamma_po_loss, config, state, batch)
    for field in ("loss", "losses", "margins", "gaps", "chosen_rewards", "rejected_rewards"):
        _assert_close(getattr(fused, field), getattr(full, field), dtype, f"{loss}/{calibration} {field}")
    for name, gf, gu in zip(("chosen_hidden", "rejected_hidden", "weight", "bias"), grads_f, grads_u):
        _assert_close(gf, gu, dtype, f"{loss}/{calibration} d loss/d {name}")
    if config.stateful:
        for field in ("buffer", "size", "head", "step"):
            _assert_close(getattr(state_f, field), getattr(state_u, field), dtype, f"state.{field}")
    else:
        assert state_f is None and state_u is None


def test_fused_gamma_po_loss_queue_state_over_steps_matches_spec():
    """Three queue-mode steps: the fused loss, margins and state follow the NumPy reference."""
    config = _config("gamma-simpo", "queue")
    state_t = T.init_state(config, seed=7, dtype=torch.float64)
    state_r = R.init_state(config, seed=7)
    for step in range(3):
        batch = _batch(torch.float64, seed=10 + step)
        out, state_t = fused_gamma_po_loss(config, state_t, **batch, chunk_size=4)
        logps = {
            f"{side}_logps": unfused_sequence_logps(
                batch[f"{side}_hidden"], batch["weight"], batch[f"{side}_labels"], bias=batch["bias"]
            ).detach().numpy()
            for side in ("chosen", "rejected")
        }
        lengths = {f"{s}_lengths": (batch[f"{s}_labels"] != IGNORE).sum(1).numpy() for s in ("chosen", "rejected")}
        ref, state_r = R.gamma_po_loss(config, state_r, **logps, **lengths)
        np.testing.assert_allclose(out.loss.item(), ref.loss, rtol=1e-10, err_msg=f"loss, step {step}")
        np.testing.assert_allclose(out.margins.numpy(), ref.margins, rtol=1e-10, atol=1e-10, err_msg=f"margins, step {step}")
        np.testing.assert_allclose(T.to_numpy(state_t.buffer), state_r.buffer, rtol=1e-10, atol=1e-10, err_msg="queue")


def test_fused_gamma_po_loss_gradient_is_spec_vjp_through_logps():
    """d loss/d weight equals Σ_s loss_vjp_s · d logp_s/d weight (the spec's VJP, chain-ruled)."""
    config = _config("gamma-dpo", "batch")
    batch = _batch(torch.float64, reference=True, seed=5)
    out, _ = fused_gamma_po_loss(config, None, **batch, chunk_size=4)
    (gw,) = torch.autograd.grad(out.loss, [batch["weight"]])
    logps = {
        f"{s}_logps": unfused_sequence_logps(batch[f"{s}_hidden"], batch["weight"], batch[f"{s}_labels"], bias=batch["bias"])
        for s in ("chosen", "rejected")
    }
    refs = {k: batch[k].numpy() for k in ("ref_chosen_logps", "ref_rejected_logps")}
    vjp = R.loss_vjp(config, out.margins.numpy(), **{k: v.detach().numpy() for k, v in logps.items()}, **refs)
    surrogate = sum((torch.from_numpy(vjp[k]) * logps[k]).sum() for k in logps)
    (expected,) = torch.autograd.grad(surrogate, [batch["weight"]])
    _assert_close(gw, expected, torch.float64, "d loss/d weight vs spec loss_vjp")


def test_fused_gamma_po_loss_only_weight_requires_grad():
    config = _config("gamma-simpo", "batch")
    batch = _batch(torch.float32, bias=False)
    batch["chosen_hidden"] = batch["chosen_hidden"].detach()
    batch["rejected_hidden"] = batch["rejected_hidden"].detach()
    out, _ = fused_gamma_po_loss(config, None, **batch)
    out.loss.backward()
    assert batch["weight"].grad is not None and torch.isfinite(batch["weight"].grad).all()


def test_fused_gamma_po_loss_bfloat16_computes_in_float32():
    config = _config("gamma-simpo", "batch")
    batch = _batch(torch.bfloat16)
    out, _ = fused_gamma_po_loss(config, None, **batch, chunk_size=4)
    full, _ = unfused_gamma_po_loss(config, None, **batch)
    assert out.loss.dtype == torch.float32, out.loss.dtype
    torch.testing.assert_close(out.loss, full.loss, rtol=1e-2, atol=1e-2)
    out.loss.backward()
    assert batch["weight"].grad.dtype == torch.bfloat16


# ------------------------------------------------------------------------------------------------
def _message(call):
    with pytest.raises(InputError) as info:
        call()
    return info.value


def test_fused_gamma_po_loss_rejects_bad_shapes_and_labels():
    config = _config("gamma-simpo", "batch")
    batch = _batch(torch.float32)
    bad_w = dict(batch, weight=batch["weight"][:, :-1])
    assert _message(lambda: fused_gamma_po_loss(config, None, **bad_w)).field == "weight"
    bad_y = dict(batch, chosen_labels=batch["chosen_labels"][:, :-1])
    assert _message(lambda: fused_gamma_po_loss(config, None, **bad_y)).field == "chosen_labels"
    out_of_range = dict(batch, rejected_labels=batch["rejected_labels"].clone())
    out_of_range["rejected_labels"][0, -1] = 13
    err = _message(lambda: fused_gamma_po_loss(config, None, **out_of_range))
    assert err.field == "rejected_labels" and "[0, 13)" in str(err), str(err)
    assert _message(lambda: fused_gamma_po_loss(config, None, **batch, chunk_size=0)).field == "chunk_size"


def test_fused_gamma_po_loss_errors_match_gamma_po_loss():
    """Loss-level errors (a reference log-prob given to SimPO; none given to DPO) are the backend's own."""
    simpo = _config("gamma-simpo", "batch")
    batch = _batch(torch.float64, reference=True)
    fused_err = _message(lambda: fused_gamma_po_loss(simpo, None, **batch))
    full_err = _message(lambda: unfused_gamma_po_loss(simpo, None, **batch))
    assert (type(fused_err), str(fused_err)) == (type(full_err), str(full_err))
    dpo = _config("gamma-dpo", "batch")
    err = _message(lambda: fused_gamma_po_loss(dpo, None, **_batch(torch.float64)))
    assert err.field == "ref_chosen_logps", str(err)


def test_fused_gamma_po_loss_all_masked_sequence_is_rejected_by_simpo():
    config = _config("gamma-simpo", "batch")
    batch = _batch(torch.float64)
    batch["chosen_labels"][1] = IGNORE
    err = _message(lambda: fused_gamma_po_loss(config, None, **batch))
    assert err.field == "chosen_lengths", str(err)


# ------------------------------------------------------------------------------------------------
class _LargestTensor:
    """A dispatch mode recording the largest tensor any aten op produces (forward and backward)."""

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        record = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                for t in out if isinstance(out, (tuple, list)) else (out,):
                    if isinstance(t, torch.Tensor):
                        record.largest = max(record.largest, t.numel())
                return out

        self.largest = 0
        self.mode = Mode()


@pytest.mark.parametrize("chunk_size", [8, 16])
def test_fused_gamma_po_loss_never_materialises_full_logits(chunk_size):
    """Every tensor the fused fwd+bwd creates is at most max(chunk · V, V · H, B · T · H) elements."""
    b, t, h, v = 2, 64, 4, 1000
    config = _config("gamma-simpo", "queue")
    batch = _batch(torch.float32, b=b, tw=t, tl=t, h=h, v=v, seed=2)
    state = T.init_state(config, seed=0)
    for fn, kw in ((fused_gamma_po_loss, {"chunk_size": chunk_size}), (unfused_gamma_po_loss, {})):
        probe = _LargestTensor()
        with probe.mode:
            out, _ = fn(config, state, **batch, **kw)
            out.loss.backward()
        if fn is fused_gamma_po_loss:
            bound = max(chunk_size * v, v * h, b * t * h, config.queue_size)
            assert probe.largest <= bound, f"fused path made a tensor of {probe.largest} elements (bound {bound})"
        else:  # the probe can fail: the unfused path does hold the [B, T, V] logits
            assert probe.largest >= b * t * v, probe.largest
