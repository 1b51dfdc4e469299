"""The Quickstart page's script (examples/quickstart_trl.py) runs and trains: a γ-SimPO run in TRL on a CPU."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import time

import pytest

for _name in ("torch", "trl", "transformers", "datasets", "tokenizers"):
    pytest.importorskip(_name)

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "quickstart_trl.py"


def test_quickstart_script_trains_gamma_simpo_within_minutes(tmp_path):
    start = time.monotonic()
    done = subprocess.run([sys.executable, str(SCRIPT)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    seconds = time.monotonic() - start
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "steps: 30" in out, out
    first, last = map(float, re.search(r"reward accuracy: ([\d.]+) \(first 10 steps\) -> ([\d.]+)", out).groups())
    assert last >= 0.95 and last >= first, out
    mean, low, high = map(float, re.search(r"mean ([\d.]+), from ([\d.]+) to ([\d.]+)", out).groups())
    assert low <= mean <= high and low > 0, out
    spread, bound = map(float, re.search(r"log-spread ([\d.]+) < γ0/τ = ([\d.]+)", out).groups())
    assert spread < bound == 1.0, out
    assert seconds < 300, f"the quickstart took {seconds:.0f} s; the page promises minutes"
    assert list(tmp_path.iterdir()) == [], "the quickstart wrote into the working directory"
