"""Run the conformance suite in a subprocess and read its JSON report (shared by the test_conf_* files).

A run that does not finish in ``timeout`` seconds is killed and tried once more. The runs here take
3–15 s (a mutant) to a few minutes (a backend) on 2 cores, but one CI run saw a mutant's run produce no output at all for 600 s (not
reproduced in hundreds of local runs, so an environment stall rather than the suite); the second
try keeps such a stall from failing CI, and a second timeout still fails the test. The child runs
unbuffered with pytest's ``faulthandler_timeout``, so a stalled run leaves the stacks of its
threads in the output that the failure message quotes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Seconds after which pytest in the child dumps every thread's stack (a hang leaves its trace).
FAULTHANDLER_SECONDS = 120


def _run_once(cmd: list[str], env: dict[str, str], timeout: int) -> tuple[int | None, str]:
    """``(returncode, output)``; returncode ``None`` when the run was killed at ``timeout``."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        return None, output or ""
    return proc.returncode, output


def run_suite(backend: str, tmp_path: Path, *args: str, pythonpath: list[str] = (), timeout: int = 600,
              attempts: int = 2, env_extra: dict[str, str] | None = None):
    """``(returncode, report_dict, output)`` of ``python -m gammapo_conformance BACKEND --report-json ...``.

    ``env_extra`` is added to the child's environment. Fails the calling test (with the output's tail)
    if all ``attempts`` runs time out.
    """
    out = tmp_path / "report.json"
    env = {**os.environ, **(env_extra or {})}
    env["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath), env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    cmd = [sys.executable, "-m", "gammapo_conformance", backend, "--report-json", str(out), "-q",
           "-o", f"faulthandler_timeout={FAULTHANDLER_SECONDS}", *args]
    tails = []
    for attempt in range(1, attempts + 1):
        out.unlink(missing_ok=True)
        rc, output = _run_once(cmd, env, timeout)
        if rc is not None:
            report = json.loads(out.read_text()) if out.exists() else None
            return rc, report, output
        tails.append(f"--- attempt {attempt}: killed after {timeout} s; output tail:\n{output[-3000:]}")
        warnings.warn(f"conformance run {' '.join(cmd[3:])} timed out after {timeout} s (attempt {attempt})")
    pytest.fail("the conformance run timed out on every attempt:\n" + "\n".join(tails))
