r"""Run the benchmarks: ``python -m benchmarks [NAME ...] [--quick] [--out DIR]`` (or ``gammapo bench ...``).

Without names every registered benchmark runs, in the order of :data:`REGISTRY`. Each is a module of
this package exposing ``main(argv) -> int`` (``--quick`` for tiny sizes, ``--out DIR`` for the
results folder); modules are imported only when run, and a benchmark whose module or framework is
missing is skipped with a message. The runner prints the machine first (CPU model, cores,
framework versions, accelerator — "no GPU" here) and finally writes ``summary.md`` in the results
folder: this run's status per benchmark and every result file the folder holds (with its title).
``--summary-only`` rewrites the summary of ``--out DIR`` without running anything; ``--list`` lists
the benchmarks.

Results go to ``--out DIR``, or else to a new folder ``benchmarks/runs/<UTC time>/``: a run never
replaces the committed files in ``benchmarks/results/`` (which the documentation includes) unless
it is given ``--out benchmarks/results``.

>>> from benchmarks.__main__ import REGISTRY
>>> list(REGISTRY)[:2]
['solver_agreement', 'calibration_torch']
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import inspect
import pathlib
import sys
import time
from typing import Any, Sequence

from benchmarks._perf_common import RESULTS, machine_info, machine_line, markdown_table

#: Benchmark name → (module, one-line description).
REGISTRY: dict[str, tuple[str, str]] = {
    "solver_agreement": ("benchmarks.solver_agreement", "mirror descent vs the exact calibration minimiser (NumPy)"),
    "calibration_torch": ("benchmarks.bench_calibration_torch", "calibration latency, torch vs released-code baseline"),
    "calibration_jax": ("benchmarks.bench_calibration_jax", "calibration latency, JAX vs released-code baseline"),
    "fused_loss": ("benchmarks.bench_fused_loss", "fused chunked γ-PO loss vs unfused logits: peak memory, time"),
    "loss_throughput": ("benchmarks.bench_loss_throughput", "loss forward+backward throughput per backend"),
    "step_overhead": ("benchmarks.bench_step_overhead", "training-step overhead of γ-SimPO over SimPO"),
    "scaling": ("benchmarks.bench_scaling", "calibration share of a data-parallel step at 1, 2, 4 ranks"),
    "epsilon_dpo_memory": ("benchmarks.bench_epsilon_dpo_memory", "ε-DPO token op, chunked vs naive logits±: peak memory, time"),
}


#: Where a run without ``--out`` writes: a new folder per run, never the committed results.
RUNS = RESULTS.parent / "runs"


def _takes_options(module_name: str) -> bool | None:
    """Whether ``module_name.main`` takes an ``argv`` (None: the module or its framework is missing)."""
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return bool(inspect.signature(module.main).parameters)


def fresh_folder(root: pathlib.Path | None = None) -> pathlib.Path:
    """A new, empty folder ``root/<UTC time>`` (default root :data:`RUNS`; ``-2``, ``-3``, ... if taken)."""
    root = RUNS if root is None else root
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for n in range(1, 1000):
        folder = root / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
    raise RuntimeError(f"no free folder name under {root}")


def run(names: Sequence[str], forwarded: list[str]) -> list[dict[str, Any]]:
    """Run the named benchmarks one after the other; returns one status record per benchmark."""
    records = []
    for name in names:
        module_name, _ = REGISTRY[name]
        print(f"\n=== {name} ({module_name}) ===", flush=True)
        start = time.perf_counter()
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            print(f"  skipped: {type(exc).__name__}: {exc}")
            records.append({"name": name, "status": f"skipped ({type(exc).__name__}: {exc})", "seconds": 0.0})
            continue
        try:
            rc = int(module.main(forwarded) or 0)
            status = "ok" if rc == 0 else f"exit status {rc}"
        except ImportError as exc:
            status = f"skipped ({type(exc).__name__}: {exc})"
            print(f"  {status}")
        except Exception as exc:  # noqa: BLE001 - one failing benchmark must not stop the others
            status = f"failed ({type(exc).__name__}: {exc})"
            print(f"  {status}")
        records.append({"name": name, "status": status, "seconds": time.perf_counter() - start})
    return records


def _title(path: pathlib.Path) -> str:
    """``": <first heading>"`` of a Markdown result file, else ``""``."""
    if path.suffix != ".md":
        return ""
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("#"):
            return ": " + line.lstrip("#").strip()
    return ""


def write_summary(out: pathlib.Path, records: list[dict[str, Any]], machine: dict[str, Any], quick: bool) -> pathlib.Path:
    """``summary.md``: the machine, this run's status per benchmark, and every result file in ``out``."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmark summary",
        "",
        f"Written: {stamp}{' (quick mode: tiny sizes)' if quick else ''}.",
        f"Machine: {machine_line(machine)}. GPU numbers appear only in files that say they come from a GPU run.",
        "",
        "## This run",
        "",
    ]
    if records:
        lines += markdown_table(
            ["benchmark", "what", "status", "seconds"],
            [[r["name"], REGISTRY[r["name"]][1], r["status"], f"{r['seconds']:.1f}"] for r in records],
        )
    else:
        lines.append("No benchmark was run (`--summary-only`): the files below come from earlier runs.")
    lines += ["", "## Result files", ""]
    files = sorted(p for p in out.iterdir() if p.is_file() and p.name != "summary.md" and p.suffix in (".md", ".json", ".png", ".csv"))
    for path in files:
        when = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        link = f"![{path.stem}]({path.name})" if path.suffix == ".png" else f"[{path.name}]({path.name})"
        lines.append(f"- {link}{_title(path)} — written {when}")
    target = out / "summary.md"
    target.write_text("\n".join(lines) + "\n")
    return target


