"""More deliberately broken backends, one or two per class of porting bug the suite must catch:
output fields, the SFT (NLL) term, the dtype policy, state contents, error paths and special values,
degenerate sizes, the soft-plus switch-over, ε-DPO, the failure messages. Each is a copy of the NumPy
reference (or the torch backend) with one plausible one-line change; :data:`MUTANTS` maps its name
to the op whose conformance tests must fail.
"""

from __future__ import annotations

import dataclasses
import types

import numpy as np

import gammapo_spec as R
import gammapo_spec.alignment_potential as AP
import gammapo_spec.beta_dpo as BD
import gammapo_spec.epsilon_dpo as E
from gammapo.protocol import REQUIRED_ATTRIBUTES
from gammapo_spec.numerics import softplus
from gammapo_spec.state import push_gaps

#: mutant attribute → the op the suite must name in its failures.
MUTANTS = {
    # output fields
    "rewards_without_beta": "loss_with_margins",
    "metrics_sample_std": "gamma_po_loss",
    "metrics_accuracy_ge": "loss_with_margins",
    # the SFT (NLL) term
    "sft_on_rejected": "gamma_po_loss",
    "sft_not_length_normalised": "gamma_po_loss",
    "sft_gradient_dropped": "gamma_po_loss",
    # dtype policy (torch-based)
    "torch_calibrates_half_in_half": "calibrate_margins",
    "torch_losses_in_input_dtype": "gamma_po_loss",
    # state contents
    "queue_stores_unscaled_gaps": "calibrate_step",
    "queue_keeps_first_gaps_of_big_batch": "calibrate_step",
    "state_from_dict_resets_step": "calibrate_step",
    "state_to_dict_head_unwrapped": "calibrate_step",
    # error paths and special values
    "accepts_positive_inf": "reward_gap",
    "accepts_zero_lengths": "implicit_rewards",
    "repairs_nan_unchecked": "gamma_po_loss",
    # degenerate sizes
    "selection_size_without_guard": "alignment_potential",
    "keep_count_without_floor": "beta_dpo",
    # numerics
    "softplus_threshold_15": "pair_losses",
    # epsilon-DPO
    "epsilon_steps_not_strict": "epsilon_dpo",
    "epsilon_literal_perturbation": "epsilon_dpo",
}


def _copy(backend, name: str, **overrides):
    ns = types.SimpleNamespace(**{a: getattr(backend, a) for a in REQUIRED_ATTRIBUTES})
    ns.name = name
    for a in ("alignment_potential", "beta_dpo", "epsilon_dpo") if backend is R else ():
        setattr(ns, a, _module_copy(__import__(f"gammapo_spec.{a}", fromlist=["x"])))
    for k, v in overrides.items():
        setattr(ns, k, v)
    return ns


def _module_copy(module, **overrides):
    ns = types.SimpleNamespace(**{a: getattr(module, a) for a in module.__all__})
    for k, v in overrides.items():
        setattr(ns, k, v)
    return ns


def _replace_output(out, **fields):
    return dataclasses.replace(out, **fields)


# --- output fields ---------------------------------------------------------------------------------


def _rewards_without_beta(config, margins, **inputs):
    """Rewards reported as log-ratios, without the factor β (the loss itself is right)."""
    out = R.loss_with_margins(config, margins, **inputs)
    return _replace_output(out, chosen_rewards=out.chosen_rewards / config.beta,
                           rejected_rewards=out.rejected_rewards / config.beta)


def _metrics_sample_std(config, state, **inputs):
    """margins/std as the sample standard deviation (ddof=1) instead of the population's."""
    out, new = R.gamma_po_loss(config, state, **inputs)
    m = np.asarray(out.margins)
    std = float(np.std(m, ddof=1)) if m.size > 1 else 0.0
    return _replace_output(out, metrics={**out.metrics, "margins/std": std}), new


