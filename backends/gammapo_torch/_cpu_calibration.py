r"""A compiled CPU kernel for the calibration step: sampling, all mirror iterations and the push in one call.

Eagerly, the torch-ops queue step costs one dispatcher round trip per op: about 13 ops per mirror
iteration, 20 iterations, plus the hash, ``topk`` and ``index_copy`` of the queue, which on a CPU
is slower than the released code's Python loop. ``torch.compile`` fuses the ops but leaves a fixed
cost of ~50 µs per call (guards, wrappers). This module instead compiles a small C++ file (no torch
headers: one ``g++`` call of about a second, cached on disk) and calls it through :mod:`ctypes`.
One call does, on the tensors' memory, the sample, all mirror
iterations and the push of :data:`gammapo_native.CALIBRATION_CORE` (the C++ core shared with the
JAX backend; its docstring has the arithmetic), normalising each update with the constant shift
:math:`D` of :func:`~gammapo_torch._calibration.normaliser_shift` (or the max-shifted ``logsumexp``
when there is none). The integer parts (sample, push, counters) are exact, so states stay bit for
bit those of the torch-ops path and the reference; the margins agree with them to rounding (vector
``exp``/``log`` and the order of the sum differ from torch's; the tests hold them to the spec's
tolerances).

When it is used: float32 or float64 CPU tensors, mirror solver, the kernel built. Eagerly
(:func:`usable`, :func:`takes_step`) it is called directly. Under ``torch.compile``
(:func:`traced_usable`, :func:`traced_takes_step`) it enters the graph as the custom operators
``gammapo::cpu_queue_step`` / ``gammapo::cpu_mirror`` (``torch.library`` definitions, with fake
implementations for shapes), so ``fullgraph=True`` still holds and compiled and eager steps give
identical results; measured, this beats inductor's fusion of the torch ops on CPU. (The operators
are Python: a graph exported to a C++-only runtime such as AOTInductor needs the kernel off.) Set
``GAMMAPO_DISABLE_CPU_KERNEL=1`` to turn it off (for A/B timing; under ``torch.compile`` it is read
when a graph is traced). If there is no C++ compiler, or the build fails, it is never used and the
torch-ops path runs (the reason is in :func:`build_error`). The build and its cache are :func:`gammapo_native.build_library`'s.
"""

from __future__ import annotations

import ctypes
import os
import pathlib
import platform
from typing import Any

import numpy as np
import torch

import gammapo_native as _native
from gammapo_spec.errors import StateError
from gammapo_spec.kkt_solver import INFLECTION_ITERS, iteration_plan

__all__ = [
    "SOURCE", "enabled", "usable", "takes_step", "traced_usable", "traced_takes_step", "load", "build_error",
    "mirror_margins", "exact_margins", "queue_step",
]

