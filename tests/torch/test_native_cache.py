"""The native build never loads a library someone else could have planted: the cache folder is
private (0700, owned, not group/world-writable, no shared temporary fallback) and a cached library
is loaded only if it is private too and its SHA-256 matches the record written when it was built."""

from __future__ import annotations

import ctypes
import os
import pathlib
import stat

import pytest

from gammapo_native import build as _native

COMPILER = _native.find_compiler()
pytestmark = pytest.mark.skipif(COMPILER is None, reason="no C++ compiler")

FLAGS = ["-O0", "-fPIC", "-shared"]
SOURCE = 'extern "C" int gammapo_answer() { return 42; }\n'
#: What an attacker plants: a library with the expected name whose constructor leaves a trace.
PLANTED = r'''
#include <stdio.h>
#include <stdlib.h>
extern "C" int gammapo_answer() { return 666; }
__attribute__((constructor)) static void planted() {
  const char* p = getenv("GAMMAPO_PLANT_TRACE");
  if (p) { FILE* f = fopen(p, "w"); if (f) { fputs("ran", f); fclose(f); } }
}
'''


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.delenv("GAMMAPO_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(_native.tempfile, "tempdir", None)  # re-read TMPDIR
    trace = tmp_path / "trace"
    monkeypatch.setenv("GAMMAPO_PLANT_TRACE", str(trace))
    return tmp_path, trace


def _plant(folder: pathlib.Path, *, sidecar: bool) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / "planted.cpp"
    src.write_text(PLANTED)
    target = folder / _native.library_file_name("gammapo_test", SOURCE, COMPILER, FLAGS)
    os.system(f"{COMPILER} -fPIC -shared -o {target} {src}")
    src.unlink()
    assert target.is_file()
    if sidecar:
        with open(target, "rb") as f:
            digest = _native._digest(f.fileno())
        target.with_name(target.name + ".sha256").write_text(digest + "\n")
    return target


def _load():
    path = _native.build_library("gammapo_test", SOURCE, COMPILER, FLAGS)
    lib = ctypes.CDLL(str(path))
    return path, lib.gammapo_answer()


def test_the_cache_folder_is_created_private_and_the_library_verified(env):
    tmp_path, _ = env
    path, answer = _load()
    folder = tmp_path / "xdg" / "gammapo"
    assert answer == 42 and stat.S_IMODE(os.lstat(folder).st_mode) == 0o700
    lib = folder / _native.library_file_name("gammapo_test", SOURCE, COMPILER, FLAGS)
    assert lib.is_file() and (lib.parent / (lib.name + ".sha256")).is_file()
    assert not os.lstat(lib).st_mode & 0o022
    assert _native.verified_path(lib) is not None  # the second process finds it


def test_a_library_planted_in_the_old_temporary_fallback_is_not_loaded(env, monkeypatch):
    tmp_path, trace = env
    (tmp_path / "blocker").write_text("")  # no private cache: XDG_CACHE_HOME is a file
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "blocker"))
    _plant(tmp_path / "tmp" / f"gammapo-{os.getuid()}", sidecar=True)
    path, answer = _load()
    assert answer == 42 and not trace.exists(), "the planted library ran"
    assert "gammapo-build-" in os.path.realpath(path)  # built in a fresh private folder of this process


def test_a_library_planted_without_its_record_is_rebuilt_not_loaded(env):
    tmp_path, trace = env
    folder = tmp_path / "xdg" / "gammapo"
    folder.mkdir(parents=True, mode=0o700)
    _plant(folder, sidecar=False)
    assert _load()[1] == 42 and not trace.exists()


def test_a_tampered_library_fails_its_checksum(env):
    tmp_path, trace = env
    _load()
    folder = tmp_path / "xdg" / "gammapo"
    record = folder / (_native.library_file_name("gammapo_test", SOURCE, COMPILER, FLAGS) + ".sha256")
    kept = record.read_text()
    _plant(folder, sidecar=False)  # replaces the library, keeps the old record
    record.write_text(kept)
    assert _load()[1] == 42 and not trace.exists()


def test_a_shared_cache_folder_is_not_used(env, monkeypatch):
    tmp_path, trace = env
    shared = tmp_path / "shared"
    monkeypatch.setenv("GAMMAPO_CACHE_DIR", str(shared))
    _plant(shared, sidecar=True)
    os.chmod(shared, 0o777)  # anyone could have written there
    assert _native.private_cache_dir() is None
    path, answer = _load()
    assert answer == 42 and not trace.exists() and "gammapo-build-" in os.path.realpath(path)


def test_a_group_writable_library_is_not_loaded(env):
    tmp_path, trace = env
    folder = tmp_path / "xdg" / "gammapo"
    folder.mkdir(parents=True, mode=0o700)
    lib = _plant(folder, sidecar=True)
    os.chmod(lib, 0o775)
    assert _native.verified_path(lib) is None
    assert _load()[1] == 42 and not trace.exists()


def test_a_symlinked_cache_folder_is_not_used(env, monkeypatch):
    tmp_path, _ = env
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o700)
    (tmp_path / "xdg").mkdir()
    (tmp_path / "xdg" / "gammapo").symlink_to(real)
    assert _native.private_cache_dir() is None
