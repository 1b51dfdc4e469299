"""GammaPOTrainer through TRL on CPU with the tiny model: the loss falls, metrics appear, every spec
loss runs, the loss equals the reference's on the trainer's own log-probs, evaluation keeps the state."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402

import gammapo_spec  # noqa: E402
from gammapo.integrations.losses import make_pair_loss  # noqa: E402
from gammapo.integrations.trl import GammaPOTrainer  # noqa: E402
from gammapo.train.run import RunConfig, dpo_config, sequence_logps  # noqa: E402
from gammapo.train.task import SyntheticTask  # noqa: E402
from gammapo.train.tiny import build_model, build_tokenizer  # noqa: E402

TASK = SyntheticTask()
torch.set_num_threads(1)


def _trainer(tmp_path, loss, loss_kwargs, *, pairs=128, steps=4, batch=16, grad_accum=1, lr=3e-3, logging=1):
    tok = build_tokenizer(TASK.words)
    model = build_model(len(tok), seed=0)
    ref = copy.deepcopy(model)
    run = RunConfig(str(tmp_path / "run"), batch_size=batch, grad_accum=grad_accum, learning_rate=lr, max_steps=steps,
                    logging_steps=logging, warmup_ratio=0.0, scheduler="constant")
    pl = make_pair_loss(loss, **loss_kwargs)
    return GammaPOTrainer(model, ref_model=ref if pl.needs_reference else None, args=dpo_config(run),
                          train_dataset=Dataset.from_list(TASK.pairs(pairs, noise=0.0, seed=3)),
                          processing_class=tok, loss=pl)


TRL_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
               "logps/rejected")
GAMMA_METRICS = ("gamma/mean", "gamma/std", "gamma/min", "gamma/max", "gamma/log_spread", "gamma/spread_bound")


@pytest.mark.parametrize("loss,kwargs", [
    ("gamma-simpo", dict(beta=2.0, gamma_beta_ratio=0.5, tau=1.0, queue_size=256, sample_size=64)),
    ("gamma-dpo", dict(beta=0.1, gamma_beta_ratio=10.0, tau=1.0, queue_size=256, sample_size=64)),
])
def test_trainer_loss_falls_and_logs_trl_and_gamma_metrics(tmp_path, loss, kwargs):
    trainer = _trainer(tmp_path, loss, kwargs, pairs=512, steps=40, batch=32)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    losses = [h["loss"] for h in logs]
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < first - 0.05, f"{loss}: loss did not fall: first 5 steps {first:.4f}, last 5 {last:.4f}"
    for key in TRL_METRICS + GAMMA_METRICS:
        assert key in logs[-1], f"{loss}: metric {key!r} missing from the log {sorted(logs[-1])}"
    assert logs[-1]["gamma/min"] <= logs[-1]["gamma/mean"] <= logs[-1]["gamma/max"]
    # the KKT spread bound: log(γmax/γmin) < γ0/τ, logged beside the realised spread
    assert 0.0 <= logs[-1]["gamma/log_spread"] < logs[-1]["gamma/spread_bound"]
    assert logs[-1]["gamma/std"] > 0, "calibrated margins should differ between pairs"
    assert int(trainer.pair_loss.inner.queue_step) == 40, "one calibration step per optimiser step"


@pytest.mark.parametrize("loss", gammapo_spec.LOSS_NAMES)
def test_trainer_runs_every_spec_loss(tmp_path, loss):
    kwargs = dict(beta=0.5)
    if loss.startswith("gamma-"):
        kwargs.update(tau=1.0, calibration="batch")
    trainer = _trainer(tmp_path, loss, kwargs, steps=2, batch=8)
    trainer.train()
    log = [h for h in trainer.state.log_history if "loss" in h][-1]
    assert np.isfinite(log["loss"])
    assert ("gamma/mean" in log) == loss.startswith("gamma-"), f"{loss}: gamma/* logged iff dynamic margins"
    assert (trainer.ref_model is None) == (loss.removeprefix("gamma-") == "simpo"), "SimPO keeps no reference model"


@pytest.mark.parametrize("loss", ["gamma-simpo", "gamma-dpo", "rdpo", "ipo"])
def test_trainer_loss_equals_reference_spec_on_independent_logps(tmp_path, loss):
    kwargs = dict(beta=0.5, tau=1.0, calibration="batch") if loss.startswith("gamma-") else dict(beta=0.5)
    if loss == "rdpo":
        kwargs["rdpo_alpha"] = 0.3
    trainer = _trainer(tmp_path, loss, kwargs, steps=1, batch=8)
    batch_rows = TASK.pairs(8, noise=0.0, seed=3)
    inputs = trainer.data_collator([trainer.train_dataset[i] for i in range(8)])
    trainer.model.eval()
    with torch.no_grad():
        got = trainer.compute_loss(trainer.model, inputs)
    tok = trainer.processing_class
    prompts = [r["prompt"] for r in batch_rows]
    c, lc = sequence_logps(trainer.model, tok, prompts, [r["chosen"] for r in batch_rows])
    r, lr = sequence_logps(trainer.model, tok, prompts, [r["rejected"] for r in batch_rows])
    cfg = trainer.pair_loss.config
    spec_inputs = dict(chosen_logps=c.double().numpy(), rejected_logps=r.double().numpy())
    if not cfg.reference_free:
        c0, _ = sequence_logps(trainer.ref_model, tok, prompts, [r["chosen"] for r in batch_rows])
        r0, _ = sequence_logps(trainer.ref_model, tok, prompts, [r["rejected"] for r in batch_rows])
        spec_inputs.update(ref_chosen_logps=c0.double().numpy(), ref_rejected_logps=r0.double().numpy())
    if cfg.base_loss in ("simpo", "rdpo"):
        spec_inputs.update(chosen_lengths=lc.numpy(), rejected_lengths=lr.numpy())
    want, _ = gammapo_spec.gamma_po_loss(cfg, gammapo_spec.init_state(cfg), **spec_inputs)
    np.testing.assert_allclose(float(got), want.loss, rtol=2e-5, atol=2e-6,
                               err_msg=f"{loss}: trainer loss differs from gammapo_spec on the same pairs")


def test_trainer_evaluation_leaves_loss_state_unchanged(tmp_path):
    trainer = _trainer(tmp_path, "gamma-simpo", dict(beta=2.0, tau=1.0, queue_size=256, sample_size=64), steps=2)
    trainer.train()
    before = {k: v.clone() for k, v in trainer.pair_loss.state_dict().items()}
    metrics = trainer.evaluate(trainer.train_dataset)
    assert "eval_gamma/mean" in metrics and "eval_rewards/accuracies" in metrics
    for k, v in trainer.pair_loss.state_dict().items():
        assert torch.equal(v, before[k]), f"evaluation changed the loss state {k}"


def test_trainer_gradient_accumulation_counts_micro_batches(tmp_path):
    trainer = _trainer(tmp_path, "gamma-dpo", dict(beta=0.1, tau=1.0, queue_size=256, sample_size=64),
                       steps=3, batch=8, grad_accum=2)
    trainer.train()
    assert trainer.state.global_step == 3
    assert int(trainer.pair_loss.inner.queue_step) == 6, "each micro-batch is one calibration step"


def test_trainer_rejects_unknown_loss_and_unsupported_options(tmp_path):
    with pytest.raises(ValueError, match="unknown loss 'gamma-nope'"):
        _trainer(tmp_path, "gamma-nope", {})
    with pytest.raises(gammapo_spec.ConfigError, match="tau"):
        _trainer(tmp_path, "gamma-simpo", dict(tau=0.0))


def test_trainer_rejects_dpo_options_it_does_not_implement(tmp_path):
    args = dpo_config(RunConfig(str(tmp_path / "run"), max_steps=1), ld_alpha=0.5)
    with pytest.raises(ValueError, match=r"does not implement DPOConfig option\(s\) \['ld_alpha'\]"):
        GammaPOTrainer(build_model(8), args=args, train_dataset=Dataset.from_list(TASK.pairs(4, noise=0.0, seed=0)),
                       loss="gamma-simpo")
