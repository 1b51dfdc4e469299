r"""A compiled CPU kernel for the calibration step: sampling, all mirror iterations and the push in one call.

Eagerly, the torch-ops queue step costs one dispatcher round trip per op: about 13 ops per mirror
iteration, 20 iterations, plus the hash, ``topk`` and ``index_copy`` of the queue, which on a CPU
is slower than the released code's Python loop. ``torch.compile`` fuses the ops but leaves a fixed
cost of ~50 µs per call (guards, wrappers). This module instead compiles a small C++ file (no torch
headers: one ``g++`` call of about a second, cached on disk) and calls it through :mod:`ctypes`.
One call does, on the tensors' memory:

1. the sample of :mod:`gammapo_torch._state`: keys ``hash32((k + i) mod 2^32)`` of the valid slots
   (integer arithmetic: bit for bit the reference's), the ``S = min(size, K)`` smallest found by a
   threshold pass and ``std::nth_element`` (valid keys are distinct, so the sampled set is the
   reference's; it is not sorted, as the order of the set changes the margins only through the
   rounding of the sums);
2. the mirror solver of :func:`gammapo_torch._calibration.mirror_margins` on the
   ``M = S + n`` gaps ``[sampled, h]`` (no masked slots are needed: M is known here),

   .. math::

       g_i = \tau\,(1 + \log(M (p_i + \epsilon))) + \gamma_0\,\sigma(\gamma_i - h_i),\quad
       w = \log p - \eta g,\quad \log p \leftarrow w - \Big(\log\textstyle\sum_j e^{w_j + D} - D\Big),

   with the same shift :math:`D` (:func:`~gammapo_torch._calibration.normaliser_shift`, or the
   max-shifted ``logsumexp`` when there is none), in the gaps' dtype (float32 or float64); the loop
   over the set is vectorised by the compiler (``#pragma omp simd``, glibc's vector ``exp``/``log``).
   In float32 the next :math:`p_i` is :math:`e^{w_i + D}/S` (the terms of the sum just taken), one
   ``exp`` per element and update fewer than :math:`\exp(\log p_i)`; the two differ by float32
   rounding only (measured against the float64 reference: no larger error). Float64 keeps
   :math:`\exp(\log p_i)`, whose rounding the reference's 1e-10 needs in the unconverged small-τ regime;
3. the ring-buffer push and the new ``size``, ``head``, ``step``.

The integer parts (sample, push, counters) are exact, so states stay bit for bit those of the
torch-ops path and the reference; the margins agree with them to rounding (vector ``exp``/``log``
and the order of the sum differ from torch's; the tests hold them to the spec's tolerances).

When it is used: float32 or float64 CPU tensors, mirror solver, the kernel built. Eagerly
(:func:`usable`, :func:`takes_step`) it is called directly. Under ``torch.compile``
(:func:`traced_usable`, :func:`traced_takes_step`) it enters the graph as the custom operators
``gammapo::cpu_queue_step`` / ``gammapo::cpu_mirror`` (``torch.library`` definitions, with fake
implementations for shapes), so ``fullgraph=True`` still holds and compiled and eager steps give
identical results; measured, this beats inductor's fusion of the torch ops on CPU. (The operators
are Python: a graph exported to a C++-only runtime such as AOTInductor needs the kernel off.) Set
``GAMMAPO_DISABLE_CPU_KERNEL=1`` to turn it off (for A/B timing; under ``torch.compile`` it is read
when a graph is traced). If there is no C++ compiler, or the build fails, it is never used and the
torch-ops path runs (the reason is in :func:`build_error`). The library lives in ``$GAMMAPO_CACHE_DIR`` (default
``~/.cache/gammapo``), named by a hash of the source and flags, written atomically, so concurrent
processes (test workers, ranks) share one build.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import pathlib
import platform
import shutil
import subprocess
import tempfile
import threading
from typing import Any

import torch

__all__ = [
    "SOURCE", "enabled", "usable", "takes_step", "traced_usable", "traced_takes_step", "load", "build_error",
    "mirror_margins", "queue_step",
]

#: The C++ source of the kernel (self-contained: only the C++ standard library and libm).
SOURCE = r"""
// gammapo CPU calibration kernel (see _cpu_calibration.py)
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <algorithm>

