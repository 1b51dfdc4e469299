"""Data-parallel γ-SimPO with `torch.distributed` (gloo, 2 CPU processes, a few seconds).

    python examples/torch_distributed.py [--world-size 2] [--steps 15]

Each process is one rank of a DistributedDataParallel run and scores its own slice of every global
batch with a tiny scorer. `GammaPOLoss` does the rest: it all-gathers the detached reward gaps of every
rank (in rank order), calibrates the margins on the *global* batch, keeps those of its own pairs, and
pushes the global gaps into its queue, so the queue is identical on every rank (the released code
keeps one diverging queue per rank). The script checks that at the end.

Under `torchrun` the same training function works unchanged: initialise the process group from the
environment (`dist.init_process_group("gloo")` or `"nccl"`) instead of the file-based rendezvous below.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import gammapo
from gammapo_torch import GammaPOLoss

FEATURES = 8


def global_batch(step: int, size: int) -> dict[str, torch.Tensor]:
    """The step's global batch (the same on every rank): features of the chosen and rejected responses
    (the chosen ones lean positive on the first feature) and their lengths."""
    g = torch.Generator().manual_seed(step)
    chosen, rejected = torch.randn(size, FEATURES, generator=g), torch.randn(size, FEATURES, generator=g)
    chosen[:, 0] += 1.0
    return dict(chosen=chosen, rejected=rejected,
                len_w=torch.randint(5, 40, (size,), generator=g), len_l=torch.randint(5, 40, (size,), generator=g))


def train(rank: int, world_size: int, init_file: str, steps: int, per_rank: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    torch.manual_seed(0)  # the same initial weights on every rank
    scorer = DistributedDataParallel(nn.Sequential(nn.Linear(FEATURES, 16), nn.Tanh(), nn.Linear(16, 1)))
    config = gammapo.GammaPOConfig(loss="gamma-simpo", beta=2.0, gamma_beta_ratio=0.5, tau=3.0,
                                   calibration="queue", queue_size=128, sample_size=48)
    loss_fn = GammaPOLoss(config, seed=0)  # gathers over the default (world) process group
    optimizer = torch.optim.SGD(scorer.parameters(), lr=0.5)
    for step in range(steps):
        batch = global_batch(step, per_rank * world_size)
        mine = slice(rank * per_rank, (rank + 1) * per_rank)
        # summed "log-probs" of each response: a per-token score times its length (negative, like logps)
        logp_w = -nn.functional.softplus(-scorer(batch["chosen"][mine]).squeeze(-1)) * batch["len_w"][mine]
        logp_l = -nn.functional.softplus(-scorer(batch["rejected"][mine]).squeeze(-1)) * batch["len_l"][mine]
        out = loss_fn(chosen_logps=logp_w, rejected_logps=logp_l,
                      chosen_lengths=batch["len_w"][mine], rejected_lengths=batch["len_l"][mine])
        optimizer.zero_grad()
        out.loss.backward()  # DDP averages the gradients: the global mean loss
        optimizer.step()
        global_loss = out.loss.detach().clone()
        dist.all_reduce(global_loss)
        if rank == 0 and (step % 5 == 0 or step == steps - 1):
            print(f"step {step:3d}  global loss {float(global_loss) / world_size:.4f}  "
                  f"margins(rank 0) mean {float(out.margins.mean()):.3f}  queue {int(loss_fn.queue_size)}")
    buffers = [torch.zeros_like(loss_fn.queue_buffer) for _ in range(world_size)]
    dist.all_gather(buffers, loss_fn.queue_buffer)
    same = all(torch.equal(b, buffers[0]) for b in buffers)
    if rank == 0:
        print(f"queues identical on all {world_size} ranks: {same}", flush=True)
    # Tear down in a fixed order: no collective in flight and the gathered tensors freed before DDP's
    # reducer is destroyed (freeing it joins gloo's worker thread; PyTorch can deadlock there otherwise).
    del buffers
    dist.barrier()
    del scorer, optimizer, loss_fn, out
    dist.destroy_process_group()
    if not same:
        raise SystemExit(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--per-rank", type=int, default=16, help="pairs per rank per step")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(train, args=(args.world_size, os.path.join(tmp, "rendezvous"), args.steps, args.per_rank),
                 nprocs=args.world_size, join=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
