"""GammaPOTrainer honours or refuses every DPOConfig field: the loss DPOConfig describes (TRL's loss
types as TRL computes them, gammapo's names), conflicts between DPOConfig and loss=/loss_kwargs, the
options it does not implement; and TRL's own DPOTrainer gives the same loss, gradients and rewards/*
metrics on one batch for every loss type both implement."""

from __future__ import annotations

import copy
import dataclasses
import re
import warnings

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402
from trl import DPOConfig, DPOTrainer  # noqa: E402

import gammapo_spec  # noqa: E402
from gammapo.integrations.beta_dpo import BetaDPOPairLoss  # noqa: E402
from gammapo.integrations.losses import GammaPOPairLoss, PairLoss  # noqa: E402
from gammapo.integrations.trl import (  # noqa: E402
    DPO_CONFIG_FIELDS,
    TRL_LOSS_TYPES,
    GammaPOTrainer,
    LengthNormalisedPairLoss,
)
from gammapo.train.run import RunConfig, dpo_config  # noqa: E402
from gammapo.train.task import SyntheticTask  # noqa: E402
from gammapo.train.tiny import build_model, build_tokenizer  # noqa: E402

TASK = SyntheticTask()
TOK = build_tokenizer(TASK.words)
ROWS = TASK.pairs(8, noise=0.0, seed=0)
torch.set_num_threads(1)

#: Every loss type TRL 1.16's DPOConfig documents (read from its help text, so a newer TRL's new
#: types are covered too).
TRL_TYPES = re.findall(r"`'(\w+)'`", dataclasses.fields(DPOConfig)[
    [f.name for f in dataclasses.fields(DPOConfig)].index("loss_type")].metadata["help"])


def _args(tmp_path, **fields):
    return dpo_config(RunConfig(str(tmp_path / "run"), max_steps=1, batch_size=8), use_cpu=True, **fields)


def _trainer(tmp_path, cls=GammaPOTrainer, *, seed_ref=1, **fields):
    """A trainer on 8 pairs of the embedded task: policy and reference are different random models."""
    extra = {k: fields.pop(k) for k in ("loss", "loss_kwargs") if k in fields}
    return cls(build_model(len(TOK), seed=0), ref_model=build_model(len(TOK), seed=seed_ref),
               args=_args(tmp_path, **fields), train_dataset=Dataset.from_list(ROWS), processing_class=TOK, **extra)


# --- the loss DPOConfig describes ------------------------------------------------------------------
@pytest.mark.parametrize("fields,kind,loss,beta,smoothing", [
    (dict(loss_type=["sigmoid"], beta=0.05), GammaPOPairLoss, "dpo", 0.05, 0.0),
    (dict(beta=0.05), GammaPOPairLoss, "dpo", 0.05, 0.0),  # loss_type left at TRL's default ['sigmoid']
    (dict(loss_type=["hinge"]), GammaPOPairLoss, "hinge", 0.1, 0.0),  # beta left at TRL's default 0.1
    (dict(loss_type="ipo", beta=0.5), LengthNormalisedPairLoss, "ipo", 0.5, 0.0),
    (dict(loss_type=["robust"], beta=0.2, label_smoothing=0.1), GammaPOPairLoss, "robust", 0.2, 0.1),
    (dict(loss_type=["sigmoid_norm"], beta=0.3), LengthNormalisedPairLoss, "dpo", 0.3, 0.0),
    (dict(loss_type=["dpo"], beta=0.05, label_smoothing=0.1), GammaPOPairLoss, "dpo", 0.05, 0.1),  # cDPO
    (dict(loss_type=["gamma-dpo"], beta=0.2), GammaPOPairLoss, "gamma-dpo", 0.2, 0.0),
    (dict(loss_type=["gamma-simpo"], beta=2.0, label_smoothing=0.1), GammaPOPairLoss, "gamma-simpo", 2.0, 0.1),
])
def test_trainer_builds_the_loss_dpo_config_describes(tmp_path, fields, kind, loss, beta, smoothing):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "chose the default loss" warning: DPOConfig chose
        pair_loss = _trainer(tmp_path, **fields).pair_loss
    assert type(pair_loss) is kind, f"{fields}: built {pair_loss!r}"
    cfg = pair_loss.config
    assert (cfg.loss, cfg.beta, cfg.label_smoothing) == (loss, beta, smoothing), f"{fields}: built {cfg}"


