"""gamma_po_loss inside ``shard_map`` over 4 forced host devices equals the unsharded call
(batch and queue mode): each shard gets the margins of the global calibration, and the queue
states match, with the CPU calibration kernel and with the lax ops. Runs in a subprocess because ``XLA_FLAGS`` must be set before jax is imported."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.distributed

WORKER = pathlib.Path(__file__).with_name("jaxtest_shard_worker.py")


@pytest.mark.parametrize("kernel", [True, False], ids=["cpu-kernel", "lax-ops"])
def test_jax_gamma_po_loss_shard_map_matches_unsharded(kernel):
    """``lax-ops``: the CPU kernel off (``GAMMAPO_DISABLE_CPU_KERNEL=1``), the path GPU/TPU lowerings take."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    env.pop("GAMMAPO_DISABLE_CPU_KERNEL", None)
    if not kernel:
        env["GAMMAPO_DISABLE_CPU_KERNEL"] = "1"
    proc = subprocess.run([sys.executable, str(WORKER)], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"worker failed:\n{proc.stderr[-4000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["devices"] == 4
    for mode in ("batch", "queue"):
        r = report[mode]
        assert r["margins_spread"] > 1e-3, f"{mode}: margins are constant, the comparison is vacuous"
        assert r["max_diff"] <= 1e-10, f"{mode}: sharded margins/queue differ from unsharded by {r['max_diff']}"
        assert r["bookkeeping_equal"], f"{mode}: queue size/head/step/seed differ"
