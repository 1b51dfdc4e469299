"""The runnable examples in the docstrings of gammapo.data run and print what they say."""

import doctest
import importlib

import pytest

MODULES = ["gammapo.data.reward_augmented", "gammapo.data._condition", "gammapo.data.io", "gammapo.data.augment"]


@pytest.mark.parametrize("name", MODULES)
def test_data_module_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed"
