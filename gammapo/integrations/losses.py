r"""Pair losses by name: the small registry a trainer dispatches on.

A trainer computes, for a batch of N preference pairs, the summed token log-probabilities of the
chosen and rejected responses under the policy (``c``, ``r``), optionally under the reference model
(``c_ref``, ``r_ref``), and the response lengths. It packs them in a :class:`PairBatch` and hands
them to a :class:`PairLoss`, which returns the scalar loss, the implicit rewards (for TRL's
``rewards/*`` metrics) and any extra metrics. The trainer never looks at the loss's name again.

Every loss of the spec is registered, plain and with dynamic margins (``dpo``, ``ipo``, ``hinge``,
``robust``, ``simpo``, ``rdpo`` and ``gamma-…``): :class:`GammaPOPairLoss` runs
:func:`gammapo_torch.gamma_po_loss`,

.. math::

    \begin{gathered}
    h_i = u_{w,i} - u_{l,i},\qquad \gamma = \texttt{calibrate}(h)\ (\text{stop-gradient}),\\
    \mathcal L = \tfrac1N \textstyle\sum_i \ell\big(h_i - m^\text{base}_i - (\gamma_i - \gamma_0)\big),
    \end{gathered}

and, for the ``gamma-`` losses, logs ``gamma/mean``, ``gamma/std``, ``gamma/min``, ``gamma/max``,
``gamma/log_spread`` (log(γmax/γmin)), ``gamma/spread_bound`` (its KKT bound γ0/τ) and ``gamma/cv`` (std/mean) of
the calibrated γ (γ_i = m_i − m_i^base + γ0; in queue mode the mean over the whole calibration set is
γ0, the mean over the current batch need not be). Another method (β-DPO, ε-DPO, …) plugs in with
:func:`register_pair_loss`; a loss that needs more than summed log-probs can subclass the trainer.

Example:
    >>> import torch
    >>> loss = make_pair_loss("gamma-simpo", beta=2.0, gamma_beta_ratio=0.5, tau=1.0, calibration="batch")
    >>> batch = PairBatch(chosen_logps=torch.tensor([-4.0, -8.0]), rejected_logps=torch.tensor([-9.0, -6.0]),
    ...                   chosen_lengths=torch.tensor([2, 4]), rejected_lengths=torch.tensor([3, 3]))
    >>> out = loss(batch)
    >>> round(float(out.loss), 4), round(float(out.metrics["gamma/mean"]), 6)
    (0.773, 1.0)
"""

from __future__ import annotations

from typing import Callable

import torch

from gammapo_spec.config import LOSS_NAMES, GammaPOConfig

from ._pair_types import PairBatch, PairLoss, PairLossOutput
from .beta_dpo import BetaDPOPairLoss
from .epsilon_dpo import EpsilonDPOPairLoss

__all__ = [
    "GammaPOPairLoss",
    "PairBatch",
    "PairLoss",
    "PairLossOutput",
    "make_pair_loss",
    "register_pair_loss",
    "registered_pair_losses",
]


