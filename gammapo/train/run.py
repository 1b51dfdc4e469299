r"""Train one method through :class:`~gammapo.integrations.trl.GammaPOTrainer` and evaluate it.

Evaluation on held-out *clean* pairs and on generations:

* **implicit-reward accuracy** — the share of clean pairs whose implicit reward gap has the right sign,
  :math:`h = (c - c_\text{ref}) - (r - r_\text{ref})` for reference-based losses and
  :math:`h = c/|y_w| - r/|y_l|` for SimPO (β > 0 does not change the sign) (:func:`implicit_gaps`);
* **ground-truth reward of greedy responses** — for every prompt, the greedy ``L``-word response of the
  trained policy *over the task's response words* (:func:`greedy_reward`), scored by the task's
  :math:`r^\star` (mean over prompts; the reference model's own score is the starting point).

Why the greedy decoding is restricted to the response words: a preference loss only moves the
log-probabilities of the words that occur in the training responses. Trained on clean labels, a policy
pushes the rejected responses' words down so far that the probability mass goes to tokens no response
contains (``<pad>``, ``<unk>``, ``<eos>``, the prompt words), which score 0; noisy labels hold the rejected
words up and hide this. Unrestricted greedy decoding therefore ranked noise-free training *below* 20%
label noise (measured on one seed: SimPO 0.75 vs 0.975, DPO 0.325 vs 0.925); over the response words it
ranks them the right way round (1.0 vs 0.975, 0.95 vs 0.925).
"""

from __future__ import annotations

import copy
import dataclasses
import os
from typing import Any, Sequence

import torch

__all__ = ["RunConfig", "Result", "train_method", "sequence_logps", "implicit_gaps", "implicit_accuracy",
           "greedy_reward"]


@dataclasses.dataclass
class RunConfig:
    """Trainer settings of one run (TRL's ``DPOConfig`` fields of the same meaning)."""

    output_dir: str
    epochs: float = 3.0
    batch_size: int = 32
    grad_accum: int = 1
    learning_rate: float = 3e-3
    seed: int = 0
    max_steps: int = -1
    save_steps: int | None = None  # None: no checkpoints
    logging_steps: int = 5
    warmup_ratio: float = 0.1
    scheduler: str = "cosine"
    max_length: int | None = 1024
    save_total_limit: int | None = 1


@dataclasses.dataclass
class Result:
    """What one run measured."""

    method: str
    loss: str
    noise: float
    seed: int
    accuracy: float | None  # None: no held-out pairs
    gen_reward: float | None  # None: no ground-truth reward (a user data set)
    ref_gen_reward: float | None
    seconds: float
    steps: int
    history: list[dict[str, float]]
    data: str = "plain"  # the data variant (gammapo.train.transforms)
    train_pairs: int | None = None  # training pairs after the data transform
    noise_model: str = "uniform"  # the label-noise model (gammapo.train.task.NOISE_MODELS)
    eval_pairs: int | None = None  # held-out pairs behind ``accuracy``
    buckets: dict[str, float] | None = None  # accuracy by the true reward difference of the held-out pairs
    diagnostics: dict[str, Any] | None = None  # gammapo.train.diagnostics.margin_diagnostics (γ- methods)
    settings: dict[str, Any] | None = None  # the loss's hyper-parameters and their derived units


def dpo_config(run: RunConfig, **extra: Any):
    """The ``trl.DPOConfig`` of a run: CPU-friendly (float32, no gradient checkpointing, no tqdm).

    Without CUDA it sets ``use_cpu=True`` (and the gloo backend), so that a ``torchrun`` launch on a
    CPU machine trains data-parallel instead of one independent copy per process; ``extra`` overrides.
    """
    from trl import DPOConfig

    save = (
        {"save_strategy": "no"}
        if not run.save_steps
        else {"save_strategy": "steps", "save_steps": run.save_steps, "save_total_limit": run.save_total_limit}
    )
    device = {} if torch.cuda.is_available() else {"use_cpu": True}
    if device and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        device["ddp_backend"] = "gloo"
    extra = {**device, **extra}
    return DPOConfig(
        output_dir=run.output_dir,
        num_train_epochs=run.epochs,
        max_steps=run.max_steps,
        per_device_train_batch_size=run.batch_size,
        per_device_eval_batch_size=run.batch_size,
        gradient_accumulation_steps=run.grad_accum,
        learning_rate=run.learning_rate,
        lr_scheduler_type=run.scheduler,
        warmup_steps=run.warmup_ratio,
        logging_steps=run.logging_steps,
        seed=run.seed,
        data_seed=run.seed,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        report_to="none",
        disable_tqdm=True,
        max_length=run.max_length,
        dataloader_num_workers=0,
        **save,
        **extra,
    )