def _metrics_accuracy_ge(config, margins, **inputs):
    """rewards/accuracies counting ties as correct (>= instead of >)."""
    out = R.loss_with_margins(config, margins, **inputs)
    acc = float(np.mean(out.chosen_rewards >= out.rejected_rewards))
    return _replace_output(out, metrics={**out.metrics, "rewards/accuracies": acc})


# --- the SFT (NLL) term ----------------------------------------------------------------------------


def _sft_variant(which):
    def gamma_po_loss(config, state, **inputs):
        out, new = R.gamma_po_loss(config, state, **inputs)
        if config.sft_weight <= 0:
            return out, new
        c, r = (np.asarray(inputs[k], np.float64) for k in ("chosen_logps", "rejected_logps"))
        lw, ll = (np.asarray(inputs[k], np.float64) for k in ("chosen_lengths", "rejected_lengths"))
        right = config.sft_weight * (-c / lw)
        wrong = config.sft_weight * (-r / ll) if which == "rejected" else config.sft_weight * (-c)
        losses = np.asarray(out.losses) - right + wrong
        return _replace_output(out, losses=losses, loss=float(np.mean(losses))), new

    return gamma_po_loss


def _sft_gradient_dropped(config, state, **inputs):
    """The NLL term in the loss but not in its gradient (detached by mistake)."""
    out, new, _ = R.gamma_po_loss_and_grad(config, state, **inputs)
    return out, new, R.loss_vjp(dataclasses.replace(config, sft_weight=0.0), out.margins, **inputs)


# --- state contents --------------------------------------------------------------------------------


def _calibrate_step_pushing(transform):
    def calibrate_step(config, state, gaps):
        gamma, new = R.calibrate_step(config, state, gaps)
        if state is None:
            return gamma, new
        h = np.asarray(gaps, dtype=np.float64)
        return gamma, transform(config, state, h, new)

    return calibrate_step


def _unscaled(config, state, h, new):
    """The queue stores the log-ratio h/β instead of the gap h."""
    return push_gaps(state, h / config.beta)


def _first_of_big_batch(config, state, h, new):
    """A batch larger than the queue keeps its first gaps instead of its last."""
    if h.shape[0] <= state.capacity:
        return new
    return push_gaps(state, np.concatenate([h[: state.capacity], h[: h.shape[0] - state.capacity]]))


def _state_from_dict_resets_step(data):
    s = R.state_from_dict(data)
    return None if s is None else dataclasses.replace(s, step=0)


def _state_to_dict_head_unwrapped(state):
    """head reported before the modulo: ``head + capacity`` once the queue has wrapped."""
    d = R.state_to_dict(state)
    if d is not None and d["size"] == len(d["buffer"]) and d["step"] > 0:
        d["head"] = d["head"] + len(d["buffer"])
    return d


def _state_from_dict_tolerant(data):
    if data is not None and data["head"] >= len(data["buffer"]):
        data = {**data, "head": data["head"] - len(data["buffer"])}
    return R.state_from_dict(data)


# --- error paths and special values ----------------------------------------------------------------


def _unchecked_if(pred, fn_name):
    fn = getattr(R, fn_name)

    def op(config, **inputs):
        if config.check_values and pred(config, inputs):
            return fn(dataclasses.replace(config, check_values=False), **inputs)
        return fn(config, **inputs)

    return op


def _has_posinf(config, inputs):
    vals = [np.asarray(v, np.float64) for k, v in inputs.items() if v is not None and "logps" in k]
    return any(np.any(v == np.inf) for v in vals) and not any(np.any(np.isnan(v) | (v == -np.inf)) for v in vals)


def _has_zero_length(config, inputs):
    lens = [np.asarray(v, np.float64) for k, v in inputs.items() if v is not None and "lengths" in k]
    others = [np.asarray(v, np.float64) for k, v in inputs.items() if v is not None and "logps" in k]
    return (any(np.any(v == 0) for v in lens) and all(np.all(v >= 0) for v in lens)
            and all(np.all(np.isfinite(v)) for v in others))