#: The C++ source of the kernel: the shared core and the ``extern "C"`` entry points called through ctypes.
SOURCE = _native.CALIBRATION_CORE + r"""
// size, head, step, seed in; the new size, head, step out (0-dim int64 tensors' memory)
template <typename T>
static int queue_step_ptrs(T* buf, int64_t cap, const int64_t* a, const int64_t* b, const int64_t* c, const int64_t* d,
                           int64_t* so, int64_t* ho, int64_t* to, const T* h, int64_t n, int64_t nc, double gamma0,
                           double tau, int64_t iters, int has_shift, double shift, T* g, int64_t k_out = 0,
                           int64_t k_in = 0, int64_t infl = 0) {
  QueueCounters next;
  const int rc = queue_step<T>(buf, cap, *a, *b, *c, *d, h, n, nc, gamma0, tau, iters, has_shift, shift, g, &next,
                               k_out, k_in, infl);
  if (rc == 0) { *so = next.size; *ho = next.head; *to = next.step; }
  return rc;
}
extern "C" {
int gammapo_kkt_f32(const float* h, float* out, int64_t L, const int64_t* cnt, int64_t nc, double gamma0, double tau,
                    int64_t k_out, int64_t k_in, int64_t infl, double eps) {
  const int64_t c = cnt ? *cnt : 0;  // the 0-dim count tensor's memory (no host read on the Python side)
  if (c < 0 || c > nc || nc > L) return 2;
  return kkt<float>(h, out, L, c, nc, gamma0, tau, k_out, k_in, infl, eps);
}
int gammapo_kkt_f64(const double* h, double* out, int64_t L, const int64_t* cnt, int64_t nc, double gamma0, double tau,
                    int64_t k_out, int64_t k_in, int64_t infl, double eps) {
  const int64_t c = cnt ? *cnt : 0;  // the 0-dim count tensor's memory (no host read on the Python side)
  if (c < 0 || c > nc || nc > L) return 2;
  return kkt<double>(h, out, L, c, nc, gamma0, tau, k_out, k_in, infl, eps);
}
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
  return queue_step_ptrs<float>(buf, cap, a, b, c, d, so, ho, to, h, n, nc, gamma0, tau, iters, has_shift, shift, g);
}
int gammapo_queue_step_kkt_f32(float* buf, int64_t cap, const int64_t* a, const int64_t* b, const int64_t* c, const int64_t* d,
                               int64_t* so, int64_t* ho, int64_t* to, const float* h, int64_t n, int64_t nc, double gamma0,
                               double tau, int64_t k_out, int64_t k_in, int64_t infl, float* g) {
  return queue_step_ptrs<float>(buf, cap, a, b, c, d, so, ho, to, h, n, nc, gamma0, tau, 1, 0, 0.0, g, k_out, k_in, infl);
}
int gammapo_queue_step_f64(double* buf, int64_t cap, const int64_t* a, const int64_t* b, const int64_t* c, const int64_t* d,
                           int64_t* so, int64_t* ho, int64_t* to,
                           const double* h, int64_t n, int64_t nc, double gamma0, double tau, int64_t iters, int has_shift, double shift, double* g) {
  return queue_step_ptrs<double>(buf, cap, a, b, c, d, so, ho, to, h, n, nc, gamma0, tau, iters, has_shift, shift, g);
}
int gammapo_queue_step_kkt_f64(double* buf, int64_t cap, const int64_t* a, const int64_t* b, const int64_t* c, const int64_t* d,
                               int64_t* so, int64_t* ho, int64_t* to, const double* h, int64_t n, int64_t nc, double gamma0,
                               double tau, int64_t k_out, int64_t k_in, int64_t infl, double* g) {
  return queue_step_ptrs<double>(buf, cap, a, b, c, d, so, ho, to, h, n, nc, gamma0, tau, 1, 0, 0.0, g, k_out, k_in, infl);
}
}
"""

def _attempts() -> list[list[str]]:
    """Compiler flags to try in turn: the widest vector ISA torch detected on this CPU first, then narrower."""
    isa = torch.backends.cpu.get_cpu_capability() if platform.machine() in ("x86_64", "AMD64") else "DEFAULT"
    return _native.flag_attempts(isa)


def _bind(path: pathlib.Path) -> Any:
    lib = ctypes.CDLL(str(path))
    p, i64, f64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_int
    for suffix in ("f32", "f64"):
        fn = getattr(lib, f"gammapo_kkt_{suffix}")
        fn.argtypes, fn.restype = [p, p, i64, p, i64, f64, f64, i64, i64, i64, f64], i32
        fn = getattr(lib, f"gammapo_mirror_{suffix}")
        fn.argtypes, fn.restype = [p, p, i64, f64, f64, i64, i32, f64], i32
        fn = getattr(lib, f"gammapo_queue_step_kkt_{suffix}")
        fn.argtypes = [p, i64, p, p, p, p, p, p, p, p, i64, i64, f64, f64, i64, i64, i64, p]
        fn.restype = i32
        fn = getattr(lib, f"gammapo_queue_step_{suffix}")
        fn.argtypes = [p, i64, p, p, p, p, p, p, p, p, i64, i64, f64, f64, i64, i32, f64, p]
        fn.restype = i32
    return lib


#: The library, built on first use.
_LIBRARY = _native.NativeLibrary("gammapo_cpu_calibration", SOURCE, _attempts, _bind)


def load() -> Any:
    """The loaded library (built on first use), or ``None`` if it cannot be built."""
    return _LIBRARY.load()


