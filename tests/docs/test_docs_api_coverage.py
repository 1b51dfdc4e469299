"""Every public module of gammapo_spec has an API reference page, and every page is in the nav.

A new spec module without a page fails here with the two lines to add; the build test then checks
the page renders (``mkdocs build --strict``)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _moved_to(path: Path) -> str | None:
    """The new home a deprecated alias module names (``MOVED_TO = "..."``), or ``None``."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("MOVED_TO = "):
            return line.split("=", 1)[1].strip().strip("\"'") or None
    return None


def _spec_modules() -> list[str]:
    """The public spec modules, deprecated aliases of modules that moved out of the spec excepted."""
    return sorted(p.stem for p in (ROOT / "gammapo_spec").glob("*.py")
                  if not p.name.startswith("_") and _moved_to(p) is None)


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


def test_docs_api_moved_spec_modules_are_documented_at_their_new_home() -> None:
    """A module moved out of the spec leaves an alias naming its new home; that home has a reference page."""
    pages = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "docs" / "reference").rglob("*.md"))
    moved = {p.stem: _moved_to(p) for p in (ROOT / "gammapo_spec").glob("*.py") if _moved_to(p)}
    missing = [f"{old} -> {new}" for old, new in moved.items() if f"::: {new}\n" not in pages + "\n"]
    assert not missing, f"moved spec modules without a reference page at the new place: {missing}"
