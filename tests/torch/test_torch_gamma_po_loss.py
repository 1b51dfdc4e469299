"""gamma_po_loss and its parts against the reference: values, autograd vs loss_vjp, dtypes, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import gammapo
import gammapo_spec as R
import gammapo_torch as T
from gammapo.protocol import REQUIRED_ATTRIBUTES
from _torch_helpers import TOLERANCES, assert_same_error, close, make_inputs, rounded, to_torch

EXTRA = {"robust": dict(label_smoothing=0.1), "dpo": dict(label_smoothing=0.05), "rdpo": dict(rdpo_alpha=0.02),
         "simpo": dict(sft_weight=0.3, label_smoothing=0.1)}


def config(name: str, calibration: str = "batch", **kw) -> R.GammaPOConfig:
    base = dict(loss=name, beta=2.0, gamma_beta_ratio=0.5, tau=3.0, calibration=calibration,
                queue_size=32, sample_size=20, queue_warmup=8)
    base.update(EXTRA.get(name.removeprefix("gamma-"), {}))
    base.update(kw)
    return R.GammaPOConfig(**base)


def test_get_backend_returns_this_module():
    backend = gammapo.get_backend("torch")
    assert backend is T and backend.name == "torch"
    assert all(hasattr(T, a) for a in REQUIRED_ATTRIBUTES)


@pytest.mark.parametrize("name", R.LOSS_NAMES)
@pytest.mark.parametrize("dtype_name", ["float64", "float32", "bfloat16"])
def test_gamma_po_loss_values_and_grads_match_reference(name, dtype_name):
    dtype, rtol, atol = TOLERANCES[dtype_name]
    c = config(name)
    x = to_torch(make_inputs(c, 13, seed=len(name)), dtype)
    ref_inputs = rounded(x)
    ref_out, _ = R.gamma_po_loss(c, None, **ref_inputs)
    out, state, grads = T.gamma_po_loss_and_grad(c, None, **x)
    assert state is None
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    for field in ("loss", "losses", "margins", "gaps", "chosen_rewards", "rejected_rewards"):
        value = getattr(out, field)
        assert value.dtype == compute, f"{field} dtype {value.dtype} (policy: {compute})"
        close(value, getattr(ref_out, field), rtol, atol, f"{name}/{dtype_name}: {field}")
    for key, value in ref_out.metrics.items():
        assert out.metrics[key].dim() == 0, f"metric {key} is a 0-dim tensor"
        close(out.metrics[key], value, rtol, atol, f"{name}/{dtype_name}: metric {key}")
    ref_grads = R.loss_vjp(c, ref_out.margins, **ref_inputs)
    assert set(grads) == set(ref_grads)
    grad_tol = {"float64": 1e-12, "float32": 1e-6, "bfloat16": 1e-2}[dtype_name]
    for key, g in grads.items():
        assert g.dtype == dtype, "gradients come back in the input's dtype"
        close(g, ref_grads[key], grad_tol, grad_tol * 1e-2, f"{name}/{dtype_name}: d loss / d {key}")


@pytest.mark.parametrize("name", ["gamma-simpo", "gamma-dpo", "gamma-ipo"])
def test_gamma_po_loss_queue_mode_several_steps_float64(name):
    c = config(name, calibration="queue")
    ref, state = R.init_state(c, seed=11), T.init_state(c, seed=11, dtype=torch.float64)
    for step in range(6):
        x = to_torch(make_inputs(c, 5 + step, seed=step), torch.float64)
        ref_out, ref = R.gamma_po_loss(c, ref, **rounded(x))
        out, state, grads = T.gamma_po_loss_and_grad(c, state, **x)
        close(out.margins, ref_out.margins, 1e-10, 1e-10, f"margins at step {step}")
        close(out.losses, ref_out.losses, 1e-10, 1e-10, f"losses at step {step}")
        ref_grads = R.loss_vjp(c, ref_out.margins, **rounded(x))
        for key in ref_grads:
            close(grads[key], ref_grads[key], 1e-10, 1e-12, f"grad {key} at step {step}")
    d, r = T.state_to_dict(state), ref.to_dict()
    assert (d["size"], d["head"], d["step"]) == (r["size"], r["head"], r["step"])
    close(d["buffer"], r["buffer"], 0.0, 1e-12, "final buffer")


@given(n=st.integers(1, 40), seed=st.integers(0, 10_000), name=st.sampled_from(R.LOSS_NAMES),
       beta=st.floats(0.05, 20.0), ratio=st.floats(0.0, 2.0), tau=st.floats(1.0, 20.0))
def test_gamma_po_loss_property_float64(n, seed, name, beta, ratio, tau):
    c = config(name, beta=beta, gamma_beta_ratio=ratio, tau=tau)
    x = to_torch(make_inputs(c, n, seed=seed), torch.float64)
    ref_out, _ = R.gamma_po_loss(c, None, **rounded(x))
    out, _, grads = T.gamma_po_loss_and_grad(c, None, **x)
    close(out.losses, ref_out.losses, 1e-10, 1e-10, "losses")
    close(out.margins, ref_out.margins, 1e-10, 1e-10, "margins")
    for key, g in R.loss_vjp(c, ref_out.margins, **rounded(x)).items():
        close(grads[key], g, 1e-10, 1e-12, f"grad {key}")


def test_gamma_po_loss_backward_through_user_tensors_and_margins_detached():
    c = config("gamma-simpo")
    x = to_torch(make_inputs(c, 6), torch.float32)
    x["chosen_logps"].requires_grad_(True)
    out, _ = T.gamma_po_loss(c, None, **x)
    assert out.loss.requires_grad and not out.margins.requires_grad and not out.gaps.requires_grad
    out.loss.backward()
    assert x["chosen_logps"].grad is not None and x["chosen_logps"].grad.dtype == torch.float32


@pytest.mark.parametrize("name", ["gamma-rdpo", "rdpo", "simpo", "gamma-hinge"])
def test_loss_with_margins_and_target_margins_match_reference(name):
    c = config(name)
    x = to_torch(make_inputs(c, 7, seed=2), torch.float64)
    gamma = np.linspace(0.5, 1.5, 7)
    lengths = {k: x[k] for k in ("chosen_lengths", "rejected_lengths") if k in x}
    m_ref = R.target_margins(c, 7, gamma=gamma, **{k: v.numpy() for k, v in lengths.items()})
    m = T.target_margins(c, 7, gamma=torch.tensor(gamma), **lengths)
    close(m, m_ref, 1e-14, 1e-14, "target margins")
    ref_out = R.loss_with_margins(c, m_ref, **rounded(x))
    out = T.loss_with_margins(c, m, **x)
    close(out.loss, ref_out.loss, 1e-13, 1e-13, "loss")
    close(out.losses, ref_out.losses, 1e-13, 1e-13, "losses")


def test_target_margins_needs_gamma_like_the_reference():
    c = config("gamma-dpo")
    assert_same_error(lambda: R.target_margins(c, 3), lambda: T.target_margins(c, 3))


@pytest.mark.parametrize("name", R.BASE_LOSSES)
def test_pair_losses_match_reference_including_extremes(name):
    c = config(name)
    z = np.array([-800.0, -40.0, -1.0, 0.0, 0.5, 1.0, 2.0, 40.0, 800.0])
    close(T.pair_losses(c, torch.tensor(z)), R.pair_losses(c, z), 1e-14, 1e-14, f"{name} losses")
    zt = torch.tensor(z, requires_grad=True)
    T.pair_losses(c, zt).sum().backward()
    close(zt.grad, R.pair_loss_derivative(c, z), 1e-14, 1e-14, f"{name} derivative")


def test_reward_gap_and_implicit_rewards_match_reference():
    for name in ("gamma-simpo", "dpo"):
        c = config(name)
        x = to_torch(make_inputs(c, 5), torch.float64)
        close(T.reward_gap(c, **x), R.reward_gap(c, **rounded(x)), 1e-14, 1e-14, f"{name} gap")
        for a, b in zip(T.implicit_rewards(c, **x), R.implicit_rewards(c, **rounded(x))):
            close(a, b, 1e-14, 1e-14, f"{name} rewards")


def _bad_inputs(c: R.GammaPOConfig):
    good = make_inputs(c, 4)
    yield "missing", {k: v for k, v in good.items() if k != "rejected_logps"}
    extra = "ref_chosen_logps" if c.reference_free else "chosen_lengths"
    yield "unexpected", {**good, extra: good["chosen_logps"]}
    yield "2-D", {**good, "chosen_logps": good["chosen_logps"][None]}
    yield "empty", {k: v[:0] for k, v in good.items()}
    yield "mismatched", {**good, "rejected_logps": good["rejected_logps"][:3]}
    yield "nan", {**good, "rejected_logps": np.array([0.0, np.nan, 0.0, 0.0])}
    yield "inf", {**good, "chosen_logps": np.array([0.0, 0.0, -np.inf, 0.0])}
    if "chosen_lengths" in good:
        yield "zero length", {**good, "rejected_lengths": np.array([1.0, 0.0, 2.0, 3.0])}
        yield "negative length", {**good, "chosen_lengths": np.array([1.0, 2.0, -2.0, 3.0])}


CASES = [(name, label, inputs) for name in ("gamma-simpo", "gamma-dpo", "rdpo") for label, inputs in _bad_inputs(config(name))]


@pytest.mark.parametrize("name,label,inputs", CASES, ids=[f"{n}-{lab}" for n, lab, _ in CASES])
def test_gamma_po_loss_input_errors_match_reference(name, label, inputs):
    c = config(name)
    tensors = {k: torch.tensor(v) for k, v in inputs.items()}
    assert_same_error(lambda: R.gamma_po_loss(c, None, **inputs), lambda: T.gamma_po_loss(c, None, **tensors))
    assert_same_error(lambda: R.reward_gap(c, **inputs), lambda: T.reward_gap(c, **tensors))
    assert_same_error(
        lambda: R.loss_with_margins(c, np.zeros(4), **inputs), lambda: T.loss_with_margins(c, torch.zeros(4), **tensors)
    )


def test_loss_with_margins_bad_margins_match_reference():
    c = config("dpo")
    x = make_inputs(c, 4)
    tx = {k: torch.tensor(v) for k, v in x.items()}
    for bad in (np.zeros(3), np.zeros((4, 1))):
        assert_same_error(lambda: R.loss_with_margins(c, bad, **x), lambda: T.loss_with_margins(c, torch.tensor(bad), **tx))


def test_gamma_po_loss_state_errors_match_reference():
    c = config("gamma-simpo", calibration="queue")
    x = make_inputs(c, 3)
    tx = {k: torch.tensor(v) for k, v in x.items()}
    assert_same_error(lambda: R.gamma_po_loss(c, None, **x), lambda: T.gamma_po_loss(c, None, **tx))
    plain = config("simpo")
    assert_same_error(
        lambda: R.gamma_po_loss(plain, R.init_state(c), **x), lambda: T.gamma_po_loss(plain, T.init_state(c), **tx)
    )


def test_value_checks_off_lets_nan_through_without_error():
    c = config("gamma-dpo", check_values=False)
    x = make_inputs(c, 4)
    x["chosen_logps"][1] = np.nan
    out, _ = T.gamma_po_loss(c, None, **{k: torch.tensor(v) for k, v in x.items()})
    ref, _ = R.gamma_po_loss(c, None, **x)
    assert np.isnan(ref.losses[1]) and bool(torch.isnan(out.losses[1]))
    assert np.isnan(ref.margins).all() and bool(torch.isnan(out.margins).all())


def test_asarray_and_to_numpy():
    t = T.asarray([1.0, 2.5], "bfloat16")
    assert t.dtype == torch.bfloat16 and T.to_numpy(t).dtype == np.float64
    assert T.asarray(np.array([1.0]), "float32").dtype == torch.float32
    with pytest.raises(ValueError, match="supports dtypes"):
        T.asarray([1.0], "int8")