def test_trainer_dpo_config_beta_with_a_registered_method(tmp_path):
    pair_loss = _trainer(tmp_path, loss_type=["beta-dpo"], beta=0.2).pair_loss
    assert isinstance(pair_loss, BetaDPOPairLoss) and pair_loss.params["beta0"] == 0.2


def test_trainer_loss_kwargs_complete_the_dpo_config_loss(tmp_path):
    pair_loss = _trainer(tmp_path, loss_type="gamma-dpo",
                         loss_kwargs=dict(beta=0.2, gamma_beta_ratio=5.0, tau=1.0)).pair_loss
    cfg = pair_loss.config
    assert (cfg.loss, cfg.beta, cfg.gamma_beta_ratio, cfg.tau) == ("gamma-dpo", 0.2, 5.0, 1.0)


@pytest.mark.parametrize("loss_type", TRL_TYPES)
def test_trainer_honours_or_refuses_every_trl_loss_type(tmp_path, loss_type):
    fields = dict(loss_type=[loss_type], beta=0.3)
    if loss_type == "exo_pair":
        fields["label_smoothing"] = 1e-3  # TRL requires it
    if loss_type in TRL_LOSS_TYPES:
        pair_loss = _trainer(tmp_path, **fields).pair_loss
        assert pair_loss.config.beta == 0.3
        assert isinstance(pair_loss, LengthNormalisedPairLoss) == (loss_type in ("ipo", "sigmoid_norm"))
    else:
        with pytest.raises(ValueError, match=f"loss_type '{loss_type}'"):
            _trainer(tmp_path, **fields)


@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge", "ipo", "sigmoid_norm"])
def test_trainer_refuses_label_smoothing_where_trl_has_none(tmp_path, loss_type):
    with pytest.raises(ValueError, match=f"label_smoothing=0.1 with DPOConfig.loss_type='{loss_type}'"):
        _trainer(tmp_path, loss_type=[loss_type], beta=0.05, label_smoothing=0.1)


def test_trainer_refuses_unknown_loss_type_and_multi_loss(tmp_path):
    with pytest.raises(ValueError, match="unknown DPOConfig.loss_type 'gamma-nope'"):
        _trainer(tmp_path, loss_type=["gamma-nope"])
    with pytest.raises(ValueError, match=r"option\(s\) \['loss_type', 'loss_weights'\].*multi-loss"):
        _trainer(tmp_path, loss_type=["sigmoid", "sft"], loss_weights=[1.0, 0.1])
    with pytest.raises(ValueError, match=r"option\(s\) \['loss_weights'\]"):
        _trainer(tmp_path, loss_type=["robust"], loss_weights=[0.5])
    assert _trainer(tmp_path, loss_type=["robust"], loss_weights=[1.0]).pair_loss.config.loss == "robust"


def test_trainer_default_dpo_config_trains_gamma_simpo_and_says_so(tmp_path):
    with pytest.warns(UserWarning, match="the trainer's default loss trains: γ-SimPO with beta=10"):
        pair_loss = _trainer(tmp_path).pair_loss
    assert pair_loss.config.loss == "gamma-simpo" and pair_loss.config.beta == 10.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert _trainer(tmp_path, loss="gamma-simpo").pair_loss.config.loss == "gamma-simpo"


