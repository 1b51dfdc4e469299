"""The conformance suite on the project's backends, in this process, at CI settings (derandomized,
``conf_suite.CI_EXAMPLES`` examples per test): every test of ``gammapo_conformance`` once per backend,
``test_<name>[numpy]``, ``[torch]``, ``[jax]``. Known findings listed in ``conformance/xfail_<backend>.txt``
are expected failures. The suite's own entry point (``gammapo conformance NAME``, a pytest run of its
own) is run by test_conf_backends.py, test_conf_porting.py and test_conf_same_draws.py."""

import pytest

from conf_suite import CI_EXAMPLES, budget, suite_tests, xfail_reason
from gammapo_conformance._harness import Harness

globals().update(suite_tests())


@pytest.fixture(scope="module", params=[pytest.param(name, marks=pytest.mark.slow) if name == "jax" else name
                                         for name in CI_EXAMPLES])
def conformance_backend(request):
    """The backend named by the parameter (skipped where its framework is not installed). JAX is ``slow``:
    its examples recompile under ``jit`` (about a minute for the suite on a free core)."""
    pytest.importorskip(request.param)
    from gammapo._registry import load_backend_object

    return load_backend_object(request.param)


@pytest.fixture
def conf(conformance_backend, request):
    """The suite's ``conf`` fixture, for the parametrised backend at its CI budget."""
    name = request.node.callspec.params["conformance_backend"]
    reason = xfail_reason(name, request.function)
    if reason:
        request.applymarker(pytest.mark.xfail(reason=f"xfail file: {reason}", strict=False))
    with budget(request.function, CI_EXAMPLES[name]):
        yield Harness(conformance_backend, request.node.nodeid)
