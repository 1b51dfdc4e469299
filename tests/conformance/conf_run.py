"""Run the conformance suite in a subprocess and read its JSON report (shared by the test_conf_* files).

The child runs with ``CI`` set, as CI runs it. Two CI runs saw one mutant's run print nothing for
minutes while it took 8 s here: with ``CI`` set, pytest diffs a failing ``list == list`` assertion
untruncated with ``difflib``, and Hypothesis repeats the failing example (traced) while shrinking, so
comparing masks of up to 1024 entries took minutes. The suite now compares arrays with
``gammapo_conformance.adapters.assert_equal``, and setting ``CI`` here keeps local runs honest.

A run that does not finish in ``timeout`` seconds is killed and tried once more; a second timeout
fails the test with both output tails. The child runs unbuffered with pytest's
``faulthandler_timeout``, so a stalled run leaves the stacks of its threads in the output.
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
    # as on a CI machine, wherever this runs: pytest then writes assertion diffs untruncated, and
    # Hypothesis picks its "ci" profile (a failing-example slowdown that only CI saw came from that)
    env.setdefault("CI", "1")
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