def build_parser(prog: str = "gammapo bench") -> argparse.ArgumentParser:
    """The options of ``gammapo bench`` / ``python -m benchmarks``."""
    from gammapo.cli import CliParser

    parser = CliParser(prog=prog, description="Run gammapo's benchmarks (from a source checkout).")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all): {', '.join(REGISTRY)}")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds each), for smoke tests")
    parser.add_argument("--out", default=None,
                        help="results folder (default: a new folder under benchmarks/runs/; "
                             "--out benchmarks/results replaces the committed results)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--summary-only", action="store_true", help="only rewrite summary.md from the files in the results folder")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks``; returns 0 when every benchmark ran or was skipped."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        for name, (module, what) in REGISTRY.items():
            print(f"{name:18s} {module:40s} {what}")
        return 0
    unknown = [n for n in args.names if n not in REGISTRY]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(REGISTRY)}")
    if args.summary_only and not args.out:
        parser.error("--summary-only rewrites the summary of a results folder: name it with --out DIR")
    names = [] if args.summary_only else (args.names or list(REGISTRY))
    # every benchmark must write where it is told and honour --quick: refuse before running any
    fixed = [n for n in names if _takes_options(REGISTRY[n][0]) is False]
    if fixed:
        parser.error(f"{', '.join(fixed)} take(s) no options, so cannot write to the results folder or honour "
                     f"--quick: run {' / '.join('python -m ' + REGISTRY[n][0] for n in fixed)} instead")
    if args.out:
        out = pathlib.Path(args.out)
        if out.exists() and not out.is_dir():
            parser.error(f"--out {args.out}: exists and is not a folder")
        out.mkdir(parents=True, exist_ok=True)
    else:
        out = fresh_folder()
    forwarded = (["--quick"] if args.quick else []) + ["--out", str(out)]
    machine = machine_info()
    print(f"Machine: {machine_line(machine)}")
    records = run(names, forwarded) if names else []
    summary = write_summary(out, records, machine, args.quick and not args.summary_only)
    print(f"\nwrote {summary}")
    return 0 if all(r["status"] == "ok" or r["status"].startswith("skipped") for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
