r"""The compiled CPU calibration kernel as XLA FFI custom calls: a whole queue step in one call.

On XLA:CPU the ``lax`` queue step of :mod:`gammapo_jax._state` costs ~60–110 µs at 256 gaps, most of
it fixed per-op costs: the key hash and ``top_k`` of the sample, 19 fused loop bodies of the mirror
solver, the push. This module runs the step instead as one call of the C++ core shared with the
torch backend (:data:`gammapo_native.CALIBRATION_CORE`: sample, K − 1 mirror updates, push), bound
through JAX's FFI (:func:`jax.ffi.ffi_call`), so a jitted step is one custom call plus JAX's dispatch.

Two custom-call targets per dtype (float32 and float64):

* ``gammapo_queue_step_{f32,f64}`` — ``(buffer[cap], counters uint32[4], h[n], params[2]) ->
  (gamma[n], new_buffer[cap], new_counters uint32[4])``, attributes ``n_candidates``
  (:math:`C = \min(\text{cap}, \max(\text{sample\_size} - n, 0))`) and ``iters``. ``params`` is
  :math:`(\gamma_0, \tau)` as an array, so a sweep over them does not recompile; ``new_buffer``
  aliases ``buffer`` (donate the state to update it in place);
* ``gammapo_mirror_{f32,f64}`` — ``(h[M], params[2]) -> gamma[M]`` (batch mode, every gap valid).

Each update normalises with the constant shift of :func:`gammapo_torch._calibration.normaliser_shift`,
:math:`D = 1.5\log L + \eta\gamma_0 + 1.5` for a set of at most L = C + n gaps (computed in the
kernel, as γ0 and τ may be traced), or the max-shifted ``logsumexp`` when
:math:`D + \log L` comes within 8 of the log of the dtype's largest number.

The sample, push and counters are integer arithmetic, bit for bit the reference's (and the ``lax``
path's); the margins agree with the reference to rounding, held to the spec's tolerances by the
tests and the conformance suite.

When it is used (decided while tracing): the mirror solver, float32 or float64 compute dtype (a
queue buffer of the same dtype, or of a narrower one), the library built, and
``GAMMAPO_DISABLE_CPU_KERNEL`` not ``1``. The call sits in :func:`jax.lax.platform_dependent`, so a
computation lowered for GPU or TPU takes the ``lax`` path; the custom calls are batched under
``jax.vmap`` by a loop over the batch (``vmap_method="sequential"``). Margins are stop-gradient
(the callers detach the gaps), so the calls are never differentiated. Without a C++ compiler, or if
the build fails (:func:`build_error` says why), the ``lax`` path runs everywhere.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

import gammapo_native as _native

__all__ = ["SOURCE", "load", "build_error", "enabled", "usable", "mirror", "queue_step", "on_cpu"]

#: The C++ translation unit: the shared core and the FFI handlers.
SOURCE = '#include <limits>\n#include "xla/ffi/api/ffi.h"\n' + _native.CALIBRATION_CORE + r"""
namespace ffi = xla::ffi;

// D of gammapo_torch._calibration.normaliser_shift for a set of at most L gaps; 0 when there is none.
template <typename T>
static int normaliser_shift(int64_t L, double gamma0, double tau, double* shift) {
  const double eta = 0.5 / tau < 1.0 ? 0.5 / tau : 1.0;
  const double log_l = log((double)L);
  const double d = 1.5 * log_l + eta * gamma0 + 1.5;
  if (d + log_l > log((double)std::numeric_limits<T>::max()) - 8.0) return 0;
  *shift = d;
  return 1;
}

template <ffi::DataType DT>
static ffi::Error MirrorImpl(ffi::Buffer<DT> h, ffi::Buffer<DT> params, ffi::ResultBuffer<DT> gamma, int64_t iters) {
  using T = ffi::NativeType<DT>;
  const int64_t M = (int64_t)h.element_count();
  const double gamma0 = (double)params.typed_data()[0], tau = (double)params.typed_data()[1];
  double shift = 0.0;
  const int has_shift = normaliser_shift<T>(M, gamma0, tau, &shift);
  T* lp = (T*)malloc(sizeof(T) * (M > 0 ? M : 1));
  if (!lp) return ffi::Error::Internal("gammapo calibration kernel: out of memory");
  mirror<T>(h.typed_data(), gamma->typed_data(), lp, M, gamma0, tau, iters, has_shift, shift);
  free(lp);
  return ffi::Error::Success();
}

template <ffi::DataType DT>
static ffi::Error QueueStepImpl(ffi::Buffer<DT> buffer, ffi::Buffer<ffi::U32> counters, ffi::Buffer<DT> h,
                                ffi::Buffer<DT> params, ffi::ResultBuffer<DT> gamma, ffi::ResultBuffer<DT> new_buffer,
                                ffi::ResultBuffer<ffi::U32> new_counters, int64_t n_candidates, int64_t iters) {
  using T = ffi::NativeType<DT>;
  const int64_t cap = (int64_t)buffer.element_count(), n = (int64_t)h.element_count();
  T* buf = new_buffer->typed_data();
  if (buf != buffer.typed_data()) memcpy(buf, buffer.typed_data(), sizeof(T) * cap);
  const uint32_t* c = counters.typed_data();
  const int64_t size = c[0], head = c[1], step = c[2], seed = c[3];
  if (size > cap || head >= cap) return ffi::Error::InvalidArgument("gammapo queue step: counters do not fit the buffer");
  const double gamma0 = (double)params.typed_data()[0], tau = (double)params.typed_data()[1];
  double shift = 0.0;
  const int has_shift = normaliser_shift<T>(n_candidates + n, gamma0, tau, &shift);
  QueueCounters next;
  const int rc = queue_step<T>(buf, cap, size, head, step, seed, h.typed_data(), n, n_candidates, gamma0, tau, iters,
                               has_shift, shift, gamma->typed_data(), &next);
  if (rc == 1) return ffi::Error::Internal("gammapo calibration kernel: out of memory");
  if (rc) return ffi::Error::InvalidArgument("gammapo queue step: counters do not fit the buffer");
  uint32_t* o = new_counters->typed_data();
  o[0] = (uint32_t)next.size; o[1] = (uint32_t)next.head; o[2] = (uint32_t)next.step; o[3] = (uint32_t)seed;
  return ffi::Error::Success();
}

