r"""Building, caching and loading the native kernels: one compiler call per source, in a private cache.

Builds: one compiler call (``$CXX``, else ``g++`` or ``c++``), cached in ``$GAMMAPO_CACHE_DIR``
(default ``$XDG_CACHE_HOME/gammapo``, i.e. ``~/.cache/gammapo``), named by a hash of the source,
compiler, flags and machine, and written atomically, so concurrent processes (test workers, ranks)
share one build. The cache folder must be private (created ``0700``; owned by the user and writable by
no one else) and a cached library is loaded only if it is too and its SHA-256 matches the one
recorded when it was built; otherwise the library is built afresh in a private temporary folder of
the process. Nothing is ever loaded from a shared, predictable location.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import pathlib
import platform
import shutil
import stat
import subprocess
import tempfile
import threading
from typing import Any, Callable, Iterable

from .files import write_atomic

__all__ = ["BASE_FLAGS", "ISA_FLAGS", "find_compiler", "flag_attempts", "host_isa", "cache_dirs",
           "private_cache_dir", "verified_path", "library_file_name", "build_library", "build_first", "NativeLibrary"]

#: Flags every build uses: the vector loops need ``-fopenmp-simd`` (no OpenMP runtime); no FMA
#: contraction, so the float64 arithmetic rounds like the reference's step by step.
BASE_FLAGS = ["-O3", "-fno-math-errno", "-fopenmp-simd", "-ffp-contract=off", "-fPIC", "-shared"]

#: Extra flags per x86 vector ISA, widest first.
ISA_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw", "-mavx2", "-mfma"],
    "AVX2": ["-mavx2", "-mfma"],
}


def find_compiler() -> str | None:
    """``$CXX``, else ``g++`` or ``c++`` on the ``PATH`` (``None`` if there is none)."""
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")


def host_isa() -> str:
    """The widest vector ISA of :data:`ISA_FLAGS` this CPU has (from ``/proc/cpuinfo``), or ``"DEFAULT"``."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return "DEFAULT"
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return "DEFAULT"
    if {"avx512f", "avx512dq", "avx512vl", "avx512bw", "avx2", "fma"} <= set(flags):
        return "AVX512"
    return "AVX2" if {"avx2", "fma"} <= set(flags) else "DEFAULT"


def flag_attempts(isa: str, extra: list[str] = ()) -> list[list[str]]:
    """Flag lists to try in turn: ``isa``'s (``"AVX512"``, ``"AVX2"`` or ``"DEFAULT"``), then each
    narrower one, then the base flags alone; ``extra`` is appended to each."""
    order = list(ISA_FLAGS)
    widths = order[order.index(isa):] if isa in order else []
    return [BASE_FLAGS + ISA_FLAGS[w] + list(extra) for w in widths] + [BASE_FLAGS + list(extra)]


def cache_dirs() -> list[pathlib.Path]:
    """Where libraries are cached: ``$GAMMAPO_CACHE_DIR``, else ``$XDG_CACHE_HOME/gammapo`` (default
    ``~/.cache/gammapo``). There is no shared fallback (a predictable folder in the temporary directory
    is one another user can plant a library in); see :func:`private_cache_dir`."""
    env = os.environ.get("GAMMAPO_CACHE_DIR")
    if env:
        return [pathlib.Path(env)]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return [pathlib.Path(base) / "gammapo"]


def _private(st: os.stat_result) -> bool:
    """Owned by this user and writable by no one else (a directory or a regular file, not a link)."""
    uid = getattr(os, "getuid", lambda: st.st_uid)()
    return st.st_uid == uid and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def private_cache_dir() -> pathlib.Path | None:
    """The first of :func:`cache_dirs` that is private to this user, created ``0700`` if missing; ``None``
    if none is.

    Private means: a real folder (not a symbolic link), owned by the current user, writable by neither
    group nor others. A folder that fails this is not used (and not changed): the build then happens
    in a fresh folder of its own (:func:`build_library`).
    """
    for folder in cache_dirs():
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.mkdir(folder, 0o700)
            except FileExistsError:
                pass
            st = os.lstat(folder)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and _private(st) and os.access(folder, os.W_OK | os.X_OK):
            return folder
    return None


def _digest(fd: int) -> str:
    h = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, 1 << 20):
        h.update(chunk)
    return h.hexdigest()


#: File descriptors of the libraries loaded through ``/proc/self/fd`` (kept open for the process).
_PINNED: list[int] = []


def verified_path(path: pathlib.Path) -> pathlib.Path | None:
    """``path`` if it is a library this process built and may load, else ``None``.

    Checks, on an open descriptor (so the file checked is the file loaded): a regular file, not a
    link, owned by this user, writable by no one else, and its SHA-256 equal to the one recorded
    beside it (``<library>.sha256``, written when it was built). On Linux the returned path is
    ``/proc/self/fd/N`` of that descriptor, so a file swapped in after the check is not the one loaded.
    """
    sidecar = path.with_name(path.name + ".sha256")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        side = os.lstat(sidecar)
        if not (stat.S_ISREG(st.st_mode) and _private(st) and stat.S_ISREG(side.st_mode) and _private(side)):
            return None
        if sidecar.read_text().strip() != _digest(fd):
            return None
        if os.path.isdir("/proc/self/fd"):
            _PINNED.append(fd)
            fd = -1
            return pathlib.Path(f"/proc/self/fd/{_PINNED[-1]}")
        return path
    except OSError:
        return None
    finally:
        if fd >= 0:
            os.close(fd)


