r"""The γ-PO loss step on tensors: rewards → (calibrated) margins → per-pair losses → next state.

.. math::

    h_i = u_{w,i} - u_{l,i},\qquad \gamma = \texttt{calibrate}(h)\;(\text{detached}),\qquad
    m_i = m^\text{base}_i + (\gamma_i - \gamma_0),\qquad
    \mathcal L = \frac1N\sum_i \ell(h_i - m_i)\;[+\,w_\text{sft}(-c_i/|y_w|)\ \text{SimPO; token mean with sft\_reduction="token"}].

Autograd gives :math:`\partial\mathcal L/\partial h_i = \ell'(h_i - m_i)/N` and the chain rule through
the rewards, which is :func:`gammapo_spec.loss_vjp` (the tests check it). ``loss`` and ``losses`` carry
gradients; ``margins``, ``gaps``, the rewards and the metrics are detached. Metrics are 0-dim tensors
on the inputs' device (nothing is read back to the host).

Distributed: see :mod:`gammapo_torch._distributed` (gaps gathered in rank order, margins of the
local slice kept, identical queues on every rank).
"""

from __future__ import annotations

from typing import Any

import torch

from gammapo_spec.config import GammaPOConfig
from gammapo_spec.errors import InputError
from gammapo_spec.gamma_po import LossOutput

from ._distributed import gather_gaps, local_slice
from ._dtypes import as_tensor
from ._losses import base_margins, pair_losses
from ._rewards import cast_inputs, rewards_from_tensors
from ._state import QueueState, check_state, queue_step
from ._validation import finish_value_checks, prepare_inputs

__all__ = ["LossOutput", "loss_metrics", "loss_with_margins", "gamma_po_loss"]


def loss_metrics(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor, margins: torch.Tensor) -> dict[str, torch.Tensor]:
    """TRL-style scalars as detached 0-dim tensors (names and meanings of :func:`gammapo_spec.loss_metrics`)."""
    cw, rl, m = chosen_rewards.detach(), rejected_rewards.detach(), margins.detach()
    return {
        "rewards/chosen": cw.mean(),
        "rewards/rejected": rl.mean(),
        "rewards/accuracies": (cw > rl).to(cw.dtype).mean(),
        "rewards/margins": (cw - rl).mean(),
        "margins/mean": m.mean(),
        "margins/std": m.std(correction=0),
        "margins/min": m.min(),
        "margins/max": m.max(),
    }


def _check_margins(margins: Any, n: int, device: torch.device) -> torch.Tensor:
    m = as_tensor(margins, device)
    if tuple(m.shape) != (n,):
        raise InputError(f"margins must have shape ({n},), got {tuple(m.shape)}", field="margins")
    return m


