r"""γ-PO in TRL: :class:`GammaPOTrainer`, TRL's ``DPOTrainer`` with its loss taken from the registry.

Everything else is TRL's: dataset preparation (standard and conversational prompt/chosen/rejected),
the preference collator, the reference model (a copy, PEFT adapters switched off, or precomputed
log-probs), gradient accumulation, mixed precision, distributed launch, logging and checkpoints.
What this class changes:

1. :meth:`GammaPOTrainer.compute_loss` (the hook TRL documents for custom losses) computes the
   summed completion log-probs ``c``, ``r`` of the policy with TRL's fused LM head, the reference's
   ``c_ref``, ``r_ref`` (only when the loss needs them) and the completion lengths, and hands them to
   a :class:`~gammapo.integrations.losses.PairLoss` — by default γ-SimPO,

   .. math:: \mathcal L = \tfrac1N\textstyle\sum_i -\log\sigma\big(\beta(c_i/|y_w| - r_i/|y_l|) - \gamma_i\big),
      \qquad \tfrac1N\textstyle\sum_i\gamma_i = \gamma_0 = \beta\cdot\text{gamma\_beta\_ratio};

2. it logs TRL's ``rewards/chosen``, ``rewards/rejected``, ``rewards/accuracies``,
   ``rewards/margins``, ``logps/chosen``, ``logps/rejected``, ``logits/chosen``, ``logits/rejected``,
   ``entropy``, ``mean_token_accuracy`` and ``num_tokens`` as ``DPOTrainer`` does, plus the loss's own
   metrics (``gamma/mean``, ``gamma/std``, ``gamma/min``, ``gamma/max``, and ``gamma/log_spread`` =
   log(γmax/γmin) beside its KKT bound ``gamma/spread_bound`` = γ0/τ), each over all the margins of
   the step on every rank (the standard deviation pooled over the ranks, not averaged);
3. the loss's calibration state (the queue of recent gaps) is saved in every checkpoint
   (``gammapo_loss_state.pt``) and restored by ``train(resume_from_checkpoint=…)``, so a resumed run
   calibrates exactly as an uninterrupted one would. A checkpoint is used only if complete (a record
   written last marks it; ``True`` resumes from the newest complete one), and only with the loss
   configuration it was trained with (see :mod:`gammapo.integrations._checkpoints`); the output
   folder is locked while ``train`` runs.

Which loss trains (every ``DPOConfig`` field is honoured or refused, never ignored):

* ``loss=`` given (a registered name with ``loss_kwargs``, a :class:`~gammapo_spec.GammaPOConfig` or a
  :class:`~gammapo.integrations.losses.PairLoss`): that loss. A ``DPOConfig`` ``loss_type``, ``beta`` or
  ``label_smoothing`` set away from TRL's default must agree with it, or the trainer raises naming both.
* no ``loss=``, and ``DPOConfig`` sets ``loss_type``, ``beta`` or ``label_smoothing`` away from TRL's
  defaults: the loss ``DPOConfig`` describes, read as TRL reads it (see :data:`TRL_LOSS_TYPES`): TRL's
  ``sigmoid``, ``hinge``, ``ipo``, ``robust`` and ``sigmoid_norm`` compute exactly what ``trl.DPOTrainer``
  computes, and any registered loss name (``dpo`` with cDPO smoothing, ``gamma-simpo``, ``beta-dpo``, …)
  trains with ``DPOConfig.beta`` (TRL's default 0.1 unless set, or ``loss_kwargs["beta"]``) and
  ``DPOConfig.label_smoothing``. TRL's other loss types and its multi-loss combinations are refused.
* no ``loss=`` and those fields at TRL's defaults: the trainer's own default, γ-SimPO with the
  released recipe (β = 10, γ0/β = 0.4, τ = 10, queue calibration) and ``loss_kwargs``. A value set
  explicitly *to* TRL's default cannot be told from an unset one, so when you passed a ``DPOConfig``
  the trainer warns that it chose γ-SimPO; pass ``loss="gamma-simpo"`` to choose it yourself.

:data:`DPO_CONFIG_FIELDS` says, for every field ``DPOConfig`` adds to ``TrainingArguments``, what the
trainer does with it; a field it does not know (a newer TRL) is refused unless left at its default.
Evaluation calibrates against the current queue without changing it. With gradient accumulation each
micro-batch is one calibration step (queue mode spans micro-batches anyway); in distributed training the
gaps of every rank are gathered (see :mod:`gammapo_torch`).

Example (a real model and data set; see ``examples/trl_gamma_simpo.py`` for a runnable one)::

    from trl import DPOConfig
    from gammapo.integrations.trl import GammaPOTrainer
    trainer = GammaPOTrainer(model, args=DPOConfig("out"), train_dataset=ds, processing_class=tok,
                             loss="gamma-simpo", loss_kwargs=dict(beta=10.0, gamma_beta_ratio=0.4, tau=10.0))
    trainer.train()
"""

