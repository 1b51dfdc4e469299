"""One rank of a data-parallel GammaPOTrainer run, started by test_train_fsdp.py under torchrun (gloo, CPU).

``torchrun --nproc_per_node W trainworker_fsdp.py MODE LOSS OUT_DIR``

MODE: ``fsdp`` (FSDP2 ``fully_shard`` on every decoder layer and the root, parameters sharded over
the ranks), ``ddp`` (``DistributedDataParallel``) or ``single`` (W = 1, no wrapper). LOSS:
``gamma-simpo`` or ``beta-dpo``.

accelerate runs FSDP only on accelerators (on CPU it silently falls back to DDP), so the trainer is
built for a CPU data-parallel run and the model is wrapped here, as accelerate would; each step is the
trainer's own ``compute_loss`` (TRL's concatenated forward, the pair loss with its gathered
calibration) on this rank's rows of a fixed global batch of 16 pairs, then ``backward`` and an SGD
step. After step 1 the run is checkpointed (the model's *sharded* state dict through
``torch.distributed.checkpoint``, the loss state with ``state_dict``), resumed into a fresh model and
trainer, and step 2 runs from the resumed copy too. Each rank writes ``result_<rank>.json``: the
margins of its pairs, the per-rank losses, the loss state and the full parameters after each step.
"""

from __future__ import annotations

import json
import sys

import torch

torch.set_num_threads(1)

import datasets  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.distributed.checkpoint as dcp  # noqa: E402
import transformers  # noqa: E402
from datasets import Dataset  # noqa: E402
from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict  # noqa: E402
from torch.distributed.fsdp import fully_shard  # noqa: E402
from torch.distributed.tensor import DTensor  # noqa: E402

from gammapo.integrations.trl import GammaPOTrainer  # noqa: E402
from gammapo.train.run import RunConfig, dpo_config  # noqa: E402
from gammapo.train.task import SyntheticTask  # noqa: E402
from gammapo.train.tiny import build_model, build_tokenizer  # noqa: E402

datasets.disable_progress_bars()
transformers.logging.set_verbosity_error()

GLOBAL_PAIRS = 16
STEPS = 2
LR = 0.05


def build(mode: str, loss: str, out_dir: str):
    task = SyntheticTask()
    tok = build_tokenizer(task.words)
    args = dpo_config(RunConfig(out_dir, batch_size=GLOBAL_PAIRS, max_steps=STEPS, logging_steps=1, save_steps=0),
                      use_cpu=True, ddp_backend="gloo")
    data = Dataset.from_list(task.pairs(GLOBAL_PAIRS * STEPS, noise=0.2, seed=1))
    kwargs = dict(loss="gamma-simpo", loss_kwargs=dict(beta=2.0, gamma_beta_ratio=0.5, tau=1.0, queue_size=128,
                                                       sample_size=24))
    if loss == "beta-dpo":  # a reference unlike the policy, so the gaps differ from the first step
        kwargs = dict(loss="beta-dpo", loss_kwargs=dict(beta=0.1), ref_model=build_model(len(tok), seed=1))
    model = build_model(len(tok), seed=0)
    tr = GammaPOTrainer(model, args=args, processing_class=tok, train_dataset=data, **kwargs)
    if mode == "fsdp":
        for layer in model.model.layers:
            fully_shard(layer)
        fully_shard(model)
        wrapped = model
    elif mode == "ddp":
        wrapped = torch.nn.parallel.DistributedDataParallel(model)
    else:
        wrapped = model
    model.train()
    margins: list[list[float]] = []
    inner = getattr(tr.pair_loss, "inner", None)
    if inner is not None:  # the γ-PO loss module: record the margins it returns
        inner.register_forward_hook(lambda _m, _a, out: margins.append(out.margins.detach().double().tolist()))
    return tr, model, wrapped, margins


def full_params(model) -> dict[str, list]:
    out = {}
    for name, p in model.named_parameters():
        t = p.full_tensor() if isinstance(p, DTensor) else p
        out[name.removeprefix("module.")] = t.detach().double().flatten().tolist()
    return out


def run_step(tr, model, wrapped, step: int) -> float:
    rank, world = dist.get_rank(), dist.get_world_size()
    per = GLOBAL_PAIRS // world
    lo = step * GLOBAL_PAIRS + rank * per
    inputs = tr.data_collator([tr.train_dataset[i] for i in range(lo, lo + per)])
    loss = tr.compute_loss(wrapped, inputs)
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p.sub_(LR * p.grad)
                p.grad = None
    return float(loss.detach())


def main() -> None:
    mode, loss, out_dir = sys.argv[1], sys.argv[2], sys.argv[3]
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    tr, model, wrapped, margins = build(mode, loss, out_dir)
    result: dict = {"rank": rank, "world": dist.get_world_size(), "losses": [], "params": [], "state": []}

    def record(tr, model):
        result["params"].append(full_params(model))
        result["state"].append({k: v.double().flatten().tolist() for k, v in tr.pair_loss.state_dict().items()})

    result["losses"].append(run_step(tr, model, wrapped, 0))
    record(tr, model)

    # checkpoint after step 1: sharded model state (each rank writes its shards) + the loss state
    ckpt = f"{out_dir}/ckpt"
    dcp.save({"model": get_model_state_dict(model)}, checkpoint_id=ckpt)
    if rank == 0:
        torch.save(tr.pair_loss.state_dict(), f"{out_dir}/loss_state.pt")
    dist.barrier()

    result["losses"].append(run_step(tr, model, wrapped, 1))
    record(tr, model)

    # resume into a fresh model and trainer, run step 2 again
    tr2, model2, wrapped2, _ = build(mode, loss, out_dir)
    sd = {"model": get_model_state_dict(model2)}
    dcp.load(sd, checkpoint_id=ckpt)
    set_model_state_dict(model2, sd["model"])
    tr2.pair_loss.load_state_dict(torch.load(f"{out_dir}/loss_state.pt", weights_only=True))
    result["resumed_loss"] = run_step(tr2, model2, wrapped2, 1)
    result["resumed_params"] = full_params(model2)
    result["resumed_state"] = {k: v.double().flatten().tolist() for k, v in tr2.pair_loss.state_dict().items()}
    result["margins"] = margins[:STEPS]
    with open(f"{out_dir}/result_{rank}.json", "w") as f:
        json.dump(result, f)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
