"""gamma_po_loss inside ``shard_map`` over 4 forced host devices equals the unsharded call
(batch and queue mode): each shard gets the margins of the global calibration, and the queue
states match. Runs in a subprocess because ``XLA_FLAGS`` must be set before jax is imported."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

WORKER = pathlib.Path(__file__).with_name("jaxtest_shard_worker.py")


def test_jax_gamma_po_loss_shard_map_matches_unsharded():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, str(WORKER)], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"worker failed:\n{proc.stderr[-4000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["devices"] == 4
    for mode in ("batch", "queue"):
        r = report[mode]
        assert r["margins_spread"] > 1e-3, f"{mode}: margins are constant, the comparison is vacuous"
        assert r["max_diff"] <= 1e-10, f"{mode}: sharded margins/queue differ from unsharded by {r['max_diff']}"
        assert r["bookkeeping_equal"], f"{mode}: queue size/head/step/seed differ"
