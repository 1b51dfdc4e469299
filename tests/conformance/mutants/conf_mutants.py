"""Deliberately broken backends: the conformance suite must reject each, naming the op it breaks.

Each mutant is a copy of a real backend (the NumPy reference or torch) with ONE op replaced by a
plausible bug. :data:`MUTANTS` maps the mutant's ``MODULE:ATTR`` attribute name to the op whose
conformance tests must fail. The reference itself is never patched (the suite compares with it).
"""

from __future__ import annotations

import types

import numpy as np

import gammapo_spec as R
from gammapo.protocol import REQUIRED_ATTRIBUTES
from gammapo_spec.numerics import softplus
from gammapo_spec.state import push_gaps, sample_slots
from gammapo_spec.validation import check_gaps_shape

#: mutant attribute → the op the suite must name in its failures.
MUTANTS = {
    "margins_not_detached": "gamma_po_loss",
    "smoothing_sign_slip": "pair_losses",
    "one_iteration_too_many": "calibrate_margins",
    "one_iteration_too_few": "calibrate_margins",
    "unstable_log_sigmoid": "pair_losses",
    "length_normalisation_dropped": "reward_gap",
    "queue_pushed_before_sampling": "calibrate_step",
    "top_fraction_ties_to_later_pairs": "alignment_potential",
    "beta_dpo_statistics_after_use": "beta_dpo",
}


def _copy(backend, name: str, **overrides):
    ns = types.SimpleNamespace(**{a: getattr(backend, a) for a in REQUIRED_ATTRIBUTES})
    ns.name = name
    for k, v in overrides.items():
        setattr(ns, k, v)
    return ns


# --- NumPy-based mutants ---------------------------------------------------------------------------


def _smoothing_sign_slip(config, z):
    """cDPO smoothing with the sign of the ε term slipped: (1−ε)·softplus(−z) − ε·softplus(z)."""
    eps = config.label_smoothing
    if eps == 0 or config.base_loss not in ("dpo", "simpo", "rdpo"):
        return R.pair_losses(config, z)
    z = np.asarray(z, dtype=np.float64)
    return (1 - eps) * softplus(-z) - eps * softplus(z)


def _iters_shift(delta):
    def calibrate_margins(gaps, *, gamma0, tau, solver="mirror", iters=20, check_values=True):
        R.calibration.check_calibration_args(gamma0, tau, solver, iters)
        return R.calibrate_margins(gaps, gamma0=gamma0, tau=tau, solver=solver, iters=max(iters + delta, 1),
                                   check_values=check_values)

    return calibrate_margins


def _unstable_pair_losses(config, z):
    """−log σ(z) written as −log(1/(1+e^{−z})): overflows to inf for z ≪ 0."""
    if config.base_loss not in ("dpo", "simpo", "rdpo") or config.label_smoothing:
        return R.pair_losses(config, z)
    z = np.asarray(z, dtype=np.float64)
    with np.errstate(over="ignore", divide="ignore"):
        return -np.log(1.0 / (1.0 + np.exp(-z)))


def _no_length_norm(config, **inputs):
    """SimPO gap without dividing by the lengths."""
    if not config.reference_free:
        return R.reward_gap(config, **inputs)
    R.reward_gap(config, **inputs)  # validation as the reference
    c, r = (np.asarray(inputs[k], dtype=np.float64) for k in ("chosen_logps", "rejected_logps"))
    return config.beta * (c - r)


def _push_then_sample(config, state, gaps):
    """Queue mode with the current gaps pushed BEFORE sampling (they can be sampled twice)."""
    if state is None:
        return R.calibrate_step(config, state, gaps)
    R.state.check_state(config, state)
    h = np.asarray(gaps, dtype=np.float64)
    n = check_gaps_shape(h.shape)
    pushed = push_gaps(state, h)
    pushed_same_step = R.QueueState(buffer=pushed.buffer, size=pushed.size, head=pushed.head, step=state.step,
                                    seed=state.seed)
    count = min(pushed.size, max(config.sample_size - n, 0))
    sampled = pushed.buffer[sample_slots(pushed_same_step, count)]
    gamma = R.calibrate_margins(np.concatenate([sampled, h]), gamma0=config.gamma0, tau=config.tau,
                                solver=config.solver, iters=config.iters)[count:]
    return gamma, pushed


smoothing_sign_slip = _copy(R, "mutant-smoothing-sign-slip", pair_losses=_smoothing_sign_slip)
one_iteration_too_many = _copy(R, "mutant-iters-plus-one", calibrate_margins=_iters_shift(+1))
one_iteration_too_few = _copy(R, "mutant-iters-minus-one", calibrate_margins=_iters_shift(-1))
unstable_log_sigmoid = _copy(R, "mutant-unstable-log-sigmoid", pair_losses=_unstable_pair_losses)
length_normalisation_dropped = _copy(R, "mutant-no-length-norm", reward_gap=_no_length_norm)
queue_pushed_before_sampling = _copy(R, "mutant-push-before-sample", calibrate_step=_push_then_sample)


