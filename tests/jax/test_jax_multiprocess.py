"""Multi-process JAX: two processes joined by ``jax.distributed`` (gloo CPU collectives), 2 devices each.

A γ-SimPO training step and a β-DPO step inside ``shard_map`` over the global 4-device mesh give, on
both processes, the margins, queue state, weights and β-DPO statistics of one device running the
concatenated batch; without the gather they do not (so the comparison can tell the two apart).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.distributed

jax = pytest.importorskip("jax")

WORKER = Path(__file__).with_name("jaxtest_multiprocess_worker.py")
NPROC = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(*flags: str) -> list[dict]:
    port = str(_free_port())
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(i), str(NPROC), port, *flags], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(NPROC)]
    reports = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("a multi-process JAX worker did not finish in 240 s")
        assert p.returncode == 0, err[-3000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports


@pytest.fixture(scope="module")
def gathered() -> list[dict]:
    return _run()


def test_jax_multiprocess_mesh_spans_both_processes(gathered):
    assert [r["process"] for r in gathered] == [0, 1]
    assert all(r["processes"] == NPROC and r["devices"] == 2 * NPROC for r in gathered)


def test_jax_multiprocess_gamma_po_step_equals_one_device(gathered):
    for r in gathered:
        g = r["gamma_po"]
        assert g["bookkeeping_equal"]
        assert g["margin_diff"] <= 1e-12 and g["state_diff"] <= 1e-12, g
        assert g["weight_diff"] <= 1e-12, g
    # the queue state and the weights are identical on both processes
    assert len({r["gamma_po"]["state_digest"] for r in gathered}) == 1
    assert len({r["gamma_po"]["weight_digest"] for r in gathered}) == 1


def test_jax_multiprocess_beta_dpo_step_equals_one_device(gathered):
    for r in gathered:
        b = r["beta_dpo"]
        assert b["mask_equal"], b
        assert b["loss_diff"] <= 1e-12 and b["beta_diff"] <= 1e-12 and b["state_diff"] <= 1e-12, b
    assert len({r["beta_dpo"]["state_digest"] for r in gathered}) == 1


def test_jax_multiprocess_without_gather_differs():
    """The same run with each shard calibrating alone must fail the comparison above."""
    for r in _run("--no-gather"):
        assert r["gamma_po"]["margin_diff"] > 1e-6
        assert not r["beta_dpo"]["mask_equal"] or r["beta_dpo"]["beta_diff"] > 1e-9
