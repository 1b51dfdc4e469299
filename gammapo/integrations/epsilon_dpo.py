r"""ε-DPO as a registered pair loss (``epsilon-dpo``, ``gamma-epsilon-dpo``) for :class:`GammaPOTrainer`.

ε-DPO (:mod:`gammapo_spec.epsilon_dpo`) needs more than summed log-probs: it perturbs the policy's
*token logits* toward / away from the reference's, :math:`z^\pm = z \pm \varepsilon(z - z_\text{ref})`,
to decide each pair's step :math:`s_i\in\{-1,0,1\}` and β_i = β/(1 + ε s_i), and it moves the global β
after every optimiser step, :math:`\beta \leftarrow \beta/(1 + \varepsilon\,\overline{s})`.

How it plugs into the trainer (both hooks are generic, any :class:`~gammapo.integrations.losses.PairLoss`
may use them):

* ``needs_token_logits = True``: the trainer runs the policy and the reference with their ordinary LM
  heads (TRL's fused head returns log-probs only), and calls :meth:`EpsilonDPOPairLoss.token_inputs`
  with the shifted ``[2B, L, V]`` logits, labels and completion mask; it returns the summed log-probs
  (policy with gradient, reference without) and the perturbed ones, which travel in
  ``PairBatch.extra``. The perturbed logits are computed chunk by chunk
  (:func:`gammapo_torch.epsilon_dpo.epsilon_sequence_logps`), but the model's own ``[2B, L, V]``
  logits do exist here, unlike with TRL's fused head: ε-DPO needs them. Precomputed reference
  log-probs cannot be used (the reference logits are needed every step).
* ``on_optimizer_step()``: the trainer calls it after each optimiser step (a ``TrainerCallback.on_step_end``,
  so once per *global* step whatever the gradient accumulation). The steps of every micro-batch since
  the last update are accumulated in the module's buffers; the update averages them over the ranks too.

State (module buffers, saved in every checkpoint by the trainer): ``beta`` (float64), ``step_sum``,
``step_count``, ``updates`` (int64), plus γ-PO's queue for ``gamma-epsilon-dpo``. Metrics logged:
``epsilon/beta`` (the global β used by this step), ``epsilon/step_mean``, ``epsilon/frac_up``,
``epsilon/frac_down`` (shares of s = +1 / −1), ``epsilon/beta_i_mean``; plus ``gamma/*`` for the γ variant.

``gamma-epsilon-dpo``: γ-PO's margin calibrated on the ε-DPO gaps :math:`h_i` (with the per-pair
β_i), :math:`\gamma_0 = \beta\cdot\text{gamma\_beta\_ratio}` with the current β, margin
:math:`m_i = \gamma_i - \gamma_0` (the rule of :mod:`gammapo_spec.epsilon_dpo`).

Example:
    >>> import torch
    >>> from gammapo.integrations.losses import make_pair_loss
    >>> loss = make_pair_loss("epsilon-dpo", beta=0.1, epsilon=0.5)
    >>> z = torch.zeros(4, 3, 5); z[:2, :, 1] = 1.0                  # rows: [chosen; rejected]
    >>> x = loss.token_inputs(z.clone().requires_grad_(), torch.zeros(4, 3, 5),
    ...                       torch.ones(4, 3, dtype=torch.long), torch.ones(4, 3, dtype=torch.bool))
    >>> out = loss(x)
    >>> out.metrics["epsilon/step_mean"].item(), round(out.metrics["epsilon/beta"].item(), 3)
    (1.0, 0.1)
    >>> loss.on_optimizer_step(); round(loss.beta.item(), 6)
    0.066667
"""

from __future__ import annotations

from typing import Any

import torch

from gammapo_spec.config import GammaPOConfig
from gammapo_spec.epsilon_dpo import check_beta, check_epsilon, check_label_smoothing

from ._pair_types import PairBatch, PairLoss, PairLossOutput

__all__ = ["EpsilonDPOPairLoss", "reference_sequence_logps"]

