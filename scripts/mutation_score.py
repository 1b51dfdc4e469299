"""The conformance suite's mutation score: run every kept mutant backend and print ``killed/total``.

A mutant (``tests/conformance/mutants/conf_mutants.py``: a copy of a real backend with one plausible
porting bug) is *killed* when the suite, at CI settings (``--max-examples 25 --derandomize``, ``CI``
set), fails on it and its report names the op the bug is in. Only that op's tests run (``-k OP``),
and each run stops at its first failure (``-x``)::

    python scripts/mutation_score.py               # every mutant, two at a time
    python scripts/mutation_score.py --only sft_on_rejected --jobs 1

Exit status 0 when every mutant is killed. Survivors are listed with the op cells of their report.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTANT_DIR = ROOT / "tests" / "conformance" / "mutants"
#: The settings CI runs the suite with (tests/conformance/test_conf_backends.py).
CI_ARGS = ("--max-examples", "25", "--derandomize")


def mutants() -> dict[str, str]:
    """mutant name → the op whose tests must fail."""
    sys.path.insert(0, str(MUTANT_DIR))
    try:
        from conf_mutants import MUTANTS
    finally:
        sys.path.remove(str(MUTANT_DIR))
    return dict(sorted(MUTANTS.items()))


def run_mutant(name: str, op: str, timeout: float = 600.0) -> tuple[bool, str, float]:
    """``(killed, detail, seconds)`` of the suite's op tests on mutant ``name``."""
    env = {**os.environ, "CI": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(MUTANT_DIR), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "gammapo_conformance", f"conf_mutants:{name}", *CI_ARGS, "-k", op, "-x", "-q",
               "-p", "no:xdist", "--report-json", str(report)]
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return False, f"timed out after {timeout:g} s", time.perf_counter() - t0
        seconds = time.perf_counter() - t0
        if not report.exists():
            return False, f"no report (exit {proc.returncode}): {(proc.stdout + proc.stderr)[-800:]}", seconds
        cells = json.loads(report.read_text())["cells"]
    if proc.returncode == 0:
        return False, f"the suite passed: {cells}", seconds
    if cells.get(op) != "fail":
        return False, f"failed, but not in {op}: {cells}", seconds
    return True, f"{op} fails", seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", action="append", help="run only this mutant (repeatable)")
    p.add_argument("--jobs", type=int, default=2, help="mutants run at the same time (default 2)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per mutant (default 600)")
    a = p.parse_args(argv)
    todo = {k: v for k, v in mutants().items() if not a.only or k in a.only}
    try:
        import torch  # noqa: F401
    except ImportError:  # the torch-based mutants need torch
        skipped = [k for k in todo if k.startswith("torch_") or k == "margins_not_detached"]
        todo = {k: v for k, v in todo.items() if k not in skipped}
        print(f"torch is not installed: {len(skipped)} torch-based mutants not run")
    if a.only and set(a.only) - set(todo):
        p.error(f"unknown mutants {sorted(set(a.only) - set(todo))}")
    killed = 0
    with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        for name, (ok, detail, seconds) in zip(todo, pool.map(lambda kv: run_mutant(*kv, timeout=a.timeout),
                                                               todo.items())):
            killed += ok
            print(f"{'killed  ' if ok else 'SURVIVED'} {name:<40} {seconds:6.1f} s  {detail}", flush=True)
    print(f"mutation score: {killed}/{len(todo)}")
    return 0 if killed == len(todo) else 1


if __name__ == "__main__":
    raise SystemExit(main())
