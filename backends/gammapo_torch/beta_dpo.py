r"""β-DPO on torch tensors: :mod:`gammapo_spec.beta_dpo` with the same maths, errors and sampling.

.. math::

    \Delta_i = (c_i - c^\text{ref}_i) - (r_i - r^\text{ref}_i),\quad
    \beta = \max\!\big(\beta_\min, \beta_0[1 + \alpha(\bar\Delta_\text{kept} - M_0)]\big),\quad
    L = \tfrac1k \textstyle\sum_i m_i \operatorname{softplus}(-\beta\Delta_i),

with :math:`M_0, \sigma` updated (momentum 0.9) *before* use, and the kept pairs drawn by Gumbel-top-k
on :math:`-\tfrac12((\Delta_i - M_0)/\sigma)^2` from the portable hash (see the spec module).

Precision: the loss and its gradient are computed in the inputs' compute dtype (float64 → float64,
float32 → float32, half → float32). The statistics, the selection scores and β are computed in
float64 from the inputs' values (exact upcasts), with the same operations as the reference, so the
kept subset equals the reference's for the same state and inputs (up to float64 reduction-order
rounding, which can only matter for scores tied to ~1e-16). The state holds float64 / int64
0-dim tensors on the inputs' device.

No host synchronisation in the step: k comes from the shape, selection is a stable sort, and the
state stays on the device. The only sync is the finite-value check (one copy of a 4-element bool
vector), which runs when ``check_values`` is true and is skipped under ``torch.compile``.

Distributed: with ``torch.distributed`` initialised and more than one rank, the float64 gaps of every
rank are all-gathered in rank order (:func:`gammapo_torch._distributed.gather_gaps`, as the γ-PO
calibration does, equal batch sizes required), and the statistics, the kept subset and β are those of
the global batch, as the β-DPO authors' code computes them; every rank holds the same state. Each
rank returns its own pairs' ``losses``, ``mask`` and ``gaps``, and ``loss`` =
world_size · Σ(own kept losses) / k_global, so the mean over ranks (what DDP's gradient averaging
optimises) is the single-process loss on the concatenated batch.

Example:
    >>> import torch
    >>> from gammapo_torch.beta_dpo import beta_dpo_step, init_beta_dpo_state
    >>> t = lambda *v: torch.tensor(v, dtype=torch.float64)
    >>> out = beta_dpo_step(init_beta_dpo_state(0), t(-1.0, -2.0), t(-3.0, -2.0), t(-2.0, -2.0),
    ...                     t(-2.0, -2.0), beta0=0.1, alpha=0.5, rho=1.0)
    >>> out.mask.tolist(), round(float(out.beta), 12), int(out.state.step)
    ([1.0, 1.0], 0.145, 1)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import torch
from gammapo_spec import beta_dpo as _spec
from gammapo_spec.errors import StateError
from gammapo_spec.validation import check_finite

from ._distributed import gather_gaps, local_slice
from ._dtypes import as_tensor, compute_dtype
from ._hash import slot_keys, stream_key
from ._validation import value_checks_active

__all__ = ["BetaDPOState", "BetaDPOOutput", "init_beta_dpo_state", "beta_dpo_step", "beta_dpo_loss_and_grad",
           "beta_dpo_state_to_dict", "beta_dpo_state_from_dict"]

_FIELDS = ("chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps")


@dataclasses.dataclass(frozen=True)
class BetaDPOState:
    """The spec's :class:`~gammapo_spec.beta_dpo.BetaDPOState` as 0-dim tensors (float64 stats, int64 counters)."""

    gap_mean: torch.Tensor
    gap_std: torch.Tensor
    step: torch.Tensor
    seed: torch.Tensor

    def to(self, device: torch.device | str | None) -> "BetaDPOState":
        """The state on ``device`` (no copy when already there)."""
        return BetaDPOState(*(t.to(device) for t in (self.gap_mean, self.gap_std, self.step, self.seed)))

    def to_spec(self) -> _spec.BetaDPOState:
        """The reference state (copies to the host)."""
        return _spec.BetaDPOState.from_dict(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """The spec's dict (Python floats and ints): bit-exact, backend-independent checkpoints."""
        return {"gap_mean": float(self.gap_mean), "gap_std": float(self.gap_std),
                "step": int(self.step), "seed": int(self.seed)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], device: torch.device | str | None = None) -> "BetaDPOState":
        """Restore from :meth:`to_dict` (or the spec's ``to_dict``); validated as the spec does.

        Raises:
            StateError: a missing key or a bad value, naming the field.
        """
        s = _spec.BetaDPOState.from_dict(data)
        return cls(
            gap_mean=torch.tensor(s.gap_mean, dtype=torch.float64, device=device),
            gap_std=torch.tensor(s.gap_std, dtype=torch.float64, device=device),
            step=torch.tensor(s.step, dtype=torch.int64, device=device),
            seed=torch.tensor(s.seed, dtype=torch.int64, device=device),
        )


