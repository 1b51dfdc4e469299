"""The runnable examples in the docstrings of gammapo.train and gammapo.integrations run and hold."""

import doctest
import importlib

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

MODULES = ["gammapo.integrations.losses", "gammapo.integrations._trl_config", "gammapo.train._cli_plan", "gammapo.train.data", "gammapo.train.presets", "gammapo.train.report",
           "gammapo.train.task", "gammapo.train.tiny"]


@pytest.mark.parametrize("name", MODULES)
def test_train_module_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed"
