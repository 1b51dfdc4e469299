"""examples/select_data.py and examples/augment_data.py run and print what they say.

No wall-clock assertion: on a shared 2-core machine the same run took 9 s alone and 90 s beside other work.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(script, out):
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    return proc, time.perf_counter() - start


def test_example_select_data(tmp_path):
    pytest.importorskip("transformers")
    proc, _ = _run("select_data.py", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "read 40, invalid 0, filtered 24, written 16" in proc.stderr
    assert "kept 16 of 40 pairs" in proc.stdout
    assert "alignment-potential keeps 16; shared with the CLI's AP selection: 16" in proc.stdout
    assert (tmp_path / "selected.jsonl").exists()


def test_example_augment_data(tmp_path):
    pytest.importorskip("datasets")
    proc, _ = _run("augment_data.py", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "read 4, invalid 0, kept 3, dropped lower 1, dropped ties 0, written 6" in proc.stderr
    assert proc.stdout.count("condition") == 6 and "score is 10 on a scale" in proc.stdout