_EXTRA = ("chosen_logps_plus", "rejected_logps_plus", "chosen_logps_minus", "rejected_logps_minus")


@torch.no_grad()
def reference_sequence_logps(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
                             chunk_size: int = 64) -> torch.Tensor:
    """Summed log-probs of ``labels`` under ``logits`` ``[B, T, V]`` (no gradient), chunked over T."""
    out = torch.zeros(logits.shape[0], dtype=torch.float32 if logits.dtype in (torch.bfloat16, torch.float16)
                      else logits.dtype, device=logits.device)
    y = torch.where(mask, labels, torch.zeros_like(labels))
    for t0 in range(0, logits.shape[1], chunk_size):
        z = logits[:, t0:t0 + chunk_size].to(out.dtype)
        tok = z.gather(-1, y[:, t0:t0 + chunk_size, None]).squeeze(-1) - torch.logsumexp(z, dim=-1)
        out += (tok * mask[:, t0:t0 + chunk_size].to(out.dtype)).sum(1)
    return out


class EpsilonDPOPairLoss(PairLoss):
    """ε-DPO (optionally with γ-PO margins) with its global β as module state.

    Args:
        beta: the initial global β > 0.
        epsilon: ε in (0, 1) (0.01 in the paper's experiments).
        label_smoothing: cDPO smoothing in [0, 0.5).
        gamma: add γ-PO's calibrated margins (``gamma-epsilon-dpo``).
        gamma_beta_ratio, tau, calibration, queue_size, sample_size, …: γ-PO's config fields (γ only).
        seed: seed of γ-PO's queue sampling.
        chunk_size: sequence positions per chunk of the token op (default: the backend's).
        process_group: the group the β update averages over (default: world).

    Raises:
        gammapo_spec.ConfigError: a bad hyper-parameter (naming the field).
    """

    needs_reference = True
    needs_token_logits = True

    def __init__(self, beta: float = 0.1, epsilon: float = 0.01, label_smoothing: float = 0.0, *,
                 gamma: bool = False, seed: int = 0, chunk_size: int | None = None, process_group: Any = None,
                 **gamma_fields: Any):
        super().__init__()
        self.epsilon = check_epsilon(epsilon)
        self.label_smoothing = check_label_smoothing(label_smoothing)
        self.chunk_size = chunk_size
        self.process_group = process_group
        self.register_buffer("beta", torch.tensor(check_beta(beta), dtype=torch.float64))
        for name in ("step_sum", "step_count", "updates"):
            self.register_buffer(name, torch.zeros((), dtype=torch.int64))
        self.gamma_config = None
        if gamma:
            from gammapo_torch import GammaPOLoss

            gamma_fields.setdefault("calibration", "batch")
            self.gamma_config = GammaPOConfig(loss="gamma-dpo", beta=beta, label_smoothing=label_smoothing,
                                              **gamma_fields)
            self.queue = GammaPOLoss(self.gamma_config, seed, process_group=process_group)  # holds the queue buffers
        elif gamma_fields:
            raise TypeError(f"epsilon-dpo takes no {sorted(gamma_fields)} (those are gamma-epsilon-dpo's)")

    # --- the token hook --------------------------------------------------------------------------
    def token_inputs(self, policy_logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor,
                     mask: torch.Tensor) -> PairBatch:
        """A :class:`PairBatch` from aligned ``[2B, T, V]`` logits (rows: B chosen then B rejected)."""
        from gammapo_torch.epsilon_dpo import epsilon_sequence_logps

        mask = mask.bool()
        tok = epsilon_sequence_logps(policy_logits, ref_logits.detach(), labels, mask, epsilon=self.epsilon,
                                     chunk_size=self.chunk_size)
        ref = reference_sequence_logps(ref_logits.detach(), labels, mask)
        c, r = tok.logps.chunk(2)
        cp, rp = tok.logps_plus.chunk(2)
        cm, rm = tok.logps_minus.chunk(2)
        c0, r0 = ref.chunk(2)
        lw, ll = mask.sum(1).chunk(2)
        return PairBatch(c, r, lw, ll, c0, r0, extra=dict(zip(_EXTRA, (cp, rp, cm, rm))))

    # --- the loss -------------------------------------------------------------------------------------
    def forward(self, batch: PairBatch, *, update_state: bool = True) -> PairLossOutput:
        from gammapo_torch.epsilon_dpo import epsilon_dpo_loss, epsilon_steps

        extra = batch.extra or {}
        missing = [k for k in _EXTRA if k not in extra]
        if missing:
            raise ValueError(f"epsilon-dpo needs the perturbed log-probs {missing}: build the batch with token_inputs()")
        c, r, c0, r0 = batch.chosen_logps, batch.rejected_logps, batch.ref_chosen_logps, batch.ref_rejected_logps
        s = epsilon_steps(c, r, *(extra[k] for k in _EXTRA))
        beta = self.beta.detach()
        margins, metrics = None, {}
        if self.gamma_config is not None:
            margins, metrics = self._gamma_margins(c, r, c0, r0, s, beta, update_state)
        out = epsilon_dpo_loss(c, r, c0, r0, s, beta=beta, epsilon=self.epsilon,
                               label_smoothing=self.label_smoothing, margins=margins)
        sf = s.to(torch.float64)
        metrics.update({
            "epsilon/beta": beta.clone(),
            "epsilon/step_mean": sf.mean(),
            "epsilon/frac_up": (s > 0).double().mean(),
            "epsilon/frac_down": (s < 0).double().mean(),
            "epsilon/beta_i_mean": out.betas.detach().double().mean(),
        })
        if update_state:
            with torch.no_grad():
                self.step_sum += s.sum()
                self.step_count += s.shape[0]
        return PairLossOutput(out.loss, out.chosen_rewards, out.rejected_rewards, metrics)

    def _gamma_margins(self, c, r, c0, r0, s, beta, update_state):
        from gammapo_torch import calibrate_step
        from gammapo_torch._distributed import gather_gaps, local_slice
        from gammapo_torch.epsilon_dpo import epsilon_dpo_gaps

        h = epsilon_dpo_gaps(c, r, c0, r0, s, beta=beta, epsilon=self.epsilon).detach()
        cfg = self.gamma_config.replace(beta=float(beta))  # γ0 = β·ratio with the current β (one host read)
        gaps = gather_gaps(h, check_sizes=cfg.check_values, process_group=self.process_group)
        gamma, new_state = calibrate_step(cfg, self.queue.state, gaps)
        gamma = local_slice(gamma, h.shape[0], self.process_group).to(h.dtype)
        if update_state and new_state is not None:
            with torch.no_grad():
                for name in ("buffer", "size", "head", "step", "seed"):
                    getattr(self.queue, f"queue_{name}").copy_(getattr(new_state, name))
        metrics = {"gamma/mean": gamma.mean(), "gamma/std": gamma.std(correction=0), "gamma/min": gamma.min(),
                   "gamma/max": gamma.max()}
        return gamma - cfg.gamma0, metrics

    # --- after each optimiser step ------------------------------------------------------------------
    @torch.no_grad()
    def on_optimizer_step(self) -> None:
        """β ← β/(1 + ε·mean(s)) over the steps accumulated since the last call (all ranks); reset."""
        from gammapo_torch.epsilon_dpo import EpsilonDPOState, epsilon_update_beta

        state = EpsilonDPOState(self.beta, self.epsilon, self.step_sum, self.step_count, self.updates)
        new = epsilon_update_beta(state, process_group=self.process_group)
        self.beta.copy_(new.beta)
        self.step_sum.copy_(new.step_sum)
        self.step_count.copy_(new.step_count)
        self.updates.copy_(new.updates)

    def extra_repr(self) -> str:
        kind = "gamma-epsilon-dpo" if self.gamma_config is not None else "epsilon-dpo"
        return f"loss={kind!r}, epsilon={self.epsilon}, beta={float(self.beta):.6g}"
