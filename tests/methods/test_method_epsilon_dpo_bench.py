"""Smoke test of the ε-DPO memory benchmark: ``python -m benchmarks --quick epsilon_dpo_memory`` runs and reports.

No timing assertions (shared machines): only that it runs end to end, every variant computes the same
log-probs, and the memory numbers are there and positive.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("torch")

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_bench_epsilon_dpo_memory_quick_writes_results(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "epsilon_dpo_memory", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    data = json.loads((tmp_path / "epsilon_dpo_memory.json").read_text())
    rows = {r["key"]: r for r in data["rows"]}
    default = f"chunked@{data['default_chunk']}"
    assert {"naive", default, "chunked@8"} <= set(rows), rows.keys()
    for key, row in rows.items():
        assert row["peak_mib"] > 0, row
        assert row["values"] == pytest.approx(rows["naive"]["values"], rel=1e-5), key
    md = (tmp_path / "epsilon_dpo_memory.md").read_text()
    assert "Quick mode" in md and "| naive |" in md
