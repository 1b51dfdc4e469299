r"""The ``beta-dpo`` pair loss: β-DPO (Wu et al. 2024) for :class:`~gammapo.integrations.trl.GammaPOTrainer`.

Runs :func:`gammapo_torch.beta_dpo.beta_dpo_step` (maths and decisions in
:mod:`gammapo_spec.beta_dpo`): per step the running mean/std of the gaps
:math:`\Delta = (c - c_\text{ref}) - (r - r_\text{ref})` are updated, ρ = 80 % of the pairs are kept by
Gaussian-weighted sampling around the running mean, and the batch β is
:math:`\max(10^{-3}, \beta_0[1 + \alpha(\bar\Delta_\text{kept} - M_0)])`.

The state (``gap_mean``, ``gap_std``, ``step``, ``seed``) lives in module buffers, so the trainer saves it
in every checkpoint and restores it on resume. Evaluation (``update_state=False``) uses the current
state and leaves it unchanged. Each micro-batch is one step (as in the released code). In multi-process
training the gaps of all ranks are gathered first, as the released code does: the statistics, the kept
subset and β are the global batch's and every rank holds the same state (equal per-rank batch sizes
required; :mod:`gammapo_torch.beta_dpo`). ``beta/kept`` counts this rank's kept pairs.

Logged metrics: ``beta/batch`` (the batch β), ``beta/kept`` (pairs kept), ``beta/gap_mean`` and
``beta/gap_std`` (the running statistics after the step). The implicit rewards for TRL's
``rewards/*`` use β0, as the released code does.

Example:
    >>> import torch
    >>> from gammapo.integrations.losses import PairBatch, make_pair_loss
    >>> loss = make_pair_loss("beta-dpo", beta=0.1, seed=0)
    >>> t = lambda *v: torch.tensor(v)
    >>> out = loss(PairBatch(t(-1.0, -2.0), t(-3.0, -2.0), t(2, 2), t(2, 2), t(-2.0, -2.0), t(-2.0, -2.0)))
    >>> round(float(out.loss), 4), float(out.metrics["beta/kept"]), int(loss.step)
    (0.6931, 1.0, 1)
"""

from __future__ import annotations

import torch

from gammapo_spec import beta_dpo as _spec
from gammapo_spec.errors import ConfigError

from ._pair_types import PairBatch, PairLoss, PairLossOutput

__all__ = ["BetaDPOPairLoss"]


class BetaDPOPairLoss(PairLoss):
    """β-DPO as a registered pair loss (name ``beta-dpo``).

    Args:
        beta: the base β0 > 0 (the CLI's and presets' ``beta``).
        alpha: the scaling α of the batch β (0.6, the released README's example).
        rho: the fraction of pairs kept, in (0, 1] (0.8; the code's ``mode_weight=0.2``).
        momentum: of the running statistics, in [0, 1) (0.9).
        beta_min: the floor of β (1e-3, the code's clamp).
        seed: the seed of the sampling keys.

    Raises:
        gammapo_spec.ConfigError: a bad hyper-parameter (``beta`` for β0).
    """

    needs_reference = True

    def __init__(self, beta: float = 0.1, alpha: float = 0.6, rho: float = 0.8, momentum: float = 0.9,
                 beta_min: float = 1e-3, seed: int = 0):
        super().__init__()
        try:
            b0, a, r, mu, bmin = _spec.check_beta_dpo_params(beta, alpha, rho, momentum, beta_min)
        except ConfigError as e:
            if e.field != "beta0":
                raise
            raise ConfigError(str(e).replace("beta0", "beta"), field="beta") from None
        self.params = {"beta0": b0, "alpha": a, "rho": r, "momentum": mu, "beta_min": bmin}
        s = _spec.init_beta_dpo_state(seed)
        self.register_buffer("gap_mean", torch.tensor(s.gap_mean, dtype=torch.float64))
        self.register_buffer("gap_std", torch.tensor(s.gap_std, dtype=torch.float64))
        self.register_buffer("step", torch.tensor(s.step, dtype=torch.int64))
        self.register_buffer("seed", torch.tensor(s.seed, dtype=torch.int64))

    def forward(self, batch: PairBatch, *, update_state: bool = True) -> PairLossOutput:
        from gammapo_torch.beta_dpo import BetaDPOState, beta_dpo_step

        state = BetaDPOState(self.gap_mean, self.gap_std, self.step, self.seed)
        out = beta_dpo_step(state, batch.chosen_logps, batch.rejected_logps, batch.ref_chosen_logps,
                            batch.ref_rejected_logps, **self.params)
        if update_state:
            with torch.no_grad():
                self.gap_mean.copy_(out.state.gap_mean)
                self.gap_std.copy_(out.state.gap_std)
                self.step.copy_(out.state.step)
        b0 = self.params["beta0"]
        chosen = b0 * (batch.chosen_logps - batch.ref_chosen_logps).detach()
        rejected = b0 * (batch.rejected_logps - batch.ref_rejected_logps).detach()
        metrics = {
            "beta/batch": out.beta.float(),
            "beta/kept": out.mask.sum().float(),
            "beta/gap_mean": out.state.gap_mean.float(),
            "beta/gap_std": out.state.gap_std.float(),
        }
        return PairLossOutput(out.loss, chosen, rejected, metrics)

    def extra_repr(self) -> str:
        return "loss='beta-dpo', " + ", ".join(f"{k}={v!r}" for k, v in self.params.items())
