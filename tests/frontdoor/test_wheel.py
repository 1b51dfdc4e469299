"""The built wheel works on its own: a fresh virtual environment installs it (not editable) with its
dependencies, and `import gammapo`, `gammapo --version`, `gammapo conformance numpy` and the pytest plugin
run from it.

The environment is a plain new venv, not one that sees this one's packages: a wheel that forgot a
package, a module or a dependency fails here. Its dependencies (NumPy, and pytest with Hypothesis for
the conformance suite) come from the package index, so the test needs it; without the venv module, a
new enough setuptools or a reachable index it is skipped, saying which.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import gammapo

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[2]
#: Not copied into the build folder: environments, caches, earlier build outputs.
IGNORE = shutil.ignore_patterns(".git", ".venv*", "venv*", "build", "dist", "*.egg-info", "__pycache__",
                                ".hypothesis", ".pytest_cache", "site", "gammapo-train-report*")
#: pip's words for an index it cannot reach (a missing network, a proxy that refuses, no such release).
OFFLINE = ("Could not find a version", "No matching distribution", "Failed to establish a new connection",
           "Network is unreachable", "Temporary failure in name resolution", "ProxyError", "Max retries exceeded")


def _run(cmd: list[str], cwd: pathlib.Path, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def _setuptools_builds_here() -> bool:
    """Whether this environment's setuptools (>= 77, for the SPDX licence) can build without isolation."""
    if importlib.util.find_spec("setuptools") is None:
        return False
    from importlib.metadata import version

    return int(version("setuptools").split(".")[0]) >= 77


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> tuple[pathlib.Path, str]:
    """(the venv's bin folder, the build log) with the wheel and its test dependencies installed."""
    if importlib.util.find_spec("ensurepip") is None:
        pytest.skip("this Python has no venv/ensurepip (e.g. Debian without python3-venv)")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=IGNORE)  # build from a copy: nothing is written into the checkout
    # with a new enough setuptools here, build with it (no download); else pip fetches one into an isolated env
    isolation = ["--no-build-isolation"] if _setuptools_builds_here() else []
    built = _run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", *isolation, "-w", str(tmp / "dist"), "-v"],
                 cwd=tmp)
    if built.returncode != 0 and not isolation and any(w in built.stdout + built.stderr for w in OFFLINE):
        pytest.skip("building the wheel needs setuptools >= 77 from the package index, which is not reachable")
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    wheels = list((tmp / "dist").glob("gammapo-*.whl"))
    assert len(wheels) == 1, wheels

    venv = tmp / "venv"
    made = _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp, timeout=300)
    assert made.returncode == 0, made.stderr
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    installed = _run([str(bindir / "python"), "-m", "pip", "install", f"{wheels[0]}[test]"], cwd=tmp)
    if installed.returncode != 0 and any(w in installed.stdout + installed.stderr for w in OFFLINE):
        pytest.skip("installing the wheel's dependencies needs the package index, which is not reachable")
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    return bindir, built.stdout + built.stderr


def _in_venv(bindir: pathlib.Path, *args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    return _run(list(args), cwd=cwd, env=env)


def test_wheel_builds_without_deprecation_warnings_and_ships_the_licence(wheel_venv):
    _, log = wheel_venv
    assert "SetuptoolsDeprecationWarning" not in log, [l for l in log.splitlines() if "Deprecat" in l][:5]
    assert "adding 'gammapo-" in log and ".dist-info/licenses/LICENSE'" in log


def test_wheel_imports_from_site_packages(wheel_venv, tmp_path):
    bindir, _ = wheel_venv
    done = _in_venv(bindir, str(bindir / "python"), "-c",
                    "import gammapo, gammapo_spec, gammapo_conformance; print(gammapo.__version__, gammapo.__file__)",
                    cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    version, location = done.stdout.split()
    assert version == gammapo.__version__
    assert "site-packages" in location and not location.startswith(str(ROOT)), location


def test_wheel_command_version(wheel_venv, tmp_path):
    bindir, _ = wheel_venv
    done = _in_venv(bindir, str(bindir / "gammapo"), "--version", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == f"gammapo {gammapo.__version__}\n", done.stderr


def test_wheel_conformance_command_runs_the_suite(wheel_venv, tmp_path):
    bindir, _ = wheel_venv
    done = _in_venv(bindir, str(bindir / "gammapo"), "conformance", "numpy", "--max-examples", "3", "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "passed" in done.stdout and "gammapo conformance report" in done.stdout


def test_wheel_pytest_plugin_is_registered(wheel_venv, tmp_path):
    """The pytest11 entry point: plain `pytest --pyargs gammapo_conformance` with the plugin's options."""
    bindir, _ = wheel_venv
    done = _in_venv(bindir, str(bindir / "python"), "-m", "pytest", "--pyargs", "gammapo_conformance", "-q",
                    "-p", "no:cacheprovider", "--conformance-backend", "numpy", "--conformance-max-examples", "2",
                    "-k", "reward_gap or target_margins", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "passed" in done.stdout and "gammapo conformance report" in done.stdout


def test_wheel_bench_says_where_the_benchmarks_are(wheel_venv, tmp_path):
    """The benchmarks live in the source tree: from a wheel, `gammapo bench` says so in one line."""
    bindir, _ = wheel_venv
    done = _in_venv(bindir, str(bindir / "gammapo"), "bench", "--list", cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "ship with the source" in done.stderr and "Traceback" not in done.stderr
