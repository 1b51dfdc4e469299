"""The how-to pages of the command lines name every option the commands accept: a new flag without
documentation fails here with the page to edit (the option lists come from the real parsers)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _parsers():
    from gammapo.data.cli import build_augment_parser, build_select_parser
    from gammapo.train.cli import build_parser

    return {
        "howto/select-data.md": build_select_parser(),
        "howto/augment-data.md": build_augment_parser(),
        "howto/train.md": build_parser(),
    }


@pytest.mark.parametrize("page", ["howto/select-data.md", "howto/augment-data.md", "howto/train.md"])
def test_docs_cli_page_names_every_option(page: str) -> None:
    parser = _parsers()[page]
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    options = [s for a in parser._actions for s in a.option_strings if s.startswith("--") and s != "--help"]
    missing = [o for o in options if f"`{o}" not in text]
    assert not missing, f"docs/{page} does not document {missing} (see `gammapo ... --help`)"
