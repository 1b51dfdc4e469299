"""GammaPOTrainer's loss under FSDP2 (``fully_shard``, parameters sharded over 2 gloo CPU ranks).

Each rank runs the trainer's ``compute_loss`` on its half of a global batch (see trainworker_fsdp.py).
Checked against one process on the whole batch and against DDP on the same data: the γ-PO margins of
every pair, the loss state (identical on both ranks, bit for bit), the parameters after each update,
and a resume from a sharded checkpoint (``torch.distributed.checkpoint``) that continues bit for bit.
β-DPO's gathered statistics hold under FSDP too.

Tolerances are float32 rounding of a different reduction order (measured: parameters ≤ 6e-8, margins
≤ 1.8e-7, queued gaps ≤ 1e-6 absolute on gaps of order 10).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

WORKER = Path(__file__).with_name("trainworker_fsdp.py")
TORCHRUN = shutil.which("torchrun", path=os.path.dirname(sys.executable))
pytestmark = [pytest.mark.distributed, pytest.mark.skipif(TORCHRUN is None, reason="no torchrun")]


def launch(tmp_path_factory, mode: str, loss: str) -> list[dict]:
    out = tmp_path_factory.mktemp(f"{mode}-{loss}")
    nproc = "1" if mode == "single" else "2"
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    proc = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node", nproc, str(WORKER), mode, loss, str(out)],
                          capture_output=True, text=True, timeout=400, env=env, cwd=WORKER.parent)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = [json.loads((out / f"result_{r}.json").read_text()) for r in range(int(nproc))]
    assert [r["rank"] for r in results] == list(range(int(nproc)))
    return results


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    cache: dict = {}

    def get(mode: str, loss: str = "gamma-simpo") -> list[dict]:
        if (mode, loss) not in cache:
            cache[mode, loss] = launch(tmp_path_factory, mode, loss)
        return cache[mode, loss]

    return get


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float(np.max(np.abs(np.asarray(a[k]) - np.asarray(b[k])))) for k in a)


def close(a: dict, b: dict, rtol: float = 1e-6, atol: float = 1e-6) -> bool:
    return a.keys() == b.keys() and all(np.allclose(a[k], b[k], rtol=rtol, atol=atol) for k in a)


def test_fsdp_loss_state_identical_on_both_ranks(runs):
    r0, r1 = runs("fsdp")
    for step in range(2):
        assert r0["state"][step] == r1["state"][step], f"the ranks' loss states differ after step {step + 1}"
        assert r0["params"][step] == r1["params"][step]
    # the queue grows by the global batch: 8 warm-up draws + 16 gathered gaps per step
    assert r0["state"][1]["inner.queue_size"] == [8 + 2 * 16]


def test_fsdp_margins_and_updates_equal_one_process(runs):
    (single,), fsdp = runs("single"), runs("fsdp")
    for step in range(2):
        margins = np.asarray(fsdp[0]["margins"][step] + fsdp[1]["margins"][step])
        assert np.max(np.abs(margins - np.asarray(single["margins"][step]))) <= 1e-6
        assert close(fsdp[0]["state"][step], single["state"][step])
        assert max_diff(fsdp[0]["params"][step], single["params"][step]) <= 1e-6
        # each rank's loss is the mean over its own pairs; their mean is the global loss
        assert np.mean([r["losses"][step] for r in fsdp]) == pytest.approx(single["losses"][step], rel=1e-6)
    assert np.ptp(single["margins"][1]) > 1e-3, "the margins must vary across pairs for this check to mean much"


def test_fsdp_updates_equal_ddp(runs):
    fsdp, ddp = runs("fsdp"), runs("ddp")
    for step in range(2):
        assert max_diff(fsdp[0]["params"][step], ddp[0]["params"][step]) <= 1e-6
        assert close(fsdp[0]["state"][step], ddp[0]["state"][step])
        assert fsdp[0]["losses"][step] == pytest.approx(ddp[0]["losses"][step], rel=1e-6)


def test_fsdp_resume_from_sharded_checkpoint_continues_bit_for_bit(runs):
    for r in runs("fsdp"):
        assert r["resumed_state"] == r["state"][1]
        assert r["resumed_params"] == r["params"][1]
        assert r["resumed_loss"] == r["losses"][1]


def test_fsdp_beta_dpo_statistics_are_the_global_batch(runs):
    (single,), (r0, r1) = runs("single", "beta-dpo"), runs("fsdp", "beta-dpo")
    for step in range(2):
        assert r0["state"][step] == r1["state"][step]
        assert close(r0["state"][step], single["state"][step])  # gaps are float32: ~2e-8 apart
        assert max_diff(r0["params"][step], single["params"][step]) <= 1e-6
    assert r0["state"][1]["gap_std"][0] > 0.0
