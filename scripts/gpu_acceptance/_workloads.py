"""Workloads shared by the sections: a queue config, batches, a CUDA graph of the calibration step, and a
small γ-SimPO trainer from the embedded task (TRL comes from the carried wheels on the GPU machine)."""

from __future__ import annotations

import tempfile
from typing import Any

import torch

import gammapo_spec as R

QUEUE = R.GammaPOConfig(loss="gamma-simpo", beta=2.0, gamma_beta_ratio=0.5, tau=3.0, queue_size=256, sample_size=64,
                        queue_warmup=8, check_values=False)


def loss_batch(n: int, seed: int, device: Any) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = dict(chosen_logps=-torch.rand(n, generator=g) * 10 - 0.1, rejected_logps=-torch.rand(n, generator=g) * 10 - 0.1,
             chosen_lengths=torch.randint(1, 30, (n,), generator=g), rejected_lengths=torch.randint(1, 30, (n,), generator=g))
    x = {k: v.to(device) for k, v in x.items()}
    x["chosen_logps"].requires_grad_(True)
    return x


def graph_step(config: R.GammaPOConfig, state, n: int):
    """A CUDA graph of one queue step that also advances the state in place.

    Returns ``(graph, static_gaps, static_gamma, static_state)``: copy gaps into ``static_gaps``, call
    ``graph.replay()``, read ``static_gamma``; ``static_state`` then holds the next state.
    """
    import gammapo_torch as T

    static_state = type(state)(*(t.clone() for t in state))
    static_h = torch.zeros(n, device=state.buffer.device, dtype=torch.float32)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the capture (kernels compiled, allocator primed)
        for _ in range(3):
            T.calibrate_step(config, static_state, static_h)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        gamma, new = T.calibrate_step(config, static_state, static_h)
        for dst, src in zip(static_state, new):
            dst.copy_(src)
    return graph, static_h, gamma, static_state


def tiny_trainer(device_is_cuda: bool, loss: str = "gamma-simpo", batch: int = 8):
    """A :class:`GammaPOTrainer` on the embedded task's tiny Llama, and one collated batch on its device."""
    from datasets import Dataset
    from trl import DPOConfig

    from gammapo.integrations.trl import GammaPOTrainer
    from gammapo.train.task import SyntheticTask
    from gammapo.train.tiny import build_model, build_tokenizer

    task = SyntheticTask()
    tok = build_tokenizer(task.words)
    model = build_model(len(tok), seed=0)
    args = DPOConfig(output_dir=tempfile.mkdtemp(prefix="gammapo_acc_"), per_device_train_batch_size=batch,
                     max_steps=1, report_to=[], save_strategy="no", logging_steps=1, disable_tqdm=True,
                     use_cpu=not device_is_cuda, bf16=False, dataloader_num_workers=0)
    kwargs = dict(beta=2.0, gamma_beta_ratio=0.5, tau=1.0, queue_size=256, sample_size=64, check_values=False)
    trainer = GammaPOTrainer(model, args=args, train_dataset=Dataset.from_list(task.pairs(4 * batch, noise=0.0, seed=3)),
                             processing_class=tok, loss=loss, loss_kwargs=kwargs)
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    return trainer, inputs
