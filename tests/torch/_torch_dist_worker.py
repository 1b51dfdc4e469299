"""Worker of the distributed tests (``test_torch_distributed.py``): one gloo rank running several loss steps.

It lives in its own module so ``torch.multiprocessing.spawn`` can import it in the child processes.
Every rank builds the same global batches from the step number, passes its own slice to
``gamma_po_loss`` (and to the ``GammaPOLoss`` wrapper), and saves what it saw with ``torch.save``.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

import gammapo_spec as R
import gammapo_torch as T

N_PER_RANK = 5
STEPS = 4
SEED = 11


def config(mode: str) -> R.GammaPOConfig:
    """γ-SimPO in batch or queue mode; the queue is small so it wraps within the steps."""
    return R.GammaPOConfig(loss="gamma-simpo", beta=2.0, gamma_beta_ratio=0.5, tau=3.0, calibration=mode,
                           queue_size=32, sample_size=24, queue_warmup=8)


def global_batch(step: int, total: int) -> dict[str, torch.Tensor]:
    """The step's global batch of ``total`` pairs (float64), the same on every rank and in the parent."""
    g = torch.Generator().manual_seed(1000 + step)
    return dict(
        chosen_logps=-torch.rand(total, generator=g, dtype=torch.float64) * 20 - 0.5,
        rejected_logps=-torch.rand(total, generator=g, dtype=torch.float64) * 20 - 0.5,
        chosen_lengths=torch.randint(1, 30, (total,), generator=g),
        rejected_lengths=torch.randint(1, 30, (total,), generator=g),
    )


def run_steps(mode: str, rank: int, world_size: int, n: int) -> dict[str, list]:
    """``STEPS`` steps of the functional API on this rank's slice (the whole batch when ``world_size == 1``
    and ``n`` is the global size): margins, per-pair losses, the loss, the gradient and the state."""
    cfg = config(mode)
    state = T.init_state(cfg, seed=SEED, dtype=torch.float64)
    record: dict[str, list] = {k: [] for k in ("margins", "losses", "loss", "grad", "state")}
    for step in range(STEPS):
        batch = global_batch(step, n * world_size)
        local = {k: v[rank * n : (rank + 1) * n].clone() for k, v in batch.items()}
        local["chosen_logps"].requires_grad_(True)
        out, state = T.gamma_po_loss(cfg, state, **local)
        out.loss.backward()
        record["margins"].append(out.margins.detach())
        record["losses"].append(out.losses.detach())
        record["loss"].append(out.loss.detach())
        record["grad"].append(local["chosen_logps"].grad)
        record["state"].append(T.state_to_dict(state))
    return record


def run_wrapper(rank: int, world_size: int, n: int) -> list[torch.Tensor]:
    """The same queue-mode steps through the ``GammaPOLoss`` module; returns its margins, then its buffers."""
    loss_fn = GammaPOLossFactory()
    margins = []
    for step in range(STEPS):
        batch = global_batch(step, n * world_size)
        margins.append(loss_fn(**{k: v[rank * n : (rank + 1) * n] for k, v in batch.items()}).margins.detach())
    return margins + [b.clone() for b in loss_fn.buffers()]


def GammaPOLossFactory() -> T.GammaPOLoss:
    return T.GammaPOLoss(config("queue"), seed=SEED, dtype=torch.float64)


def unequal_sizes_error(rank: int) -> str:
    """Rank r passes 3 + r pairs: with value checks on, every rank raises the same ``InputError``."""
    batch = global_batch(0, 3 + rank)
    try:
        T.gamma_po_loss(config("batch"), None, **batch)
    except R.GammaPOError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "no error"


def worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    """Entry point for ``torch.multiprocessing.spawn``: ``(rank, world_size, init_file, out_dir)``."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        result = {mode: run_steps(mode, rank, world_size, N_PER_RANK) for mode in ("batch", "queue")}
        result["wrapper"] = run_wrapper(rank, world_size, N_PER_RANK)
        result["unequal"] = unequal_sizes_error(rank)
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()
