"""Every program the documentation shows runs: ``examples/*.py``, the side-by-side snippets in
``docs/snippets/`` (and the three print the same numbers), and the ``>>>`` blocks of the pages."""

from __future__ import annotations

import doctest
import importlib.util
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
SNIPPETS = sorted((ROOT / "docs" / "snippets").glob("*.py"))
PAGES = sorted((ROOT / "docs").rglob("*.md"))
TIMEOUT_S = 240

# Top-level imports that decide whether a program can run here (package → import name).
OPTIONAL_FRAMEWORKS = ("torch", "jax", "optax", "trl", "transformers", "datasets", "matplotlib")

# Arguments that keep an example short and out of the checkout; "{tmp}" is a fresh folder (also the
# working directory). Examples not listed run with no arguments.
EXAMPLE_ARGS = {
    "choose_tau.py": ["--out", "{tmp}"],
    "trl_gamma_simpo.py": ["--steps", "10", "--out", "{tmp}/trl-out"],
}


def _run_elsewhere(name: str) -> str | None:
    """The test file outside tests/docs that already runs ``examples/<name>``, if any (each example
    runs once per test session: these machines are small)."""
    for test in sorted((ROOT / "tests").rglob("test_*.py")):
        if "docs" not in test.relative_to(ROOT / "tests").parts[:1] and f'"{name}"' in test.read_text("utf-8"):
            return str(test.relative_to(ROOT))
    return None


def _missing_frameworks(path: Path) -> list[str]:
    source = path.read_text(encoding="utf-8")
    imported = set(re.findall(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", source, flags=re.MULTILINE))
    return [name for name in OPTIONAL_FRAMEWORKS if name in imported and importlib.util.find_spec(name) is None]


_OUTPUTS: dict[Path, str] = {}


def _stdout(path: Path) -> str:
    """The stdout of ``path`` run without arguments, once per session (several tests read it)."""
    if path not in _OUTPUTS:
        _OUTPUTS[path] = _run(path, []).stdout
    return _OUTPUTS[path]


def _run(path: Path, args: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    missing = _missing_frameworks(path)
    if missing:
        pytest.skip(f"{path.name} needs {', '.join(missing)}, not installed here")
    proc = subprocess.run(
        [sys.executable, str(path), *args], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert proc.returncode == 0, f"{path.relative_to(ROOT)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_docs_example_runs(path: Path, tmp_path: Path) -> None:
    elsewhere = _run_elsewhere(path.name)
    if elsewhere:
        pytest.skip(f"{path.name} is run by {elsewhere}")
    args = [a.replace("{tmp}", str(tmp_path)) for a in EXAMPLE_ARGS.get(path.name, [])]
    _run(path, args, cwd=tmp_path)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_docs_choose_tau_plot_is_committed_and_regenerates(tmp_path: Path) -> None:
    """examples/choose_tau.py regenerates the plot the docs show; the committed copy exists."""
    committed = ROOT / "docs" / "assets" / "choose_tau.png"
    assert committed.is_file(), "docs/assets/choose_tau.png is missing: run python examples/choose_tau.py"
    proc = _run(ROOT / "examples" / "choose_tau.py", ["--out", str(tmp_path)])
    fresh = tmp_path / "choose_tau.png"
    assert fresh.is_file(), f"choose_tau.py wrote no plot:\n{proc.stdout}"
    assert _png_size(fresh) == _png_size(committed), "the committed plot is stale (its size differs): regenerate it"
    assert "mirror vs exact" in proc.stdout


# Pages that quote a snippet's output verbatim (beside including its source).
QUOTED_OUTPUT = {
    "distributed_jax.py": ["howto/distributed.md"],
    "loop_torch.py": ["howto/torch-loop.md", "howto/backends.md"],
    "loop_jax.py": ["howto/jax-optax.md", "howto/backends.md"],
    "trl_dpo_config.py": ["howto/trl.md"],
}


@pytest.mark.parametrize("path", SNIPPETS, ids=[p.name for p in SNIPPETS])
def test_docs_snippet_runs(path: Path) -> None:
    out = _stdout(path)
    for page in QUOTED_OUTPUT.get(path.name, []):
        text = (ROOT / "docs" / page).read_text(encoding="utf-8")
        assert out.strip() in text, f"docs/{page} quotes output that {path.name} no longer prints:\n{out}"


@pytest.mark.parametrize("group", ["step", "loop"])
def test_docs_snippets_print_the_same_numbers(group: str) -> None:
    """The NumPy, PyTorch and JAX tabs of howto/backends.md compute the same thing, and the page
    quotes what they print."""
    outputs = {}
    for framework in ("numpy", "torch", "jax"):
        path = ROOT / "docs" / "snippets" / f"{group}_{framework}.py"
        if _missing_frameworks(path):
            continue
        outputs[framework] = _stdout(path)
    reference = outputs["numpy"]
    for framework, out in outputs.items():
        assert out == reference, f"{group}_{framework}.py printed\n{out}\nbut {group}_numpy.py printed\n{reference}"
    page = (ROOT / "docs" / "howto" / "backends.md").read_text(encoding="utf-8")
    assert reference.strip() in page, f"howto/backends.md quotes output that {group}_numpy.py no longer prints"


def _doctest_blocks(page: Path) -> list[str]:
    blocks = re.findall(r"```(?:python|python-console)\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    return [b for b in blocks if b.lstrip().startswith(">>>")]


DOCTEST_PAGES = [p for p in PAGES if _doctest_blocks(p)]


@pytest.mark.parametrize("page", DOCTEST_PAGES, ids=[str(p.relative_to(ROOT / "docs")) for p in DOCTEST_PAGES])
def test_docs_page_doctests_pass(page: Path) -> None:
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    for i, block in enumerate(_doctest_blocks(page)):
        test = parser.get_doctest(block, {}, f"{page.name}[{i}]", str(page), 0)
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"doctest failures in {page.relative_to(ROOT)}:\n" + "".join(report)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_docs_example_is_on_a_page(path: Path) -> None:
    """Every example is shown on the site, included from its file (so the page shows what runs)."""
    include = f'--8<-- "examples/{path.name}"'
    pages = [p for p in PAGES if include in p.read_text(encoding="utf-8")]
    assert pages, f"no page under docs/ includes {path.name}: add {include!r} to a how-to"
