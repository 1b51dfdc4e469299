"""The types every pair loss shares: :class:`PairBatch` in, :class:`PairLossOutput` out, :class:`PairLoss`.

The loss modules (:mod:`gammapo.integrations.losses`, :mod:`~gammapo.integrations.beta_dpo`,
:mod:`~gammapo.integrations.epsilon_dpo`) import these, and :mod:`gammapo.integrations.losses` imports the
loss modules to register them, so imports run one way: here, then the losses, then the registry. Import
the names from :mod:`gammapo.integrations.losses`, which re-exports them.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

__all__ = ["PairBatch", "PairLoss", "PairLossOutput"]


@dataclasses.dataclass(frozen=True)
class PairBatch:
    """What a trainer knows about N pairs: ``[N]`` tensors (the ``ref_*`` ones ``None`` when no
    reference model is used). Lengths count response tokens."""

    chosen_logps: torch.Tensor
    rejected_logps: torch.Tensor
    chosen_lengths: torch.Tensor
    rejected_lengths: torch.Tensor
    ref_chosen_logps: torch.Tensor | None = None
    ref_rejected_logps: torch.Tensor | None = None
    #: Further ``[N]`` tensors a loss built for itself (e.g. ε-DPO's perturbed log-probs), by name.
    extra: dict[str, torch.Tensor] | None = None


@dataclasses.dataclass(frozen=True)
class PairLossOutput:
    """A pair loss's answer: the scalar ``loss`` (with gradient), the detached ``[N]`` implicit rewards,
    and extra 0-dim metric tensors keyed by their log name."""

    loss: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor
    metrics: dict[str, torch.Tensor]


class PairLoss(nn.Module):
    """Base class of the registered losses: an ``nn.Module`` so its state (buffers) is saved with
    ``state_dict()`` and moved with ``.to(device)``.

    Subclasses set :attr:`needs_reference` and implement :meth:`forward`. ``update_state=False``
    (evaluation) must leave the module's state untouched.
    """

    #: Whether the loss reads ``ref_*`` log-probs (the trainer then keeps a reference model).
    needs_reference: bool = True
    #: Whether the loss needs token logits (ε-DPO): the trainer then runs the policy and the reference
    #: with their own LM heads and builds the batch with ``loss.token_inputs(policy_logits, ref_logits,
    #: labels, mask)`` (aligned ``[2B, T, V]`` logits, rows ``[chosen; rejected]``). A loss may also
    #: define ``on_optimizer_step()``, which the trainer calls after every optimiser step.
    needs_token_logits: bool = False

    def forward(self, batch: PairBatch, *, update_state: bool = True) -> PairLossOutput:  # pragma: no cover
        raise NotImplementedError
