r"""The C++ core of the CPU calibration kernel shared by the torch and JAX backends.

Framework-free: each backend adds its own entry points to :data:`CALIBRATION_CORE` (``extern "C"``
functions called through :mod:`ctypes` for torch, XLA FFI handlers for JAX) and builds the result with
:func:`gammapo_native.build.build_library`. The core does, on raw memory:

1. the sample of a queue step: keys ``hash32((k + i) mod 2^32)`` of the valid slots (integer
   arithmetic: bit for bit the reference's :mod:`gammapo_spec.random`), the ``S = min(size, K)``
   smallest found by a threshold pass and ``std::nth_element`` (valid keys are distinct, so the
   sampled set is the reference's; it is not sorted, as the order of the set changes the margins
   only through the rounding of the sums);
2. the released mirror-descent solver on the ``M = S + n`` gaps ``[sampled, h]``,

   .. math::

       g_i = \tau\,(1 + \log(M (p_i + \epsilon))) + \gamma_0\,\sigma(\gamma_i - h_i),\quad
       w = \log p - \eta g,\quad \log p \leftarrow w - \Big(\log\textstyle\sum_j e^{w_j + D} - D\Big),

   with a constant shift :math:`D` chosen by the caller (or the max-shifted ``logsumexp`` when
   there is none), in the gaps' dtype (float32 or float64); the loop over the set is vectorised by
   the compiler (``#pragma omp simd``, glibc's vector ``exp``/``log``). In float32 the next
   :math:`p_i` is :math:`e^{w_i + D}/S` (the terms of the sum just taken), one ``exp`` per element
   and update fewer than :math:`\exp(\log p_i)`; the two differ by float32 rounding only. Float64
   keeps :math:`\exp(\log p_i)`, whose rounding the reference's 1e-10 needs in the unconverged
   small-τ regime;
3. the ring-buffer push and the new ``size``, ``head``, ``step``.

The integer parts (sample, push, counters) are exact, so states are bit for bit the reference's;
the margins agree with it to rounding (the backends' tests hold them to the spec's tolerances).
"""

__all__ = ["CALIBRATION_CORE"]