from __future__ import annotations

import dataclasses
import os
import sys
import warnings
from typing import Any

import torch
from transformers import TrainerCallback, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints
from trl import DPOConfig, DPOTrainer

from gammapo_spec.config import GammaPOConfig

from ._parallel import check_parallel_launch
from ._trl_metrics import reduce_loss_metrics, reduce_token_metrics, token_sums, token_sums_from_logits
from .losses import (
    GammaPOPairLoss,
    PairBatch,
    PairLoss,
    PairLossOutput,
    make_pair_loss,
    registered_pair_losses,
)

__all__ = ["DPO_CONFIG_FIELDS", "GammaPOTrainer", "LOSS_STATE_FILE", "LengthNormalisedPairLoss", "TRL_LOSS_TYPES"]

from . import _checkpoints
from ._checkpoints import LOSS_STATE_FILE

_NON_MODEL_KEYS = frozenset({"completion_mask", "ref_chosen_logps", "ref_rejected_logps"})

#: TRL's ``DPOConfig.loss_type`` names this trainer computes, and what each one is (TRL 1.16's formulas,
#: Δ = (c − c_ref) − (r − r_ref) on summed log-probs). Only ``robust`` reads ``label_smoothing`` in TRL;
#: for the others a non-zero value is refused rather than ignored as TRL does.
TRL_LOSS_TYPES: dict[str, str] = {
    "sigmoid": "gammapo's 'dpo' without smoothing: -log σ(β Δ)",
    "hinge": "gammapo's 'hinge': max(0, 1 - β Δ)",
    "robust": "gammapo's 'robust' with label_smoothing as the flip rate ε",
    "ipo": "gammapo's 'ipo' on per-token average log-ratios: (Δ_avg - 1/(2β))², as TRL",
    "sigmoid_norm": "gammapo's 'dpo' on per-token average log-ratios: -log σ(β Δ_avg), as TRL",
}
#: TRL loss type → (the spec's loss, whether TRL length-normalises the log-ratios).
_TRL_LOSSES: dict[str, tuple[str, bool]] = {
    "sigmoid": ("dpo", False),
    "hinge": ("hinge", False),
    "robust": ("robust", False),
    "ipo": ("ipo", True),
    "sigmoid_norm": ("dpo", True),
}
#: TRL 1.16's loss types this trainer does not compute (refused by name).
_TRL_REFUSED = ("exo_pair", "nca_pair", "bco_pair", "sppo_hard", "aot", "aot_unpaired", "apo_zero", "apo_down",
                "discopop", "sft")

#: Every field ``trl.DPOConfig`` (TRL 1.16) adds to ``TrainingArguments``, and what :class:`GammaPOTrainer`
#: does with it. ``TrainingArguments``' own fields are the ``transformers.Trainer``'s and honoured by it. A
#: ``DPOConfig`` field missing here (a newer TRL) is refused unless it is left at its default.
DPO_CONFIG_FIELDS: dict[str, str] = {
    "loss_type": "the loss when loss= is not given (TRL_LOSS_TYPES or a registered name); with loss=, must agree",
    "beta": "β of the loss; with loss=, must agree when set",
    "label_smoothing": "the loss's label smoothing (robust: flip rate; gammapo's dpo/simpo/rdpo: cDPO); "
                       "refused with TRL's sigmoid, hinge, ipo, sigmoid_norm (TRL ignores it there)",
    "loss_weights": "refused unless None or all 1.0 (one loss per trainer)",
    "ld_alpha": "refused (LD-DPO's length weighting is not implemented)",
    "f_divergence_type": "refused unless 'reverse_kl'",
    "f_alpha_divergence_coef": "refused unless at its default (only f_divergence_type='alpha_divergence' reads it)",
    "use_weighting": "refused (WPO weighting is not implemented)",
    "discopop_tau": "refused unless at its default (only loss_type='discopop' reads it)",
    "router_aux_loss_coef": "refused when the model adds an MoE router loss (set 0)",
    "sync_ref_model": "TRL's (TR-DPO: the reference the loss reads is synced); refused for a reference-free loss",
    "ref_model_mixup_alpha": "TRL's with sync_ref_model; refused when set without it",
    "ref_model_sync_steps": "TRL's with sync_ref_model; refused when set without it",
    "precompute_ref_log_probs": "TRL's; a reference-free loss turns it on so that no reference model is loaded",
    "precompute_ref_batch_size": "TRL's",
    "model_init_kwargs": "TRL's (a model given by name)",
    "trust_remote_code": "TRL's",
    "disable_dropout": "TRL's",
    "dataset_num_proc": "TRL's (data preparation)",
    "max_length": "TRL's (data preparation)",
    "truncation_mode": "TRL's (data preparation)",
    "padding_free": "TRL's (TRL 1.16 warns and pads)",
    "pad_to_multiple_of": "TRL's (collator)",
    "activation_offloading": "TRL's",
    "pad_token": "TRL's (deprecated there)",
}


