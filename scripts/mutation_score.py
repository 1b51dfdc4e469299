"""The conformance suite's mutation score: run every kept mutant backend and print ``killed/total``.

A mutant (``tests/conformance/mutants/conf_mutants.py``: a copy of a real backend with one plausible
porting bug) is *killed* when one of the suite's tests of the op its bug is in fails on it at CI
settings (25 examples per test, derandomized). Only that op's tests run, in this process, up to the
first failure (``tests/conformance/conf_suite.py``, which ``tests/conformance/test_conf_mutants.py``
runs as one test per mutant)::

    python scripts/mutation_score.py                       # every mutant, one after the other
    python scripts/mutation_score.py --jobs 2              # two processes
    python scripts/mutation_score.py --only sft_on_rejected

Exit status 0 when every mutant is killed. Survivors are listed with what passed.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTANT_DIR = ROOT / "tests" / "conformance" / "mutants"
sys.path[:0] = [str(ROOT / "tests" / "conformance"), str(MUTANT_DIR)]


def mutants() -> dict[str, str]:
    """mutant name → the op whose tests must fail."""
    from conf_mutants import MUTANTS

    return dict(sorted(MUTANTS.items()))


def run_mutant(name: str) -> tuple[bool, str, float]:
    """``(killed, detail, seconds)`` of the suite's tests of the mutant's op on mutant ``name``."""
    import warnings

    import conf_mutants
    from conf_suite import first_failure

    op = mutants()[name]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the regime warnings of the calibrations the suite draws
        failed = first_failure(getattr(conf_mutants, name), op)
    seconds = time.perf_counter() - t0
    if failed is None:
        return False, f"every test of {op} passed", seconds
    return True, f"{failed[0]} fails: {failed[1][:120]}", seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", action="append", help="run only this mutant (repeatable)")
    p.add_argument("--jobs", type=int, default=1, help="processes running mutants at the same time (default 1)")
    a = p.parse_args(argv)
    todo = [k for k in mutants() if not a.only or k in a.only]
    if a.only and set(a.only) - set(todo):
        p.error(f"unknown mutants {sorted(set(a.only) - set(todo))}")
    if importlib.util.find_spec("torch") is None:
        from conf_mutants import needs_torch

        skipped = [k for k in todo if needs_torch(k)]
        todo = [k for k in todo if k not in skipped]
        print(f"torch is not installed: {len(skipped)} torch-based mutants not run")
    if a.jobs > 1:
        with ProcessPoolExecutor(max_workers=a.jobs, mp_context=get_context("spawn")) as pool:
            results = list(pool.map(run_mutant, todo))
    else:
        results = map(run_mutant, todo)
    killed = 0
    for name, (ok, detail, seconds) in zip(todo, results):
        killed += ok
        print(f"{'killed  ' if ok else 'SURVIVED'} {name:<40} {seconds:6.1f} s  {detail}", flush=True)
    print(f"mutation score: {killed}/{len(todo)}")
    return 0 if killed == len(todo) else 1


if __name__ == "__main__":
    raise SystemExit(main())
