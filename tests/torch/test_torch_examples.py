"""The PyTorch examples run as a user would run them (subprocesses, CPU) and do what they say."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
import torch.distributed as dist

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def run(script: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"{script} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_example_torch_loop_trains_and_the_loss_falls():
    out = run("torch_loop.py")
    assert "(fell)" in out and "queue 256/256" in out, out


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")
def test_example_torch_distributed_keeps_identical_queues_on_two_ranks():
    out = run("torch_distributed.py", "--steps", "6")
    assert "queues identical on all 2 ranks: True" in out, out
