"""An interrupted GammaPOTrainer run resumes from its last checkpoint, γ-PO queue state included, and
ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import copy
import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from gammapo.integrations.trl import LOSS_STATE_FILE, GammaPOTrainer  # noqa: E402
from gammapo.train.run import RunConfig, dpo_config  # noqa: E402
from gammapo.train.task import SyntheticTask  # noqa: E402
from gammapo.train.tiny import build_model, build_tokenizer  # noqa: E402

TASK = SyntheticTask()
LOSS = dict(beta=2.0, gamma_beta_ratio=0.5, tau=1.0, queue_size=64, sample_size=32)
torch.set_num_threads(1)


class Crash(TrainerCallback):
    """Simulates a killed job right after step ``at``."""

    def __init__(self, at: int):
        self.at = at

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            raise KeyboardInterrupt(f"simulated interruption at step {self.at}")


def _trainer(out_dir, loss="gamma-simpo", callbacks=()):
    tok = build_tokenizer(TASK.words)
    model = build_model(len(tok), seed=0)
    run = RunConfig(str(out_dir), batch_size=8, learning_rate=3e-3, max_steps=6, save_steps=3, save_total_limit=None,
                    logging_steps=1)
    ref = copy.deepcopy(model) if loss == "gamma-dpo" else None
    kwargs = dict(LOSS) if loss == "gamma-simpo" else dict(LOSS, beta=0.1, gamma_beta_ratio=10.0)
    return GammaPOTrainer(model, ref_model=ref, args=dpo_config(run), train_dataset=Dataset.from_list(
        TASK.pairs(96, noise=0.2, seed=5)), processing_class=tok, loss=loss, loss_kwargs=kwargs,
        callbacks=list(callbacks))


@pytest.mark.parametrize("loss", ["gamma-simpo", "gamma-dpo"])
def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, loss):
    full = _trainer(tmp_path / "full", loss)
    full.train()

    crashed = _trainer(tmp_path / "crashed", loss, callbacks=[Crash(at=4)])
    with pytest.raises(KeyboardInterrupt):
        crashed.train()
    assert os.path.isfile(tmp_path / "crashed" / "checkpoint-3" / LOSS_STATE_FILE), "the checkpoint holds the loss state"
    assert not (tmp_path / "crashed" / "checkpoint-6").exists()

    resumed = _trainer(tmp_path / "crashed", loss)  # a fresh process would build exactly this
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 6
    want, got = full.pair_loss.state_dict(), resumed.pair_loss.state_dict()
    assert int(got["inner.queue_step"]) == 6, "the queue counts the steps before and after the interruption"
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6, msg=f"loss state {k} differs after resume")
    for (name, p), q in zip(full.model.named_parameters(), resumed.model.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6, msg=f"parameter {name} differs after resume")


def test_resume_without_loss_state_is_refused(tmp_path):
    crashed = _trainer(tmp_path / "crashed", callbacks=[Crash(at=4)])
    with pytest.raises(KeyboardInterrupt):
        crashed.train()
    os.remove(tmp_path / "crashed" / "checkpoint-3" / LOSS_STATE_FILE)
    resumed = _trainer(tmp_path / "crashed")
    with pytest.raises(ValueError, match="incomplete"):
        resumed.train(resume_from_checkpoint=str(tmp_path / "crashed" / "checkpoint-3"))
    with pytest.raises(ValueError, match="none is complete"):
        resumed.train(resume_from_checkpoint=True)


def test_resume_with_no_checkpoint_is_an_error(tmp_path):
    trainer = _trainer(tmp_path / "empty")
    os.makedirs(tmp_path / "empty", exist_ok=True)
    with pytest.raises(ValueError, match="no checkpoint found"):
        trainer.train(resume_from_checkpoint=True)
