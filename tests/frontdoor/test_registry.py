"""get_backend / list_backends: lazy built-ins, entry-point plug-ins, protocol checks, clear errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types

import pytest

import gammapo
import gammapo_spec
from gammapo import _registry


def test_import_gammapo_imports_neither_torch_nor_jax():
    code = "import sys, gammapo; gammapo.get_backend('numpy'); gammapo.list_backends(); " \
           "print(sorted(m for m in ('torch', 'jax', 'jaxlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"import gammapo pulled in {out.strip()}"


def test_get_backend_numpy_is_the_reference():
    assert gammapo.get_backend("numpy") is gammapo_spec
    assert gammapo.get_backend("numpy").name == "numpy"


def test_list_backends_has_the_builtins():
    assert {"numpy", "torch", "jax"} <= set(gammapo.list_backends())


def test_get_backend_unknown_name_lists_known_ones():
    with pytest.raises(gammapo.BackendNotFoundError) as info:
        gammapo.get_backend("tensorflow")
    for name in ("numpy", "torch", "jax"):
        assert name in str(info.value)


def test_get_backend_missing_framework_names_the_extra(monkeypatch):
    real = _registry.importlib.util.find_spec
    monkeypatch.setattr(_registry.importlib.util, "find_spec", lambda n, *a: None if n == "jax" else real(n, *a))
    monkeypatch.setattr(_registry, "_CACHE", {})
    with pytest.raises(gammapo.BackendUnavailableError, match=r"pip install 'gammapo\[jax\]'"):
        gammapo.get_backend("jax")
    assert "jax" not in gammapo.available_backends()


def test_register_backend_checks_the_protocol(monkeypatch):
    monkeypatch.setattr(_registry, "_REGISTERED", {})
    monkeypatch.setattr(_registry, "_CACHE", {})
    broken = types.SimpleNamespace(name="broken", reward_gap=lambda *a, **k: None)
    gammapo.register_backend("broken", broken)
    with pytest.raises(gammapo.BackendProtocolError, match="calibrate_margins"):
        gammapo.get_backend("broken")


def test_register_backend_accepts_a_complete_object(monkeypatch):
    monkeypatch.setattr(_registry, "_REGISTERED", {})
    monkeypatch.setattr(_registry, "_CACHE", {})
    gammapo.register_backend("copy", "gammapo_spec")
    assert gammapo.get_backend("copy") is gammapo_spec
    assert "copy" in gammapo.list_backends()


def test_entry_point_backend_is_discovered(tmp_path, monkeypatch):
    """A real distribution on sys.path with an entry point in group gammapo.backends."""
    pkg = tmp_path / "my_backend.py"
    pkg.write_text(textwrap.dedent("""
        from gammapo_spec import *  # noqa: F401,F403 -- a backend that is a copy of the reference
        from gammapo_spec import asarray, to_numpy, state_to_dict, state_from_dict, gamma_po_loss_and_grad
        name = "mine"
    """))
    dist = tmp_path / "my_backend-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-backend\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[gammapo.backends]\nmine = my_backend\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(_registry, "_CACHE", {})
    assert "mine" in gammapo.list_backends()
    assert gammapo.get_backend("mine").name == "mine"


def test_load_backend_object_accepts_module_attr():
    assert _registry.load_backend_object("gammapo_spec") is gammapo_spec
    with pytest.raises(gammapo.BackendNotFoundError, match="neither a known backend"):
        _registry.load_backend_object("no_such_module:thing")