extern "C" {
#pragma omp declare simd notinbranch
float expf(float) noexcept;
#pragma omp declare simd notinbranch
float logf(float) noexcept;
#pragma omp declare simd notinbranch
double exp(double) noexcept;
#pragma omp declare simd notinbranch
double log(double) noexcept;
}

static inline float ex(float x) { return expf(x); }
static inline double ex(double x) { return exp(x); }
static inline float lg(float x) { return logf(x); }
static inline double lg(double x) { return log(x); }

// One update over the set with the constant shift D: w = log p - eta g, returns sum_j exp(w_j + D).
// FROM_E: p_i = e_i / S from the previous update's e_i = exp(w_i + D) (kept in e) instead of exp(log p_i).
template <typename T, bool FROM_E, bool KEEP_E>
static inline T shifted_update(const T* __restrict h, T* __restrict lp, T* __restrict e, int64_t M, T c, T inv_s,
                               T m, T scale, T tau, T gamma0, T eta, T shift, T eps) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < M; ++i) {
    T l = lp[i] - c;
    T p = FROM_E ? e[i] * inv_s : ex(l);
    T g = scale * p;
    T grad = tau * (lg((p + eps) * m) + (T)1);
    grad = grad + gamma0 * ((T)1 / ((T)1 + ex(h[i] - g)));
    T w = grad * (-eta) + l;
    lp[i] = w;
    T ei = ex(w + shift);
    if (KEEP_E) e[i] = ei;
    s += ei;
  }
  return s;
}

// float32 reuses exp(w + D) / S as the next p (one exp less per element and update); float64 keeps
// exp(log p), whose rounding the reference's float64 tolerance needs in the unconverged small-tau regime.
template <typename T>
static void mirror(const T* __restrict h, T* __restrict out, T* __restrict lp, int64_t M, double gamma0_,
                   double tau_, int64_t iters, int has_shift, double shift_) {
  constexpr bool reuse = sizeof(T) == 4;
  const T m = (T)M;
  const double eta_d = 0.5 / tau_ < 1.0 ? 0.5 / tau_ : 1.0;
  const T eta = (T)eta_d, tau = (T)tau_, gamma0 = (T)gamma0_, shift = (T)shift_, eps = (T)1e-10;
  const T scale = gamma0 * m;
  const T lp0 = -lg(m);
  for (int64_t i = 0; i < M; ++i) lp[i] = lp0;
  T c = 0;  // pending normaliser: log p = w - c
  T inv_s = 1;
  bool have_e = false;  // out[] holds exp(w + D) of the last update
  for (int64_t k = 0; k + 1 < iters; ++k) {
    if (has_shift) {
      T s;
      if (reuse && have_e)
        s = shifted_update<T, true, reuse>(h, lp, out, M, c, inv_s, m, scale, tau, gamma0, eta, shift, eps);
      else
        s = shifted_update<T, false, reuse>(h, lp, out, M, c, inv_s, m, scale, tau, gamma0, eta, shift, eps);
      have_e = reuse;
      c = lg(s) - shift;
      inv_s = (T)1 / s;
    } else {
      T mx = -(T)__builtin_inf();
#pragma omp simd reduction(max : mx)
      for (int64_t i = 0; i < M; ++i) {
        T l = lp[i] - c;
        T p = ex(l);
        T g = scale * p;
        T grad = tau * (lg((p + eps) * m) + (T)1);
        grad = grad + gamma0 * ((T)1 / ((T)1 + ex(h[i] - g)));
        T w = grad * (-eta) + l;
        lp[i] = w;
        mx = w > mx ? w : mx;
      }
      T s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < M; ++i) s += ex(lp[i] - mx);
      c = mx + lg(s);
    }
  }
  if (have_e) {
#pragma omp simd
    for (int64_t i = 0; i < M; ++i) out[i] = scale * (out[i] * inv_s);
  } else {
#pragma omp simd
    for (int64_t i = 0; i < M; ++i) out[i] = scale * ex(lp[i] - c);
  }
}
// hash32 of gammapo_spec.random: every product modulo 2^32 is a plain uint32 product.
static inline uint32_t hash32(uint32_t x) {
  x ^= x >> 16; x *= 0x7FEB352Du;
  x ^= x >> 15; x *= 0x2C1B3C6Du;
  x ^= x >> 12; x *= 0x297A2D39u;
  return x ^ (x >> 15);
}

