"""gammapo_torch.beta_dpo under torch.distributed (2 gloo processes): the statistics, the kept subset and
β are those of the global batch, every rank holds the same state, and the mean of the ranks' losses is
the single-process loss on the concatenated batch (the β-DPO authors gather the gaps of all ranks)."""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

import gammapo_spec.beta_dpo as S  # noqa: E402
import gammapo_torch.beta_dpo as T  # noqa: E402

pytestmark = [pytest.mark.distributed, pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")]

WORLD, N_PER_RANK, STEPS = 2, 7, 4
FIELDS = ("chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps")
KW = dict(beta0=0.1, alpha=0.6, rho=0.8, momentum=0.9)


def _batch(step: int) -> list[np.ndarray]:
    """The global batch of a step: WORLD · N_PER_RANK pairs, rank r holds rows [r·n, (r+1)·n)."""
    rng = np.random.default_rng(100 + step)
    return [-np.abs(rng.normal(scale=20.0, size=WORLD * N_PER_RANK)) - 0.5 for _ in FIELDS]


def _run(rank: int, world: int) -> dict:
    n = N_PER_RANK * WORLD // world
    state = T.init_beta_dpo_state(7)
    out = {"loss": [], "losses": [], "mask": [], "beta": [], "grad": [], "state": []}
    for step in range(STEPS):
        xs = [torch.tensor(v[rank * n:(rank + 1) * n], dtype=torch.float64, requires_grad=True) for v in _batch(step)]
        o = T.beta_dpo_step(state, *xs, **KW)
        (g,) = torch.autograd.grad(o.loss, xs[0])
        state = o.state
        out["loss"].append(o.loss.detach()); out["losses"].append(o.losses.detach()); out["mask"].append(o.mask)
        out["beta"].append(o.beta); out["grad"].append(g); out["state"].append(T.beta_dpo_state_to_dict(state))
    return out


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.save(_run(rank, world), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("beta_dpo_dist")
    mp.spawn(_worker, args=(WORLD, str(out / "init"), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _slice(t, rank):
    return t[rank * N_PER_RANK:(rank + 1) * N_PER_RANK]


def test_beta_dpo_distributed_equals_one_process_on_the_concatenated_batch(ranks):
    assert not dist.is_initialized()
    full = _run(0, 1)
    for rank, got in enumerate(ranks):
        for step in range(STEPS):
            where = f"rank {rank}, step {step}"
            assert torch.equal(got["mask"][step], _slice(full["mask"][step], rank)), f"kept subset differs: {where}"
            assert float(got["beta"][step]) == float(full["beta"][step]), f"beta differs: {where}"
            assert got["state"][step] == full["state"][step], f"state differs: {where}"
            torch.testing.assert_close(got["losses"][step], _slice(full["losses"][step], rank), rtol=1e-13, atol=1e-13)
            # a rank's loss is world_size · (its kept losses) / k_global: its gradient is world_size × the global one
            torch.testing.assert_close(got["grad"][step], WORLD * _slice(full["grad"][step], rank), rtol=1e-12, atol=1e-14)
    for step in range(STEPS):
        mean_loss = torch.stack([r["loss"][step] for r in ranks]).mean()
        torch.testing.assert_close(mean_loss, full["loss"][step], rtol=1e-13, atol=1e-13)


def test_beta_dpo_distributed_matches_the_spec_on_the_gathered_gaps(ranks):
    """The spec, fed the concatenated batch, keeps the same pairs and reaches the same state."""
    state = S.init_beta_dpo_state(7)
    for step in range(STEPS):
        ref = S.beta_dpo_step(state, *_batch(step), **KW)
        state = ref.state
        mask = np.concatenate([r["mask"][step].numpy() for r in ranks])
        assert mask.tolist() == ref.mask.tolist(), f"step {step}"
        assert float(ranks[0]["beta"][step]) == pytest.approx(ref.beta, rel=1e-12)
        assert ranks[1]["state"][step]["step"] == ref.state.step
    assert 0 < ref.mask.sum() < ref.mask.size, "the filter kept a strict subset of the global batch"
