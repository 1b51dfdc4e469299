"""GammaPOTrainer under DeepSpeed ZeRO-2 and ZeRO-3 on a CPU (DeepSpeed's CPU accelerator, through accelerate).

What runs on a CPU, found by running it (deepspeed 0.19.8, accelerate 1.16, torch 2.13 CPU):

- **one process**: with ``deepspeed=`` and ``use_cpu=False``, accelerate runs DeepSpeed in one process
  on DeepSpeed's CPU accelerator. The trainer trains γ-SimPO (queue calibration) for 3 steps under
  ZeRO-2 and under ZeRO-3 with every parameter partitioned, and gives the losses and the loss state
  of the same run without DeepSpeed (measured: losses within 2.4e-7, loss state within 1.4e-6), and
  its checkpoint is complete (DeepSpeed's ``global_step3`` beside the loss state and the record).
  These are the runs of the GPU acceptance script's ``parallel_trainer`` section, on the CPU.
- **two processes**: accelerate starts DeepSpeed's communication over both processes but, with no
  accelerator, gives each process a world of its own (``num_processes == 1``: every rank would train
  alone on the same batches); the trainer refuses that launch naming it. With ``use_cpu=True``
  accelerate does not run DeepSpeed at all, which the trainer refuses too. So ZeRO across ranks, and
  the gathered calibration under it, need GPUs; on a CPU the data-parallel gather is tested under DDP
  and FSDP2 (``test_train_distributed.py``, ``test_train_fsdp.py``).

Skipped where deepspeed is not installed (the project's test environment does not install it: run
with its wheel on ``PYTHONPATH``). On a CPU, DeepSpeed builds its shared-memory communication op with
the C++ compiler at the first start (minutes; cached afterwards under ``~/.cache/torch_extensions``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")
pytest.importorskip("deepspeed")

from scripts.gpu_acceptance.sec_parallel import compare  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
WORKER = "scripts.gpu_acceptance._parallel_worker"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
pytestmark = pytest.mark.skipif(shutil.which("c++") is None, reason="DeepSpeed's CPU accelerator builds an op with c++")


def launch(arm: str, out: Path, nproc: int | None) -> subprocess.CompletedProcess:
    launcher = [] if nproc is None else [*TORCHRUN, "--nproc_per_node", str(nproc)]
    cmd = launcher + ["-m", WORKER, arm, str(out)] if launcher else [sys.executable, "-m", WORKER, arm, str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1", CUDA_VISIBLE_DEVICES="")
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("plain") / "plain.json"
    proc = launch("plain", out, None)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("arm", ["zero2", "zero3"])
def test_zero_in_one_cpu_process_trains_as_the_unwrapped_run(tmp_path, plain, arm):
    out = tmp_path / f"{arm}.json"
    proc = launch(arm, out, 1)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    got = json.loads(out.read_text())
    status, detail, _ = compare(arm, got, plain)
    assert status == "ok", detail
    assert got["sharding"]["zero_stage"] == int(arm[-1])
    if arm == "zero3":  # every parameter partitioned: no local elements outside the forward
        assert got["sharding"]["partitioned_params"] == got["sharding"]["params"] > 0
        assert got["sharding"]["local_elements"] == 0 < got["sharding"]["full_elements"]
    assert "global_step3" in got["checkpoint"]["files"]  # DeepSpeed's own checkpoint, beside the loss state


def test_zero_over_two_cpu_processes_is_refused(tmp_path):
    proc = launch("zero2", tmp_path / "zero2.json", 2)
    assert proc.returncode != 0
    assert "launched as 2 processes (WORLD_SIZE=2) but each runs on its own" in proc.stderr + proc.stdout, \
        proc.stderr[-3000:]