# --- DPOConfig against loss= / loss_kwargs -----------------------------------------------------------
@pytest.mark.parametrize("fields,message", [
    (dict(beta=0.05, loss="gamma-dpo", loss_kwargs=dict(beta=10.0)),
     "DPOConfig.beta=0.05 disagrees with loss='gamma-dpo', whose beta is 10.0"),
    (dict(beta=0.05, loss="gamma-simpo"),  # the loss's own default β = 10
     "DPOConfig.beta=0.05 disagrees with loss='gamma-simpo', whose beta is 10.0"),
    (dict(beta=0.05, loss=gammapo_spec.GammaPOConfig(loss="dpo", beta=0.1)),
     r"DPOConfig.beta=0.05 disagrees with loss=GammaPOConfig\(loss='dpo', …\), whose beta is 0.1"),
    (dict(label_smoothing=0.1, loss="dpo", loss_kwargs=dict(beta=0.1)),
     "DPOConfig.label_smoothing=0.1 disagrees with loss='dpo', whose label_smoothing is 0.0"),
    (dict(loss_type=["ipo"], loss="gamma-dpo"), r"DPOConfig.loss_type=\['ipo'\] disagrees with loss='gamma-dpo'"),
    (dict(loss_type=["ipo"], loss="ipo", loss_kwargs=dict(beta=0.1)), "TRL's length-normalised IPO"),
    (dict(loss_type=["gamma-dpo"], beta=0.05, loss_kwargs=dict(beta=0.1)),
     "DPOConfig.beta=0.05 disagrees with loss_kwargs beta=0.1"),
])
def test_trainer_refuses_dpo_config_that_disagrees_with_the_loss(tmp_path, fields, message):
    with pytest.raises(ValueError, match=message):
        _trainer(tmp_path, **fields)


def test_trainer_accepts_dpo_config_that_agrees_with_the_loss(tmp_path):
    tr = _trainer(tmp_path, beta=0.5, loss_type="gamma-dpo", label_smoothing=0.1, loss="gamma-dpo",
                  loss_kwargs=dict(beta=0.5, label_smoothing=0.1))
    assert (tr.pair_loss.config.beta, tr.pair_loss.config.label_smoothing) == (0.5, 0.1)
    tr = _trainer(tmp_path, loss_type="hinge", loss="hinge", loss_kwargs=dict(beta=0.1))
    assert tr.pair_loss.config.loss == "hinge"


def test_trainer_refuses_dpo_config_beta_it_cannot_check(tmp_path):
    class Opaque(PairLoss):
        def forward(self, batch, *, update_state=True):  # pragma: no cover - never trained
            raise NotImplementedError

    with pytest.raises(ValueError, match=r"DPOConfig.beta=0.2 cannot be checked against loss=Opaque"):
        _trainer(tmp_path, beta=0.2, loss=Opaque())


# --- every other DPOConfig field ---------------------------------------------------------------------
def test_every_dpo_config_field_is_accounted_for():
    from transformers import TrainingArguments

    base = {f.name for f in dataclasses.fields(TrainingArguments)}
    dpo_fields = {f.name for f in dataclasses.fields(DPOConfig)} - base
    assert dpo_fields == set(DPO_CONFIG_FIELDS), (
        f"DPOConfig fields not in DPO_CONFIG_FIELDS: {sorted(dpo_fields - set(DPO_CONFIG_FIELDS))}; "
        f"listed but gone: {sorted(set(DPO_CONFIG_FIELDS) - dpo_fields)}")


@pytest.mark.parametrize("fields,name", [
    (dict(ld_alpha=0.5), "ld_alpha"),
    (dict(f_divergence_type="js_divergence"), "f_divergence_type"),
    (dict(f_alpha_divergence_coef=0.3), "f_alpha_divergence_coef"),
    (dict(use_weighting=True), "use_weighting"),
    (dict(discopop_tau=0.1), "discopop_tau"),
    (dict(ref_model_mixup_alpha=0.9), "ref_model_mixup_alpha"),
    (dict(ref_model_sync_steps=8), "ref_model_sync_steps"),
])
def test_trainer_refuses_dpo_options_it_does_not_implement(tmp_path, fields, name):
    with pytest.raises(ValueError, match=rf"does not implement DPOConfig option\(s\) \['{name}'\]"):
        _trainer(tmp_path, loss="gamma-simpo", **fields)