def _field_defaults(cls: type) -> dict[str, Any]:
    """The dataclass defaults of ``cls``'s fields (the value a field has when the user does not set it)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def _dpo_fields(cls: type) -> list[str]:
    """The fields ``cls`` (a ``DPOConfig``) has beyond ``TrainingArguments``'."""
    base = {f.name for f in dataclasses.fields(TrainingArguments)}
    return [f.name for f in dataclasses.fields(cls) if f.name not in base]


def _is_set(args: DPOConfig, name: str, defaults: dict[str, Any]) -> bool:
    """Whether ``args.name`` differs from the field's default (an explicit default cannot be told apart)."""
    value = getattr(args, name)
    if name == "loss_type" and isinstance(value, str):
        value = [value]
    return name not in defaults or value != defaults[name]


class LengthNormalisedPairLoss(PairLoss):
    r"""A reference-based loss of the spec on per-token average log-ratios: TRL's ``ipo`` and ``sigmoid_norm``.

    The summed log-probs of each response and of its reference are divided by the response's length
    (at least 1, as TRL clamps it), so the gap is :math:`h = \beta\,(\Delta_w/|y_w| - \Delta_l/|y_l|)`
    with :math:`\Delta = \log\pi - \log\pi_\text{ref}`; then ``config``'s loss applies (IPO:
    :math:`(h/\beta - 1/(2\beta))^2`). The implicit rewards reported for TRL's ``rewards/*`` metrics are
    TRL's, :math:`\beta\,\Delta` on the summed log-probs.

    Args:
        config: a plain (no ``gamma-``) reference-based loss other than R-DPO (``dpo``, ``ipo``, ``hinge``, ``robust``).
        seed: unused by plain losses; kept for the factory signature.
        trl_name: the TRL loss type this is (reported by ``repr``).

    Example:
        >>> import torch
        >>> loss = LengthNormalisedPairLoss(GammaPOConfig(loss="ipo", beta=0.5), trl_name="ipo")
        >>> t = lambda *v: torch.tensor(v)
        >>> out = loss(PairBatch(t(-4.0), t(-9.0), t(2), t(3), t(-6.0), t(-9.0)))  # Δ_avg = 2/2 - 0/3
        >>> float(out.loss), float(out.chosen_rewards[0])                          # (1 - 1/(2·0.5))², β·2
        (0.0, 1.0)
    """

    needs_reference = True

    def __init__(self, config: GammaPOConfig, seed: int = 0, *, trl_name: str):
        super().__init__()
        if config.dynamic_margins or config.reference_free or config.base_loss == "rdpo":
            raise ValueError(f"length normalisation applies to a plain reference-based loss, not {config.loss!r}")
        self.config = config
        self.trl_name = trl_name
        self.inner = GammaPOPairLoss(config, seed)

    def forward(self, batch: PairBatch, *, update_state: bool = True) -> PairLossOutput:
        lw = batch.chosen_lengths.clamp(min=1).to(batch.chosen_logps.dtype)
        ll = batch.rejected_lengths.clamp(min=1).to(batch.rejected_logps.dtype)
        averaged = PairBatch(batch.chosen_logps / lw, batch.rejected_logps / ll, batch.chosen_lengths,
                             batch.rejected_lengths, batch.ref_chosen_logps / lw, batch.ref_rejected_logps / ll)
        out = self.inner(averaged, update_state=update_state)
        beta = self.config.beta
        chosen = beta * (batch.chosen_logps - batch.ref_chosen_logps).detach()
        rejected = beta * (batch.rejected_logps - batch.ref_rejected_logps).detach()
        return PairLossOutput(out.loss, chosen, rejected, out.metrics)

    def extra_repr(self) -> str:
        return f"loss_type={self.trl_name!r}, beta={self.config.beta!r}"


def _build_loss(loss: str | GammaPOConfig | PairLoss, loss_kwargs: dict[str, Any] | None, seed: int) -> PairLoss:
    if isinstance(loss, PairLoss):
        if loss_kwargs:
            raise ValueError("loss_kwargs only apply when loss is a name")
        return loss
    if isinstance(loss, GammaPOConfig):
        if loss_kwargs:
            raise ValueError("loss_kwargs only apply when loss is a name")
        return GammaPOPairLoss(loss, seed)
    kwargs = dict(loss_kwargs or {})
    kwargs.setdefault("seed", seed)
    return make_pair_loss(loss, **kwargs)


