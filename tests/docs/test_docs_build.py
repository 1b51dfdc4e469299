"""The documentation site builds with ``mkdocs build --strict``: a broken link, a missing snippet file,
a stale API reference entry or an unparsable docstring fails this test (and so CI)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DOCS_PACKAGES = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "pymdownx")


def _missing_docs_packages() -> list[str]:
    missing = []
    for name in DOCS_PACKAGES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(name)
    return missing


@pytest.fixture(scope="module")
def built_site(tmp_path_factory) -> Path:
    missing = _missing_docs_packages()
    if missing:
        pytest.skip(f"docs toolchain not installed ({', '.join(missing)}): pip install -e '.[docs]'")
    site = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"), "-d", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return site


def test_docs_build_strict_passes(built_site: Path) -> None:
    assert (built_site / "index.html").is_file(), "the build produced no index.html"


@pytest.mark.parametrize(
    "page, needle",
    [
        # The theory page carries display equations for KaTeX (arithmatex generic mode).
        ("theory/objective/index.html", 'class="arithmatex"'),
        # The API reference rendered the spec's docstring, its reST math rewritten for KaTeX.
        ("reference/spec/calibration/index.html", r"\min_{p \in \Delta_M}"),
        ("reference/spec/calibration/index.html", "calibrate_margins"),
        # The side-by-side page has one tab per framework.
        ("howto/backends/index.html", 'class="tabbed-set'),
        # The data and training how-tos include their examples from the files the tests run.
        ("howto/select-data/index.html", "select_main"),
        ("howto/augment-data/index.html", "augment_main"),
        ("howto/jax-optax/index.html", "make_train_step"),
        ("howto/train/index.html", "--resume"),
        # The API pages of the data tools and the train command render their functions.
        ("reference/data/index.html", "select_pairs"),
        # Names re-exported from private modules render under their public module.
        ("reference/data/index.html", 'id="gammapo.data.reward_augmented.condition_prompt"'),
        ("reference/data/index.html", 'id="gammapo.data.io.DataError"'),
        ("reference/integrations/index.html", 'id="gammapo.integrations.trl.LengthNormalisedPairLoss"'),
        ("reference/integrations/index.html", 'id="gammapo.integrations.losses.PairBatch"'),
        ("reference/train/index.html", "SyntheticTask"),
        # The benchmark page includes the generated calibration tables.
        ("benchmarks/index.html", "gammapo jax jit"),
    ],
)
def test_docs_build_page_contains(built_site: Path, page: str, needle: str) -> None:
    html = (built_site / page).read_text(encoding="utf-8")
    assert needle in html, f"{page} does not contain {needle!r}"


def test_docs_build_leaves_no_raw_rst_math(built_site: Path) -> None:
    """The griffe extension (scripts/griffe_rst_math.py) rewrote every ``:math:`` role."""
    offenders = [
        str(p.relative_to(built_site)) for p in (built_site / "reference").rglob("*.html") if ":math:`" in p.read_text("utf-8")
    ]
    assert not offenders, f"raw reST math left in {offenders}"


def test_docs_build_ships_katex_offline(built_site: Path) -> None:
    """Equations render without network access: KaTeX and its fonts are part of the site."""
    katex = built_site / "assets" / "katex"
    assert (katex / "katex.min.js").is_file() and (katex / "auto-render.min.js").is_file()
    assert (katex / "fonts" / "KaTeX_Main-Regular.woff2").is_file()
    assert (katex / "LICENSE").is_file()