def test_trainer_refuses_a_dpo_config_field_it_does_not_know(tmp_path):
    @dataclasses.dataclass
    class NewerDPOConfig(DPOConfig):
        new_knob: int = 0

    args = NewerDPOConfig(str(tmp_path / "run"), use_cpu=True, bf16=False, report_to="none", new_knob=3)
    with pytest.raises(ValueError, match=r"option\(s\) \['new_knob'\] \(new_knob=3: a DPOConfig option"):
        GammaPOTrainer(build_model(len(TOK)), args=args, train_dataset=Dataset.from_list(ROWS), processing_class=TOK,
                       loss="gamma-simpo")


def test_trainer_sync_ref_model_needs_a_reference(tmp_path):
    with pytest.raises(ValueError, match="sync_ref_model=True syncs the reference model, but the loss"):
        _trainer(tmp_path, sync_ref_model=True, loss="gamma-simpo")
    tr = _trainer(tmp_path, sync_ref_model=True, ref_model_sync_steps=2, loss="dpo", loss_kwargs=dict(beta=0.1))
    assert any(type(c).__name__ == "SyncRefModelCallback" for c in tr.callback_handler.callbacks)


# --- the same numbers as TRL's DPOTrainer ------------------------------------------------------------
TRL_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
               "logps/rejected")


def _one_batch(trainer):
    """Loss, parameter gradients, logged metrics and inputs of one training batch of 8 pairs."""
    inputs = trainer.data_collator([trainer.train_dataset[i] for i in range(len(ROWS))])
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, inputs)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, {k: v[-1] for k, v in trainer._metrics["train"].items()}, inputs


@pytest.mark.parametrize("fields,loss", [
    (dict(loss_type=["sigmoid"], beta=0.5), {}),
    (dict(loss_type=["hinge"], beta=0.5), {}),
    (dict(loss_type=["ipo"], beta=0.5), {}),
    (dict(loss_type=["robust"], beta=0.5, label_smoothing=0.1), {}),
    (dict(loss_type=["sigmoid_norm"], beta=0.5), {}),
    # TRL's defaults (sigmoid, β = 0.1) look unset to the trainer: name the loss to train them
    (dict(), dict(loss="dpo", loss_kwargs=dict(beta=0.1))),
], ids=["sigmoid", "hinge", "ipo", "robust", "sigmoid_norm", "trl-default"])
def test_trainer_matches_trl_dpo_trainer_on_one_batch(tmp_path, fields, loss):
    want_loss, want_grads, want_metrics, want_inputs = _one_batch(_trainer(tmp_path / "trl", DPOTrainer, **fields))
    got_loss, got_grads, got_metrics, got_inputs = _one_batch(_trainer(tmp_path / "gpo", **fields, **loss))
    assert torch.equal(got_inputs["input_ids"], want_inputs["input_ids"]), "the two trainers saw different batches"
    assert torch.equal(got_inputs["completion_mask"], want_inputs["completion_mask"])
    assert abs(float(got_loss - want_loss)) <= 1e-6 * abs(float(want_loss)), (float(got_loss), float(want_loss))
    assert set(got_grads) == set(want_grads) and want_grads
    for name, want in want_grads.items():
        scale = float(want.abs().max())
        assert scale > 0, f"{name}: TRL's gradient is zero (the batch tests nothing)"
        err = float((got_grads[name] - want).abs().max())
        assert err <= 1e-6 * scale, f"{name}: gradient differs from TRL's by {err:.3g} (max |g| {scale:.3g})"
    for key in TRL_METRICS:
        assert got_metrics[key] == pytest.approx(want_metrics[key], rel=1e-6, abs=1e-7), (
            f"{key}: {got_metrics[key]} here, {want_metrics[key]} in TRL")
