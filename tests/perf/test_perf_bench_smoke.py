"""Smoke tests of the benchmark runner: ``python -m benchmarks --quick fused_loss`` runs and writes its files.

No timing assertions: only that the runner works end to end at tiny sizes and reports honestly.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_benchmarks_main_quick_fused_loss_writes_results(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "fused_loss", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=170,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Machine: CPU" in proc.stdout, proc.stdout[:500]
    data = json.loads((tmp_path / "fused_loss.json").read_text())
    rows = {r["key"]: r for r in data["rows"]}
    fused = f"fused@{data['default_chunk']}"
    assert {"unfused", fused} <= set(rows), rows.keys()
    assert rows["unfused"]["peak_mib"] > 0 and rows[fused]["peak_mib"] > 0, rows
    # the fused and unfused rows compute the same γ-SimPO loss on the same inputs
    assert rows[fused]["loss"] == pytest.approx(rows["unfused"]["loss"], rel=1e-4)
    summary = (tmp_path / "summary.md").read_text()
    assert "fused_loss.md" in summary and "| fused_loss |" in summary, summary


def test_benchmarks_main_rejects_unknown_names():
    from benchmarks.__main__ import main

    with pytest.raises(SystemExit):
        main(["no_such_benchmark"])


def test_benchmarks_main_lists_registry(capsys):
    from benchmarks.__main__ import REGISTRY, main

    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in REGISTRY), out


def test_benchmarks_main_summary_only_lists_result_files(tmp_path):
    from benchmarks.__main__ import main

    (tmp_path / "fused_loss.md").write_text("# Fused γ-PO loss: peak memory\n\nbody\n")
    (tmp_path / "fused_loss.json").write_text("{}\n")
    assert main(["--summary-only", "--out", str(tmp_path)]) == 0
    summary = (tmp_path / "summary.md").read_text()
    assert "[fused_loss.md](fused_loss.md): Fused γ-PO loss: peak memory" in summary, summary
    assert "[fused_loss.json](fused_loss.json)" in summary and "No benchmark was run" in summary, summary
