r"""How :class:`~gammapo.integrations.trl.GammaPOTrainer` reads a ``DPOConfig``: which loss it describes,
and every option the trainer refuses rather than ignores.

* :data:`TRL_LOSS_TYPES` — TRL's loss types the trainer computes, as TRL computes them (``ipo`` and
  ``sigmoid_norm`` through :class:`LengthNormalisedPairLoss`);
* :data:`DPO_CONFIG_FIELDS` — what the trainer does with every field ``DPOConfig`` adds to
  ``TrainingArguments``;
* ``_resolve_loss`` — the loss a trainer trains, from ``loss=``/``loss_kwargs`` and ``DPOConfig``, with
  the checks that they agree (the rules are in :mod:`gammapo.integrations.trl`).

Import the public names from :mod:`gammapo.integrations.trl`, which re-exports them.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

from transformers import TrainingArguments
from trl import DPOConfig

from gammapo_spec.config import GammaPOConfig

from .beta_dpo import BetaDPOPairLoss
from .epsilon_dpo import EpsilonDPOPairLoss
from .losses import (
    GammaPOPairLoss,
    PairBatch,
    PairLoss,
    PairLossOutput,
    make_pair_loss,
    registered_pair_losses,
)

__all__ = ["DPO_CONFIG_FIELDS", "TRL_LOSS_TYPES", "LengthNormalisedPairLoss"]

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