#define GAMMAPO_MIRROR(NAME, DT) \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(NAME, MirrorImpl<DT>, \
      ffi::Ffi::Bind().Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<DT>>().Ret<ffi::Buffer<DT>>().Attr<int64_t>("iters"));
#define GAMMAPO_QUEUE_STEP(NAME, DT) \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(NAME, QueueStepImpl<DT>, \
      ffi::Ffi::Bind().Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<ffi::U32>>().Arg<ffi::Buffer<DT>>().Arg<ffi::Buffer<DT>>() \
          .Ret<ffi::Buffer<DT>>().Ret<ffi::Buffer<DT>>().Ret<ffi::Buffer<ffi::U32>>() \
          .Attr<int64_t>("n_candidates").Attr<int64_t>("iters"));
GAMMAPO_MIRROR(GammapoMirrorF32, ffi::F32)
GAMMAPO_MIRROR(GammapoMirrorF64, ffi::F64)
GAMMAPO_QUEUE_STEP(GammapoQueueStepF32, ffi::F32)
GAMMAPO_QUEUE_STEP(GammapoQueueStepF64, ffi::F64)
"""

#: custom-call target name -> handler symbol in the library.
_TARGETS = {
    "gammapo_mirror_f32": "GammapoMirrorF32",
    "gammapo_mirror_f64": "GammapoMirrorF64",
    "gammapo_queue_step_f32": "GammapoQueueStepF32",
    "gammapo_queue_step_f64": "GammapoQueueStepF64",
}
_SUFFIX = {"float32": "f32", "float64": "f64"}

def _attempts() -> list[list[str]]:
    # -w: the FFI headers warn under g++'s -Wall-free defaults (always_inline, return-type); they are not ours
    return _native.flag_attempts(_native.host_isa(), ["-std=c++17", "-w", "-I", jax.ffi.include_dir()])


def _register(path) -> Any:
    """Load the library and register its handlers as CPU custom-call targets (again is harmless)."""
    lib = ctypes.CDLL(str(path))
    for target, symbol in _TARGETS.items():
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
    return lib


def _jaxlib_version() -> str:
    import jaxlib

    return f"jaxlib {jaxlib.__version__}"  # the FFI headers' version is part of the build's cache key


#: The library, built and registered on first use (any failure, registration included: the lax path).
_LIBRARY = _native.NativeLibrary("gammapo_jax_calibration", SOURCE, _attempts, _register, key_extra=_jaxlib_version,
                                 errors=(Exception,))


def load() -> Any:
    """The library with its targets registered (built and registered on first use), or ``None``."""
    return _LIBRARY.load()


def build_error() -> str | None:
    """Why the kernel is not available (``None`` if it is, or has not been tried yet)."""
    return _LIBRARY.error


def enabled() -> bool:
    """Whether traced steps may use the kernel: ``GAMMAPO_DISABLE_CPU_KERNEL`` is not ``1`` and the
    library is built (the first call builds it)."""
    if os.environ.get("GAMMAPO_DISABLE_CPU_KERNEL") == "1":
        return False
    return _LIBRARY.load() is not None


def usable(dtype) -> bool:
    """Whether a calibration in ``dtype`` (the compute dtype) can go through the kernel."""
    return jnp.dtype(dtype).name in _SUFFIX and enabled()


def _params(gamma0, tau, dtype):
    return jnp.stack([jnp.asarray(gamma0, dtype), jnp.asarray(tau, dtype)])


def mirror(h: jax.Array, gamma0, tau, *, iters: int) -> jax.Array:
    """Margins of every entry of ``h`` by the mirror solver (custom call ``gammapo_mirror_*``)."""
    call = jax.ffi.ffi_call(f"gammapo_mirror_{_SUFFIX[h.dtype.name]}", jax.ShapeDtypeStruct(h.shape, h.dtype),
                            vmap_method="sequential")
    return call(h, _params(gamma0, tau, h.dtype), iters=np.int64(iters))


def queue_step(buffer: jax.Array, counters: jax.Array, h: jax.Array, gamma0, tau, *, n_candidates: int,
               iters: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One queue step (custom call ``gammapo_queue_step_*``): ``(gamma, new_buffer, new_counters)``.

    ``buffer`` must have ``h``'s dtype (the caller casts a narrower buffer up first).
    """
    suffix = _SUFFIX[h.dtype.name]
    out = (jax.ShapeDtypeStruct(h.shape, h.dtype), jax.ShapeDtypeStruct(buffer.shape, h.dtype),
           jax.ShapeDtypeStruct(counters.shape, counters.dtype))
    call = jax.ffi.ffi_call(f"gammapo_queue_step_{suffix}", out, vmap_method="sequential",
                            input_output_aliases={0: 1})
    return call(buffer, counters, h, _params(gamma0, tau, h.dtype), n_candidates=np.int64(n_candidates),
                iters=np.int64(iters))


def on_cpu(kernel: Callable, fallback: Callable, *operands):
    """``kernel(*operands)`` where the computation is lowered for CPU, ``fallback(*operands)`` elsewhere."""
    return jax.lax.platform_dependent(*operands, cpu=kernel, default=fallback)
