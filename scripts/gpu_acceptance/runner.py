"""The command line: install the carried wheels, run every section in its own process, write the report."""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

from . import BUDGETS, DRY_BUDGETS, PARALLEL, SECTIONS
from ._env import MANIFEST, ROOT, child_env, conformance_shim, install_wheels
from .report import markdown

NAME = "gpu_acceptance"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scripts.gpu_acceptance", description=__doc__)
    p.add_argument("out", help="folder for gpu_acceptance.md, .json and .log (created)")
    p.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU; CUDA-only parts are skipped")
    p.add_argument("--wheels", default=None,
                   help="folder of carried wheels to install (default .whl; none in a dry run unless given)")
    p.add_argument("--manifest", default=str(MANIFEST),
                   help="wheel list with sha256 (default scripts/gpu_wheels.txt; 'none': every wheel in --wheels)")
    p.add_argument("--site", default=None, help="where the wheels are installed (default: a new temporary folder)")
    p.add_argument("--only", default=None, help="comma-separated sections to run (default: all)")
    p.add_argument("--time-limit", type=float, default=None, help="seconds for the whole run (default 360; dry run 300)")
    ns = p.parse_args(argv)
    if ns.only:
        unknown = sorted(set(ns.only.split(",")) - set(SECTIONS))
        if unknown:
            p.error(f"--only: unknown sections {unknown}; known: {', '.join(SECTIONS)}")
    return ns


def run_section(name: str, dry: bool, env: dict[str, str], budget: float, work: pathlib.Path) -> dict:
    """One section in a child process, killed at ``budget`` seconds; its result file, as far as it got."""
    result, log = work / f"{name}.json", work / f"{name}.log"
    if budget < 5:
        return {"section": name, "status": "skipped: out of time", "parts": [], "measurements": {}, "log": ""}
    cmd = [sys.executable, "-m", "scripts.gpu_acceptance._child", name, str(result)] + (["--dry-run"] if dry else [])
    start = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**env, "GAMMAPO_SECTION_BUDGET": str(budget)}, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc, timed_out = proc.wait(timeout=budget), False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc, timed_out = proc.wait(), True
    try:
        data = json.loads(result.read_text())
    except (OSError, ValueError):
        data = {"section": name, "parts": [], "measurements": {}}
    data.update(rc=rc, timed_out=timed_out, seconds=round(time.perf_counter() - start, 1), budget=budget,
                log=log.read_text(errors="replace")[-6000:])
    data["status"] = section_status(data)
    print(f"== {name}: {data['status']} in {data['seconds']} s (budget {budget:.0f} s)", flush=True)
    return data


def section_status(data: dict) -> str:
    parts = [p["status"] for p in data.get("parts", [])]
    if data.get("timed_out"):
        return "timeout"
    if data.get("rc") not in (0, None) or data.get("error"):
        return "error"
    if any(s in ("fail", "error") for s in parts):
        return "fail"
    if parts and all(s.startswith("skipped") for s in parts):
        return "skipped"
    return "ok" if parts else "error"


def write(out: pathlib.Path, report: dict) -> None:
    (out / f"{NAME}.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (out / f"{NAME}.md").write_text("\n".join(markdown(report)) + "\n")
    logs = [f"===== {s['section']} ({s.get('status')}) =====\n{s.get('log', '')}" for s in report["sections"]]
    (out / f"{NAME}.log").write_text("\n".join(logs) + "\n")


def main(argv: list[str] | None = None) -> int:
    ns = parse(argv)
    t0 = time.perf_counter()
    out = pathlib.Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    limit = ns.time_limit or (300.0 if ns.dry_run else 360.0)
    budgets = DRY_BUDGETS if ns.dry_run else BUDGETS
    site = pathlib.Path(ns.site) if ns.site else pathlib.Path(tempfile.mkdtemp(prefix="gammapo_site_"))
    manifest = None if ns.manifest == "none" else pathlib.Path(ns.manifest)
    if ns.wheels is None and ns.dry_run:
        wheels = {"wheel_dir": None, "site": str(site), "installed": [],
                  "problems": ["dry run without --wheels: the packages already installed are used"]}
    else:
        wheels = install_wheels(pathlib.Path(ns.wheels or ROOT / ".whl"), site, manifest)
    env = child_env(site, conformance_shim())
    work = pathlib.Path(tempfile.mkdtemp(prefix="gammapo_acc_"))
    wanted = [s for s in SECTIONS if not ns.only or s in ns.only.split(",")]
    report = {"dry_run": ns.dry_run, "command": " ".join(["python -m scripts.gpu_acceptance", *(argv or sys.argv[1:])]),
              "wheels": wheels, "time_limit": limit, "sections": []}

    def left() -> float:
        return limit - (time.perf_counter() - t0)

    def budget(name: str) -> float:
        return min(budgets[name], left())

    def add(result: dict) -> None:
        report["sections"].append(result)
        report["sections"].sort(key=lambda s: SECTIONS.index(s["section"]))
        report["seconds"] = round(time.perf_counter() - t0, 1)
        write(out, report)

    for name in wanted:
        if name in PARALLEL:
            continue
        if name == "sync_and_graphs":  # the correctness sections first, side by side
            _parallel(wanted, ns.dry_run, env, budget, work, add)
        add(run_section(name, ns.dry_run, env, budget(name), work))
    if "sync_and_graphs" not in wanted:
        _parallel(wanted, ns.dry_run, env, budget, work, add)
    print(f"wrote {out / (NAME + '.md')} in {report['seconds']} s", flush=True)
    bad = [s["section"] for s in report["sections"] if s["status"] in ("error", "timeout")]
    return 1 if bad else 0


def _parallel(wanted, dry, env, budget, work, add) -> None:
    names = [n for n in PARALLEL if n in wanted]
    if not names:
        return
    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        for result in pool.map(lambda n: run_section(n, dry, env, budget(n), work), names):
            add(result)