// The S smallest keys of slots 0..size-1 as (key << 32 | slot) into sel[0..S), in no particular order: the
// margins depend on which gaps are sampled, their order changes only the rounding of the sums (no sort).
// Keys of distinct slots are distinct (hash32 is a bijection), so the order is total. A first pass keeps
// the keys below a threshold a few standard deviations above the expected S-th smallest; if fewer than S
// pass (improbable), every key is kept. Either way the S smallest are among those kept: exact.
static void smallest_keys(uint32_t key, int64_t size, int64_t S, uint32_t* keys, uint64_t* sel) {
#pragma omp simd
  for (int64_t i = 0; i < size; ++i) keys[i] = hash32(key + (uint32_t)i);
  int64_t kept = 0;
  if (S < size) {
    const double expect = ((double)S + 4.0 * __builtin_sqrt((double)S) + 16.0) / (double)size * 4294967296.0;
    const uint64_t thr = expect >= 4294967296.0 ? (uint64_t)1 << 32 : (uint64_t)expect;
    for (int64_t i = 0; i < size; ++i) {
      sel[kept] = ((uint64_t)keys[i] << 32) | (uint64_t)i;
      kept += (uint64_t)keys[i] < thr;
    }
    if (kept < S) kept = 0;
  }
  if (kept == 0) {
    for (int64_t i = 0; i < size; ++i) sel[i] = ((uint64_t)keys[i] << 32) | (uint64_t)i;
    kept = size;
  }
  if (S < kept) std::nth_element(sel, sel + S, sel + kept);
}

template <typename T>
static int queue_step(T* buf, int64_t cap, const int64_t* size_p, const int64_t* head_p, const int64_t* step_p,
                      const int64_t* seed_p, int64_t* size_out, int64_t* head_out, int64_t* step_out, const T* h, int64_t n, int64_t nc,
                      double gamma0, double tau, int64_t iters, int has_shift, double shift, T* gamma_out) {
  const int64_t size = *size_p, head = *head_p, step = *step_p, seed = *seed_p;
  const int64_t S = size < nc ? size : nc;
  const int64_t M = S + n;
  uint32_t* keys = (uint32_t*)malloc(sizeof(uint32_t) * (size > 0 ? size : 1));
  uint64_t* sel = (uint64_t*)malloc(sizeof(uint64_t) * (size > 0 ? size : 1));
  T* work = (T*)malloc(sizeof(T) * 3 * M);
  if (!keys || !sel || !work) { free(keys); free(sel); free(work); return 1; }
  T* calib = work; T* out = work + M; T* lp = work + 2 * M;
  if (S > 0) {
    // stream_key(seed, STREAM_SAMPLE, step) of gammapo_spec.random
    const uint32_t k = hash32(hash32((uint32_t)seed ^ 0x5A3C9E11u) ^ (uint32_t)step);
    smallest_keys(k, size, S, keys, sel);
    for (int64_t j = 0; j < S; ++j) calib[j] = buf[sel[j] & 0xFFFFFFFFull];
  }
  memcpy(calib + S, h, sizeof(T) * n);
  mirror<T>(calib, out, lp, M, gamma0, tau, iters, has_shift, shift);
  memcpy(gamma_out, out + S, sizeof(T) * n);
  const int64_t keep = n < cap ? n : cap;
  for (int64_t j = n - keep; j < n; ++j) buf[(head + j) % cap] = h[j];
  *size_out = size + n < cap ? size + n : cap;
  *head_out = (head + n) % cap;
  *step_out = step + 1;
  free(keys); free(sel); free(work);
  return 0;
}

