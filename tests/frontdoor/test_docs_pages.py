"""The pages a new user starts from: their code runs and prints what they say, and they speak to users."""

from __future__ import annotations

import contextlib
import io
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "assets" not in p.parts)

#: A ```python block, the word "prints", and a ```text block with its output.
PRINTS = re.compile(r"```python\n((?:(?!```).)*?)```\s*\n\s*prints\s*\n\s*```text\n(.*?)```", re.S)
PRINTING_PAGES = [p for p in PAGES if PRINTS.search(p.read_text(encoding="utf-8"))]


@pytest.mark.parametrize("page", PRINTING_PAGES, ids=[str(p.relative_to(DOCS)) for p in PRINTING_PAGES])
def test_page_code_prints_what_the_page_says(page):
    scope: dict = {}
    for code, expected in PRINTS.findall(page.read_text(encoding="utf-8")):
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            exec(compile(code, str(page), "exec"), scope)
        assert buffer.getvalue().strip() == expected.strip(), f"{page.relative_to(ROOT)}: the code prints\n{buffer.getvalue()}"


def test_start_pages_show_printed_output():
    for name in ("index.md", "quickstart.md", "theory/objective.md"):
        assert DOCS / name in PRINTING_PAGES, f"docs/{name} lost its checked example"


def test_code_cites_docs_pages_not_a_missing_design_file():
    roots = ["gammapo", "gammapo_spec", "backends", "conformance", "benchmarks", "examples", "scripts", "tests"]
    cited = [str(p.relative_to(ROOT)) for r in roots for p in (ROOT / r).rglob("*.py")
             if "ALGORITHMS.md" in p.read_text(encoding="utf-8") and p != pathlib.Path(__file__).resolve()]
    assert not cited, f"these files cite ALGORITHMS.md, which the repository does not have: {cited}"


def test_citation_page_bibtex_is_well_formed():
    text = (DOCS / "citation.md").read_text(encoding="utf-8")
    bib = "\n".join(re.findall(r"```bibtex\n(.*?)```", text, flags=re.S))
    entries = re.findall(r"@(\w+)\{([\w.-]+),(.*?)\n\}", bib, flags=re.S)
    keys = [key for _, key, _ in entries]
    assert len(keys) == len(set(keys)) == bib.count("@") >= 11
    for kind, key, body in entries:
        assert body.count("{") == body.count("}"), f"{key}: unbalanced braces"
        for field in ("title", "author", "year"):
            assert re.search(rf"^\s*{field}\s*=", body, re.M), f"{key} has no {field}"
        assert kind in ("inproceedings", "misc", "article")
    assert "Robust Preference Optimization via Dynamic Target Margins" in bib and "2506.03690" in bib
    table_keys = re.findall(r"\| `([a-z0-9]+)` \|$", text, flags=re.M)
    assert set(table_keys) == set(keys), "the method table and the BibTeX entries disagree"


def test_install_page_names_only_real_extras():
    tomllib = pytest.importorskip("tomllib")
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    text = (DOCS / "install.md").read_text(encoding="utf-8")
    named = set(re.findall(r"^\| `(\w+)` \|", text, flags=re.M))
    assert named == extras, f"install.md lists {sorted(named)}, pyproject has {sorted(extras)}"
    for used in re.findall(r'\.\[(\w+)\]', text):
        assert used in extras, used
