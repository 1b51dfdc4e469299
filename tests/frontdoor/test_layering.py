"""The import arrows point one way: the front door (``gammapo``) may import the backends, never the reverse.

Every module under ``backends/`` (``gammapo_torch``, ``gammapo_jax``, ``gammapo_native``) builds on the
spec (``gammapo_spec``), its own frameworks and the standard library; importing ``gammapo`` from there
would make a backend need the front door (and import cycles with the registry that loads it).
``gammapo_native`` is framework-free: the standard library only.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ROOT / "backends"


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import statement in ``path`` (relative imports excluded)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return found


def _offending(predicate) -> list[str]:
    return [f"{path.relative_to(ROOT)}:{line}: imports {module}"
            for path in sorted(BACKENDS.rglob("*.py")) for line, module in _imports(path) if predicate(path, module)]


def test_no_module_under_backends_imports_the_front_door():
    bad = _offending(lambda path, module: module.split(".")[0] == "gammapo")
    assert not bad, "backends must not import gammapo (the front door):\n  " + "\n  ".join(bad)


def test_gammapo_native_needs_only_the_standard_library():
    native = BACKENDS / "gammapo_native"
    assert (native / "__init__.py").is_file()
    bad = _offending(lambda path, module: native in path.parents
                     and module.split(".")[0] not in sys.stdlib_module_names | {"__future__", "gammapo_native"})
    assert not bad, "gammapo_native is framework-free (standard library only):\n  " + "\n  ".join(bad)
