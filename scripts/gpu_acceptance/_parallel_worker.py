"""One training run of the parallel sections: ``python -m scripts.gpu_acceptance._parallel_worker ARM OUT.json``.

ARM is ``plain`` (the reference: one process, no wrapper), ``fsdp2`` (accelerate's FSDP2: ``fsdp="full_shard
auto_wrap"``, every ``LlamaDecoderLayer`` and the root sharded), ``zero2`` or ``zero3`` (DeepSpeed ZeRO stage 2
or 3 through accelerate, no offload, float32). The sharded arms are started by ``torch.distributed.run`` with
one process; ``plain`` runs alone. Every arm trains :class:`GammaPOTrainer` (γ-SimPO, queue calibration) on the
embedded task's tiny Llama for :data:`STEPS` steps of :data:`BATCH` pairs from the same seed and data, and
saves a checkpoint at the last step. OUT.json holds the distributed type accelerate chose, the logged loss
of every step, the loss state after training, what shows the parameters sharded (FSDP2: DTensor
parameters; ZeRO-3: partitioned ``ds_numel`` parameters with no local elements outside the forward) and
whether the checkpoint is complete (the trainer's record, the loss-state file).
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import time

STEPS, BATCH = 3, 8
LOSS_KWARGS = dict(beta=2.0, gamma_beta_ratio=0.5, tau=1.0, queue_size=128, sample_size=24)


def parallel_args(arm: str) -> dict:
    """The ``DPOConfig`` fields that ask accelerate for ``arm``'s parallelism."""
    if arm == "fsdp2":
        return dict(fsdp="full_shard auto_wrap",
                    fsdp_config={"transformer_layer_cls_to_wrap": ["LlamaDecoderLayer"], "version": 2})
    if arm in ("zero2", "zero3"):
        # use_cpu=False also on a CPU: accelerate then runs DeepSpeed (on its CPU accelerator) in one process
        # stage3_param_persistence_threshold 0: every parameter partitioned, also the small ones (DeepSpeed
        # keeps parameters under 1e5 elements whole by default, which is every parameter of the tiny model)
        zero = {"stage": int(arm[-1]), **({"stage3_param_persistence_threshold": 0} if arm == "zero3" else {})}
        return dict(use_cpu=False, deepspeed={"zero_optimization": zero,
                                              "train_micro_batch_size_per_gpu": "auto", "train_batch_size": "auto",
                                              "gradient_accumulation_steps": "auto", "gradient_clipping": "auto"})
    if arm == "plain":
        return {}
    raise SystemExit(f"unknown arm {arm!r}: plain, fsdp2, zero2 or zero3")


def sharding(arm: str, trainer) -> dict:
    """What shows the parameters sharded as asked (read after training, outside any forward)."""
    params = list(trainer.model_wrapped.parameters())
    info: dict = {"params": len(params), "wrapper": type(trainer.model_wrapped).__name__}
    if arm == "fsdp2":
        info["dtensor_params"] = sum(type(p).__name__ == "DTensor" for p in params)
        info["sharded"] = info["dtensor_params"] == len(params) > 0
    elif arm.startswith("zero"):
        engine = trainer.model_wrapped
        info["zero_stage"] = engine.zero_optimization_stage() if hasattr(engine, "zero_optimization_stage") else None
        partitioned = [p for p in params if hasattr(p, "ds_numel")]
        info["partitioned_params"] = len(partitioned)
        info["local_elements"] = sum(p.numel() for p in partitioned)
        info["full_elements"] = sum(int(p.ds_numel) for p in partitioned)
        if arm == "zero3":  # outside the forward a partitioned parameter holds no gathered elements
            info["sharded"] = len(partitioned) == len(params) > 0 and info["local_elements"] == 0
        else:
            info["sharded"] = info["zero_stage"] == 2
    else:
        info["sharded"] = None
    return info


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    arm, out = argv[0], pathlib.Path(argv[1])
    start = time.perf_counter()
    import torch

    torch.set_num_threads(min(4, torch.get_num_threads()))
    import datasets
    import transformers
    from datasets import Dataset

    from gammapo.integrations._checkpoints import COMPLETE_FILE, LOSS_STATE_FILE, incomplete_reason
    from gammapo.integrations.trl import GammaPOTrainer
    from gammapo.train.run import RunConfig, dpo_config
    from gammapo.train.task import SyntheticTask
    from gammapo.train.tiny import build_model, build_tokenizer

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    task = SyntheticTask()
    tok = build_tokenizer(task.words)
    folder = out.parent / f"run-{arm}"
    args = dpo_config(RunConfig(str(folder), batch_size=BATCH, max_steps=STEPS, logging_steps=1, save_steps=STEPS,
                                warmup_ratio=0.0), **parallel_args(arm))
    trainer = GammaPOTrainer(build_model(len(tok), seed=0), args=args, processing_class=tok,
                             train_dataset=Dataset.from_list(task.pairs(BATCH * STEPS, noise=0.2, seed=1)),
                             loss="gamma-simpo", loss_kwargs=LOSS_KWARGS)
    result: dict = {"arm": arm, "world_size": int(os.environ.get("WORLD_SIZE", "1")),
                    "distributed_type": str(trainer.accelerator.distributed_type.value),
                    "num_processes": trainer.accelerator.num_processes, "device": str(trainer.args.device)}
    trainer.train()
    result["losses"] = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    result["state"] = {k: v.detach().double().flatten().cpu().tolist() for k, v in trainer.pair_loss.state_dict().items()}
    result["sharding"] = sharding(arm, trainer)
    ckpt = folder / f"checkpoint-{STEPS}"
    result["checkpoint"] = {"folder": ckpt.name, "files": sorted(p.name for p in ckpt.iterdir()) if ckpt.is_dir() else [],
                            "incomplete": incomplete_reason(str(ckpt)) if ckpt.is_dir() else "no checkpoint folder"}
    result["checkpoint"]["complete"] = (result["checkpoint"]["incomplete"] is None
                                        and {COMPLETE_FILE, LOSS_STATE_FILE} <= set(result["checkpoint"]["files"]))
    result["seconds"] = round(time.perf_counter() - start, 1)
    if int(os.environ.get("RANK", "0")) == 0:
        out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