def _describe(pair_loss: PairLoss) -> dict[str, Any]:
    """What a built loss is in ``DPOConfig``'s terms: ``names`` (the ``loss_type`` values that build it),
    ``beta`` and ``label_smoothing`` (``None``: this trainer cannot tell)."""
    from .beta_dpo import BetaDPOPairLoss
    from .epsilon_dpo import EpsilonDPOPairLoss

    if isinstance(pair_loss, LengthNormalisedPairLoss):
        cfg = pair_loss.config
        return {"names": {pair_loss.trl_name}, "beta": cfg.beta, "label_smoothing": cfg.label_smoothing}
    if isinstance(pair_loss, GammaPOPairLoss):
        cfg = pair_loss.config
        names = {cfg.loss} - {"ipo"}  # in loss_type, 'ipo' is TRL's (length-normalised) IPO
        if cfg.loss == "dpo" and cfg.label_smoothing == 0:
            names.add("sigmoid")
        return {"names": names, "beta": cfg.beta, "label_smoothing": cfg.label_smoothing}
    if isinstance(pair_loss, BetaDPOPairLoss):
        return {"names": {"beta-dpo"}, "beta": pair_loss.params["beta0"], "label_smoothing": 0.0}
    if isinstance(pair_loss, EpsilonDPOPairLoss):
        name = "gamma-epsilon-dpo" if pair_loss.gamma_config is not None else "epsilon-dpo"
        return {"names": {name}, "beta": float(pair_loss.beta), "label_smoothing": pair_loss.label_smoothing}
    return {"names": set(), "beta": None, "label_smoothing": None}


def _loss_label(loss: Any) -> str:
    if isinstance(loss, str):
        return repr(loss)
    if isinstance(loss, GammaPOConfig):
        return f"GammaPOConfig(loss={loss.loss!r}, …)"
    return type(loss).__name__


def _check_dpo_options(args: DPOConfig, defaults: dict[str, Any]) -> None:
    """Raise for every ``DPOConfig`` option the trainer cannot honour (one message naming them all)."""
    problems: dict[str, str] = {}
    if args.ld_alpha is not None:
        problems["ld_alpha"] = f"ld_alpha={args.ld_alpha!r}: LD-DPO's length weighting is not implemented"
    if args.f_divergence_type != "reverse_kl":
        problems["f_divergence_type"] = (f"f_divergence_type={args.f_divergence_type!r}: only the reverse KL "
                                         "(the losses' own form) is implemented")
    if args.use_weighting:
        problems["use_weighting"] = "use_weighting=True: WPO weighting is not implemented"
    for name, reader in (("f_alpha_divergence_coef", "f_divergence_type='alpha_divergence'"),
                         ("discopop_tau", "loss_type='discopop'")):
        if _is_set(args, name, defaults):
            problems[name] = f"{name}={getattr(args, name)!r}: only {reader} reads it, which is not implemented"
    if not args.sync_ref_model:
        for name in ("ref_model_mixup_alpha", "ref_model_sync_steps"):
            if _is_set(args, name, defaults):
                problems[name] = f"{name}={getattr(args, name)!r}: it has no effect without sync_ref_model=True"
    loss_types = [args.loss_type] if isinstance(args.loss_type, str) else list(args.loss_type)
    if len(loss_types) != 1:
        problems["loss_type"] = (f"loss_type={loss_types}: TRL's multi-loss combinations are not implemented; "
                                 "give one loss")
    if args.loss_weights is not None and any(w != 1.0 for w in args.loss_weights):
        problems["loss_weights"] = (f"loss_weights={list(args.loss_weights)}: one loss per trainer, weights are not "
                                    "implemented")
    for name in _dpo_fields(type(args)):
        if name not in DPO_CONFIG_FIELDS and _is_set(args, name, defaults):
            problems[name] = (f"{name}={getattr(args, name)!r}: a DPOConfig option this version of GammaPOTrainer "
                              "does not know (written for TRL 1.16)")
    if problems:
        raise ValueError(f"GammaPOTrainer does not implement DPOConfig option(s) {sorted(problems)} "
                         f"({'; '.join(problems[k] for k in sorted(problems))}); leave them at TRL's defaults, "
                         "or train with trl.DPOTrainer")