def _loss_from_tensors(
    config: GammaPOConfig,
    x: dict[str, torch.Tensor],
    m: torch.Tensor,
    rewards: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> LossOutput:
    u_w, u_l = rewards_from_tensors(config, x) if rewards is None else rewards
    h = u_w - u_l
    losses = pair_losses(config, h - m.detach().to(h.dtype))
    if config.sft_weight > 0:
        c, lengths = x["chosen_logps"], x["chosen_lengths"]
        if config.sft_reduction == "token":  # mean over every chosen token of the batch
            losses = losses + config.sft_weight * (-c * c.shape[0] / lengths.sum())
        else:  # mean over pairs of each response's per-token NLL
            losses = losses + config.sft_weight * (-c / lengths)
    m = m.detach().to(h.dtype)
    return LossOutput(
        loss=losses.mean(),
        losses=losses,
        margins=m,
        gaps=h.detach(),
        chosen_rewards=u_w.detach(),
        rejected_rewards=u_l.detach(),
        metrics=loss_metrics(u_w, u_l, m),
    )


def loss_with_margins(
    config: GammaPOConfig,
    margins,
    *,
    chosen_logps,
    rejected_logps,
    ref_chosen_logps=None,
    ref_rejected_logps=None,
    chosen_lengths=None,
    rejected_lengths=None,
) -> LossOutput:
    r"""The loss for given target margins m (no calibration, no state): :math:`\frac1N\sum_i \ell(h_i - m_i)`.

    Same contract as :func:`gammapo_spec.loss_with_margins`; the margins are used as constants.

    Raises:
        InputError: bad inputs, or margins of another shape than the batch (field ``"margins"``).

    Example:
        >>> import torch
        >>> from gammapo_spec import GammaPOConfig
        >>> t = lambda *v: torch.tensor(v, dtype=torch.float64)
        >>> out = loss_with_margins(GammaPOConfig(loss="dpo", beta=1.0), t(0.0), chosen_logps=t(0.0),
        ...                         rejected_logps=t(0.0), ref_chosen_logps=t(0.0), ref_rejected_logps=t(0.0))
        >>> round(float(out.loss), 6)
        0.693147
    """
    x = prepare_inputs(
        config,
        chosen_logps=chosen_logps,
        rejected_logps=rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
    )
    m = _check_margins(margins, x["chosen_logps"].shape[0], x["chosen_logps"].device)
    return _loss_from_tensors(config, cast_inputs(x), m)


def gamma_po_loss(
    config: GammaPOConfig,
    state: QueueState | None,
    *,
    chosen_logps,
    rejected_logps,
    ref_chosen_logps=None,
    ref_rejected_logps=None,
    chosen_lengths=None,
    rejected_lengths=None,
    process_group: Any = None,
) -> tuple[LossOutput, QueueState | None]:
    r"""One loss step on tensors: gaps, calibrated margins, per-pair losses, next state.

    Same contract as :func:`gammapo_spec.gamma_po_loss` (equations in this module's docstring). With
    ``torch.distributed`` initialised and more than one rank, the calibration set is every rank's
    gaps in rank order and the margins of this rank's pairs are kept (:mod:`gammapo_torch._distributed`).

    Args:
        config: the loss configuration.
        state: from :func:`gammapo_torch.init_state` (``None`` when the config carries none).
        chosen_logps, rejected_logps: ``[N]`` summed policy log-probs.
        ref_chosen_logps, ref_rejected_logps: ``[N]`` reference log-probs (reference-based losses).
        chosen_lengths, rejected_lengths: ``[N]`` response lengths in tokens (SimPO, R-DPO).
        process_group: torch-only: the group to gather gaps over (default: the world group).

    Returns:
        ``(output, new_state)``: a :class:`~gammapo_spec.LossOutput` of tensors and the next state.

    Raises:
        InputError: a missing, unexpected, mismatched, empty or non-finite input; non-positive
            lengths; unequal batch sizes across ranks (with value checks on).
        StateError: a state that does not fit the config.

    Example:
        >>> import torch
        >>> from gammapo_spec import GammaPOConfig
        >>> cfg = GammaPOConfig(loss="gamma-simpo", beta=2.0, gamma_beta_ratio=0.5, tau=1.0, calibration="batch")
        >>> t = lambda *v: torch.tensor(v, dtype=torch.float64)
        >>> out, state = gamma_po_loss(cfg, None, chosen_logps=t(-4.0, -8.0), rejected_logps=t(-9.0, -6.0),
        ...                            chosen_lengths=t(2, 4), rejected_lengths=t(3, 3))
        >>> round(float(out.loss), 6), [round(v, 6) for v in out.margins.tolist()], state is None
        (0.773046, [1.189818, 0.810182], True)
    """
    check_state(config, state)
    x, pending = prepare_inputs(
        config,
        defer_values=True,
        chosen_logps=chosen_logps,
        rejected_logps=rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
    )
    x = cast_inputs(x)
    n = x["chosen_logps"].shape[0]
    u_w, u_l = rewards_from_tensors(config, x)
    finish_value_checks(pending, gaps=u_w - u_l)  # the inputs', then the gaps' (the spec's overflow policy)
    m = base_margins(
        config, n, x.get("chosen_lengths"), x.get("rejected_lengths"), dtype=u_w.dtype, device=u_w.device
    )
    if config.dynamic_margins:
        h_all = gather_gaps(u_w - u_l, check_sizes=config.check_values, process_group=process_group)
        gamma_all, state = queue_step(config, state, h_all)
        m = m + (local_slice(gamma_all, n, process_group) - config.gamma0)
    return _loss_from_tensors(config, x, m, (u_w, u_l)), state
