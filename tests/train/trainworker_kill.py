"""A small GammaPOTrainer run that saves every step, for test_train_kill_loop.py (which kills it).

``python trainworker_kill.py OUT_DIR [--resume] [--final FILE]``

Prints ``step N`` after each optimiser step (flushed), so the test can kill it at a chosen point.
With ``--resume`` it continues from the newest complete checkpoint in OUT_DIR (or starts afresh if
there is none). With ``--final`` it writes the final weights and loss state there (``torch.save``).
"""

from __future__ import annotations

import sys

import torch

torch.set_num_threads(1)

import datasets  # noqa: E402
import transformers  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from gammapo.integrations._checkpoints import newest_complete  # noqa: E402
from gammapo.integrations.trl import GammaPOTrainer  # noqa: E402
from gammapo.train.run import RunConfig, dpo_config  # noqa: E402
from gammapo.train.task import SyntheticTask  # noqa: E402
from gammapo.train.tiny import build_model, build_tokenizer  # noqa: E402

datasets.disable_progress_bars()
transformers.logging.set_verbosity_error()
STEPS = 8


class Steps(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        print(f"step {state.global_step}", flush=True)


def main() -> None:
    out = sys.argv[1]
    task = SyntheticTask()
    tok = build_tokenizer(task.words)
    run = RunConfig(out, batch_size=8, learning_rate=3e-3, max_steps=STEPS, save_steps=1, save_total_limit=2,
                    logging_steps=1)
    trainer = GammaPOTrainer(build_model(len(tok), seed=0), args=dpo_config(run), processing_class=tok,
                             train_dataset=Dataset.from_list(task.pairs(96, noise=0.2, seed=5)), loss="gamma-simpo",
                             loss_kwargs=dict(beta=2.0, gamma_beta_ratio=0.5, tau=1.0, queue_size=64, sample_size=32),
                             callbacks=[Steps()])
    resume = "--resume" in sys.argv and newest_complete(out)[0] is not None
    print("ready", flush=True)
    trainer.train(resume_from_checkpoint=True if resume else None)
    if "--final" in sys.argv:
        final = sys.argv[sys.argv.index("--final") + 1]
        torch.save({"params": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
                    "loss_state": {k: v.clone() for k, v in trainer.pair_loss.state_dict().items()},
                    "step": trainer.state.global_step}, final)


if __name__ == "__main__":
    main()
