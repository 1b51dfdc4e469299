"""GammaPOTrainer takes its loss from TRL's DPOConfig: a two-step CPU run on a tiny model, and a refusal."""

import copy
import tempfile

import torch
from datasets import Dataset
from transformers import PrinterCallback
from trl import DPOConfig

from gammapo.integrations.trl import GammaPOTrainer
from gammapo.train.task import SyntheticTask
from gammapo.train.tiny import build_model, build_tokenizer

torch.set_num_threads(1)
task = SyntheticTask()
tokenizer = build_tokenizer(task.words)  # a tiny Llama and a word-level tokenizer: nothing downloaded
model = build_model(len(tokenizer), seed=0)
data = Dataset.from_list(task.pairs(32, noise=0.2, seed=0))
out = tempfile.mkdtemp()


def cpu_config(**loss_fields):
    # on a machine without a GPU: use_cpu=True and bf16=False, in the constructor
    return DPOConfig(out, use_cpu=True, bf16=False, max_steps=2, per_device_train_batch_size=8,
                     save_strategy="no", report_to="none", disable_tqdm=True, **loss_fields)


# robust DPO exactly as trl.DPOTrainer computes it: loss_type, beta and label_smoothing are honoured
trainer = GammaPOTrainer(model, ref_model=copy.deepcopy(model), args=cpu_config(loss_type="robust", beta=0.1,
                         label_smoothing=0.1), train_dataset=data, processing_class=tokenizer)
cfg = trainer.pair_loss.config
print(f"loss {cfg.loss!r}, beta {cfg.beta}, label_smoothing {cfg.label_smoothing}")
trainer.remove_callback(PrinterCallback)  # print no log lines (their numbers vary by machine)
trainer.train()
logged = sorted(key for key in trainer.state.log_history[-1] if "/" in key)
print(f"trained {trainer.state.global_step} steps, logged {logged}")

# TRL's sigmoid loss has no label smoothing (TRL ignores the field): GammaPOTrainer refuses it
try:
    GammaPOTrainer(model, args=cpu_config(loss_type="sigmoid", beta=0.05, label_smoothing=0.1),
                   train_dataset=data, processing_class=tokenizer)
except ValueError as error:
    print("refused:", str(error).split(" (TRL")[0])
