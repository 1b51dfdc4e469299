"""``gammapo conformance NAME_OR_MODULE:ATTR [options]``: run the suite on a backend.

The options are checked before pytest starts: an unknown backend, a backend whose framework is not
installed, a missing pytest or Hypothesis, a skip/xfail file that does not exist or a report folder that
does not exist are each answered with one line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main", "build_pytest_args"]

PROG = "gammapo conformance"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"wants a whole number >= 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    from gammapo.cli import CliParser

    p = CliParser(
        prog=PROG,
        description="Run the conformance suite against a backend. Options this command does not know "
                    "(-x, -q, -k EXPR, ...) are passed to pytest.",
    )
    p.add_argument("backend", help="registry NAME (numpy, torch, jax, or a plug-in) or MODULE:ATTR of a backend object")
    p.add_argument("--max-examples", type=_positive_int, default=None,
                   help="Hypothesis examples per test (default 25)")
    p.add_argument("--derandomize", action="store_true", help="use a fixed Hypothesis seed (a reproducible run)")
    p.add_argument("--skip-file", help="file of test ids to skip, one per line, each with '# reason'")
    p.add_argument("--xfail-file", help="file of test ids expected to fail, one per line, each with '# reason'")
    p.add_argument("--report-md", help="write the op x backend matrix as Markdown to this file")
    p.add_argument("--report-json", help="write the per-test results as JSON to this file")
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


def _problem(ns: argparse.Namespace) -> str | None:
    """What stops the suite from running with these options (one line), or ``None``."""
    import importlib.util

    missing = [m for m in ("pytest", "hypothesis") if importlib.util.find_spec(m) is None]
    if missing:
        return (f"the conformance suite needs {' and '.join(missing)}, which "
                f"{'is' if len(missing) == 1 else 'are'} not installed: pip install 'gammapo[test]'")
    for flag, path in (("--skip-file", ns.skip_file), ("--xfail-file", ns.xfail_file)):
        if path is not None and not Path(path).is_file():
            return f"{flag} {path}: no such file"
    for flag, path in (("--report-md", ns.report_md), ("--report-json", ns.report_json)):
        if path is not None and not Path(path).resolve().parent.is_dir():
            return f"{flag} {path}: the folder {Path(path).parent} does not exist"
    from gammapo import BackendNotFoundError, BackendProtocolError
    from gammapo._registry import load_backend_object
    from gammapo.cli import _one_line

    try:
        load_backend_object(ns.backend)
    except (BackendNotFoundError, BackendProtocolError, ImportError) as exc:
        return _one_line(exc)
    return None


def main(argv=None) -> int:
    """Run the suite; returns pytest's exit status (0: the backend conforms), or 2 for a bad option.

    Unknown options (``-x``, ``-q``, ``-k EXPR``) are passed to pytest.
    """
    ns, extra = _parser().parse_known_args(argv)
    problem = _problem(ns)
    if problem is not None:
        print(f"{PROG}: error: {problem}", file=sys.stderr)
        return 2
    import pytest

    return int(pytest.main(build_pytest_args(ns, extra)))