def sequence_logps(model, tokenizer, prompts: Sequence[str], responses: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probs of ``response + <eos>`` after ``prompt`` (as TRL scores them) and token counts."""
    rows, starts = [], []
    for p, r in zip(prompts, responses):
        p_ids = tokenizer(p)["input_ids"]
        full = tokenizer(p + r + tokenizer.eos_token)["input_ids"]
        rows.append(full)
        starts.append(len(p_ids))
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    comp = torch.zeros_like(ids)
    for i, (row, s) in enumerate(zip(rows, starts)):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
        comp[i, s : len(row)] = 1
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    tok = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    m = comp[:, 1:].to(tok.dtype)
    return (tok * m).sum(-1), m.sum(-1)


def implicit_gaps(policy, reference, tokenizer, pairs: Sequence[dict], *, reference_free: bool,
                  batch_size: int = 512) -> torch.Tensor:
    """The implicit reward gap h of every pair, without β (see the module docstring), float64."""
    out = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        prompts = [p["prompt"] for p in chunk]
        c, lc = sequence_logps(policy, tokenizer, prompts, [p["chosen"] for p in chunk])
        r, lr = sequence_logps(policy, tokenizer, prompts, [p["rejected"] for p in chunk])
        if reference_free:
            h = c / lc - r / lr
        else:
            c0, _ = sequence_logps(reference, tokenizer, prompts, [p["chosen"] for p in chunk])
            r0, _ = sequence_logps(reference, tokenizer, prompts, [p["rejected"] for p in chunk])
            h = (c - c0) - (r - r0)
        out.append(h.double())
    return torch.cat(out)


def implicit_accuracy(policy, reference, tokenizer, pairs: Sequence[dict], *, reference_free: bool) -> float:
    """Share of (clean) pairs whose implicit reward gap h is > 0 (see the module docstring)."""
    h = implicit_gaps(policy, reference, tokenizer, pairs, reference_free=reference_free)
    return float((h > 0).double().mean())


def greedy_reward(model, tokenizer, task, prompt_fn=None) -> float:
    """Mean ground-truth reward of the greedy ``task.length``-word response to every prompt, each word
    the most likely of the task's response words (the module docstring says why).

    ``prompt_fn`` maps a task prompt to the text the model is given (e.g. a reward-augmented model's
    top-score condition); the response is scored against the task prompt itself."""
    texts_in = [prompt_fn(p) if prompt_fn else p for p in task.prompts]
    ids = torch.tensor([tokenizer(p)["input_ids"] for p in texts_in])
    allowed = torch.tensor(tokenizer.convert_tokens_to_ids(task.alphabet))
    start = ids.shape[1]
    with torch.no_grad():
        for _ in range(task.length):
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, -1]
            nxt = allowed[logits[:, allowed].argmax(-1)]
            ids = torch.cat([ids, nxt[:, None]], dim=1)
    texts = tokenizer.batch_decode(ids[:, start:], skip_special_tokens=True)
    return sum(task.reward(p, t) for p, t in zip(task.prompts, texts)) / len(task.prompts)


def train_method(
    *,
    method: str,
    loss: str,
    loss_kwargs: dict[str, Any],
    model,
    tokenizer,
    train_pairs: list[dict],
    run: RunConfig,
    ref_model=None,
    callbacks: Sequence[Any] = (),
    resume: str | bool | None = None,
    eval_pairs: list[dict] | None = None,
):
    """Build a :class:`GammaPOTrainer` for ``loss`` and train ``model`` on ``train_pairs``; returns the trainer.

    For a reference-based loss and no ``ref_model`` the reference is a frozen copy of ``model``
    (a model built from a config has no path TRL could reload it from). ``eval_pairs`` become the
    trainer's ``eval_dataset`` (``trainer.evaluate()`` then reports TRL's ``eval_rewards/*``). TRL's
    printed log lines are switched off (pass a progress callback instead).
    """
    from datasets import Dataset
    from transformers import PrinterCallback

    from gammapo.integrations.losses import make_pair_loss
    from gammapo.integrations.trl import GammaPOTrainer

    pair_loss = make_pair_loss(loss, seed=run.seed, **loss_kwargs)
    if pair_loss.needs_reference and ref_model is None:
        ref_model = copy.deepcopy(model).eval()
        for p in ref_model.parameters():
            p.requires_grad_(False)
    trainer = GammaPOTrainer(
        model,
        ref_model=ref_model if pair_loss.needs_reference else None,
        args=dpo_config(run),
        train_dataset=Dataset.from_list(train_pairs),
        eval_dataset=Dataset.from_list(eval_pairs) if eval_pairs else None,
        processing_class=tokenizer,
        loss=pair_loss,
        callbacks=list(callbacks),
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train(resume_from_checkpoint=resume)
    return trainer
