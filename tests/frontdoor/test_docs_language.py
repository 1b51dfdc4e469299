"""Every docs page speaks to users (no notes about how the project is run) and its copyable code has no prompts."""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "assets" not in p.parts)


#: Words about how the project is run, not about gammapo.
INTERNAL = re.compile(r"\bissue \d+|\bsession\b|\bthe lead\b|last revised|\bthe project set\b|ALGORITHMS\.md", re.I)


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_page_has_no_internal_language(page):
    found = [m.group(0) for m in INTERNAL.finditer(page.read_text(encoding="utf-8"))]
    assert not found, f"{page.relative_to(ROOT)} says {found}"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_copyable_code_has_no_prompts(page):
    """The copy button copies a block as it is: `>>>` prompts and their output would come with it."""
    blocks = re.findall(r"```(?:python|py|pycon)\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)
    prompted = [b.splitlines()[0] for b in blocks if re.search(r"^\s*>>> ", b, re.M)]
    assert not prompted, f"{page.relative_to(ROOT)}: code blocks with >>> prompts: {prompted}"