def _repairs_nan(config, state, **inputs):
    """With check_values off, NaN log-probs are replaced by 0 (silently repaired)."""
    if not config.check_values:
        inputs = {k: (None if v is None else np.nan_to_num(np.asarray(v, np.float64), nan=0.0)) for k, v in inputs.items()}
    return R.gamma_po_loss(config, state, **inputs)


# --- degenerate sizes ------------------------------------------------------------------------------


def _select_without_guard(scores, fraction):
    """k = floor(f * N) without the 1e-9 guard: 0.29 * 100 = 28.999... keeps 28."""
    s = np.asarray(scores, dtype=np.float64)
    AP.select_top_fraction(s, fraction)  # validation as the reference
    k = int(np.floor(fraction * s.shape[0]))
    order = np.lexsort((np.arange(s.shape[0]), -s))
    return np.sort(order[:k]).astype(np.int64)


def _beta_dpo_keep_without_floor(state, *logps, **kw):
    """The kept count without its floor of 1: a batch with rho * n < 1 keeps no pair (NaN loss)."""
    n = np.asarray(logps[0]).shape[0]
    if BD.keep_count(n, kw.get("rho", 0.8)) == 1 and kw.get("rho", 0.8) * n < 1:
        out = BD.beta_dpo_step(state, *logps, **kw)
        mask = np.zeros_like(out.mask)
        return dataclasses.replace(out, mask=mask, loss=float("nan"))
    return BD.beta_dpo_step(state, *logps, **kw)


# --- numerics --------------------------------------------------------------------------------------


def _softplus_threshold(z, t=15.0):
    z = np.asarray(z, dtype=np.float64)
    return np.where(z > t, z, softplus(np.minimum(z, t)))


def _pair_losses_threshold(config, z):
    if config.base_loss not in ("dpo", "simpo", "rdpo"):
        return R.pair_losses(config, z)
    z = np.asarray(z, dtype=np.float64)
    eps = config.label_smoothing
    return (1 - eps) * _softplus_threshold(-z) + eps * _softplus_threshold(z)


# --- epsilon-DPO -----------------------------------------------------------------------------------


def _epsilon_steps_not_strict(*cols):
    E.epsilon_steps(*cols)  # validation as the reference
    c, r, cp, rp, cm, rm = (np.asarray(v, np.float64) for v in cols)
    rho, rho_p, rho_m = c - r, cp - rp, cm - rm
    return ((rho_p >= rho) & (rho >= rho_m)).astype(np.int64) - ((rho_m >= rho) & (rho >= rho_p)).astype(np.int64)


def _epsilon_literal(policy_logits, ref_logits, labels, mask=None, *, epsilon):
    """z± written literally, (1 ± ε) z − (±ε) z_ref: rounds differently where the policy is the reference."""
    out = E.epsilon_sequence_logps(policy_logits, ref_logits, labels, mask, epsilon=epsilon)
    p, q = np.asarray(policy_logits, np.float64), np.asarray(ref_logits, np.float64)
    y = np.asarray(labels)
    m = (y != E.IGNORE_INDEX) if mask is None else np.asarray(mask) != 0
    y = np.where(m, y, 0)
    res = []
    for z in ((1 + epsilon) * p - epsilon * q, (1 - epsilon) * p + epsilon * q):
        ls = z - np.log(np.sum(np.exp(z - z.max(-1, keepdims=True)), -1, keepdims=True)) - z.max(-1, keepdims=True)
        tok = np.take_along_axis(ls, y[..., None], axis=-1)[..., 0]
        res.append(np.sum(np.where(m, tok, 0.0), axis=1))
    return E.SequenceLogps(out.logps, *res)


# --- the mutants -----------------------------------------------------------------------------------