class GammaPOPairLoss(PairLoss):
    """Any loss of the spec (``config.loss``), through the torch backend, with its calibration state.

    Args:
        config: the loss configuration (β, γ0/β, τ, calibration mode, …).
        seed: seed of the queue's sampling keys.

    Example:
        >>> import torch
        >>> from gammapo_spec import GammaPOConfig
        >>> loss = GammaPOPairLoss(GammaPOConfig(loss="gamma-dpo", beta=0.1, queue_size=64, sample_size=16))
        >>> loss.needs_reference, sorted(loss.state_dict())[:2]
        (True, ['inner.queue_buffer', 'inner.queue_head'])
    """

    def __init__(self, config: GammaPOConfig, seed: int = 0):
        super().__init__()
        from gammapo_torch import GammaPOLoss

        self.config = config
        self.needs_reference = not config.reference_free
        self.inner = GammaPOLoss(config, seed)

    def forward(self, batch: PairBatch, *, update_state: bool = True) -> PairLossOutput:
        from gammapo_torch import gamma_po_loss, target_margins

        cfg = self.config
        inputs = {
            "chosen_logps": batch.chosen_logps,
            "rejected_logps": batch.rejected_logps,
        }
        if not cfg.reference_free:
            inputs["ref_chosen_logps"] = batch.ref_chosen_logps
            inputs["ref_rejected_logps"] = batch.ref_rejected_logps
        if cfg.base_loss in ("simpo", "rdpo"):
            inputs["chosen_lengths"] = batch.chosen_lengths
            inputs["rejected_lengths"] = batch.rejected_lengths
        if update_state:
            out = self.inner(**inputs)
        else:  # evaluation: calibrate against the current state, keep it unchanged
            out, _ = gamma_po_loss(cfg, self.inner.state, process_group=self.inner.process_group, **inputs)
        if not cfg.dynamic_margins:
            return PairLossOutput(out.loss, out.chosen_rewards, out.rejected_rewards, {})
        # γ_i = m_i − m_i^base + γ0
        base = target_margins(
            cfg.replace(loss=cfg.base_loss), out.margins.shape[0],
            chosen_lengths=inputs.get("chosen_lengths"), rejected_lengths=inputs.get("rejected_lengths"),
        ).to(out.margins)
        gamma = out.margins - base + cfg.gamma0
        metrics = {
            "gamma/mean": gamma.mean(),
            "gamma/std": gamma.std(correction=0),
            "gamma/min": gamma.min(),
            "gamma/max": gamma.max(),
            # realised log(γmax/γmin) of the batch beside the KKT bound γ0/τ (how far margins can move)
            "gamma/log_spread": torch.log(gamma.max() / gamma.min()),
            # how far the margins moved relative to their mean γ0 (std/mean)
            "gamma/cv": gamma.std(correction=0) / gamma.mean(),
            "gamma/spread_bound": torch.full((), cfg.gamma0 / cfg.tau, dtype=gamma.dtype, device=gamma.device),
        }
        return PairLossOutput(out.loss, out.chosen_rewards, out.rejected_rewards, metrics)

    def extra_repr(self) -> str:
        return f"loss={self.config.loss!r}"


_REGISTRY: dict[str, Callable[..., PairLoss]] = {}


def register_pair_loss(name: str, factory: Callable[..., PairLoss], *, overwrite: bool = False) -> None:
    """Register ``factory(**kwargs) -> PairLoss`` under ``name`` (what ``make_pair_loss(name)`` builds).

    Raises:
        ValueError: ``name`` is taken and ``overwrite`` is false.

    Example:
        >>> register_pair_loss("my-simpo", lambda **kw: GammaPOPairLoss(GammaPOConfig(loss="simpo", **kw)), overwrite=True)
        >>> "my-simpo" in registered_pair_losses()
        True
    """
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"pair loss {name!r} is already registered")
    _REGISTRY[name] = factory


def registered_pair_losses() -> tuple[str, ...]:
    """The registered loss names, sorted."""
    return tuple(sorted(_REGISTRY))


def make_pair_loss(name: str, **kwargs) -> PairLoss:
    """Build the loss registered as ``name`` with its keyword arguments.

    For the spec's losses the keywords are :class:`~gammapo_spec.GammaPOConfig` fields plus ``seed``.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
        gammapo_spec.ConfigError: a bad hyper-parameter.
    """
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; registered losses: {list(registered_pair_losses())}") from None
    return factory(**kwargs)


def _spec_factory(loss: str) -> Callable[..., PairLoss]:
    def factory(seed: int = 0, **fields) -> PairLoss:
        return GammaPOPairLoss(GammaPOConfig(loss=loss, **fields), seed)

    return factory


for _name in LOSS_NAMES:
    register_pair_loss(_name, _spec_factory(_name))


register_pair_loss("beta-dpo", BetaDPOPairLoss)


def _epsilon_dpo_factory(gamma: bool) -> Callable[..., PairLoss]:
    def factory(**kwargs) -> PairLoss:
        return EpsilonDPOPairLoss(gamma=gamma, **kwargs)

    return factory


register_pair_loss("epsilon-dpo", _epsilon_dpo_factory(False))
register_pair_loss("gamma-epsilon-dpo", _epsilon_dpo_factory(True))
