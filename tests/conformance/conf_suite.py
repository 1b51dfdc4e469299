"""The conformance suite's tests run in this process, on any backend object (shared by test_conf_suite.py,
test_conf_mutants.py and scripts/mutation_score.py).

:data:`CI_EXAMPLES` is the Hypothesis budget CI gives each backend (derandomized): numpy and torch 25
examples per test, jax 6 (every new shape recompiles under ``jit``, ~2 s an example on a shared core).
A release run uses 200 for every backend: ``gammapo conformance NAME --max-examples 200 --derandomize``.

The suite's tests are the functions of ``gammapo_conformance.test_<op>`` (the op is the module's name),
each taking the ``conf`` fixture (a :class:`~gammapo_conformance._harness.Harness`). Hypothesis reads a
test's settings from the test function itself, where ``@given`` put the profile of import time;
:func:`budget` swaps them for the suite's settings at a given budget while one test runs.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
from typing import Any, Callable

import pytest
from hypothesis import Phase

import gammapo_conformance
from gammapo_conformance import skipfiles
from gammapo_conformance._harness import Harness
from gammapo_conformance.plugin import suite_settings

from conf_run import ROOT

#: Hypothesis examples per test that CI runs each backend with (derandomized).
CI_EXAMPLES = {"numpy": 25, "torch": 25, "jax": 6}
#: Examples per test a mutant is judged at (the budget of the NumPy and torch backends it is a copy of).
MUTANT_EXAMPLES = CI_EXAMPLES["numpy"]


def xfail_file(backend: str):
    """``conformance/xfail_<backend>.txt``, the backend's known findings (reasons in the file), or ``None``."""
    f = ROOT / "conformance" / f"xfail_{backend}.txt"
    return f if f.exists() else None


def xfail_reason(backend: str, fn: Callable) -> str | None:
    """Why ``fn`` is expected to fail on ``backend`` (its entry in the backend's xfail file), or ``None``."""
    return skipfiles.match(suite_nodeid(fn), skipfiles.load(xfail_file(backend)))


def suite_ops() -> list[str]:
    """The ops the suite has tests for (``test_<op>.py`` modules), sorted."""
    return sorted(m.name[len("test_"):] for m in pkgutil.iter_modules(gammapo_conformance.__path__)
                  if m.name.startswith("test_"))


def suite_tests(op: str | None = None) -> dict[str, Callable]:
    """``{test name: test function}`` of ``op``'s module (every op's for ``None``), in file order."""
    tests: dict[str, Callable] = {}
    for name in ([op] if op is not None else suite_ops()):
        module = importlib.import_module(f"gammapo_conformance.test_{name}")
        for key, fn in vars(module).items():
            if key.startswith("test_") and callable(fn) and getattr(fn, "__module__", None) == module.__name__:
                if key in tests:  # pragma: no cover - two modules of the suite with one test name
                    raise RuntimeError(f"two conformance tests are named {key}")
                tests[key] = fn
    return tests


def suite_nodeid(fn: Callable) -> str:
    """The test's node id in a run of the suite itself (``conformance/test_<op>.py::name``), which skip
    and xfail files match."""
    return f"conformance/{fn.__module__.rpartition('.')[2]}.py::{fn.__name__}"


@contextlib.contextmanager
def budget(fn: Callable, max_examples: int, *, shrink: bool = True):
    """Run the ``@given`` test ``fn`` with the suite's derandomized settings at ``max_examples``.

    ``shrink=False`` stops at the first failing example as found (no shrinking or explaining): whether a
    test fails does not depend on it, only how small the example it reports is.
    """
    if not getattr(fn, "is_hypothesis_test", False):  # a plain (parametrised) test: nothing to set
        yield
        return
    if not hasattr(fn, "_hypothesis_internal_use_settings"):  # pragma: no cover - another Hypothesis layout
        raise RuntimeError(f"{fn.__name__}: this Hypothesis keeps a test's settings elsewhere; conf_suite.budget needs updating")
    overrides = {} if shrink else {"phases": (Phase.explicit, Phase.reuse, Phase.generate, Phase.target)}
    before = fn._hypothesis_internal_use_settings
    fn._hypothesis_internal_use_settings = suite_settings(max_examples, True, **overrides)
    try:
        yield
    finally:
        fn._hypothesis_internal_use_settings = before


def first_failure(backend: Any, op: str, max_examples: int = MUTANT_EXAMPLES) -> tuple[str, str] | None:
    """``(test name, error)`` of the first of ``op``'s tests that fails on ``backend``, or ``None``.

    What ``gammapo conformance BACKEND -k OP -x`` checks, without its process and without shrinking the
    failing example. A test that skips (the backend lacks an optional module) does not fail.
    """
    for name, fn in suite_tests(op).items():
        for args in parametrisations(fn):
            try:
                with budget(fn, max_examples, shrink=False):
                    fn(conf=Harness(backend, suite_nodeid(fn)), **args)
            except pytest.skip.Exception:
                continue
            except Exception as exc:  # noqa: BLE001 - any error of a test is its failure
                return name, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
    return None


def parametrisations(fn: Callable) -> list[dict[str, Any]]:
    """The keyword arguments of each call pytest makes of ``fn`` from its ``parametrize`` marks
    (``[{}]`` for a test without them)."""
    calls: list[dict[str, Any]] = [{}]
    for mark in getattr(fn, "pytestmark", []):
        if mark.name != "parametrize":
            continue
        names, values = mark.args[0], mark.args[1]
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        rows = [v.values if hasattr(v, "values") and hasattr(v, "marks") else v for v in values]
        rows = [dict(zip(names, r if len(names) > 1 else (r,))) for r in rows]
        calls = [{**c, **r} for c in calls for r in rows]
    return calls
