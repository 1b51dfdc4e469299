"""The trainer refuses a parallel launch that accelerate would not carry out as asked.

accelerate quietly changes two requests on a machine without accelerators: ``fsdp=...`` runs as plain
data parallelism (FSDP only on accelerators), and a ``torchrun`` launch of a ``TrainingArguments``
without ``use_cpu=True`` runs every process on its own (each rank trains alone, on the same batches,
with its own queue). Both would train something other than what was asked, without a word.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["check_parallel_launch"]


def check_parallel_launch(args: Any, accelerator: Any) -> None:
    """Raise ``ValueError`` naming the setting when the launch does not run the parallelism asked for.

    Args:
        args: the trainer's ``TrainingArguments`` (``DPOConfig``).
        accelerator: the trainer's ``accelerate.Accelerator``.
    """
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    launched = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if launched > 1 and accelerator.num_processes == 1:
        raise ValueError(
            f"launched as {launched} processes (WORLD_SIZE={launched}) but each runs on its own (no data "
            "parallelism: every process would train alone on the same batches); on a machine without GPUs "
            "set use_cpu=True in the training arguments (gammapo train does) so the processes join over gloo")
    if getattr(args, "fsdp", None) and kind != DistributedType.FSDP:
        raise ValueError(
            f"fsdp={args.fsdp!r} is set but accelerate runs {kind.value} instead of FSDP (it runs FSDP only on "
            "GPUs and other accelerators); unset fsdp, or shard the model yourself with "
            "torch.distributed.fsdp.fully_shard before training")
    if getattr(args, "deepspeed", None) and kind != DistributedType.DEEPSPEED:
        raise ValueError(
            f"deepspeed={args.deepspeed!r} is set but accelerate runs {kind.value} instead of DeepSpeed (it runs "
            "DeepSpeed only on GPUs and other accelerators); unset deepspeed")
