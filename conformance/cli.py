"""``python -m gammapo conformance NAME_OR_MODULE:ATTR [options]``: run the suite on a backend."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["main", "build_pytest_args"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gammapo conformance", description="run the conformance suite against a backend")
    p.add_argument("backend", help="registry NAME (numpy, torch, jax, ...) or MODULE:ATTR")
    p.add_argument("--max-examples", type=int, default=None, help="Hypothesis examples per test (default 25)")
    p.add_argument("--derandomize", action="store_true", help="use a fixed Hypothesis seed")
    p.add_argument("--skip-file", help="test ids to skip, one per line (# reason)")
    p.add_argument("--xfail-file", help="test ids expected to fail, one per line (# reason)")
    p.add_argument("--report-md", help="write the op x backend matrix as Markdown here")
    p.add_argument("--report-json", help="write the per-test results as JSON here")
    return p


def build_pytest_args(ns: argparse.Namespace, extra: list[str]) -> list[str]:
    """The pytest argument list for the parsed options (extra arguments are passed through)."""
    args = [str(Path(__file__).resolve().parent), "-p", "no:cacheprovider", "--conformance-backend", ns.backend]
    for opt in ("max_examples", "skip_file", "xfail_file", "report_md", "report_json"):
        value = getattr(ns, opt)
        if value is not None:
            args += [f"--conformance-{opt.replace('_', '-')}", str(value)]
    if ns.derandomize:
        args.append("--conformance-derandomize")
    return args + extra


def main(argv=None) -> int:
    """Run the suite; returns pytest's exit status (0: the backend conforms).

    Unknown options (``-x``, ``-q``, ``-k EXPR``) are passed to pytest.
    """
    import pytest

    ns, extra = _parser().parse_known_args(argv)
    return int(pytest.main(build_pytest_args(ns, extra)))
