"""The correctness sections: the project's CUDA tests and the conformance suite, each a pytest run.

The per-test outcomes are read from pytest's ``-v`` lines as they are printed, so a run stopped at its
time budget still reports the tests it finished.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from ._child import cuda
from ._env import ROOT

LINE = re.compile(r"^(\S+::\S+)\s+(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b")
SUMMARY = re.compile(r"^(FAILED|ERROR) (\S+)(?: - (.*))?$")


def pytest_run(rec, name: str, args: list[str], env: dict[str, str], budget: float) -> dict:
    """Run ``pytest args`` for at most ``budget`` seconds; record counts, failures and the outcome."""
    cmd = [sys.executable, "-m", "pytest", "-v", "-rfE", "-p", "no:cacheprovider", *args]
    with rec.part(name) as p:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=max(budget, 5))
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            timed_out = True
        outcomes: dict[str, str] = {}
        failures: dict[str, str] = {}
        for line in out.splitlines():
            m = LINE.match(line)
            if m:
                outcomes[m.group(1)] = m.group(2)
            m = SUMMARY.match(line)
            if m:
                failures[m.group(2)] = (m.group(3) or "")[:300]
        counts = {k: sum(1 for v in outcomes.values() if v == k) for k in ("PASSED", "FAILED", "ERROR", "SKIPPED", "XFAIL", "XPASS")}
        bad = counts["FAILED"] + counts["ERROR"]
        p["data"] = {"command": " ".join(cmd[1:]), "env": env, "rc": proc.returncode, "timed_out": timed_out,
                     "counts": counts, "failures": failures, "seconds": round(time.perf_counter() - start, 1),
                     "tail": out[-2000:]}
        summary = ", ".join(f"{v} {k.lower()}" for k, v in counts.items() if v)
        p["detail"] = (summary or "no test ran") + (f"; stopped at its {budget:.0f} s budget" if timed_out else "")
        if bad or (proc.returncode not in (0, 5) and not timed_out):
            p["status"] = "fail"
            if not bad:
                p["detail"] += f"; pytest exit status {proc.returncode}: " + out.strip()[-300:]
        elif counts["PASSED"] == 0 and not timed_out:
            p["status"] = "skipped: no CUDA" if counts["SKIPPED"] else "fail"
        elif timed_out and counts["PASSED"] == 0:
            p["status"] = "fail"
        rec.measure(f"{name}.timed_out", timed_out)
        rec.measure(f"{name}.counts", counts)
        rec.measure(f"{name}.status", p["status"])
        return p


def cuda_tests(rec, dry: bool) -> None:
    files = ["tests/torch/test_torch_cuda.py"]
    if not dry:  # on a CUDA build its fake-cuda variant runs too (on a CPU-only build it uses fake CPU tensors)
        files.append("tests/torch/test_torch_device_discipline.py")
    pytest_run(rec, "cuda_tests", files, {}, rec.left(90) - 5)


def _conformance(rec, dry: bool, backend: str, device_env: dict[str, str], examples: int, budget: float) -> None:
    xfail = ROOT / "conformance" / f"xfail_{backend}.txt"
    target = ["conformance/test_calibrate_step.py" if backend == "torch" else "conformance/test_reward_gap.py"] if dry else ["conformance"]
    args = [*target, "--backend", backend, "--conformance-max-examples", str(2 if dry else examples)]
    if xfail.is_file():
        args += ["--conformance-xfail-file", str(xfail.relative_to(ROOT))]
    pytest_run(rec, f"conformance_{backend}", args, device_env, rec.left(budget) - 5)


def conformance_torch(rec, dry: bool) -> None:
    device = "cuda" if cuda() else "cpu"
    _conformance(rec, dry, "torch", {"GAMMAPO_CONFORMANCE_DEVICE": device}, 8, 90)
    rec.measure("conformance_torch.device", device)


def conformance_jax(rec, dry: bool) -> None:
    import jax

    rec.measure("conformance_jax.device", jax.default_backend())
    _conformance(rec, dry, "jax", {}, 5, 90)
