"""Run the conformance suite in a subprocess and read its JSON report (shared by the test_conf_* files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_suite(backend: str, tmp_path: Path, *args: str, pythonpath: list[str] = (), timeout: int = 600):
    """``(returncode, report_dict, output)`` of ``python -m gammapo_conformance BACKEND --report-json ...``."""
    out = tmp_path / "report.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "gammapo_conformance", backend, "--report-json", str(out), "-q", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )
    report = json.loads(out.read_text()) if out.exists() else None
    return proc.returncode, report, proc.stdout + proc.stderr