def library_file_name(name: str, source: str, compiler: str, flags: list[str], key_extra: str = "") -> str:
    """``<name>_<hash>.so``: the hash covers the source, compiler, flags, machine and ``key_extra``."""
    key = hashlib.sha256("\0".join([source, compiler, *flags, platform.machine(), key_extra]).encode()).hexdigest()[:16]
    return f"{name}_{key}.so"


def build_library(name: str, source: str, compiler: str, flags: list[str], key_extra: str = "") -> pathlib.Path:
    """The shared library of ``source`` built with ``compiler`` and ``flags`` (from the cache if there).

    The cache is :func:`private_cache_dir`; a cached library is used only if :func:`verified_path`
    accepts it (else it is rebuilt). The build writes the library and then its SHA-256 sidecar, each
    atomically, so concurrent processes (test workers, ranks) share one build and a crash leaves no
    library that passes the check. Without a private cache folder the library is built in a fresh
    temporary folder of this process (``tempfile.mkdtemp``: private, unpredictable), once per process.

    Args:
        name: file-name prefix (``<name>_<hash>.so``).
        source: the complete C++ translation unit.
        compiler, flags: the compiler and its flags (``-shared`` among them).
        key_extra: anything else the binary depends on (e.g. the headers' version), part of the hash.

    Returns:
        The path to load (checked by :func:`verified_path`).

    Raises:
        subprocess.CalledProcessError: the compiler failed (its stderr is on the exception).
        OSError: the library cannot be written or fails its check after the build.
    """
    file_name = library_file_name(name, source, compiler, flags, key_extra)
    out_dir = private_cache_dir()
    if out_dir is not None:
        found = verified_path(out_dir / file_name)
        if found is not None:
            return found
    else:
        out_dir = pathlib.Path(tempfile.mkdtemp(prefix="gammapo-build-"))
        atexit.register(shutil.rmtree, out_dir, True)
    target = out_dir / file_name
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        src = pathlib.Path(tmp) / "kernel.cpp"
        src.write_text(source)
        lib = pathlib.Path(tmp) / "kernel.so"
        subprocess.run([compiler, *flags, "-o", str(lib), str(src), "-lm"], check=True, capture_output=True, timeout=300)
        os.chmod(lib, 0o700)
        with open(lib, "rb") as f:
            digest = _digest(f.fileno())
        os.replace(lib, target)  # atomic: a concurrent build of the same key writes the same bytes
    write_atomic(target.with_name(target.name + ".sha256"), (digest + "\n").encode())
    found = verified_path(target)
    if found is None:
        raise PermissionError(f"the library just built at {target} fails its ownership or integrity check")
    return found


def build_first(name: str, source: str, attempts: Iterable[list[str]], bind: Callable[[pathlib.Path], Any], *,
                key_extra: str = "", errors: tuple[type[BaseException], ...] = (OSError, subprocess.SubprocessError,
                                                                                  AttributeError)) -> tuple[Any, str | None]:
    """Build ``source`` with each flag list of ``attempts`` in turn and ``bind`` the first library that works.

    Returns:
        ``(bind(path), None)``, or ``(None, why)`` when there is no compiler or every attempt raised one of
        ``errors`` (``why`` names the last failure, with the compiler's stderr).
    """
    compiler = find_compiler()
    if compiler is None:
        return None, "no C++ compiler (g++ or c++, or $CXX) found"
    error = "no flags to try"
    for flags in attempts:
        try:
            return bind(build_library(name, source, compiler, flags, key_extra)), None
        except errors as exc:
            detail = getattr(exc, "stderr", b"") or b""
            if isinstance(detail, bytes):
                detail = detail.decode(errors="replace")
            error = f"{type(exc).__name__}: {exc} {detail[:500]}".strip()
    return None, error


class NativeLibrary:
    """A kernel library built and bound once per process, on first use (thread-safe).

    ``load()`` runs :func:`build_first` the first time and returns its library (``None`` when it cannot
    be built; ``error`` then says why); later calls return the same result at the cost of one attribute
    test. ``attempts`` and ``key_extra`` are callables, evaluated only when the build runs.
    """

    def __init__(self, name: str, source: str, attempts: Callable[[], Iterable[list[str]]],
                 bind: Callable[[pathlib.Path], Any], *, key_extra: Callable[[], str] = lambda: "",
                 errors: tuple[type[BaseException], ...] = (OSError, subprocess.SubprocessError, AttributeError)):
        self.name, self.source, self.attempts, self.bind = name, source, attempts, bind
        self.key_extra, self.errors = key_extra, errors
        self.lib: Any = None
        self.tried = False
        self.error: str | None = None
        self._lock = threading.Lock()

    def load(self) -> Any:
        """The bound library (built on first use), or ``None`` if it cannot be built."""
        if self.tried:
            return self.lib
        with self._lock:
            if not self.tried:
                self.lib, self.error = build_first(self.name, self.source, self.attempts(), self.bind,
                                                   key_extra=self.key_extra(), errors=self.errors)
                self.tried = True
        return self.lib

    def fresh(self) -> "NativeLibrary":
        """A new, not yet loaded library with the same recipe (tests swap it in to retry a build)."""
        return NativeLibrary(self.name, self.source, self.attempts, self.bind, key_extra=self.key_extra,
                             errors=self.errors)