rewards_without_beta = _copy(R, "mutant-rewards-without-beta", loss_with_margins=_rewards_without_beta)
metrics_sample_std = _copy(R, "mutant-metrics-sample-std", gamma_po_loss=_metrics_sample_std)
metrics_accuracy_ge = _copy(R, "mutant-metrics-accuracy-ge", loss_with_margins=_metrics_accuracy_ge)
sft_on_rejected = _copy(R, "mutant-sft-on-rejected", gamma_po_loss=_sft_variant("rejected"))
sft_not_length_normalised = _copy(R, "mutant-sft-not-normalised", gamma_po_loss=_sft_variant("unnormalised"))
sft_gradient_dropped = _copy(R, "mutant-sft-gradient-dropped", gamma_po_loss_and_grad=_sft_gradient_dropped)
queue_stores_unscaled_gaps = _copy(R, "mutant-queue-unscaled", calibrate_step=_calibrate_step_pushing(_unscaled))
queue_keeps_first_gaps_of_big_batch = _copy(R, "mutant-queue-first-gaps",
                                            calibrate_step=_calibrate_step_pushing(_first_of_big_batch))
state_from_dict_resets_step = _copy(R, "mutant-from-dict-step", state_from_dict=_state_from_dict_resets_step)
state_to_dict_head_unwrapped = _copy(R, "mutant-to-dict-head", state_to_dict=_state_to_dict_head_unwrapped,
                                     state_from_dict=_state_from_dict_tolerant)
accepts_positive_inf = _copy(R, "mutant-accepts-posinf", reward_gap=_unchecked_if(_has_posinf, "reward_gap"))
accepts_zero_lengths = _copy(R, "mutant-accepts-zero-lengths",
                             implicit_rewards=_unchecked_if(_has_zero_length, "implicit_rewards"))
repairs_nan_unchecked = _copy(R, "mutant-repairs-nan", gamma_po_loss=_repairs_nan)
selection_size_without_guard = _copy(R, "mutant-selection-no-guard")
selection_size_without_guard.alignment_potential = _module_copy(AP, select_top_fraction=_select_without_guard)
keep_count_without_floor = _copy(R, "mutant-keep-count-no-floor")
keep_count_without_floor.beta_dpo = _module_copy(BD, beta_dpo_step=_beta_dpo_keep_without_floor)
softplus_threshold_15 = _copy(R, "mutant-softplus-threshold", pair_losses=_pair_losses_threshold)
epsilon_steps_not_strict = _copy(R, "mutant-epsilon-not-strict")
epsilon_steps_not_strict.epsilon_dpo = _module_copy(E, epsilon_steps=_epsilon_steps_not_strict)
epsilon_literal_perturbation = _copy(R, "mutant-epsilon-literal")
epsilon_literal_perturbation.epsilon_dpo = _module_copy(E, epsilon_sequence_logps=_epsilon_literal)


# --- torch-based (dtype policy) --------------------------------------------------------------------


def _torch_mutant(name):
    import torch

    import gammapo_torch as T

    half = (torch.bfloat16, torch.float16)
    if name == "torch_calibrates_half_in_half":
        def calibrate_margins(gaps, **kw):
            """Half gaps calibrated in half precision: float32 result rounded through the input dtype."""
            out = T.calibrate_margins(gaps, **kw)
            return out.to(gaps.dtype).to(out.dtype) if isinstance(gaps, torch.Tensor) and gaps.dtype in half else out

        return _copy(T, "mutant-torch-half-calibration", calibrate_margins=calibrate_margins)

    def gamma_po_loss(config, state, **inputs):
        """Per-pair losses cast back to the input dtype (the policy says float32 for half inputs)."""
        out, new = T.gamma_po_loss(config, state, **inputs)
        d = inputs["chosen_logps"].dtype
        return (dataclasses.replace(out, losses=out.losses.to(d)) if d in half else out), new

    return _copy(T, "mutant-torch-losses-input-dtype", gamma_po_loss=gamma_po_loss)


def __getattr__(name):
    if name.startswith("torch_"):
        return _torch_mutant(name)
    raise AttributeError(name)