#: The C++ core: ``mirror<T>`` (the released solver), ``kkt<T>`` (the default solver, the arithmetic of
#: :mod:`gammapo_spec.kkt_solver`), ``queue_step<T>`` (sample, mirror, push), ``hash32``.
#: Self-contained: only the C++ standard library and libm.
CALIBRATION_CORE = r"""
// gammapo CPU calibration kernel: the shared core (see backends/gammapo_native/core.py)
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
  if (M < 1) return;
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

// The counters of a queue state after a step.
struct QueueCounters { int64_t size, head, step; };
// The largest buffer or gap count the kernels take (2**30: slot indices and byte counts stay far from overflow).
#define GAMMAPO_MAX_SLOTS ((int64_t)1 << 30)

// One queue step on buf (the ring buffer, updated in place): sample S = min(size, nc) stored gaps, calibrate
// [sampled, h] (M = S + n), write the margins of h to gamma_out, push h, return the new counters in *next.
template <typename T>
static int kkt(const T* __restrict h, T* __restrict out, int64_t L, int64_t cnt, int64_t nc, double gamma0_,
               double tau_, int64_t k_out, int64_t k_in, int64_t infl_iters, double eps_);
// k_out > 0: calibrate with the default solver (kkt, in double, k_out/k_in/infl its plan) instead of mirror
template <typename T>
static int queue_step(T* buf, int64_t cap, int64_t size, int64_t head, int64_t step, int64_t seed, const T* h,
                      int64_t n, int64_t nc, double gamma0, double tau, int64_t iters, int has_shift, double shift,
                      T* gamma_out, QueueCounters* next, int64_t k_out = 0, int64_t k_in = 0, int64_t infl = 0) {
  // bounds first, whatever the caller checked: a state read from a file must never index out of bounds
  if (cap < 1 || cap > GAMMAPO_MAX_SLOTS || size < 0 || size > cap || head < 0 || head >= cap || step < 0 || n < 1 ||
      n > GAMMAPO_MAX_SLOTS || nc < 0 || nc > cap)
    return 3;
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
  if (k_out > 0) {
    double* wide = (double*)malloc(sizeof(double) * 2 * M);
    if (!wide) { free(keys); free(sel); free(work); return 1; }
    for (int64_t j = 0; j < M; ++j) wide[j] = (double)calib[j];
    const int rc = gamma0 > 0 ? kkt<double>(wide, wide + M, M, 0, 0, gamma0, tau, k_out, k_in, infl, 2.220446049250313e-16) : 0;
    if (rc) { free(wide); free(keys); free(sel); free(work); return rc; }
    for (int64_t j = 0; j < n; ++j) gamma_out[j] = gamma0 > 0 ? (T)wide[M + S + j] : (T)0;
    free(wide);
  } else {
    mirror<T>(calib, out, lp, M, gamma0, tau, iters, has_shift, shift);
    memcpy(gamma_out, out + S, sizeof(T) * n);
  }
  const int64_t keep = n < cap ? n : cap;
  for (int64_t j = n - keep; j < n; ++j) buf[(head + j) % cap] = h[j];
  next->size = size + n < cap ? size + n : cap;
  next->head = (head + n) % cap;
  next->step = step + 1;
  free(keys); free(sel); free(work);
  return 0;
}

// The default solver: the fixed-work KKT root-find of gammapo_spec.kkt_solver, the same arithmetic in
// the same order, one pass per element and outer iteration (elements are independent within one). Being on
// the host, it leaves the outer loop once converged (the test at the loop's end): at gamma0 = 4, 256 gaps
// after 4 of the plan's 7 iterations at tau = 10, about 8 of 37 at tau = 0.1; margins equal to rounding.
// Valid slots: i < cnt or i >= nc (cnt = nc = 0: all). work: 6 * L scratch values. Returns 0 or 1 (no memory).
template <typename T>
static T kkt_lse(const T* __restrict x, const T* __restrict vm, int64_t L) {
  const T ninf = -(T)__builtin_inf();
  T top = ninf;
#pragma omp simd reduction(max : top)
  for (int64_t i = 0; i < L; ++i) {
    const T v = vm[i] > 0 ? x[i] : ninf;
    top = v > top ? v : top;
  }
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < L; ++i) s += vm[i] * ex(x[i] - top);
  return top + lg(s);
}
template <typename T>
static int kkt(const T* __restrict h, T* __restrict out, int64_t L, int64_t cnt, int64_t nc, double gamma0_,
               double tau_, int64_t k_out, int64_t k_in, int64_t infl_iters, double eps_) {
  if (L < 1 || L > GAMMAPO_MAX_SLOTS || cnt < 0 || nc < 0 || cnt > nc || nc > L) return 2;
  T* w = (T*)malloc(sizeof(T) * 8 * (L > 0 ? L : 1));
  if (!w) return 1;
  T* __restrict xs = w;
  T* __restrict fs = w + L;
  T* __restrict u = w + 2 * L;
  T* __restrict lo = w + 3 * L;
  T* __restrict hi = w + 4 * L;
  T* __restrict d = w + 5 * L;
  T* __restrict vm = w + 6 * L;
  T* __restrict us = w + 7 * L;  // u at the start of the outer iteration
  const T g0 = (T)gamma0_, tau = (T)tau_;
  const T m = (T)(cnt + (L - nc)), log_m = lg(m), cap = log_m + (T)1;
  const T slack = (T)16 * (T)eps_ * (cap + (T)2 + g0 / tau);
  for (int64_t i = 0; i < L; ++i) vm[i] = (i < cnt || i >= nc) ? (T)1 : (T)0;
  T bad = 0;  // NaN when a valid gap is not finite: then every margin is NaN, as in the reference
  for (int64_t i = 0; i < L; ++i) bad += vm[i] * (h[i] - h[i]);
  if (bad != bad) {
    for (int64_t i = 0; i < L; ++i) out[i] = (T)__builtin_nan("");
    free(w);
    return 0;
  }
  // inflection points (y kept in lo)
#pragma omp simd
  for (int64_t i = 0; i < L; ++i) lo[i] = (h[i] > 0 ? h[i] : (T)0) + (T)1;
  for (int64_t k = 0; k < infl_iters; ++k) {
#pragma omp simd
    for (int64_t i = 0; i < L; ++i) {
      const T y = lo[i], hp = h[i] > (T)0 ? h[i] : (T)0;
      const T t = (T)1 - (T)2 / (ex(y - h[i]) + (T)1);  // tanh((y - h)/2)
      const T q = y * t - (T)1, dq = t + (T)0.5 * y * ((T)1 - t * t);
      const T yn = y - q / dq, floor_ = (T)0.5 * hp + (T)1e-30;
      lo[i] = yn > floor_ ? yn : floor_;
    }
  }
  T s0 = 0;
#pragma omp simd reduction(+ : s0)
  for (int64_t i = 0; i < L; ++i) {
    T x = lg(lo[i]) - lg(g0);
    x = x < cap ? x : cap;
    xs[i] = x;
    fs[i] = tau * ((T)1 + x) + g0 * ((T)1 / ((T)1 + ex(h[i] - g0 * ex(x))));
    u[i] = 0;
    s0 += vm[i] * ((T)1 / ((T)1 + ex(h[i] - g0)));
  }
  T c_lo = tau, c_hi = tau + g0;
  T c = tau + g0 * s0 / m;
  c = c > c_lo ? c : c_lo;
  c = c < c_hi ? c : c_hi;
  for (int64_t k = 0; k < k_out; ++k) {
    memcpy(us, u, sizeof(T) * L);
    const T c_was = c;
    for (int64_t j = 0; j < k_in; ++j) {
#pragma omp simd
      for (int64_t i = 0; i < L; ++i) {
        const T ui = u[i], x = xs[i];
        const T cv = fs[i] - c;  // > 0: the root lies on the convex side of x*
        const T z = g0 * ex(ui), sg = (T)1 / ((T)1 + ex(h[i] - z));
        const T f = tau * ((T)1 + ui) + g0 * sg, df = tau + g0 * z * sg * ((T)1 - sg);
        const T lip = ui + (c - f) / tau;
        const T jump_cv = x < lip ? x : lip, jump_cc = x > lip ? x : lip;
        const T newton = ui + (c - f) / df;
        const T on_cv = f >= c ? newton : jump_cv, on_cc = f <= c ? newton : jump_cc;
        const T un = cv > 0 ? on_cv : on_cc;
        u[i] = un < cap ? un : cap;
      }
    }
#pragma omp simd
    for (int64_t i = 0; i < L; ++i) {
      const T ui = u[i];
      const T z = g0 * ex(ui), sg = (T)1 / ((T)1 + ex(h[i] - z));
      const T f = tau * ((T)1 + ui) + g0 * sg, df = tau + g0 * z * sg * ((T)1 - sg);
      const T r = (c - f) / tau;
      lo[i] = ui + (r < 0 ? r : (T)0);
      hi[i] = ui + (r > 0 ? r : (T)0);
      u[i] = ui + (c - f) / df;  // uncapped for the outer step (capped after it)
      d[i] = df;
    }
    const T f_lo = kkt_lse<T>(lo, vm, L) - log_m, f_hi = kkt_lse<T>(hi, vm, L) - log_m;
    const T total = kkt_lse<T>(u, vm, L);
    T den = 0, moved = 0, umax = 0;
#pragma omp simd reduction(+ : den) reduction(max : moved, umax)
    for (int64_t i = 0; i < L; ++i) {
      den += vm[i] * ex(u[i] - total) / d[i];
      const T uc = u[i] < cap ? u[i] : cap;
      u[i] = uc;
      const T dm = vm[i] * (uc > us[i] ? uc - us[i] : us[i] - uc), au = vm[i] * (uc > 0 ? uc : -uc);
      moved = dm > moved ? dm : moved;
      umax = au > umax ? au : umax;
    }
    const T f_lin = total - log_m;
    bool above = f_lo > slack, below = !above && f_hi < -slack;
    const bool settled = !above && !below && moved <= (T)64 * (T)eps_ * ((T)1 + umax);
    above = above || (settled && f_lin > 0);
    below = below || (settled && f_lin < 0);
    if (above) c_hi = c;
    if (below) c_lo = c;
    const T c_new = c - f_lin / den;
    const T width = c_hi - c_lo, in_lo = c_lo + (T)0.125 * width, in_hi = c_hi - (T)0.125 * width;
    const T toward = c_new < in_lo ? in_lo : (c_new > in_hi ? in_hi : c_new);
    c = (c_new >= c_lo && c_new <= c_hi) ? c_new : ((above || below) ? (T)0.5 * (c_lo + c_hi) : toward);
    // Converged to rounding: c moved by at most a few ulps and no u beyond the solver's own "settled" scale.
    // Then every iteration left runs at this c (to ulps) from these u and moves them by rounding only (they
    // do not reach a bitwise fixed point: u and c cycle in their last bits), so the host stops here.
    const T dc = c > c_was ? c - c_was : c_was - c;
    if (dc <= (T)4 * (T)eps_ * c_was && moved <= (T)64 * (T)eps_ * ((T)1 + umax)) break;
  }
  const T shift = kkt_lse<T>(u, vm, L) - log_m;
#pragma omp simd
  for (int64_t i = 0; i < L; ++i) out[i] = vm[i] * (g0 * ex(u[i] - shift));
  free(w);
  return 0;
}
"""
