"""Every public module of gammapo_spec has an API reference page, and every page is in the nav.

A new spec module without a page fails here with the two lines to add; the build test then checks
the page renders (``mkdocs build --strict``)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _spec_modules() -> list[str]:
    return sorted(p.stem for p in (ROOT / "gammapo_spec").glob("*.py") if not p.name.startswith("_"))


def test_docs_api_every_spec_module_has_a_page() -> None:
    mkdocs_yml = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    missing = []
    for module in _spec_modules():
        page = ROOT / "docs" / "reference" / "spec" / f"{module}.md"
        if not page.is_file() or f"::: gammapo_spec.{module}" not in page.read_text(encoding="utf-8"):
            missing.append(f"docs/reference/spec/{module}.md containing '::: gammapo_spec.{module}'")
        if f"reference/spec/{module}.md" not in mkdocs_yml:
            missing.append(f"mkdocs.yml nav entry '- reference/spec/{module}.md' under gammapo_spec")
    assert not missing, "API reference is missing:\n  " + "\n  ".join(missing)


def test_docs_api_backend_pages_reference_the_backends() -> None:
    for module in ("gammapo_torch", "gammapo_jax"):
        page = (ROOT / "docs" / "reference" / f"{module}.md").read_text(encoding="utf-8")
        assert f"::: {module}" in page, f"docs/reference/{module}.md does not render {module}"