extern "C" {
int gammapo_mirror_f32(const float* h, float* out, int64_t M, double gamma0, double tau, int64_t iters, int has_shift, double shift) {
  float* lp = (float*)malloc(sizeof(float) * M); if (!lp) return 1;
  mirror<float>(h, out, lp, M, gamma0, tau, iters, has_shift, shift); free(lp); return 0;
}
int gammapo_mirror_f64(const double* h, double* out, int64_t M, double gamma0, double tau, int64_t iters, int has_shift, double shift) {
  double* lp = (double*)malloc(sizeof(double) * M); if (!lp) return 1;
  mirror<double>(h, out, lp, M, gamma0, tau, iters, has_shift, shift); free(lp); return 0;
}
int gammapo_queue_step_f32(float* buf, int64_t cap, const int64_t* a, const int64_t* b, const int64_t* c, const int64_t* d,
                           int64_t* so, int64_t* ho, int64_t* to,
                           const float* h, int64_t n, int64_t nc, double gamma0, double tau, int64_t iters, int has_shift, double shift, float* g) {
  return queue_step<float>(buf, cap, a, b, c, d, so, ho, to, h, n, nc, gamma0, tau, iters, has_shift, shift, g);
}
int gammapo_queue_step_f64(double* buf, int64_t cap, const int64_t* a, const int64_t* b, const int64_t* c, const int64_t* d,
                           int64_t* so, int64_t* ho, int64_t* to,
                           const double* h, int64_t n, int64_t nc, double gamma0, double tau, int64_t iters, int has_shift, double shift, double* g) {
  return queue_step<double>(buf, cap, a, b, c, d, so, ho, to, h, n, nc, gamma0, tau, iters, has_shift, shift, g);
}
}
"""

_lock = threading.Lock()
_lib: Any = None
_tried = False
_error: str | None = None


_BASE_FLAGS = ["-O3", "-fno-math-errno", "-fopenmp-simd", "-ffp-contract=off", "-fPIC", "-shared"]
_ISA_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw", "-mavx2", "-mfma"],
    "AVX2": ["-mavx2", "-mfma"],
}


def _attempts() -> list[list[str]]:
    """Compiler flags to try in turn: the widest vector ISA torch detected on this CPU first, then narrower."""
    order = ["AVX512", "AVX2"]
    isa = torch.backends.cpu.get_cpu_capability() if platform.machine() in ("x86_64", "AMD64") else "DEFAULT"
    widths = order[order.index(isa):] if isa in order else []
    return [_BASE_FLAGS + _ISA_FLAGS[w] for w in widths] + [list(_BASE_FLAGS)]


def _cache_dirs() -> list[pathlib.Path]:
    """Where the library is cached: ``$GAMMAPO_CACHE_DIR``, else ``$XDG_CACHE_HOME/gammapo`` (default
    ``~/.cache/gammapo``), with a per-user folder in the temporary directory as the fallback."""
    env = os.environ.get("GAMMAPO_CACHE_DIR")
    if env:
        return [pathlib.Path(env)]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    user = getattr(os, "getuid", lambda: "user")()
    return [pathlib.Path(base) / "gammapo", pathlib.Path(tempfile.gettempdir()) / f"gammapo-{user}"]


def _writable_cache_dir() -> pathlib.Path:
    error: OSError | None = None
    for folder in _cache_dirs():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if os.access(folder, os.W_OK):
                return folder
        except OSError as exc:
            error = exc
    raise error or PermissionError(f"no writable cache folder among {_cache_dirs()}")


def _build(compiler: str, flags: list[str]) -> pathlib.Path:
    key = hashlib.sha256("\0".join([SOURCE, compiler, *flags, platform.machine()]).encode()).hexdigest()[:16]
    for folder in _cache_dirs():  # an existing build anywhere
        if (folder / f"gammapo_cpu_calibration_{key}.so").exists():
            return folder / f"gammapo_cpu_calibration_{key}.so"
    out_dir = _writable_cache_dir()
    target = out_dir / f"gammapo_cpu_calibration_{key}.so"
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        src = pathlib.Path(tmp) / "kernel.cpp"
        src.write_text(SOURCE)
        lib = pathlib.Path(tmp) / "kernel.so"
        subprocess.run([compiler, *flags, "-o", str(lib), str(src), "-lm"], check=True, capture_output=True, timeout=300)
        os.replace(lib, target)  # atomic: a concurrent build of the same key writes the same bytes
    return target


def _bind(path: pathlib.Path) -> Any:
    lib = ctypes.CDLL(str(path))
    p, i64, f64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_int
    for suffix in ("f32", "f64"):
        fn = getattr(lib, f"gammapo_mirror_{suffix}")
        fn.argtypes, fn.restype = [p, p, i64, f64, f64, i64, i32, f64], i32
        fn = getattr(lib, f"gammapo_queue_step_{suffix}")
        fn.argtypes = [p, i64, p, p, p, p, p, p, p, p, i64, i64, f64, f64, i64, i32, f64, p]
        fn.restype = i32
    return lib


def load() -> Any:
    """The loaded library (built on first use), or ``None`` if disabled or it cannot be built."""
    global _lib, _tried, _error
    if _tried:
        return _lib
    with _lock:
        if _tried:
            return _lib
        compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
        if compiler is None:
            _error = "no C++ compiler (g++ or c++, or $CXX) found"
        else:
            for attempt in _attempts():
                try:
                    _lib = _bind(_build(compiler, attempt))
                    _error = None
                    break
                except (OSError, subprocess.SubprocessError, AttributeError) as exc:
                    detail = getattr(exc, "stderr", b"") or b""
                    _error = f"{type(exc).__name__}: {exc} {detail.decode(errors='replace')[:500]}".strip()
        _tried = True
        return _lib


def build_error() -> str | None:
    """Why the kernel is not available (``None`` if it is, or has not been tried yet)."""
    return _error


_is_wrapped = torch._C._functorch.is_functorch_wrapped_tensor  # vmap/grad wrappers: no plain memory
_transforms_active = torch._C._are_functorch_transforms_active
_FLOATS = (torch.float32, torch.float64)
_INT64 = torch.int64
_Tensor = torch.Tensor
_is_compiling = torch.compiler.is_compiling


def enabled() -> bool:
    """Whether the kernel may run now: not disabled by ``GAMMAPO_DISABLE_CPU_KERNEL=1``, not being
    traced by ``torch.compile``, and built (the first call builds it)."""
    if _is_compiling() or os.environ.get("GAMMAPO_DISABLE_CPU_KERNEL") == "1":
        return False
    return (_lib if _tried else load()) is not None


def usable(h: torch.Tensor) -> bool:
    """Whether :func:`mirror_margins` takes ``h`` now: a plain float32/float64 CPU tensor, :func:`enabled`."""
    if _is_compiling() or _transforms_active():  # first: nothing below needs tracing; no vmap/grad/functionalize
        return False
    return type(h) is _Tensor and h.dtype in _FLOATS and h.is_cpu and not _is_wrapped(h) and enabled()


def takes_step(buffer: torch.Tensor, counters: tuple[torch.Tensor, ...], h: torch.Tensor) -> bool:
    """Whether :func:`queue_step` takes these: :func:`usable` gaps, a plain 1-D CPU buffer, 0-dim int64 CPU counters."""
    if _is_compiling() or _transforms_active():  # first: nothing below needs tracing; no vmap/grad/functionalize
        return False
    if type(buffer) is not _Tensor or not buffer.is_cpu or buffer.dim() != 1 or _is_wrapped(buffer):
        return False
    for c in counters:
        if type(c) is not _Tensor or c.dtype != _INT64 or not c.is_cpu or c.dim():
            return False
    return type(h) is _Tensor and h.dtype in _FLOATS and h.is_cpu and not _is_wrapped(h) and enabled()


def mirror_margins(h: torch.Tensor, *, gamma0: float, tau: float, iters: int, shift: float | None) -> torch.Tensor:
    """:func:`gammapo_torch._calibration.mirror_margins` on all of ``h`` (float32/float64 CPU, detached)."""
    h = h.contiguous()
    out = torch.empty_like(h)
    lib = _lib or load()
    fn = lib.gammapo_mirror_f64 if h.dtype == torch.float64 else lib.gammapo_mirror_f32
    if fn(h.data_ptr(), out.data_ptr(), h.shape[0], gamma0, tau, iters, shift is not None, shift or 0.0):
        raise MemoryError("gammapo CPU calibration kernel: out of memory")
    return out


def queue_step(
    buffer: torch.Tensor,
    counters: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    h: torch.Tensor,
    *,
    n_candidates: int,
    gamma0: float,
    tau: float,
    iters: int,
    shift: float | None,
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
    """One queue step (sample, calibrate, push) of :mod:`gammapo_torch._state` in one call.

    Args:
        buffer: the ``[capacity]`` ring buffer (float32 or float64; read only).
        counters: ``(size, head, step, seed)``, 0-dim int64 CPU tensors.
        h: ``[n]`` float32/float64 CPU gaps (the compute dtype).
        n_candidates: ``K = min(capacity, max(sample_size − n, 0))``.

    Returns:
        ``(gamma, new_buffer, (size, head, step))``: margins of ``h``, the new buffer in ``h``'s
        dtype and the new counters (0-dim int64).
    """
    size = counters[0]  # a 0-dim int64 CPU tensor: three empty_like calls are the cheapest way to three more
    new_counters = (torch.empty_like(size), torch.empty_like(size), torch.empty_like(size))
    ptrs = (new_counters[0].data_ptr(), new_counters[1].data_ptr(), new_counters[2].data_ptr())
    gamma, new_buffer = _queue_step_raw(buffer, counters, h, n_candidates, gamma0, tau, iters, shift, ptrs)
    return gamma, new_buffer, new_counters


def _queue_step_raw(buffer, counters, h, n_candidates, gamma0, tau, iters, shift, out_ptrs):
    """The kernel call; writes the new ``size``, ``head``, ``step`` at the three int64 addresses ``out_ptrs``."""
    if not h.is_contiguous():
        h = h.contiguous()
    dtype = h.dtype
    if buffer.dtype == dtype and buffer.is_contiguous():
        new_buffer = buffer.clone()
    else:
        new_buffer = buffer.to(dtype, memory_format=torch.contiguous_format, copy=True)
    gamma = torch.empty_like(h)
    size, head, step, seed = counters
    lib = _lib or load()
    fn = lib.gammapo_queue_step_f64 if dtype == torch.float64 else lib.gammapo_queue_step_f32
    if fn(new_buffer.data_ptr(), new_buffer.shape[0], size.data_ptr(), head.data_ptr(), step.data_ptr(),
          seed.data_ptr(), *out_ptrs, h.data_ptr(), h.shape[0], n_candidates, gamma0, tau, iters,
          shift is not None, shift or 0.0, gamma.data_ptr()):
        raise MemoryError("gammapo CPU calibration kernel: out of memory")
    return gamma, new_buffer


# --- the kernel inside torch.compile graphs ------------------------------------------------------------
# Dynamo cannot trace a ctypes call, so a compiled step calls the kernel as a custom op: opaque to
# inductor (its generated code calls it like an ATen fallback), with a fake implementation for shapes.


_SCHEMAS = {
    "cpu_queue_step": "cpu_queue_step(Tensor buffer, Tensor size, Tensor head, Tensor step, Tensor seed, Tensor h, "
    "int n_candidates, float gamma0, float tau, int iters, bool has_shift, float shift) "
    "-> (Tensor, Tensor, Tensor, Tensor, Tensor)",
    "cpu_mirror": "cpu_mirror(Tensor h, float gamma0, float tau, int iters, bool has_shift, float shift) -> Tensor",
}
_library: Any = None


def _op_queue_step(buffer, size, head, step, seed, h, n_candidates, gamma0, tau, iters, has_shift, shift):
    new = [torch.empty((), dtype=torch.int64) for _ in range(3)]
    gamma, new_buffer = _queue_step_raw(buffer, (size, head, step, seed), h, n_candidates, gamma0, tau, iters,
                                        shift if has_shift else None, [t.data_ptr() for t in new])
    return gamma, new_buffer, *new


def _op_mirror(h, gamma0, tau, iters, has_shift, shift):
    return mirror_margins(h, gamma0=gamma0, tau=tau, iters=iters, shift=shift if has_shift else None)


def _register_ops() -> None:
    """Define ``gammapo::cpu_queue_step`` and ``gammapo::cpu_mirror`` with a CPU kernel and a fake (shape)
    implementation. Low-level ``torch.library.Library`` definitions: the dispatcher calls the Python
    function straight from the CPU key, without ``custom_op``'s autograd wrapper layers (the inputs
    never need gradients: the gaps are detached). Once per process (also across a second import of
    this module under another name)."""
    global _library
    try:
        torch.ops.gammapo.cpu_queue_step, torch.ops.gammapo.cpu_mirror
        return
    except (AttributeError, RuntimeError):
        pass
    _library = torch.library.Library("gammapo", "FRAGMENT")
    for name, schema in _SCHEMAS.items():
        _library.define(schema)
    _library.impl("cpu_queue_step", _op_queue_step, "CPU")
    _library.impl("cpu_mirror", _op_mirror, "CPU")

    @torch.library.register_fake("gammapo::cpu_queue_step", lib=_library)
    def _queue_step_fake(buffer, size, head, step, seed, h, n_candidates, gamma0, tau, iters, has_shift, shift):
        return (torch.empty_like(h), buffer.new_empty(buffer.shape, dtype=h.dtype), size.new_empty(()),
                size.new_empty(()), size.new_empty(()))

    @torch.library.register_fake("gammapo::cpu_mirror", lib=_library)
    def _mirror_fake(h, gamma0, tau, iters, has_shift, shift):
        return torch.empty_like(h)



@torch.compiler.assume_constant_result
def _enabled_for_tracing() -> bool:
    """Evaluated once while dynamo traces (its result becomes a constant of the graph); defines the
    operators on first use. They are not defined at import: with them in the dispatcher, tearing down
    a two-rank gloo run (``examples/torch_distributed.py``) hung about one time in three here, so
    processes that never trace a CPU calibration never define them."""
    if os.environ.get("GAMMAPO_DISABLE_CPU_KERNEL") == "1" or load() is None:
        return False
    _register_ops()
    return True


def traced_usable(h: torch.Tensor) -> bool:
    """Under ``torch.compile``: whether ``h`` goes through the kernel's operator (static checks only)."""
    return h.dtype in _FLOATS and h.is_cpu and _enabled_for_tracing()


def traced_takes_step(buffer: torch.Tensor, counters: tuple[torch.Tensor, ...], h: torch.Tensor) -> bool:
    """Under ``torch.compile``: whether the step goes through the kernel's operator (static checks only)."""
    return (
        buffer.is_cpu and buffer.dim() == 1
        and all(c.dtype == torch.int64 and c.is_cpu and c.dim() == 0 for c in counters)
        and traced_usable(h)
    )
