"""The pytest plugin of the conformance suite.

Enable it with ``-p gammapo_conformance.plugin`` (or the ``pytest11`` entry point) and run::

    pytest -p gammapo_conformance.plugin --pyargs gammapo_conformance --conformance-backend mypkg.backend:B

Loaded in every pytest run, it only adds its ``--conformance-*`` options and the ``conf`` fixture;
it skips, marks, reports or changes Hypothesis settings only when ``--conformance-backend`` is given
(or, from a checkout, ``pytest conformance --backend NAME``, whose ``--backend`` the checkout's
``conformance/conftest.py`` adds).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from . import report as _report
from . import skipfiles
from ._harness import DIGEST, DRAWN, EXAMPLES, Harness

_RESULTS: list[dict] = []
_STATE: dict = {}


def pytest_addoption(parser):
    g = parser.getgroup("gammapo-conformance", "gammapo conformance suite")
    g.addoption("--conformance-backend", default=None, help="backend under test: registry NAME or MODULE:ATTR")
    g.addoption("--conformance-max-examples", type=int, default=None, help="Hypothesis examples per test (25)")
    g.addoption("--conformance-derandomize", action="store_true", default=False, help="fixed Hypothesis seed")
    g.addoption("--conformance-skip-file", default=None, help="file of test ids to skip (# reason)")
    g.addoption("--conformance-xfail-file", default=None, help="file of test ids expected to fail (# reason)")
    g.addoption("--conformance-report-md", default=None, help="write the op x backend matrix as Markdown")
    g.addoption("--conformance-report-json", default=None, help="write the per-test results as JSON")


def backend_spec(config) -> str | None:
    """The backend requested by ``--conformance-backend`` or the checkout's ``--backend``."""
    spec = config.getoption("conformance_backend", default=None)
    if spec is None:
        spec = getattr(config.option, "backend", None) if _STATE.get("checkout_backend") else None
    return spec


def pytest_configure(config):
    spec = backend_spec(config)
    _STATE["spec"] = spec
    if spec is None:
        return
    from hypothesis import settings

    settings.register_profile("gammapo-conformance", suite_settings(
        config.getoption("conformance_max_examples") or 25, bool(config.getoption("conformance_derandomize"))))
    settings.load_profile("gammapo-conformance")
    _STATE["local_constants"] = exclude_local_constants()


def suite_settings(max_examples: int = 25, derandomize: bool = False, **overrides):
    """The Hypothesis settings the suite runs with: ``max_examples`` per test, no deadline, the health
    checks that large batches and the ``conf`` fixture trip off; ``overrides`` are further settings."""
    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=max_examples,
        derandomize=derandomize,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much,
                               HealthCheck.data_too_large],
        print_blob=True,
        **overrides,
    )


def exclude_local_constants() -> bool:
    """Keep Hypothesis from mixing literals of the imported local source files into its draws.

    Hypothesis (6.1xx) draws, with a small probability, constants it collects from every *local*
    module imported so far; which modules a backend imports would then change the examples (two
    backends would not be tested on the same inputs, and editing any source file could flip a
    verdict). No setting turns this off, so the collector is replaced by one that returns no local
    constants (Hypothesis's own built-in constants stay). Returns whether it could be done; where a
    Hypothesis version has no such collector, there is nothing to exclude.
    """
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:  # pragma: no cover - another Hypothesis layout
        return False
    if not hasattr(providers, "_get_local_constants") or not hasattr(providers, "Constants"):
        return False
    empty = providers.Constants()
    providers._get_local_constants = lambda: empty
    cache = getattr(providers, "CONSTANTS_CACHE", None)
    if cache is not None and hasattr(cache, "cache"):
        cache.cache.clear()
    return True


def pytest_collection_modifyitems(config, items):
    if _STATE.get("spec") is None:
        return
    skips = skipfiles.load(config.getoption("conformance_skip_file"))
    xfails = skipfiles.load(config.getoption("conformance_xfail_file"))
    for item in items:
        if "conf" not in getattr(item, "fixturenames", ()):
            continue
        reason = skipfiles.match(item.nodeid, skips)
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"skip file: {reason}"))
        reason = skipfiles.match(item.nodeid, xfails)
        if reason:
            item.add_marker(pytest.mark.xfail(reason=f"xfail file: {reason}", strict=False))


@pytest.fixture(scope="session")
def conformance_backend(request):
    """The backend object under test (loaded once per session)."""
    spec = _STATE.get("spec")
    if spec is None:
        pytest.skip("no backend selected: pass --conformance-backend NAME (or --backend from a checkout)")
    from gammapo._registry import load_backend_object

    return load_backend_object(spec)


@pytest.fixture
def conf(conformance_backend, request):
    """A :class:`~gammapo_conformance._harness.Harness` for the backend under test."""
    return Harness(conformance_backend, request.node.nodeid)


def pytest_runtest_logreport(report):
    if _STATE.get("spec") is None or "test_" not in report.nodeid:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if hasattr(report, "wasxfail"):
            outcome = "xfail" if report.skipped else "xpass"
        else:
            outcome = report.outcome
        _RESULTS.append(
            {
                "nodeid": report.nodeid,
                "op": _report.op_of(report.nodeid),
                "outcome": outcome,
                "duration": report.duration,
                "examples": EXAMPLES.get(report.nodeid, 0),
                "drawn": dict(sorted(DRAWN.get(report.nodeid, {}).items())),
                "draws_digest": DIGEST.get(report.nodeid, ""),
                "message": (str(report.longrepr)[-4000:] if report.failed else getattr(report, "wasxfail", "")),
            }
        )


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    spec = _STATE.get("spec")
    if spec is None or not _RESULTS:
        return
    rep = _report.Report(backend=spec, results=list(_RESULTS))
    terminalreporter.write_sep("=", "gammapo conformance report")
    terminalreporter.write_line(rep.text())
    md = config.getoption("conformance_report_md")
    if md:
        Path(md).write_text(_report.markdown([rep]), encoding="utf-8")
        terminalreporter.write_line(f"markdown report: {md}")
    js = config.getoption("conformance_report_json")
    if js:
        Path(js).write_text(json.dumps(rep.to_dict(), indent=1), encoding="utf-8")
