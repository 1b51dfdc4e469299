"""β-DPO (``beta-dpo``) through GammaPOTrainer: finite loss, beta/* metrics, state advanced, checkpointed and
restored on resume, loss equal to the spec, evaluation keeps the state, CLI display name."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

import gammapo_spec.beta_dpo as spec  # noqa: E402
from gammapo.integrations.losses import PairBatch, make_pair_loss, registered_pair_losses  # noqa: E402
from gammapo.integrations.trl import LOSS_STATE_FILE, GammaPOTrainer  # noqa: E402
from gammapo.train.cli import display_name  # noqa: E402
from gammapo.train.run import RunConfig, dpo_config  # noqa: E402
from gammapo.train.task import SyntheticTask  # noqa: E402
from gammapo.train.tiny import build_model, build_tokenizer  # noqa: E402
from gammapo_spec.errors import ConfigError  # noqa: E402

TASK = SyntheticTask()
torch.set_num_threads(1)


def test_beta_dpo_trainer_few_steps(tmp_path):
    tok = build_tokenizer(TASK.words)
    model = build_model(len(tok), seed=0)
    run = RunConfig(str(tmp_path / "run"), batch_size=8, learning_rate=3e-3, max_steps=4, logging_steps=1,
                    warmup_ratio=0.0, scheduler="constant", save_steps=4, save_total_limit=None)
    trainer = GammaPOTrainer(model, ref_model=copy.deepcopy(model), args=dpo_config(run),
                             train_dataset=Dataset.from_list(TASK.pairs(64, noise=0.0, seed=3)),
                             processing_class=tok, loss="beta-dpo", loss_kwargs={"beta": 0.1})
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 4 and all(np.isfinite(h["loss"]) for h in logs)
    for key in ("beta/batch", "beta/kept", "beta/gap_mean", "beta/gap_std", "rewards/margins"):
        assert key in logs[-1], sorted(logs[-1])
    assert all(h["beta/batch"] >= 1e-3 for h in logs)
    assert logs[-1]["beta/kept"] == 6.0  # floor(0.8 * 8)
    assert int(trainer.pair_loss.step) == 4
    saved = torch.load(os.path.join(run.output_dir, "checkpoint-4", LOSS_STATE_FILE), weights_only=True)
    assert sorted(saved) == ["gap_mean", "gap_std", "seed", "step"] and int(saved["step"]) == 4


def test_beta_dpo_pair_loss_equals_spec_and_eval_keeps_state():
    rng = np.random.default_rng(0)
    xs = [rng.normal(-20, 2, 10) for _ in range(4)]
    t = [torch.tensor(x, dtype=torch.float64) for x in xs]
    batch = PairBatch(t[0], t[1], torch.ones(10), torch.ones(10), t[2], t[3])
    loss = make_pair_loss("beta-dpo", beta=0.2, alpha=0.5, seed=9)
    before = {k: v.clone() for k, v in loss.state_dict().items()}
    out_eval = loss(batch, update_state=False)
    assert all(torch.equal(v, before[k]) for k, v in loss.state_dict().items())
    state = spec.init_beta_dpo_state(9)
    for _ in range(3):
        so = spec.beta_dpo_step(state, *xs, beta0=0.2, alpha=0.5)
        out = loss(batch)
        assert float(out.loss) == pytest.approx(so.loss, rel=1e-10)
        assert float(out.metrics["beta/batch"]) == pytest.approx(so.beta, rel=1e-6)
        state = so.state
    assert float(out_eval.loss) == pytest.approx(spec.beta_dpo_step(spec.init_beta_dpo_state(9), *xs, beta0=0.2, alpha=0.5).loss, rel=1e-10)
    assert loss.gap_mean.item() == pytest.approx(state.gap_mean, rel=1e-12)


def test_beta_dpo_registered_displayed_and_validated():
    assert "beta-dpo" in registered_pair_losses()
    assert display_name("beta-dpo") == "β-DPO"
    with pytest.raises(ConfigError) as e:
        make_pair_loss("beta-dpo", beta=0.0)
    assert e.value.field == "beta"
    with pytest.raises(ConfigError) as e:
        make_pair_loss("beta-dpo", rho=1.5)
    assert e.value.field == "rho"


class _Crash(TrainerCallback):
    """Simulates a killed job right after step ``at``."""

    def __init__(self, at: int):
        self.at = at

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            raise KeyboardInterrupt(f"simulated interruption at step {self.at}")


def _resumable(out_dir, callbacks=()):
    tok = build_tokenizer(TASK.words)
    model = build_model(len(tok), seed=0)
    run = RunConfig(str(out_dir), batch_size=8, learning_rate=3e-3, max_steps=6, save_steps=3, save_total_limit=None,
                    logging_steps=1)
    return GammaPOTrainer(model, ref_model=copy.deepcopy(model), args=dpo_config(run),
                          train_dataset=Dataset.from_list(TASK.pairs(96, noise=0.2, seed=5)), processing_class=tok,
                          loss="beta-dpo", loss_kwargs={"beta": 0.1}, callbacks=list(callbacks))


def test_beta_dpo_resume_matches_uninterrupted_run(tmp_path):
    full = _resumable(tmp_path / "full")
    full.train()
    crashed = _resumable(tmp_path / "crashed", callbacks=[_Crash(4)])
    with pytest.raises(KeyboardInterrupt):
        crashed.train()
    resumed = _resumable(tmp_path / "crashed")
    resumed.train(resume_from_checkpoint=True)
    want, got = full.pair_loss.state_dict(), resumed.pair_loss.state_dict()
    assert int(got["step"]) == 6
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6, msg=f"β-DPO state {k} differs after resume")
    for (name, p), q in zip(full.model.named_parameters(), resumed.model.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6, msg=f"parameter {name} differs after resume")