# --- optional op modules (alignment potential, β-DPO) ----------------------------------------------


def _module_copy(module, **overrides):
    ns = types.SimpleNamespace(**{a: getattr(module, a) for a in module.__all__})
    for k, v in overrides.items():
        setattr(ns, k, v)
    return ns


def _select_top_fraction_late_ties(scores, fraction):
    """Top fraction with ties broken toward the LATER pair (the spec keeps the earlier one)."""
    import gammapo_spec.alignment_potential as AP

    AP.select_top_fraction(scores, fraction)  # validation as the reference
    s = np.asarray(scores, dtype=np.float64)
    k = AP.selection_size(s.shape[0], fraction)
    order = np.lexsort((-np.arange(s.shape[0]), -s))  # by -score, then by -index
    return np.sort(order[:k]).astype(np.int64)


def _beta_dpo_statistics_after_use(state, *logps, beta0=0.1, alpha=0.6, rho=0.8, momentum=0.9, beta_min=1e-3):
    """β-DPO with the filter and β computed from the OLD running statistics (updated only afterwards)."""
    import gammapo_spec.beta_dpo as BD

    out = BD.beta_dpo_step(state, *logps, beta0=beta0, alpha=alpha, rho=rho, momentum=momentum, beta_min=beta_min)
    g, n = out.gaps, out.gaps.shape[0]
    mask = BD.select_pairs(BD.gaussian_log_weights(g, state.gap_mean, state.gap_std), BD.gumbel_noise(state, n),
                           BD.keep_count(n, rho))
    beta = BD.batch_beta(g, mask, state.gap_mean, beta0=beta0, alpha=alpha, beta_min=beta_min)
    losses = softplus(-beta * g)
    return BD.BetaDPOOutput(float(np.sum(mask * losses) / np.sum(mask)), losses, mask, beta, g, out.state)


def _beta_dpo_loss_and_grad_after_use(state, *logps, **kw):
    import gammapo_spec.beta_dpo as BD

    out = _beta_dpo_statistics_after_use(state, *logps, **kw)
    g = BD.masked_loss_grad(out.gaps, out.mask, out.beta)
    return out, dict(zip(("chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps"), (g, -g, -g, g)))


def _make_optional_mutants():
    import gammapo_spec.alignment_potential as AP
    import gammapo_spec.beta_dpo as BD

    ap = _copy(R, "mutant-top-fraction-late-ties",
               alignment_potential=_module_copy(AP, select_top_fraction=_select_top_fraction_late_ties))
    bd = _copy(R, "mutant-beta-dpo-stats-after-use",
               beta_dpo=_module_copy(BD, beta_dpo_step=_beta_dpo_statistics_after_use,
                                     beta_dpo_loss_and_grad=_beta_dpo_loss_and_grad_after_use))
    return ap, bd


top_fraction_ties_to_later_pairs, beta_dpo_statistics_after_use = _make_optional_mutants()


# --- torch-based mutant ----------------------------------------------------------------------------


def _make_margins_not_detached():
    import torch

    import gammapo_torch as T

    def gamma_po_loss_and_grad(config, state, **inputs):
        """Gradient taken THROUGH the calibrated margins (they should be stop-gradient)."""
        leaves = {k: v.detach().clone().requires_grad_(True) for k, v in inputs.items()
                  if isinstance(v, torch.Tensor) and v.is_floating_point() and "logps" in k}
        x = {**inputs, **leaves}
        out, new_state = T.gamma_po_loss(config, state, **x)
        loss = out.loss
        if config.dynamic_margins:
            # values stay the calibrated margins; the bug is the gradient flowing through them
            # (here through the one-step softmax form γ ∝ N γ0 softmax(−h/τ) of the calibration)
            gaps = T.reward_gap(config, **x)
            live = gaps.shape[0] * config.gamma0 * torch.softmax(-gaps.double() / config.tau, 0)
            margins = out.margins.detach() + (live - live.detach()).to(out.margins.dtype)
            extra = T.pair_losses(config, out.gaps - margins).mean() - T.pair_losses(config, out.gaps - margins.detach()).mean()
            loss = out.loss + extra  # same value, gradient also flows through the margins
        loss.backward()
        grads = {k: (v.grad if v.grad is not None else torch.zeros_like(v)) for k, v in leaves.items()}
        return out, new_state, grads

    return _copy(T, "mutant-margins-not-detached", gamma_po_loss_and_grad=gamma_po_loss_and_grad)


# --- one or more mutants per class of porting bug (conf_mutants_classes.py) --------------------------

import conf_mutants_classes as _classes  # noqa: E402

MUTANTS.update(_classes.MUTANTS)


def needs_torch(name: str) -> bool:
    """Whether mutant ``name`` is a copy of the torch backend (it cannot run without torch)."""
    return name.startswith("torch_") or name == "margins_not_detached"


def __getattr__(name):
    if name == "margins_not_detached":
        return _make_margins_not_detached()
    if name in _classes.MUTANTS:
        return getattr(_classes, name)
    raise AttributeError(name)