def _loss_from_dpo_config(args: DPOConfig, loss_kwargs: dict[str, Any] | None, defaults: dict[str, Any]) -> PairLoss:
    """The loss ``DPOConfig`` describes (``loss_type``, ``beta``, ``label_smoothing``) plus ``loss_kwargs``."""
    (name,) = [args.loss_type] if isinstance(args.loss_type, str) else args.loss_type
    kwargs = dict(loss_kwargs or {})
    for field in ("beta", "label_smoothing"):
        value = getattr(args, field)
        if field in kwargs:
            if _is_set(args, field, defaults) and kwargs[field] != value:
                raise ValueError(f"DPOConfig.{field}={value!r} disagrees with loss_kwargs {field}={kwargs[field]!r}; "
                                 "set it in one place")
        elif field == "beta" or _is_set(args, field, defaults):
            kwargs[field] = value
    seed = kwargs.pop("seed", args.seed)
    if name in _TRL_LOSSES:
        spec, normalised = _TRL_LOSSES[name]
        smoothing = kwargs.get("label_smoothing", 0.0)
        if smoothing and name != "robust":
            raise ValueError(
                f"label_smoothing={smoothing!r} with DPOConfig.loss_type={name!r}: TRL's {name!r} has no label "
                "smoothing (TRL ignores it). For conservative DPO (cDPO) use loss_type='dpo' (gammapo's DPO), for "
                "robust DPO (the flip rate ε) loss_type='robust'; or set label_smoothing=0")
        if "loss" in kwargs:
            raise ValueError(f"loss_kwargs sets 'loss' while DPOConfig.loss_type={name!r} names the loss")
        config = GammaPOConfig(loss=spec, **kwargs)
        return LengthNormalisedPairLoss(config, seed, trl_name=name) if normalised else GammaPOPairLoss(config, seed)
    if name in _TRL_REFUSED:
        raise ValueError(f"GammaPOTrainer does not implement TRL's loss_type {name!r}; it computes TRL's "
                         f"{sorted(_TRL_LOSSES)} and gammapo's registered losses; train {name!r} with trl.DPOTrainer")
    if name not in registered_pair_losses():
        raise ValueError(f"unknown DPOConfig.loss_type {name!r}: GammaPOTrainer takes TRL's {sorted(_TRL_LOSSES)} "
                         f"or a registered loss {list(registered_pair_losses())}")
    try:
        pair_loss = make_pair_loss(name, seed=seed, **kwargs)
    except TypeError as exc:
        raise ValueError(f"loss {name!r} (DPOConfig.loss_type) does not take the DPOConfig/loss_kwargs fields "
                         f"{sorted(kwargs)}: {exc}") from None
    _check_honoured(pair_loss, name, kwargs)
    return pair_loss


def _check_agrees(pair_loss: PairLoss, args: DPOConfig, label: str, defaults: dict[str, Any]) -> None:
    """Raise when a ``DPOConfig`` field set away from its default disagrees with the loss given as ``loss=``."""
    desc = _describe(pair_loss)
    for field in ("loss_type", "beta", "label_smoothing"):
        if not _is_set(args, field, defaults):
            continue
        value = getattr(args, field)
        if field == "loss_type":
            loss_types = [value] if isinstance(value, str) else list(value)
            if loss_types[0] in desc["names"]:
                continue
            hint = (" (in DPOConfig.loss_type, 'ipo' is TRL's length-normalised IPO; gammapo's 'ipo' sums the "
                    "log-probs)" if loss_types[0] == "ipo" else "")
            raise ValueError(f"DPOConfig.loss_type={loss_types} disagrees with loss={label}{hint}; name the loss in "
                             "one place (leave loss_type at TRL's default to use loss=, or drop loss= to build the "
                             "loss from DPOConfig)")
        have = desc[field]
        if have is None:
            raise ValueError(f"DPOConfig.{field}={value!r} cannot be checked against loss={label} (this trainer "
                             f"cannot read its {field}); leave DPOConfig.{field} at TRL's default "
                             f"({defaults.get(field)!r}) and set it in the loss")
        if have != value:
            raise ValueError(f"DPOConfig.{field}={value!r} disagrees with loss={label}, whose {field} is {have!r}; "
                             f"set {field} in one place")


def _check_honoured(pair_loss: PairLoss, name: str, kwargs: dict[str, Any]) -> None:
    """Raise when the loss built from ``DPOConfig`` does not hold the ``beta``/``label_smoothing`` it was given."""
    desc = _describe(pair_loss)
    for field in ("beta", "label_smoothing"):
        if field in kwargs and desc[field] is not None and desc[field] != kwargs[field]:
            raise ValueError(f"loss {name!r} (DPOConfig.loss_type) was given {field}={kwargs[field]!r} but holds "
                             f"{desc[field]!r}")


def _resolve_loss(loss: str | GammaPOConfig | PairLoss | None, loss_kwargs: dict[str, Any] | None,
                  args: DPOConfig, *, user_args: bool) -> PairLoss:
    defaults = _field_defaults(type(args))
    _check_dpo_options(args, defaults)
    dpo_set = [f for f in ("loss_type", "beta", "label_smoothing") if _is_set(args, f, defaults)]
    if loss is None:
        if dpo_set:
            return _loss_from_dpo_config(args, loss_kwargs, defaults)
        pair_loss = _build_loss("gamma-simpo", loss_kwargs, args.seed)
        if user_args:
            cfg = pair_loss.config
            warnings.warn(
                "GammaPOTrainer: no loss= given and DPOConfig's loss_type, beta and label_smoothing are at TRL's "
                f"defaults, so the trainer's default loss trains: γ-SimPO with beta={cfg.beta:g}, "
                f"gamma_beta_ratio={cfg.gamma_beta_ratio:g}, tau={cfg.tau:g} (not TRL's sigmoid DPO at beta=0.1). "
                "Pass loss='gamma-simpo' to choose it explicitly, or set DPOConfig.loss_type (e.g. 'sigmoid' with "
                "a beta, or 'dpo') to train the loss DPOConfig describes.",
                UserWarning, stacklevel=3,
            )
        return pair_loss
    pair_loss = _build_loss(loss, loss_kwargs, args.seed)
    _check_agrees(pair_loss, args, _loss_label(loss), defaults)
    return pair_loss


