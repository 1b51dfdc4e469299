"""pyproject.toml: the dependency ranges admit current releases, and the README's torch pin satisfies them."""

from __future__ import annotations

import pathlib
import re

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = pathlib.Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

#: Extras whose exact pins are there on purpose: the docs toolchain, so `mkdocs build --strict` is reproducible.
PINNED_EXTRAS = {"docs"}


def _requirements():
    project = PYPROJECT["project"]
    yield "dependencies", project["dependencies"]
    for extra, reqs in project["optional-dependencies"].items():
        if extra not in PINNED_EXTRAS:
            yield f"[{extra}]", reqs


def test_no_dependency_has_an_upper_cap():
    capped = [f"{where}: {req}" for where, reqs in _requirements() for req in reqs
              if any(spec.operator in ("<", "<=", "==", "~=", "===") for spec in Requirement(req).specifier)]
    assert not capped, f"capped requirements (a cap needs a measured failure beside it): {capped}"


def test_releases_users_have_are_allowed():
    """The releases current when the caps were lifted (torch 2.15, jax 0.12) and the README's torch==2.13.0."""
    ranges = {Requirement(req).name: Requirement(req).specifier
              for _, reqs in _requirements() for req in reqs}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    pinned = re.findall(r"pip install torch==([0-9.]+)", readme)
    assert pinned, "the README no longer installs a torch release first"
    for name, version in [("torch", "2.15.0"), ("jax", "0.12.0"), *(("torch", v) for v in pinned)]:
        assert Version(version) in ranges[name], f"{name} {version} is outside {name}{ranges[name]}"


def test_license_is_an_spdx_expression_and_the_file_ships():
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0", "project.license must be an SPDX string (a TOML table is deprecated)"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


def test_version_has_one_source():
    import gammapo

    assert "version" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "gammapo.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?", gammapo.__version__)
