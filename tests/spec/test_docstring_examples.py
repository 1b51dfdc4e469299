"""Every runnable example in the spec's and the front door's docstrings runs and prints what it says."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import gammapo_spec

MODULES = sorted(
    ["gammapo_spec"]
    + [f"gammapo_spec.{m.name}" for m in pkgutil.iter_modules(gammapo_spec.__path__)]
    + ["gammapo", "gammapo._registry", "gammapo.protocol"]
)


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples(module_name):
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {module_name}"


def test_every_public_spec_function_has_an_example_or_equation():
    missing = []
    for name in gammapo_spec.__all__:
        obj = getattr(gammapo_spec, name)
        if callable(obj) and not isinstance(obj, type):
            doc = obj.__doc__ or ""
            if ">>>" not in doc and ":math:" not in doc and "Example" not in doc:
                missing.append(name)
    assert not missing, f"public spec functions without an example or equation: {missing}"
