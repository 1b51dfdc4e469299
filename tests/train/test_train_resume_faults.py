"""Resume under faults: a checkpoint interrupted after TRL's files but before the loss state is never
used (resume falls back to the newest complete one, says which, and ends bit for bit where an
uninterrupted run ends); a truncated loss state is detected; another loss configuration is refused
naming the fields; two trainers cannot write into one output folder."""

from __future__ import annotations

import copy
import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402

from gammapo.integrations import _checkpoints  # noqa: E402
from gammapo.integrations.trl import LOSS_STATE_FILE, GammaPOTrainer  # noqa: E402
from gammapo.train.run import RunConfig, dpo_config  # noqa: E402
from gammapo.train.task import SyntheticTask  # noqa: E402
from gammapo.train.tiny import build_model, build_tokenizer  # noqa: E402
from gammapo_spec.errors import StateError  # noqa: E402

TASK = SyntheticTask()
LOSS = dict(beta=2.0, gamma_beta_ratio=0.5, tau=1.0, queue_size=64, sample_size=32)
torch.set_num_threads(1)


def _trainer(out_dir, **loss):
    tok = build_tokenizer(TASK.words)
    model = build_model(len(tok), seed=0)
    run = RunConfig(str(out_dir), batch_size=8, learning_rate=3e-3, max_steps=6, save_steps=3, save_total_limit=None,
                    logging_steps=1)
    return GammaPOTrainer(model, args=dpo_config(run), train_dataset=Dataset.from_list(TASK.pairs(96, noise=0.2, seed=5)),
                          processing_class=tok, loss="gamma-simpo", loss_kwargs=dict(LOSS, **loss))


def _same(a: GammaPOTrainer, b: GammaPOTrainer) -> None:
    for k, v in a.pair_loss.state_dict().items():
        assert torch.equal(b.pair_loss.state_dict()[k], v), f"loss state {k} differs"
    for (name, p), q in zip(a.model.named_parameters(), b.model.parameters()):
        assert torch.equal(p, q), f"parameter {name} differs"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted run, and one killed while writing checkpoint-6 (TRL's files written, the loss
    state and the record not)."""
    root = tmp_path_factory.mktemp("faults")
    full = _trainer(root / "full")
    full.train()
    real = _checkpoints.write_record

    def killed(folder, state_dict, pair_loss, global_step):
        if global_step == 6:
            raise KeyboardInterrupt("killed between the trainer's checkpoint and the loss state")
        real(folder, state_dict, pair_loss, global_step)

    _checkpoints.write_record = killed
    try:
        with pytest.raises(KeyboardInterrupt):
            _trainer(root / "crashed").train()
    finally:
        _checkpoints.write_record = real
    return root, full


def test_a_partial_checkpoint_is_skipped_and_resume_matches(runs, tmp_path, capfd):
    root, full = runs
    crashed = tmp_path / "crashed"
    import shutil

    shutil.copytree(root / "crashed", crashed)
    partial = crashed / "checkpoint-6"
    assert (partial / "trainer_state.json").is_file() and not (partial / _checkpoints.COMPLETE_FILE).exists()
    assert "the save did not finish" in _checkpoints.incomplete_reason(str(partial))
    with pytest.raises(ValueError, match="cannot resume from .*checkpoint-6: incomplete"):
        _trainer(crashed).train(resume_from_checkpoint=str(partial))
    resumed = _trainer(crashed)
    resumed.train(resume_from_checkpoint=True)
    err = capfd.readouterr().err
    assert "skipping" in err and "checkpoint-6" in err and "resuming from" in err
    assert resumed.resumed_from.endswith("checkpoint-3") and resumed.state.global_step == 6
    assert int(resumed.pair_loss.inner.queue_step) == 6
    _same(full, resumed)
    assert _checkpoints.incomplete_reason(str(partial)) is None  # rewritten, complete this time


def test_a_truncated_loss_state_is_never_loaded(runs, tmp_path):
    root, _ = runs
    import shutil

    shutil.copytree(root / "full", tmp_path / "run")
    path = tmp_path / "run" / "checkpoint-6" / LOSS_STATE_FILE
    path.write_bytes(path.read_bytes()[:100])
    assert "checksum" in _checkpoints.incomplete_reason(str(path.parent))
    folder, skipped = _checkpoints.newest_complete(str(tmp_path / "run"))
    assert folder.endswith("checkpoint-3") and skipped[0][0].endswith("checkpoint-6")
    trainer = _trainer(tmp_path / "run")
    os.remove(path.parent / _checkpoints.COMPLETE_FILE)  # even without the record: one clear line
    with pytest.raises(ValueError, match=r"gammapo_loss_state.pt is unreadable \("):
        trainer.load_loss_state(str(path.parent))


def test_resuming_with_another_configuration_names_the_fields(runs, tmp_path):
    root, _ = runs
    import shutil

    shutil.copytree(root / "full", tmp_path / "run")
    other = _trainer(tmp_path / "run", beta=7.0, tau=5.0)
    with pytest.raises(StateError, match=r"beta \(checkpoint 2.0, now 7.0\), tau \(checkpoint 1.0, now 5.0\)") as info:
        other.train(resume_from_checkpoint=True)
    assert info.value.field == "beta"


def test_the_output_folder_is_locked_while_training(tmp_path):
    held = _checkpoints.lock_output(str(tmp_path / "run"))
    try:
        with pytest.raises(_checkpoints.OutputLocked, match=f"in use by process {os.getpid()}"):
            _trainer(tmp_path / "run").train()
    finally:
        held.close()
    again = _checkpoints.lock_output(str(tmp_path / "run"))  # released: free again
    again.close()
