"""scripts/griffe_rst_math.py: the reST in our docstrings becomes Markdown that arithmatex/KaTeX render."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
pytest.importorskip("griffe", reason="griffe (mkdocstrings-python's loader) is not installed: pip install -e '.[docs]'")

from griffe_rst_math import rst_to_markdown  # noqa: E402


def test_rst_to_markdown_inline_math_and_roles() -> None:
    text = "gap :math:`h = u_w - u_l`, see :func:`~gammapo_spec.reward_gap` and :class:`gammapo_spec.QueueState`."
    assert rst_to_markdown(text) == "gap $h = u_w - u_l$, see `reward_gap` and `gammapo_spec.QueueState`."


def test_rst_to_markdown_math_block_becomes_display_math() -> None:
    text = "Objective:\n\n.. math::\n\n    \\min_p f(p)\n    + g(p)\n\nafter"
    assert rst_to_markdown(text) == "Objective:\n\n$$\n\\min_p f(p)\n+ g(p)\n$$\n\nafter"


def test_rst_to_markdown_one_line_math_directive() -> None:
    assert rst_to_markdown(".. math:: a + b") == "$$\na + b\n$$"


def test_rst_to_markdown_code_block_and_doctest_are_fenced() -> None:
    text = ".. code-block:: text\n\n    p <- 1/M\n\nExample:\n    >>> x = [1][0]\n    >>> x\n    1"
    out = rst_to_markdown(text)
    assert "```text\np <- 1/M\n```" in out
    assert "    ```pycon\n    >>> x = [1][0]\n    >>> x\n    1\n    ```" in out


def test_rst_to_markdown_simple_table_keeps_abs_bars_inside_math() -> None:
    text = "=====  ==========\ndpo    :math:`a|b|`\nhinge  x | y\n=====  =========="
    lines = rst_to_markdown(text).splitlines()
    assert lines[1] == "|---|---|"
    assert lines[2] == r"| dpo | $a\vert b\vert $ |"
    assert lines[3] == r"| hinge | x \| y |"


def test_rst_to_markdown_underlined_title_becomes_bold() -> None:
    assert rst_to_markdown("Two solvers\n-----------\ntext") == "**Two solvers**\n\ntext"


def test_rst_to_markdown_splits_two_exceptions_on_one_line() -> None:
    text = "Raises:\n    StateError: bad state. InputError: bad gaps (checked\n    eagerly)."
    assert rst_to_markdown(text) == "Raises:\n    StateError: bad state.\n    InputError: bad gaps (checked\n        eagerly)."


def test_rst_to_markdown_literal_block_marker() -> None:
    assert rst_to_markdown("Example (runnable)::\n\n    trainer.train()") == "Example (runnable):\n\n    trainer.train()"
