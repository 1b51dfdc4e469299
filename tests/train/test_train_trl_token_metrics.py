"""GammaPOTrainer logs TRL's token metrics (entropy, logits/chosen, logits/rejected, mean_token_accuracy,
num_tokens) with TRL's values, on both of its forward paths (the fused LM head, and the token logits of
ε-DPO); and the gamma/* statistics of a data-parallel step are those of all its margins, pooled over the
ranks (two gloo processes, unequal batches)."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402
from trl import DPOTrainer  # noqa: E402

from gammapo.integrations._trl_metrics import reduce_loss_metrics  # noqa: E402
from gammapo.integrations.trl import GammaPOTrainer  # noqa: E402
from gammapo.train.run import RunConfig, dpo_config  # noqa: E402
from gammapo.train.task import SyntheticTask  # noqa: E402
from gammapo.train.tiny import build_model, build_tokenizer  # noqa: E402

TASK = SyntheticTask()
TOK = build_tokenizer(TASK.words)
ROWS = TASK.pairs(8, noise=0.0, seed=0)
TOKEN_METRICS = ("entropy", "logits/chosen", "logits/rejected", "mean_token_accuracy", "num_tokens")
torch.set_num_threads(1)


def _metrics(tmp_path, cls, **kw):
    fields = {k: kw.pop(k) for k in ("loss_type", "beta") if k in kw}
    args = dpo_config(RunConfig(str(tmp_path / "run"), max_steps=1, batch_size=8), use_cpu=True, **fields)
    trainer = cls(build_model(len(TOK), seed=0), ref_model=build_model(len(TOK), seed=1), args=args,
                  train_dataset=Dataset.from_list(ROWS), processing_class=TOK, **kw)
    inputs = trainer.data_collator([trainer.train_dataset[i] for i in range(len(ROWS))])
    trainer.model.train()
    trainer.compute_loss(trainer.model, inputs)
    return {k: v[-1] for k, v in trainer._metrics["train"].items()}


@pytest.mark.parametrize("kw", [
    dict(loss_type=["sigmoid"], beta=0.5),  # the fused LM head, as TRL
    dict(loss="gamma-simpo"),  # reference-free: the same policy forward
    dict(loss="epsilon-dpo", loss_kwargs=dict(beta=0.5)),  # full token logits through the LM head
], ids=["sigmoid", "gamma-simpo", "epsilon-dpo"])
def test_token_metrics_equal_trl_dpo_trainer(tmp_path, kw):
    want = _metrics(tmp_path / "trl", DPOTrainer, loss_type=["sigmoid"], beta=0.5)
    got = _metrics(tmp_path / "gpo", GammaPOTrainer, **kw)
    assert want["num_tokens"] > 0 and 0 < want["mean_token_accuracy"] < 1 and want["entropy"] > 0
    for key in TOKEN_METRICS:
        assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6), f"{key}: {got[key]} here, {want[key]} in TRL"


# --- gamma/* pooled over ranks -------------------------------------------------------------------------
SIZES = (3, 7)  # unequal micro-batches: the mean of per-rank std would be wrong here


def _rank_gammas():
    rng = np.random.default_rng(0)
    return [np.concatenate([rng.normal(1.0, 0.1, SIZES[0])]), rng.normal(1.6, 0.3, SIZES[1])]


def _worker(rank: int, port: int, out_path: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        g = torch.tensor(_rank_gammas()[rank], dtype=torch.float32)
        metrics = {"gamma/mean": g.mean(), "gamma/std": g.std(correction=0), "gamma/min": g.min(),
                   "gamma/max": g.max(), "gamma/log_spread": torch.log(g.max() / g.min())}

        def gather(t):
            parts = [torch.zeros_like(t) for _ in range(2)]
            dist.all_gather(parts, t)
            return torch.cat(parts)

        out = reduce_loss_metrics(gather, metrics, g.shape[0])
        np.save(f"{out_path}.{rank}.npy", np.array([out[k] for k in sorted(out)]))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_gamma_statistics_are_pooled_over_ranks(tmp_path):
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = os.fspath(tmp_path / "metrics")
    mp.spawn(_worker, args=(port, path), nprocs=2, join=True)
    allg = np.concatenate(_rank_gammas()).astype(np.float32).astype(np.float64)
    want = {"gamma/log_spread": np.log(allg.max() / allg.min()), "gamma/max": allg.max(),
            "gamma/mean": allg.mean(), "gamma/min": allg.min(), "gamma/std": allg.std()}
    for rank in range(2):
        got = dict(zip(sorted(want), np.load(f"{path}.{rank}.npy")))
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-6), f"rank {rank} {key}: {got[key]} != {value}"
    # the old reduction (mean over ranks of per-rank std) is far from the pooled one on these batches
    per_rank_std = np.mean([g.std() for g in _rank_gammas()])
    assert abs(per_rank_std - want["gamma/std"]) > 0.05
