"""Quickstart: γ-SimPO through TRL on a CPU, with nothing downloaded (about a minute).

A tiny Llama built from a config, a word-level tokenizer built in memory and an
in-memory preference data set stand in for your model, tokenizer and data; the
trainer and its settings are the real ones.
"""

import random
import tempfile

import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from trl import DPOConfig

from gammapo.integrations.trl import GammaPOTrainer

torch.manual_seed(0)
torch.set_num_threads(1)

# 1. Data: prompts "q<k>"; the preferred answer repeats the prompt's digit.
rng = random.Random(0)
rows = []
for _ in range(256):
    k, other = rng.sample(range(10), 2)
    rows.append({"prompt": f"q{k}", "chosen": f" a{k} a{k}", "rejected": f" a{other} a{other}"})
data = Dataset.from_list(rows)

# 2. A word-level tokenizer over the data's words
#    (yours: AutoTokenizer.from_pretrained(path)).
vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
for word in sorted({w for r in rows for text in r.values() for w in text.split()}):
    vocab[word] = len(vocab)
core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
tokenizer = PreTrainedTokenizerFast(
    tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
)

# 3. A tiny causal LM from a config (yours: AutoModelForCausalLM.from_pretrained(path)).
model = LlamaForCausalLM(LlamaConfig(
    vocab_size=len(vocab), hidden_size=64, intermediate_size=128,
    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
    max_position_embeddings=32, pad_token_id=0, eos_token_id=1, bos_token_id=None,
))

# 4. TRL's DPOConfig with the CPU settings (use_cpu=True, bf16=False), and γ-SimPO as the loss.
args = DPOConfig(
    tempfile.mkdtemp(), use_cpu=True, bf16=False,
    max_steps=30, per_device_train_batch_size=16, learning_rate=3e-3,
    logging_steps=10, save_strategy="no", report_to="none", disable_tqdm=True,
)
trainer = GammaPOTrainer(
    model, args=args, train_dataset=data, processing_class=tokenizer,
    loss="gamma-simpo",
    loss_kwargs=dict(beta=2.0, gamma_beta_ratio=0.5, tau=1.0),  # γ0 = β·ratio = 1
)
trainer.train()

# 5. What the run logged: preference accuracy on the training batches, and margins.
logs = [entry for entry in trainer.state.log_history if "loss" in entry]
first, last = logs[0], logs[-1]
print(f"steps: {trainer.state.global_step}")
print(f"reward accuracy: {first['rewards/accuracies']:.2f} (first 10 steps)"
      f" -> {last['rewards/accuracies']:.2f} (last 10)")
print(f"margins in the last batch: mean {last['gamma/mean']:.3f},"
      f" from {last['gamma/min']:.3f} to {last['gamma/max']:.3f}"
      f" (γ0 = 1; log-spread {last['gamma/log_spread']:.3f}"
      f" < γ0/τ = {last['gamma/spread_bound']:.3f})")
