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

import os
import sys
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints
from trl import DPOConfig, DPOTrainer

from gammapo_spec.config import GammaPOConfig

from . import _checkpoints
from ._checkpoints import LOSS_STATE_FILE
from ._parallel import check_parallel_launch
from ._trl_config import DPO_CONFIG_FIELDS, TRL_LOSS_TYPES, LengthNormalisedPairLoss, _resolve_loss
from ._trl_metrics import reduce_loss_metrics, reduce_token_metrics, token_sums, token_sums_from_logits
from .losses import PairBatch, PairLoss, PairLossOutput

__all__ = ["DPO_CONFIG_FIELDS", "GammaPOTrainer", "LOSS_STATE_FILE", "LengthNormalisedPairLoss", "TRL_LOSS_TYPES"]

_NON_MODEL_KEYS = frozenset({"completion_mask", "ref_chosen_logps", "ref_rejected_logps"})


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