def build_error() -> str | None:
    """Why the kernel is not available (``None`` if it is, or has not been tried yet)."""
    return _LIBRARY.error


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
    return _LIBRARY.load() is not None


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
    lib = _LIBRARY.load()
    fn = lib.gammapo_mirror_f64 if h.dtype == torch.float64 else lib.gammapo_mirror_f32
    if fn(h.data_ptr(), out.data_ptr(), h.shape[0], gamma0, tau, iters, shift is not None, shift or 0.0):
        raise MemoryError("gammapo CPU calibration kernel: out of memory")
    return out


def exact_margins(
    h: torch.Tensor, *, gamma0: float, tau: float, count: torch.Tensor | None = None, n_candidates: int = 0
) -> torch.Tensor:
    """:func:`gammapo_torch._calibration.exact_margins` in one call (float32/float64 CPU, detached, γ0 > 0).

    The arithmetic of :func:`gammapo_spec.kkt_solver.kkt_log_margins` with its iteration plan; the
    mask (the first ``count`` of ``n_candidates`` candidate slots, then every slot) as there.
    """
    h = h.contiguous()
    out = torch.empty_like(h)
    lib = _LIBRARY.load()
    fn = lib.gammapo_kkt_f64 if h.dtype == torch.float64 else lib.gammapo_kkt_f32
    k_out, k_in = iteration_plan(gamma0, tau)
    if count is None:
        cnt_ptr, nc = None, 0
    else:
        count = count.to(torch.int64).contiguous()
        cnt_ptr, nc = count.data_ptr(), n_candidates
    rc = fn(h.data_ptr(), out.data_ptr(), h.shape[0], cnt_ptr, nc, gamma0, tau, k_out, k_in, INFLECTION_ITERS,
            torch.finfo(h.dtype).eps)
    if rc == 1:
        raise MemoryError("gammapo CPU calibration kernel: out of memory")
    if rc:
        raise StateError(f"gammapo CPU calibration kernel: count outside [0, {n_candidates}]", field="size")
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
        iters, shift: the mirror solver's K and normaliser shift; ``iters=None`` runs the default solver
            instead (in float64), with ``shift`` = its ``(outer, inner, inflection)`` iteration counts.

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
    lib = _LIBRARY.load()
    if iters is None:  # the default solver: shift carries its iteration plan (outer, inner, inflection)
        fn = lib.gammapo_queue_step_kkt_f64 if dtype == torch.float64 else lib.gammapo_queue_step_kkt_f32
        rc = fn(new_buffer.data_ptr(), new_buffer.shape[0], size.data_ptr(), head.data_ptr(), step.data_ptr(),
                seed.data_ptr(), *out_ptrs, h.data_ptr(), h.shape[0], n_candidates, gamma0, tau, *shift,
                gamma.data_ptr())
    else:
        fn = lib.gammapo_queue_step_f64 if dtype == torch.float64 else lib.gammapo_queue_step_f32
        rc = fn(new_buffer.data_ptr(), new_buffer.shape[0], size.data_ptr(), head.data_ptr(), step.data_ptr(),
                seed.data_ptr(), *out_ptrs, h.data_ptr(), h.shape[0], n_candidates, gamma0, tau, iters,
                shift is not None, shift or 0.0, gamma.data_ptr())
    if rc:
        _raise_for(rc, new_buffer, counters)
    return gamma, new_buffer


def _raise_for(rc: int, buffer: torch.Tensor, counters) -> None:
    """The error of a failed kernel call: out of memory (1), or a state the kernel refused to index with
    (the spec's check names the field; the kernel checks its bounds whatever the caller did)."""
    if rc == 1:
        raise MemoryError("gammapo CPU calibration kernel: out of memory")
    from gammapo_spec.state import check_state_fields

    size, head, step, seed = (int(c) for c in counters)
    check_state_fields(np.zeros(buffer.shape[0]), size, head, step, seed, finite=False)
    raise StateError(f"the queue state (size {size}, head {head}, step {step}) does not fit its buffer of "
                     f"{buffer.shape[0]} slots", field="state")


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