class _OptimizerStepCallback(TrainerCallback):
    """Calls ``pair_loss.on_optimizer_step()`` after every optimiser step (once per global step)."""

    def __init__(self, pair_loss: PairLoss):
        self.pair_loss = pair_loss

    def on_step_end(self, args, state, control, **kwargs):
        self.pair_loss.on_optimizer_step()


class GammaPOTrainer(DPOTrainer):
    """TRL's ``DPOTrainer`` with a registered pair loss (by default γ-SimPO) and its state.

    Args:
        model, ref_model, args, **kwargs: as :class:`trl.DPOTrainer` (``train_dataset``,
            ``eval_dataset``, ``processing_class``, ``peft_config``, …).
        loss: a registered loss name (:func:`~gammapo.integrations.losses.registered_pair_losses`),
            a :class:`~gammapo_spec.GammaPOConfig`, or a :class:`~gammapo.integrations.losses.PairLoss`.
            ``None`` (the default): the loss ``args`` describes when its ``loss_type``, ``beta`` or
            ``label_smoothing`` is set away from TRL's default (TRL's ``sigmoid``, ``hinge``, ``ipo``,
            ``robust``, ``sigmoid_norm`` as TRL computes them, or a registered name), else γ-SimPO.
        loss_kwargs: keyword arguments of the named loss (``GammaPOConfig`` fields for the spec's); with
            ``loss=None`` they complete the loss ``args`` describes (or the default γ-SimPO).

    ``args`` and the loss must agree: a ``DPOConfig`` ``loss_type``, ``beta`` or ``label_smoothing`` set
    away from TRL's default that disagrees with ``loss``/``loss_kwargs`` raises, naming both. With
    ``loss=None`` and all three at TRL's defaults the trainer trains γ-SimPO (β = 10 unless
    ``loss_kwargs`` says otherwise), and warns if you passed ``args``: an explicit ``beta=0.1`` cannot be
    told from an unset one. See :data:`DPO_CONFIG_FIELDS` for every other ``DPOConfig`` field.

    A reference-free loss (SimPO) with no ``ref_model`` keeps no reference model at all: the trainer
    sets ``args.precompute_ref_log_probs`` so TRL loads none, and skips the precomputation.

    Raises:
        ValueError: an unknown loss name, a ``DPOConfig`` field that disagrees with ``loss``, or a
            ``DPOConfig`` option this trainer does not implement (``ld_alpha``, an f-divergence other than
            reverse KL, WPO weighting, TRL's multi-loss, a TRL loss type it does not compute, label
            smoothing with a TRL loss type that has none, ``sync_ref_model`` with a reference-free loss).
        gammapo_spec.ConfigError: a bad loss hyper-parameter.
    """

    _tag_names = ["trl", "dpo", "gammapo"]

    def __init__(
        self,
        model,
        ref_model=None,
        args: DPOConfig | None = None,
        *,
        loss: str | GammaPOConfig | PairLoss | None = None,
        loss_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ):
        user_args = args is not None
        if args is None:
            args = DPOConfig("gammapo-trl")
        self.pair_loss = _resolve_loss(loss, loss_kwargs, args, user_args=user_args)
        self._reference_free = not self.pair_loss.needs_reference
        if args.sync_ref_model and self._reference_free:
            raise ValueError(f"DPOConfig.sync_ref_model=True syncs the reference model, but the loss "
                             f"({self.pair_loss.extra_repr() or type(self.pair_loss).__name__}) uses none; "
                             "set sync_ref_model=False")
        self._token_logits = bool(getattr(self.pair_loss, "needs_token_logits", False))
        if self._token_logits and args.precompute_ref_log_probs:
            raise ValueError("this loss needs the reference's token logits every step; precompute_ref_log_probs cannot be used")
        if self._reference_free and ref_model is None:
            args.precompute_ref_log_probs = True  # TRL then loads no reference model; see _precompute_ref_logps
        super().__init__(model, ref_model, args, **kwargs)
        check_parallel_launch(args, self.accelerator)
        if self._reference_free:
            self.precompute_ref_logps = False  # nothing was precomputed; evaluate() must not try either
        if self.aux_loss_enabled:
            raise ValueError("GammaPOTrainer does not add MoE router auxiliary losses; set router_aux_loss_coef=0")
        self.pair_loss.to(self.accelerator.device)
        if callable(getattr(self.pair_loss, "on_optimizer_step", None)):
            self.add_callback(_OptimizerStepCallback(self.pair_loss))

    # --- the loss -----------------------------------------------------------------------------
    def _precompute_ref_logps(self, dataset, name: str, batch_size: int):
        if self._reference_free:
            return dataset  # the loss reads no reference log-probs: nothing to compute
        return super()._precompute_ref_logps(dataset, name, batch_size)

    def pair_batch(self, model, inputs: dict[str, torch.Tensor]) -> PairBatch:
        """Summed completion log-probs and lengths of a collated batch ([chosen; rejected] rows)."""
        if self._token_logits:
            return self._token_pair_batch(model, inputs)
        completion_mask = inputs["completion_mask"]
        model_kwargs = {k: v for k, v in inputs.items() if k not in _NON_MODEL_KEYS}
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(**model_kwargs, labels=labels, use_cache=False, fused_lm_head=True)
        shift_mask = completion_mask[:, 1:]
        per_token = outputs.log_probs[:, -shift_mask.size(1):]  # 0 where the label is -100
        if all(getattr(outputs, name, None) is not None for name in ("entropy", "mean_logits", "is_top1")):
            seq = shift_mask.size(1)
            self._token_sums = token_sums(outputs.entropy[:, -seq:], outputs.mean_logits[:, -seq:],
                                          outputs.is_top1[:, -seq:], shift_mask)
        chosen, rejected = per_token.sum(dim=1).chunk(2, dim=0)
        len_w, len_l = shift_mask.sum(dim=1).chunk(2, dim=0)
        ref_c = ref_r = None
        if self.pair_loss.needs_reference:
            if "ref_chosen_logps" in inputs:
                ref_c, ref_r = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
            else:
                ref_c, ref_r = self.compute_ref_log_probs(self.ref_model if self.ref_model is not None else model, inputs)
        return PairBatch(chosen, rejected, len_w, len_l, ref_c, ref_r)

    def _token_pair_batch(self, model, inputs: dict[str, torch.Tensor]) -> PairBatch:
        """For a loss with ``needs_token_logits``: policy and reference logits through their own LM heads,
        shifted to align with the completion labels, handed to ``pair_loss.token_inputs``."""
        if self.ref_model is None:
            raise ValueError("this loss needs a reference model's token logits; pass ref_model")
        model_kwargs = {k: v for k, v in inputs.items() if k not in _NON_MODEL_KEYS}
        mask = inputs["completion_mask"][:, 1:].bool()
        labels = inputs["input_ids"][:, 1:]
        logits = model(**model_kwargs, use_cache=False).logits[:, -mask.size(1) - 1 : -1]
        with torch.no_grad():
            ref_logits = self.ref_model(**model_kwargs, use_cache=False).logits[:, -mask.size(1) - 1 : -1]
        self._token_sums = token_sums_from_logits(logits, labels, mask)
        return self.pair_loss.token_inputs(logits, ref_logits, labels, mask)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The registered pair loss on this batch; logs TRL's metrics and the loss's own."""
        if return_outputs:
            raise ValueError("GammaPOTrainer.compute_loss returns the loss only (TRL deprecated return_outputs)")
        mode = "train" if self.model.training else "eval"
        self._token_sums = None
        batch = self.pair_batch(model, inputs)
        out = self.pair_loss(batch, update_state=mode == "train")
        self._log_pair_metrics(mode, batch, out)
        self._log_token_metrics(mode, inputs)
        return out.loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def _log_pair_metrics(self, mode: str, batch: PairBatch, out: PairLossOutput) -> None:
        gather = self.accelerator.gather
        cw, rl = gather(out.chosen_rewards.detach()), gather(out.rejected_rewards.detach())
        logged = {
            "rewards/chosen": cw.mean(),
            "rewards/rejected": rl.mean(),
            "rewards/accuracies": (cw > rl).float().mean(),
            "rewards/margins": (cw - rl).mean(),
            "logps/chosen": gather(batch.chosen_logps.detach()).mean(),
            "logps/rejected": gather(batch.rejected_logps.detach()).mean(),
        }
        logged.update(reduce_loss_metrics(gather, out.metrics, int(out.chosen_rewards.shape[0])))
        for key, value in logged.items():
            self._metrics[mode][key].append(float(value))

    def _log_token_metrics(self, mode: str, inputs: dict[str, torch.Tensor]) -> None:
        """TRL's ``entropy``, ``logits/*``, ``mean_token_accuracy`` and ``num_tokens``, as DPOTrainer logs them."""
        if self._token_sums is not None:
            for key, value in reduce_token_metrics(self.accelerator.gather, self._token_sums).items():
                self._metrics[mode][key].append(value)
        if mode == "train":
            attended = self.accelerator.gather(inputs["attention_mask"].sum().reshape(1)).sum().item()
            self._total_train_tokens += attended // getattr(self, "_tp_size", 1)
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]

    # --- the model card -----------------------------------------------------------------------
    def create_model_card(self, model_name: str | None = None, dataset_name: str | None = None, tags=None):
        """The card TRL writes beside the checkpoints, naming the base model (or "trained from a config"), the
        loss actually trained with its β, γ0, τ and solver, and the papers (γ-PO and the loss's own)."""
        if self.is_world_process_zero():
            from .model_card import write_model_card

            os.makedirs(self.args.output_dir, exist_ok=True)
            write_model_card(self, os.path.join(self.args.output_dir, "README.md"), model_name=model_name,
                             dataset_name=dataset_name)

    # --- the loss state in checkpoints --------------------------------------------------------
    def _save_checkpoint(self, model, trial):
        """TRL's checkpoint, then the loss state and the completeness record (see
        :mod:`gammapo.integrations._checkpoints`); older checkpoints are rotated only after that."""
        limit = self.args.save_total_limit
        self.args.save_total_limit = None
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        if self.args.should_save:
            run_dir = self._get_output_dir(trial=trial)
            folder = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            _checkpoints.write_record(folder, self.pair_loss.state_dict(), self.pair_loss, self.state.global_step)
            rotate_checkpoints(output_dir=run_dir, save_total_limit=limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)

    def load_loss_state(self, checkpoint: str) -> bool:
        """Restore the loss state saved in ``checkpoint`` (a complete checkpoint folder) after checking
        that the loss is configured as it was; returns whether a state file was found.

        Raises:
            gammapo_spec.StateError: another loss configuration (naming the fields), or a state that
                fails the backend's checks.
            ValueError: an unreadable state file.
        """
        path = os.path.join(checkpoint, LOSS_STATE_FILE)
        if not os.path.isfile(path):
            return False
        if os.path.isfile(os.path.join(checkpoint, _checkpoints.COMPLETE_FILE)):
            _checkpoints.check_record(checkpoint, self.pair_loss)
        try:
            state = torch.load(path, map_location=self.accelerator.device, weights_only=True)
        except Exception as exc:  # truncated or corrupt: torch raises RuntimeError, EOFError, OSError, pickle errors
            raise ValueError(f"{path} is unreadable ({type(exc).__name__}: {str(exc)[:200]}); "
                             "resume from an earlier checkpoint") from None
        self.pair_loss.load_state_dict(state)
        return True

    def _resume_folder(self, resume_from_checkpoint: str | bool | None) -> str | None:
        """The complete checkpoint to resume from (``True``: the newest complete one), reported on stderr."""
        if not resume_from_checkpoint:
            return None
        if resume_from_checkpoint is True:
            folder, skipped = _checkpoints.newest_complete(self.args.output_dir)
            for path, why in skipped:
                print(f"gammapo: skipping {path}: incomplete ({why})", file=sys.stderr, flush=True)
            if folder is None:
                raise ValueError(f"no checkpoint found in {self.args.output_dir!r} to resume from"
                                 + (" (none is complete)" if skipped else ""))
        else:
            folder = str(resume_from_checkpoint)
            why = _checkpoints.incomplete_reason(folder)
            if why is not None:
                newest, _ = _checkpoints.newest_complete(os.path.dirname(os.path.abspath(folder)))
                hint = f"; the newest complete one is {newest}" if newest else ""
                raise ValueError(f"cannot resume from {folder}: incomplete ({why}){hint}")
        print(f"gammapo: resuming from {folder}", file=sys.stderr, flush=True)
        return folder

    def _finished_checkpoint(self, checkpoint: str | None):
        """A checkpoint saved at the run's last step: load it and return without training.

        transformers resumed from such a checkpoint trains one more step (its stop test comes after a
        step), which would advance the loss state past the uninterrupted run's.
        """
        import json

        from transformers import TrainerState
        from transformers.trainer_utils import TrainOutput

        if not checkpoint or self.args.max_steps <= 0:
            return None
        state_file = os.path.join(checkpoint, "trainer_state.json")
        with open(state_file, encoding="utf-8") as fh:
            step = int(json.load(fh).get("global_step", 0))
        if step < self.args.max_steps:
            return None
        self._load_from_checkpoint(checkpoint)
        self.state = TrainerState.load_from_json(state_file)
        losses = [h["train_loss"] for h in self.state.log_history if "train_loss" in h]
        return TrainOutput(step, losses[-1] if losses else float("nan"), {})

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any):
        """TRL's ``train``, holding the output folder's lock; on resume the loss state of the checkpoint is
        restored first (``True``: the newest complete checkpoint, see :mod:`gammapo.integrations._checkpoints`).

        Raises:
            gammapo.integrations._checkpoints.OutputLocked: another process trains into the same folder.
            ValueError: no complete checkpoint to resume from, or an unreadable one.
            gammapo_spec.StateError: a checkpoint of another loss configuration (naming the fields).
        """
        lock = _checkpoints.lock_output(self.args.output_dir) if self.args.should_save else None
        try:
            checkpoint = self._resume_folder(resume_from_checkpoint)
            self.resumed_from = checkpoint
            if checkpoint and not self.load_loss_state(checkpoint) and self.pair_loss.state_dict():
                raise ValueError(f"{checkpoint!r} holds no {LOSS_STATE_FILE}")
            finished = self._finished_checkpoint(checkpoint)
            if finished is not None:
                return finished
            return super().train(resume_from_checkpoint=checkpoint, **kwargs)
        finally:
            if lock is not None:
                lock.close()
