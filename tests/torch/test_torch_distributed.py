"""Data-parallel calibration with real ``torch.distributed`` (gloo, CPU, 2 and 4 spawned processes).

Each rank passes its slice of a global batch; the backend all-gathers the gaps, so every rank's margins
for its own pairs must equal one process run on the concatenated batch, bit for bit, and in queue mode
every rank's queue must be identical (and equal to the single process's). Several steps, batch and
queue mode, the functional API and the ``GammaPOLoss`` wrapper.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import _torch_dist_worker as W

pytestmark = [pytest.mark.distributed, pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")]


@pytest.fixture(scope="module", params=[2, 4], ids=["2-ranks", "4-ranks"])
def ranks(request, tmp_path_factory):
    """Spawn the gloo ranks once per world size; returns ``(world_size, [result of each rank])``."""
    world_size = request.param
    out = tmp_path_factory.mktemp(f"dist{world_size}")
    mp.spawn(W.worker, args=(world_size, str(out / "init"), str(out)), nprocs=world_size, join=True)
    return world_size, [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(world_size)]


def single_process(mode: str, world_size: int) -> dict:
    """The same steps in this (non-distributed) process, on the whole global batch."""
    assert not dist.is_initialized()
    return W.run_steps(mode, rank=0, world_size=1, n=W.N_PER_RANK * world_size)


def rank_slice(t: torch.Tensor, rank: int) -> torch.Tensor:
    return t[rank * W.N_PER_RANK : (rank + 1) * W.N_PER_RANK]


@pytest.mark.parametrize("mode", ["batch", "queue"])
def test_gamma_po_loss_distributed_margins_equal_single_process_on_concatenated_batch(ranks, mode):
    world_size, results = ranks
    full = single_process(mode, world_size)
    for rank, result in enumerate(results):
        for step in range(W.STEPS):
            torch.testing.assert_close(result[mode]["margins"][step], rank_slice(full["margins"][step], rank), rtol=0, atol=0,
                                       msg=lambda m: f"{mode} margins, rank {rank}/{world_size}, step {step}: {m}")
            torch.testing.assert_close(result[mode]["losses"][step], rank_slice(full["losses"][step], rank), rtol=1e-13, atol=1e-13)
            # each rank's loss is the mean over its own pairs: its gradient is world_size × the global one
            torch.testing.assert_close(result[mode]["grad"][step], world_size * rank_slice(full["grad"][step], rank),
                                       rtol=1e-12, atol=1e-14, msg=lambda m: f"{mode} grad, rank {rank}, step {step}: {m}")
        # the mean of the ranks' losses is the global loss (what DDP's averaging optimises)
    for step in range(W.STEPS):
        mean_loss = torch.stack([r[mode]["loss"][step] for r in results]).mean()
        torch.testing.assert_close(mean_loss, full["loss"][step], rtol=1e-13, atol=1e-13)


def test_gamma_po_loss_distributed_queue_is_identical_on_every_rank_and_equals_single_process(ranks):
    world_size, results = ranks
    full = single_process("queue", world_size)
    for step in range(W.STEPS):
        expected = full["state"][step]
        for rank, result in enumerate(results):
            got = result["queue"]["state"][step]
            assert {k: got[k] for k in ("size", "head", "step", "seed")} == {k: expected[k] for k in ("size", "head", "step", "seed")}, \
                f"queue counters differ on rank {rank} at step {step}"
            assert torch.equal(got["buffer"], expected["buffer"]), f"queue buffer differs on rank {rank} at step {step}"
    assert full["state"][-1]["size"] == 32, "the queue filled and wrapped during the run"


def test_gamma_po_loss_module_distributed_matches_functional(ranks):
    world_size, results = ranks
    for rank, result in enumerate(results):
        margins, buffers = result["wrapper"][: W.STEPS], result["wrapper"][W.STEPS :]
        for step in range(W.STEPS):
            assert torch.equal(margins[step], result["queue"]["margins"][step]), f"wrapper margins, rank {rank}, step {step}"
        assert torch.equal(buffers[0], results[0]["wrapper"][W.STEPS]), f"wrapper queue buffer differs on rank {rank}"


def test_gamma_po_loss_distributed_unequal_batch_sizes_raise_the_same_input_error_on_every_rank(ranks):
    world_size, results = ranks
    messages = {r["unequal"] for r in results}
    assert len(messages) == 1, f"ranks disagree: {messages}"
    (message,) = messages
    sizes = [3 + r for r in range(world_size)]
    assert message.startswith("InputError: ") and str(sizes) in message, message
