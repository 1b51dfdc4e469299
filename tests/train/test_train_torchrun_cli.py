"""``torchrun --nproc_per_node 2 -m gammapo train`` on a CPU: real data parallelism (gloo).

Two ranks of 4 pairs per device give the report of one process with 8 pairs per step (the same
global batches in the same order): the same held-out accuracy and greedy reward, the same logged
γ-PO and reward metrics to float32 rounding, and the diagnostics of the same margins. Only rank 0
prints the table and writes the report. (Before the CPU launch set ``use_cpu``, each rank trained
alone on the same batches, and the margins were calibrated on 4 gaps instead of 8.)
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.distributed

pytest.importorskip("torch")
pytest.importorskip("trl")

TORCHRUN = shutil.which("torchrun", path=os.path.dirname(sys.executable))
ARGS = ["--quick", "--methods", "gamma-simpo", "--seeds", "1", "--noise-model", "uniform", "--no-oracle",
        "--pairs", "64", "--eval-pairs", "64", "--max-steps", "4", "--save-steps", "0"]
#: Logged keys that must agree; HF's ``train_loss`` is left out: its last, unlogged stretch is rank 0's
#: own loss (transformers' Trainer), not the global one, so it differs between the two launches.
COMPARED = ("rewards/", "logps/", "gamma/", "entropy", "logits/", "mean_token_accuracy", "num_tokens")


def _close(a, b, rel=1e-5) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isclose(a, b, rel_tol=rel, abs_tol=1e-7))


@pytest.mark.skipif(TORCHRUN is None, reason="no torchrun")
def test_torchrun_gammapo_train_equals_one_process_with_the_global_batch(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    env.pop("WORLD_SIZE", None)
    two = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node", "2", "-m", "gammapo", "train", *ARGS,
                          "--batch-size", "4", "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, timeout=600, env=env)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    one = subprocess.run([sys.executable, "-m", "gammapo", "train", *ARGS, "--batch-size", "8", "--jobs", "1",
                          "--out", str(tmp_path / "one")], capture_output=True, text=True, timeout=600, env=env)
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]
    assert two.stdout.count("report: ") == 1, "only rank 0 prints the report line"

    a = json.loads((tmp_path / "one" / "results.json").read_text())["runs"][0]
    b = json.loads((tmp_path / "two" / "results.json").read_text())["runs"][0]
    assert a["steps"] == b["steps"] == 4
    assert a["accuracy"] == b["accuracy"] and a["gen_reward"] == b["gen_reward"]
    assert a["buckets"] == b["buckets"]
    logged_a, logged_b = a["history"][-1], b["history"][-1]
    keys = [k for k in logged_a if k.startswith(COMPARED)]
    assert "gamma/mean" in keys and "gamma/std" in keys
    bad = {k: (logged_a[k], logged_b.get(k)) for k in keys if not _close(logged_a[k], logged_b.get(k))}
    assert not bad, f"logged metrics differ between 1 process x 8 pairs and 2 ranks x 4 pairs: {bad}"
    diag = {k: (v, b["diagnostics"][k]) for k, v in a["diagnostics"].items() if not _close(v, b["diagnostics"][k])}
    assert not diag, diag
