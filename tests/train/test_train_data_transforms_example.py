"""``examples/trl_gamma_simpo.py`` with fewer steps than its logging interval (it used to end with
KeyError 'loss': nothing was logged). This test runs the example for tests/docs/test_docs_examples.py,
which skips any example that a test elsewhere runs by name ("trl_gamma_simpo.py")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "trl_gamma_simpo.py"
assert EXAMPLE.name == "trl_gamma_simpo.py"


def test_example_runs_with_fewer_steps_than_the_logging_interval(tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLE), "--steps", "5", "--out", str(tmp_path / "out")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    assert "last logged step: loss" in proc.stdout and "γ mean" in proc.stdout