@dataclasses.dataclass(frozen=True)
class BetaDPOOutput:
    """One step's result: ``loss`` (0-dim, differentiable), ``losses`` ``[N]`` (differentiable),
    ``mask`` ``[N]`` (compute dtype, 0/1), ``beta`` (0-dim float64), ``gaps`` ``[N]`` (differentiable),
    ``state`` (the next :class:`BetaDPOState`)."""

    loss: torch.Tensor
    losses: torch.Tensor
    mask: torch.Tensor
    beta: torch.Tensor
    gaps: torch.Tensor
    state: BetaDPOState


def init_beta_dpo_state(seed: int = 0, device: torch.device | str | None = None) -> BetaDPOState:
    """The initial state (:func:`gammapo_spec.beta_dpo.init_beta_dpo_state`) on ``device``.

    Raises:
        StateError: a seed outside ``[0, 2**32)``.
    """
    return BetaDPOState.from_dict(_spec.init_beta_dpo_state(seed).to_dict(), device)


def _softplus(z: torch.Tensor) -> torch.Tensor:
    return torch.logaddexp(z, torch.zeros_like(z))


def beta_dpo_step(
    state: BetaDPOState,
    chosen_logps,
    rejected_logps,
    ref_chosen_logps,
    ref_rejected_logps,
    *,
    beta0: float = 0.1,
    alpha: float = 0.6,
    rho: float = 0.8,
    momentum: float = 0.9,
    beta_min: float = 1e-3,
    check_values: bool = True,
    process_group: Any = None,
) -> BetaDPOOutput:
    """:func:`gammapo_spec.beta_dpo.beta_dpo_step` on tensors (same arguments, errors and subset).

    Gradients flow to the four log-prob inputs through the gaps; β, the mask and the statistics are
    detached. ``check_values=False`` skips the finite-value check (and its host sync). With
    ``torch.distributed`` initialised, the step runs on every rank's gaps gathered over
    ``process_group`` (default: the world group; module docstring).

    Raises:
        ConfigError, InputError, StateError: as the reference, same class and message.
    """
    b0, a, r, mu, bmin = _spec.check_beta_dpo_params(beta0, alpha, rho, momentum, beta_min)
    if not isinstance(state, BetaDPOState):
        raise StateError(f"state must be a BetaDPOState, got {type(state).__name__}", field="state")
    raw = (chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
    device = next((v.device for v in raw if isinstance(v, torch.Tensor)), None)
    ts = [as_tensor(v, device) for v in raw]
    n = _spec.check_logp_shapes({k: tuple(t.shape) for k, t in zip(_FIELDS, ts)})
    if value_checks_active(check_values):
        ok = torch.stack([torch.isfinite(t).all() for t in ts]).tolist()  # one sync
        for name, good in zip(_FIELDS, ok):
            check_finite(name, bool(good))
    dt = compute_dtype(*ts)
    c, rj, cr, rr = (t.to(dt) for t in ts)
    gaps = (c - cr) - (rj - rr)
    state = state.to(gaps.device)

    with torch.no_grad():
        c64, r64, cr64, rr64 = (t.detach().to(torch.float64) for t in ts)
        g64 = gather_gaps((c64 - cr64) - (r64 - rr64), check_sizes=value_checks_active(check_values),
                          process_group=process_group)
        n_local, n = n, g64.shape[0]  # the global batch from here on (n_local · world_size)
        zero = torch.zeros((), dtype=torch.float64, device=g64.device)
        # equal gaps: std exactly 0, as the reference (max == min, not the rounded formula)
        batch_std = torch.where(g64.max() == g64.min(), zero, torch.std(g64, correction=1)) if n > 1 else zero
        mean = mu * state.gap_mean + (1.0 - mu) * torch.mean(g64)
        std = mu * state.gap_std + (1.0 - mu) * batch_std
        zero_std = std == 0.0
        z = (g64 - mean) / torch.where(zero_std, torch.ones_like(std), std)
        log_w = torch.where(zero_std, torch.zeros_like(z), -0.5 * (z * z))
        key = stream_key(state.seed, _spec.STREAM_BETA_DPO, state.step)
        u = ((slot_keys(key, n) >> 8).to(torch.float64) + 0.5) / float(1 << 24)
        scores = log_w - torch.log(-torch.log(u))
        k = _spec.keep_count(n, r)
        order = torch.sort(scores, descending=True, stable=True).indices
        mask64 = torch.zeros(n, dtype=torch.float64, device=g64.device).index_fill(0, order[:k], 1.0)
        kept_mean = torch.sum(g64 * mask64) / torch.sum(mask64)
        beta = torch.clamp(b0 * (1.0 + a * (kept_mean - mean)), min=bmin)
        new_state = BetaDPOState(gap_mean=mean, gap_std=std, step=state.step + 1, seed=state.seed)

    mask = local_slice(mask64, n_local, process_group).to(dt)
    losses = _softplus(-beta.to(dt) * gaps)
    loss = torch.sum(mask * losses) * (n // n_local) / k  # world_size · own kept sum / k (1 process: sum / k)
    return BetaDPOOutput(loss=loss, losses=losses, mask=mask, beta=beta, gaps=gaps, state=new_state)


def beta_dpo_state_to_dict(state: BetaDPOState) -> dict[str, Any]:
    """The spec's dict of ``state`` (:func:`gammapo_spec.beta_dpo.beta_dpo_state_to_dict`)."""
    return state.to_dict()


def beta_dpo_state_from_dict(data: Mapping[str, Any], device: torch.device | str | None = None) -> BetaDPOState:
    """A torch state from the spec's dict; raises the spec's ``StateError``."""
    return BetaDPOState.from_dict(data, device)


def beta_dpo_loss_and_grad(state: BetaDPOState, chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps,
                           **kwargs) -> tuple[BetaDPOOutput, dict[str, torch.Tensor]]:
    """One step and the autograd gradients of its loss w.r.t. the four log-prob inputs
    (:func:`gammapo_spec.beta_dpo.beta_dpo_loss_and_grad`); the inputs are not modified."""
    leaves = [as_tensor(v).detach().clone() for v in (chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)]
    for t in leaves:
        if t.is_floating_point():
            t.requires_grad_(True)
    out = beta_dpo_step(state, *leaves, **kwargs)
    grads = torch.autograd.grad(out.loss, leaves, allow_unused=True)
    grads = [g if g is not None else torch.zeros_like(t) for g, t in zip(grads, leaves)]
    detached = BetaDPOOutput(out.loss.detach(), out.losses.detach(), out.mask, out.beta, out.gaps.detach(), out.state)
    return detached, dict(zip(_FIELDS, grads))
