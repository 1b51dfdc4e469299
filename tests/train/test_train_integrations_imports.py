"""gammapo.integrations imports one way: no module imports another that imports it back, and each
module imports on its own, whichever is imported first."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

PACKAGE = Path(__file__).resolve().parents[2] / "gammapo" / "integrations"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def _imports(module: str) -> set[str]:
    """The sibling modules ``module`` imports anywhere (at the top or inside a function)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from .x import y / from . import x
                found.update([node.module] if node.module else [a.name for a in node.names])
            elif node.module and node.module.startswith("gammapo.integrations."):
                found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[2] for a in node.names if a.name.startswith("gammapo.integrations."))
    return {m.split(".")[0] for m in found} & set(MODULES)


def test_integrations_import_graph_has_no_cycle():
    graph = {m: _imports(m) for m in MODULES}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = path[path.index(module):] + [module]
            pytest.fail("import cycle in gammapo.integrations: " + " -> ".join(cycle))
        if module in done:
            return
        for other in sorted(graph[module]):
            visit(other, path + [module])
        done.add(module)

    for module in MODULES:
        visit(module, [])


def test_integrations_each_module_imports_first_in_a_fresh_interpreter():
    # one interpreter for all (torch and trl load once); gammapo.integrations is dropped between modules
    code = (
        "import importlib, sys\n"
        f"for name in {MODULES!r}:\n"
        "    for key in [k for k in sys.modules if k.startswith('gammapo.integrations')]:\n"
        "        del sys.modules[key]\n"
        "    importlib.import_module('gammapo.integrations.' + name)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
