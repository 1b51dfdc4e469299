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
   ``rewards/margins``, ``logps/chosen``, ``logps/rejected`` plus the loss's own metrics
   (``gamma/mean``, ``gamma/std``, ``gamma/min``, ``gamma/max``);
3. the loss's calibration state (the queue of recent gaps) is saved in every checkpoint
   (``gammapo_loss_state.pt``) and restored by ``train(resume_from_checkpoint=…)``, so a resumed run
   calibrates exactly as an uninterrupted one would.

Hyper-parameters of the loss come from ``loss`` / ``loss_kwargs`` (a :class:`~gammapo_spec.GammaPOConfig`
or a registered name); ``DPOConfig.loss_type``, ``beta`` and ``label_smoothing`` are not used.
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

import os
import warnings
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint
from trl import DPOConfig, DPOTrainer

from gammapo_spec.config import GammaPOConfig

from .losses import GammaPOPairLoss, PairBatch, PairLoss, PairLossOutput, make_pair_loss

__all__ = ["GammaPOTrainer", "LOSS_STATE_FILE"]

#: File name of the loss state inside a checkpoint folder.
LOSS_STATE_FILE = "gammapo_loss_state.pt"

_NON_MODEL_KEYS = frozenset({"completion_mask", "ref_chosen_logps", "ref_rejected_logps"})


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


class _OptimizerStepCallback(TrainerCallback):
    """Calls ``pair_loss.on_optimizer_step()`` after every optimiser step (once per global step)."""

    def __init__(self, pair_loss: PairLoss):
        self.pair_loss = pair_loss

    def on_step_end(self, args, state, control, **kwargs):
        self.pair_loss.on_optimizer_step()


class GammaPOTrainer(DPOTrainer):
    """TRL's ``DPOTrainer`` with a registered pair loss (default ``"gamma-simpo"``) and its state.

    Args:
        model, ref_model, args, **kwargs: as :class:`trl.DPOTrainer` (``train_dataset``,
            ``eval_dataset``, ``processing_class``, ``peft_config``, …).
        loss: a registered loss name (:func:`~gammapo.integrations.losses.registered_pair_losses`),
            a :class:`~gammapo_spec.GammaPOConfig`, or a :class:`~gammapo.integrations.losses.PairLoss`.
        loss_kwargs: keyword arguments of the named loss (``GammaPOConfig`` fields for the spec's).

    A reference-free loss (SimPO) with no ``ref_model`` keeps no reference model at all: the trainer
    sets ``args.precompute_ref_log_probs`` so TRL loads none, and skips the precomputation.

    Raises:
        ValueError: an unknown loss name, or a ``DPOConfig`` option this trainer does not implement
            (``ld_alpha``, an f-divergence other than reverse KL, WPO weighting).
        gammapo_spec.ConfigError: a bad loss hyper-parameter.
    """

    _tag_names = ["trl", "dpo", "gammapo"]

    def __init__(
        self,
        model,
        ref_model=None,
        args: DPOConfig | None = None,
        *,
        loss: str | GammaPOConfig | PairLoss = "gamma-simpo",
        loss_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ):
        if args is None:
            args = DPOConfig("gammapo-trl")
        self.pair_loss = _build_loss(loss, loss_kwargs, args.seed)
        unsupported = {
            "ld_alpha": args.ld_alpha is not None,
            "f_divergence_type": args.f_divergence_type != "reverse_kl",
            "use_weighting": bool(args.use_weighting),
        }
        bad = [k for k, v in unsupported.items() if v]
        if bad:
            raise ValueError(f"GammaPOTrainer does not implement DPOConfig option(s) {bad}; leave them at TRL's defaults")
        self._reference_free = not self.pair_loss.needs_reference
        self._token_logits = bool(getattr(self.pair_loss, "needs_token_logits", False))
        if self._token_logits and args.precompute_ref_log_probs:
            raise ValueError("this loss needs the reference's token logits every step; precompute_ref_log_probs cannot be used")
        if self._reference_free and ref_model is None:
            args.precompute_ref_log_probs = True  # TRL then loads no reference model; see _precompute_ref_logps
        super().__init__(model, ref_model, args, **kwargs)
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
        return self.pair_loss.token_inputs(logits, ref_logits, labels, mask)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The registered pair loss on this batch; logs TRL's metrics and the loss's own."""
        if return_outputs:
            raise ValueError("GammaPOTrainer.compute_loss returns the loss only (TRL deprecated return_outputs)")
        mode = "train" if self.model.training else "eval"
        batch = self.pair_batch(model, inputs)
        out = self.pair_loss(batch, update_state=mode == "train")
        self._log_pair_metrics(mode, batch, out)
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
        for key, value in out.metrics.items():
            values = gather(value.detach().reshape(1))
            logged[key] = values.min() if key.endswith("/min") else values.max() if key.endswith("/max") else values.mean()
        for key, value in logged.items():
            self._metrics[mode][key].append(float(value))

    # --- the loss state in checkpoints --------------------------------------------------------
    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            torch.save(self.pair_loss.state_dict(), os.path.join(folder, LOSS_STATE_FILE))

    def load_loss_state(self, checkpoint: str) -> bool:
        """Restore the loss state saved in ``checkpoint`` (a folder); returns whether a state file was found."""
        path = os.path.join(checkpoint, LOSS_STATE_FILE)
        if not os.path.isfile(path):
            return False
        state = torch.load(path, map_location=self.accelerator.device, weights_only=True)
        self.pair_loss.load_state_dict(state)
        return True

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any):
        """TRL's ``train``; on resume the loss state of the checkpoint is restored first."""
        checkpoint = resume_from_checkpoint
        if checkpoint is True:
            checkpoint = get_last_checkpoint(self.args.output_dir)
            if checkpoint is None:
                raise ValueError(f"no checkpoint found in {self.args.output_dir!r} to resume from")
        if checkpoint:
            if not self.load_loss_state(checkpoint) and self.pair_loss.state_dict():
                warnings.warn(
                    f"{checkpoint!r} holds no {LOSS_STATE_FILE}; the loss state starts afresh", stacklevel=2
                )
        return super().train(resume_from_checkpoint=checkpoint or None, **kwargs)
