"""The framework-free native part of gammapo: the C++ core of the CPU calibration kernel and its build.

Only the Python standard library (no torch, no JAX, nothing of the :mod:`gammapo` front door), so
the backends build on it without importing the front door: :mod:`gammapo_torch._cpu_calibration`
adds ``extern "C"`` entry points to :data:`CALIBRATION_CORE` and calls them through :mod:`ctypes`;
:mod:`gammapo_jax._cpu_kernel` adds XLA FFI handlers. Both build with :class:`NativeLibrary`, on
first use, into a private, hash-checked cache (:mod:`gammapo_native.build`).

* :mod:`gammapo_native.core` — :data:`CALIBRATION_CORE`, the C++ source (sample, solvers, push);
* :mod:`gammapo_native.build` — compiler flags, the cache and the build-once-per-process loader;
* :mod:`gammapo_native.files` — :func:`write_atomic`, the crash-safe file write (the build cache's
  hash records, and through :mod:`gammapo._files` the trainer's checkpoint records).
"""

from __future__ import annotations

from .build import (BASE_FLAGS, ISA_FLAGS, NativeLibrary, build_first, build_library, cache_dirs, find_compiler,
                    flag_attempts, host_isa, library_file_name, private_cache_dir, verified_path)
from .core import CALIBRATION_CORE
from .files import write_atomic

__all__ = ["CALIBRATION_CORE", "BASE_FLAGS", "ISA_FLAGS", "find_compiler", "flag_attempts", "host_isa",
           "cache_dirs", "private_cache_dir", "verified_path", "library_file_name", "build_library", "build_first",
           "NativeLibrary", "write_atomic"]
