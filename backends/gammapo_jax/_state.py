r"""Queue-mode calibration state as a pytree with static shapes, and one calibration step.

The state is :class:`QueueState`, a registered pytree dataclass with two array leaves,
``buffer`` and ``counters`` (four counters in one array: each leaf costs a few microseconds per
jitted call on the host, which matters for a step of ~50 µs). Its properties are the reference's
fields:

=========  ==========  =====================================================================
field      dtype       meaning (as :class:`gammapo_spec.QueueState`)
=========  ==========  =====================================================================
buffer     float32/64  ``[capacity]`` ring buffer of recent gaps (a leaf)
size       int32       number of valid stored gaps (``counters[0]``)
head       int32       slot the next gap is written to (``counters[1]``)
step       uint32      calibration steps taken (the counter of the sampling keys, mod 2**32;
                       ``counters[2]``)
seed       uint32      seed of the sampling keys (``counters[3]``)
=========  ==========  =====================================================================

``counters`` is a ``uint32[4]`` leaf. Build a state with :meth:`QueueState.create` (or
:func:`init_state` / :func:`state_from_dict`).

Because every leaf has a fixed shape and dtype, a jitted training step that carries the state
compiles once. The data-dependent sample count

.. math:: S = \min(\text{size},\, \max(\text{sample\_size} - n, 0))

is handled with a mask over a fixed candidate set of :math:`C = \min(\text{capacity},
\max(\text{sample\_size} - n, 0))` slots (C depends only on static shapes): the candidates are the
C valid-first slots in increasing key order, the first S of them are used, and the calibration
runs on ``[candidates, h]`` with the invalid candidates masked out (see
:mod:`gammapo_jax._calibration`). The keys are the spec's portable hash in ``uint32``
(:mod:`gammapo_jax._hash`), so the sample, and therefore the state transition, is the reference's.

On a CPU, with the mirror solver, a step is not these ``lax`` ops but one call of the compiled
kernel of :mod:`gammapo_jax._cpu_kernel` (the same sample, push and counters; see
:func:`queue_step`); the ops below remain the path of other platforms and of the exact solver.

The buffer dtype: :func:`init_state` makes a float32 buffer unless asked for ``dtype="float64"``
(which needs ``jax_enable_x64``). A step stores gaps in ``promote(buffer dtype, gap dtype)``, so
float64 gaps turn a float32 buffer into a float64 one (one extra compilation, then stable).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import gammapo_spec
from gammapo_spec.config import GammaPOConfig
from gammapo_spec.kkt_solver import iteration_plan
from gammapo_spec.state import check_state as spec_check_state, check_state_fields
from gammapo_spec.validation import check_finite, check_gaps_shape

from . import _cpu_kernel, _hash
from ._calibration import solve, solve_all
from ._dtypes import compute_dtype, concrete_all, default_float, to_jax

__all__ = ["QueueState", "init_state", "check_state", "calibrate_step", "state_to_dict", "state_from_dict"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class QueueState:
    """The queue of recent gaps (a pytree; see the module docstring for the leaves).

    Example:
        >>> import jax.numpy as jnp
        >>> s = QueueState.create(buffer=jnp.zeros(4), size=2, head=2, step=7, seed=1)
        >>> int(s.size), int(s.head), int(s.step), int(s.seed), s.counters.dtype.name
        (2, 2, 7, 1, 'uint32')
    """

    buffer: jax.Array
    counters: jax.Array

    @classmethod
    def create(cls, *, buffer, size, head, step, seed) -> "QueueState":
        """A state from the reference's five fields (arrays or integers; ``step`` taken mod 2**32).

        Concrete fields (Python or NumPy integers, not traced values) are checked first against the
        reference's invariants (:func:`gammapo_spec.state.check_state_fields`).

        Raises:
            StateError: a concrete field out of range, naming it.
        """
        fields = (size, head, step, seed)
        concrete = all(isinstance(f, (int, np.integer)) and not isinstance(f, bool) for f in fields)
        if concrete and np.ndim(buffer) == 1 and not isinstance(buffer, jax.core.Tracer):
            check_state_fields(np.zeros(np.shape(buffer)[0]), *(int(f) for f in fields), finite=False)
            fields = (size, head, int(step) & 0xFFFFFFFF, seed)
        counters = jnp.stack([jnp.asarray(f).astype(jnp.uint32) for f in fields], axis=-1)
        return cls(buffer=jnp.asarray(buffer), counters=counters)

    @property
    def size(self) -> jax.Array:
        """Number of valid stored gaps (int32)."""
        return self.counters[..., 0].astype(jnp.int32)

    @property
    def head(self) -> jax.Array:
        """Slot the next gap is written to (int32)."""
        return self.counters[..., 1].astype(jnp.int32)

    @property
    def step(self) -> jax.Array:
        """Calibration steps taken, mod 2**32 (uint32)."""
        return self.counters[..., 2]

    @property
    def seed(self) -> jax.Array:
        """Seed of the sampling keys (uint32)."""
        return self.counters[..., 3]

    @property
    def capacity(self) -> int:
        """The number of slots (static)."""
        return int(self.buffer.shape[-1])


def resolve_dtype(dtype: Any) -> jnp.dtype:
    """A float dtype from ``"float32"``/``"float64"``/a dtype; float64 means the widest float JAX
    has enabled (float32 without ``jax_enable_x64``)."""
    dt = jnp.dtype(dtype)
    if dt == jnp.float64:
        return default_float()
    return dt


def _from_numpy_state(state: gammapo_spec.QueueState, dtype: Any = None) -> QueueState:
    dt = default_float() if dtype is None else resolve_dtype(dtype)
    counters = np.array([state.size, state.head, state.step & 0xFFFFFFFF, state.seed], dtype=np.uint32)
    return QueueState(
        buffer=jnp.asarray(np.asarray(state.buffer, dtype=np.float64)).astype(dt),
        counters=jnp.asarray(counters),
    )


def init_state(config: GammaPOConfig, seed: int = 0, *, dtype: Any = "float32") -> QueueState | None:
    """The initial calibration state: a :class:`QueueState`, or ``None`` if the config needs none.

    Same semantics as :func:`gammapo_spec.init_state` (``queue_warmup`` standard-normal draws from
    the portable hash, identical on every backend); the seed is validated eagerly.

    Args:
        config: the loss configuration.
        seed: an integer in ``[0, 2**32)``.
        dtype: buffer dtype, ``"float32"`` (default) or ``"float64"`` (needs ``jax_enable_x64``).

    Raises:
        StateError: a seed outside ``[0, 2**32)`` (same message as the reference).

    Example:
        >>> from gammapo_spec import GammaPOConfig
        >>> from gammapo_jax import init_state
        >>> s = init_state(GammaPOConfig(queue_size=16, queue_warmup=8), seed=0)
        >>> s.capacity, int(s.size), int(s.head), int(s.step), s.buffer.dtype.name
        (16, 8, 8, 0, 'float32')
    """
    ref = gammapo_spec.init_state(config, seed)
    return None if ref is None else _from_numpy_state(ref, dtype)


def _accept_reference_state(state: Any) -> Any:
    return _from_numpy_state(state) if isinstance(state, gammapo_spec.QueueState) else state


def check_state(config: GammaPOConfig, state: Any) -> QueueState | None:
    """Check that ``state`` fits ``config``; returns it as a JAX state (:func:`gammapo_spec.state.check_state`
    with this backend's :class:`QueueState`: the same checks and messages).

    A reference :class:`gammapo_spec.QueueState` is accepted and converted.
    """
    return spec_check_state(config, state, state_type=QueueState, convert=_accept_reference_state)


def _kth_smallest(k: jax.Array, valid: jax.Array, count: int) -> jax.Array:
    """The ``count``-th smallest of the valid ``uint32`` keys ``k`` (``0xFFFFFFFF`` if fewer are valid):
    a 32-step bisection on the key value, each step one compare-and-count over the slots."""

    def halve(_, bounds):
        lo, hi = bounds
        mid = lo + (hi - lo) // jnp.uint32(2)
        enough = jnp.sum((valid & (k <= mid)).astype(jnp.int32)) >= count
        return jnp.where(enough, lo, mid + jnp.uint32(1)), jnp.where(enough, mid, hi)

    lo, _ = jax.lax.fori_loop(0, 32, halve, (jnp.uint32(0), jnp.uint32(0xFFFFFFFF)))
    return lo


def _exact_candidate_slots(keys: jax.Array, valid: jax.Array, size: jax.Array, count: int) -> jax.Array:
    """The exact path of :func:`candidate_slots` (any keys): threshold by bisection, then a small sort."""
    cap = keys.shape[0]
    invalid_key = jnp.uint32(0xFFFFFFFF)
    chosen = valid & (keys <= _kth_smallest(keys, valid, count))
    slots = jnp.nonzero(chosen, size=count, fill_value=cap - 1)[0].astype(jnp.int32)
    real = jnp.arange(count, dtype=jnp.int32) < jnp.minimum(size, count)
    # stable: a valid key equal to 0xFFFFFFFF stays ahead of the fillers (which come last in `slots`)
    _, order = jax.lax.sort((jnp.where(real, keys[slots], invalid_key), slots), num_keys=1, is_stable=True)
    return order


def candidate_slots(state: QueueState, count: int) -> jax.Array:
    r"""The first ``count`` (static) slots in sampling order: the valid slots with the smallest keys,
    by increasing key (the spec's sample of S = min(size, count) slots is the first S of these),
    then filler slots (masked out by the caller).

    Sorting all ``capacity`` keys is slow on XLA:CPU (~0.2–0.4 ms for 2048), so the usual path is
    one ``lax.top_k`` on a float32 *score* that orders the slots like their keys: valid slot i
    scores :math:`1 + \lfloor(\lnot k_i) / 2^8\rfloor \in [1, 2^{24}]` (exact in float32, larger
    for a smaller key), invalid slots score 0. The scores keep only the top 24 bits of the keys, so
    the top-(count + 1) order is the key order exactly when the first S scores are strictly
    decreasing and strictly above the next one; that is checked, and when it fails (two of the
    sampled keys share their top 24 bits: a few percent of steps) an exact path runs instead
    (``lax.cond``): the count-th smallest valid key t by bisection, the valid slots with key ≤ t
    (exactly ``count`` of them when ``size ≥ count``: ``hash32`` is a bijection, so distinct slots
    have distinct keys), sorted by key. Both paths give the spec's slots in the spec's order.
    """
    cap = state.capacity
    if count == 0:
        return jnp.zeros((0,), dtype=jnp.int32)
    invalid_key = jnp.uint32(0xFFFFFFFF)
    valid = jnp.arange(cap, dtype=jnp.int32) < state.size
    keys = jnp.where(valid, _hash.sample_keys(state.seed, state.step, cap), invalid_key)
    k = min(count + 1, cap)
    score = jnp.where(valid, ((~keys) >> jnp.uint32(8)).astype(jnp.float32) + 1.0, 0.0)
    _, slots = jax.lax.top_k(score, k)
    # re-gathered rather than top_k's own values: slicing those makes XLA:CPU turn top_k into a full sort
    top = score[slots]
    s = jnp.minimum(state.size, count)
    # pair (r, r + 1) must be strictly ordered for every r < S (r = S - 1: the boundary with the next)
    pairs_ok = (top[:-1] > top[1:]) | (jnp.arange(k - 1, dtype=jnp.int32) >= s)
    fast = jnp.all(pairs_ok)
    return jax.lax.cond(
        fast,
        lambda: slots[:count].astype(jnp.int32),
        lambda: _exact_candidate_slots(keys, valid, state.size, count),
    )


def push_gaps(state: QueueState, gaps: jax.Array) -> QueueState:
    """Append ``gaps`` to the ring buffer and advance the step counter (the spec's ``push_gaps``).

    The last ``keep = min(n, capacity)`` gaps land in the slots ``(start + j) mod capacity``,
    ``start = (head + n − keep) mod capacity``; written as a rotation of the padded gaps and a
    select (no scatter, which XLA:CPU runs as a separate, slower kernel).
    """
    cap = state.capacity
    n = gaps.shape[0]
    keep = min(n, cap)
    dt = jnp.promote_types(state.buffer.dtype, gaps.dtype)
    tail = gaps[n - keep :].astype(dt)
    start = (state.head + (n - keep)) % cap
    padded = jnp.concatenate([tail, jnp.zeros((cap - keep,), dt)])  # padded[j] = gap written at start + j
    doubled = jnp.concatenate([padded, padded])
    rotated = jax.lax.dynamic_slice_in_dim(doubled, (cap - start) % cap, cap)  # rotated[i] = padded[(i - start) % cap]
    offset = (jnp.arange(cap, dtype=jnp.int32) - start) % cap
    buffer = jnp.where(offset < keep, rotated, state.buffer.astype(dt))
    return QueueState.create(
        buffer=buffer,
        size=jnp.minimum(state.size + n, cap),
        head=(state.head + n) % cap,
        step=state.step + jnp.uint32(1),
        seed=state.seed,
    )


def _solver_kwargs(config: GammaPOConfig) -> dict[str, Any]:
    plan = iteration_plan(config.gamma0, config.tau)
    return dict(gamma0=config.gamma0, tau=config.tau, solver=config.solver, iters=config.iters, plan=plan)


def _lax_queue_step(config: GammaPOConfig, state: QueueState, h: jax.Array, c: int) -> tuple[jax.Array, QueueState]:
    """The step as ``lax`` ops: sample ``min(size, c)`` slots, calibrate on ``[sampled, h]``, push ``h``."""
    s = jnp.minimum(state.size, c)
    sampled = state.buffer[candidate_slots(state, c)].astype(h.dtype)
    calib = jnp.concatenate([sampled, h])
    valid = jnp.concatenate([jnp.arange(c) < s, jnp.ones(h.shape[0], dtype=bool)])
    # count stays sum(valid) inside solve: passing min(size, c) + n lets XLA:CPU start the solver's setup
    # as a branch parallel to the sampling, and the thread hand-off costs more (~30 µs) than it saves
    gamma = solve(calib, valid, **_solver_kwargs(config))[c:]
    return gamma, push_gaps(state, h)


def queue_step(config: GammaPOConfig, state: QueueState, h: jax.Array) -> tuple[jax.Array, QueueState]:
    """Sample, calibrate on ``[sampled, h]``, push ``h`` (no validation; ``h`` already detached).

    With the mirror solver on a CPU the whole step is one call of the compiled kernel
    (:mod:`gammapo_jax._cpu_kernel`: the same sample, push and counters, margins equal to rounding);
    otherwise, and where the computation is lowered for another platform, the ``lax`` ops below.
    """
    n = h.shape[0]
    c = min(state.capacity, max(config.sample_size - n, 0))
    takes = (config.solver == "mirror" and jnp.promote_types(state.buffer.dtype, h.dtype) == h.dtype
             and _cpu_kernel.usable(h.dtype))
    if not takes:
        return _lax_queue_step(config, state, h, c)

    def kernel_path(buffer, counters, h):
        return _cpu_kernel.queue_step(buffer.astype(h.dtype), counters, h, config.gamma0, config.tau, n_candidates=c,
                                      iters=config.iters)

    def lax_path(buffer, counters, h):
        gamma, new = _lax_queue_step(config, QueueState(buffer=buffer, counters=counters), h, c)
        return gamma, new.buffer, new.counters

    gamma, buffer, counters = _cpu_kernel.on_cpu(kernel_path, lax_path, state.buffer, state.counters, h)
    return gamma, QueueState(buffer=buffer, counters=counters)


def calibrate_core(config: GammaPOConfig, state: QueueState | None, h: jax.Array, gather=None):
    """Margins of the current (local) gaps ``h`` and the next state; traceable, no validation.

    With a ``gather`` hook (:mod:`gammapo_jax._sharding`) the calibration runs on the gathered
    global gaps and the margins of this shard's slice are returned.
    """
    h = jax.lax.stop_gradient(h)
    if gather is not None:
        h_all, offset = gather(h)
    else:
        h_all, offset = h, 0
    if state is None:
        gamma = solve_all(h_all, **_solver_kwargs(config))
    else:
        gamma, state = queue_step(config, state, h_all)
    if gather is not None:
        gamma = jax.lax.dynamic_slice_in_dim(gamma, offset, h.shape[0])
    return gamma, state


def calibrate_step(config: GammaPOConfig, state: QueueState | None, gaps, *, gather=None):
    r"""Calibrated margins γ for the current gaps, and the next state (:func:`gammapo_spec.calibrate_step`).

    Batch mode (``state is None``): γ = ``calibrate_margins(gaps)``. Queue mode: sample S stored
    gaps (the spec's portable hash), calibrate on ``[sampled, gaps]``, keep the last n margins,
    then push ``gaps``. Works under ``jax.jit`` (no retrace across steps: the state has static
    shapes) and ``jax.vmap``.

    Args:
        config: a config with dynamic margins.
        state: ``None`` (batch mode) or the :class:`QueueState` from :func:`init_state`.
        gaps: ``[n]`` current gaps (this shard's, when ``gather`` is given).
        gather: optional hook ``gaps -> (global_gaps, offset)`` such as
            :class:`gammapo_jax.AxisGather`; the calibration (and the pushed gaps) use the global
            gaps, and the margins of ``global[offset : offset + n]`` are returned.

    Returns:
        ``(gamma, new_state)``: ``[n]`` margins (stop-gradient) and the next state.

    Raises:
        StateError: a state that does not fit the config.
        InputError: bad gaps (the value check only runs eagerly).

    Example:
        >>> import jax.numpy as jnp
        >>> from gammapo_spec import GammaPOConfig
        >>> from gammapo_jax import init_state, calibrate_step
        >>> cfg = GammaPOConfig(gamma_beta_ratio=0.1, queue_size=8, sample_size=6, queue_warmup=0)
        >>> gamma, state = calibrate_step(cfg, init_state(cfg, seed=1), jnp.array([3.0, -1.0]))
        >>> round(float(gamma.mean()), 5), int(state.size), int(state.step)
        (1.0, 2, 1)
    """
    state = check_state(config, state)
    h = to_jax(gaps)
    check_gaps_shape(h.shape)
    h = h.astype(compute_dtype(h))
    if config.check_values:
        ok = concrete_all(lambda: jnp.all(jnp.isfinite(h)))
        if ok is not None:
            check_finite("gaps", ok)
    return calibrate_core(config, state, h, gather)


def state_to_dict(state: QueueState | None) -> dict[str, Any] | None:
    """The state as ``{"buffer": float64 ndarray, "size", "head", "step", "seed": int}`` (the
    reference's checkpoint format); ``None`` stays ``None``. Needs concrete values (not under jit)."""
    if state is None:
        return None
    return {
        "buffer": np.asarray(state.buffer).astype(np.float64),
        "size": int(state.size),
        "head": int(state.head),
        "step": int(state.step),
        "seed": int(state.seed),
    }


def state_from_dict(data: Mapping[str, Any] | None, *, dtype: Any = None) -> QueueState | None:
    """Inverse of :func:`state_to_dict`: validated as the reference does (same ``StateError``s).

    Args:
        data: the dict (or ``None``).
        dtype: buffer dtype; ``None`` means float64 under ``jax_enable_x64`` (bit-for-bit restore
            of any state), else float32 (exact for states that were float32).

    Note: ``step`` is stored modulo 2**32 (the sampling keys only use it modulo 2**32).
    """
    if data is None:
        return None
    return _from_numpy_state(gammapo_spec.QueueState.from_dict(data), dtype)
