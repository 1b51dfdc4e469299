"""Kill at random points, resume, and end exactly where an uninterrupted run ends.

A GammaPOTrainer run that checkpoints every step (trainworker_kill.py) is killed with SIGKILL at a
random moment: after a random number of steps plus a random delay, so the kill lands anywhere in a
step, in TRL's checkpoint write, in the loss-state write or in the completeness record. The run is
then resumed (from the newest complete checkpoint; afresh when none is complete) and may be killed
again. Every finished run must equal the uninterrupted one bit for bit: weights, queue buffer and
counters. The kill points come from a seeded generator, so a failure reproduces.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

WORKER = Path(__file__).with_name("trainworker_kill.py")
KILLS = 10
ENV = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1")


def _start(out: Path, *flags: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), str(out), *flags], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=ENV)


def _kill_during(out: Path, rng: random.Random, resume: bool) -> bool:
    """Run (resuming if asked) and SIGKILL it at a random point; False if it finished first."""
    proc = _start(out, *(["--resume"] if resume else []))
    target = rng.randint(0, 7)  # steps to see before the delay starts (the run has 8)
    seen = -1
    for line in proc.stdout:
        if line.startswith("ready"):
            seen = 0
        elif line.startswith("step"):
            seen += 1
        if seen >= target:
            break
    time.sleep(rng.uniform(0.0, 0.4))
    finished = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stdout.close()
    return not finished


def _finish(out: Path, final: Path) -> dict:
    proc = _start(out, "--resume", "--final", str(final))
    _, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"resume in {out} failed (rc {proc.returncode})"
    return torch.load(final, weights_only=True)


def _assert_same(a: dict, b: dict, what: str) -> None:
    assert a["step"] == b["step"], what
    for group in ("params", "loss_state"):
        for k, v in a[group].items():
            assert torch.equal(v, b[group][k]), f"{what}: {group} {k} differs from the uninterrupted run"


def test_random_kills_then_resume_equal_the_uninterrupted_run(tmp_path):
    proc = _start(tmp_path / "reference", "--final", str(tmp_path / "reference.pt"))
    proc.communicate(timeout=300)
    assert proc.returncode == 0
    reference = torch.load(tmp_path / "reference.pt", weights_only=True)
    assert reference["step"] == 8

    rng = random.Random(20261202)
    kills, run = 0, 0
    while kills < KILLS:
        out = tmp_path / f"run{run}"
        # one or two kills in a row on the same folder, then resume to the end
        for attempt in range(1 + (run % 2)):
            kills += _kill_during(out, rng, resume=attempt > 0)
        _assert_same(_finish(out, tmp_path / f"run{run}.pt"), reference, f"run {run}")
        run += 1
    assert kills >= KILLS
