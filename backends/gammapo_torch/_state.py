r"""Queue-mode calibration state as device-resident tensors, and the queue step.

The semantics are those of :mod:`gammapo_spec.state` (the paper's Algorithm 2), bit for bit in the
sampling and the ring-buffer updates. With current gaps ``h`` (n of them, all ranks' gaps in
distributed training) one :func:`calibrate_step`:

1. samples ``S = min(size, max(sample_size − n, 0))`` stored gaps without replacement: the S valid
   slots with the smallest keys ``slot_keys(stream_key(seed, STREAM_SAMPLE, step), capacity)``, in
   key order;
2. calibrates on ``[sampled, h]`` (M = S + n) and keeps the margins of ``h``;
3. pushes ``h`` into the ring buffer: ``buffer[(head + j) mod capacity] = h_j``, then
   ``head ← (head + n) mod capacity``, ``size ← min(size + n, capacity)``, ``step ← step + 1``.

How it stays on the device with static shapes: S depends on ``size``, which is data. So the step
always takes the ``K = min(capacity, max(sample_size − n, 0))`` smallest keys (a fixed number, known
from shapes and config), with invalid slots (``slot ≥ size``) given the key :math:`2^{32}` so they
sort last; the first ``S = min(size, K)`` of those candidates are valid and the calibration masks the
rest (:func:`gammapo_torch._calibration.mirror_margins`). The keys come from the int64 hash of
:mod:`gammapo_torch._hash`; ``size``, ``head``, ``step`` and ``seed`` are 0-dim int64 tensors on the
buffer's device. Nothing calls ``.item()``, ``.tolist()``, ``.cpu()`` or Python's ``random``, so the
step compiles with ``torch.compile(fullgraph=True)`` and can be captured in a CUDA graph (mirror
solver; the exact solver synchronises, see :mod:`gammapo_torch._calibration`).

On CPU the whole step (sample, calibration, push) is by default one call of the C++ kernel of
:mod:`gammapo_torch._cpu_calibration`, eagerly and (as a custom operator) inside compiled graphs: the
same integer sample and push, so the same states bit for bit, and margins equal to rounding.

Dtype: the buffer is float32 unless the step computes in float64 (float64 gaps), in which case the
new state's buffer is float64; a float32 buffer is upcast exactly when read by a float64 step.
:func:`init_state` creates a float32 buffer by default; pass ``dtype=torch.float64`` for a float64
run that reproduces the reference to float64 rounding from the first step (the warm-up draws are
otherwise rounded to float32).

Every op here is functional: states are immutable values, a step returns a new one.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from gammapo_spec.config import GammaPOConfig
from gammapo_spec.errors import StateError
from gammapo_spec.kkt_solver import INFLECTION_ITERS, iteration_plan
from gammapo_spec.random import STREAM_SAMPLE
from gammapo_spec import state as spec_state

from . import _cpu_calibration

from ._calibration import normaliser_shift, solve
from ._dtypes import DTYPES, compute_dtype
from ._hash import slot_keys, stream_key
from ._validation import check_gaps

_FLOATS = (torch.float32, torch.float64)

__all__ = [
    "QueueState",
    "init_state",
    "check_state",
    "sample_candidates",
    "push_gaps",
    "calibrate_step",
    "queue_step",
    "state_to_dict",
    "state_from_dict",
]


class QueueState(NamedTuple):
    """The queue of recent gaps, as tensors on one device (a pytree: a ``NamedTuple``).

    Attributes:
        buffer: ``[capacity]`` float32 or float64 ring buffer; slots not yet written hold zeros.
        size: 0-dim int64, the number of valid stored gaps (≤ capacity).
        head: 0-dim int64, the slot the next gap is written to.
        step: 0-dim int64, the number of calibration steps taken (the counter of the sampling keys).
        seed: 0-dim int64, the 32-bit seed of the sampling keys.
    """

    buffer: torch.Tensor
    size: torch.Tensor
    head: torch.Tensor
    step: torch.Tensor
    seed: torch.Tensor

    @property
    def capacity(self) -> int:
        """The number of slots (a Python int: it is the buffer's shape)."""
        return int(self.buffer.shape[0])


def _resolve_dtype(dtype: Any) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        dtype = DTYPES.get(dtype, dtype)
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"the queue buffer is float32 or float64, got {dtype!r}")
    return dtype


def init_state(
    config: GammaPOConfig, seed: int = 0, *, device: Any = None, dtype: Any = None
) -> QueueState | None:
    """The initial calibration state for ``config`` (``None`` unless dynamic margins in queue mode).

    Same contract as :func:`gammapo_spec.init_state`; the ``queue_warmup`` standard-normal draws are
    the reference's own :func:`~gammapo_spec.random.warmup_normals` (computed once on the host at
    creation, which is not in the per-step path), so a float64 state equals the reference's exactly.

    Args:
        config: the loss configuration (``queue_size``, ``queue_warmup``).
        seed: an integer in ``[0, 2**32)``.
        device: where the state lives (default: CPU).
        dtype: ``torch.float32`` (default) or ``torch.float64`` (or their names) for the buffer.

    Raises:
        StateError: a seed outside ``[0, 2**32)`` (field ``"seed"``), as the reference.

    Example:
        >>> from gammapo_spec import GammaPOConfig
        >>> state = init_state(GammaPOConfig(queue_size=16, queue_warmup=8), seed=0)
        >>> state.capacity, int(state.size), int(state.head), int(state.step), state.buffer.dtype
        (16, 8, 8, 0, torch.float32)
    """
    ref = spec_state.init_state(config, seed)  # the reference's checks and warm-up draws
    if ref is None:
        return None
    return _from_reference(ref, torch.as_tensor(ref.buffer).to(_resolve_dtype(dtype)), device)


def _from_reference(ref: Any, buffer: torch.Tensor, device: Any) -> QueueState:
    """A state with ``buffer`` and the counters of the reference state ``ref``, on ``device``."""

    def scalar(v: int) -> torch.Tensor:
        return torch.tensor(v, dtype=torch.int64, device=device)

    return QueueState(buffer=buffer.to(device), size=scalar(ref.size), head=scalar(ref.head), step=scalar(ref.step),
                      seed=scalar(ref.seed))


def check_state(config: GammaPOConfig, state: Any) -> None:
    """Check that ``state`` fits ``config``: :func:`gammapo_spec.state.check_state` with this backend's
    :class:`QueueState` (the same checks and messages).

    Raises:
        StateError: a state where none belongs, something else than a :class:`QueueState`, or a
            buffer whose capacity is not ``config.queue_size``.
    """
    spec_state.check_state(config, state, state_type=QueueState)


def sample_candidates(state: QueueState, n_candidates: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``n_candidates`` slots with the smallest keys (invalid slots last), in key order, and ``S``.

    Returns:
        ``(slots, count)``: ``[n_candidates]`` int64 slot indices and the 0-dim number ``S`` of them
        that are valid (``min(size, n_candidates)``); the first ``S`` are the reference's sample.
    """
    cap = state.capacity
    keys = slot_keys(stream_key(state.seed, STREAM_SAMPLE, state.step), cap)
    slot = torch.arange(cap, device=keys.device)
    keys = torch.where(slot < state.size, keys, torch.full_like(keys, 1 << 32))
    # the n_candidates smallest keys in increasing order (valid keys are distinct and below 2**32;
    # ties among the invalid ones are masked by the calibration, so their order does not matter)
    slots = torch.topk(keys, n_candidates, largest=False, sorted=True).indices
    return slots, torch.clamp(state.size, max=n_candidates)


def push_gaps(state: QueueState, gaps: torch.Tensor) -> QueueState:
    """Append ``gaps`` to the ring buffer (step 3 of the module docstring); advance the step counter.

    The buffer of the new state has ``gaps``' dtype (float32 or float64, see the module docstring).
    """
    cap = state.capacity
    n = gaps.shape[0]
    keep = min(n, cap)
    offsets = torch.arange(n - keep, n, device=gaps.device, dtype=torch.int64)
    slots = (state.head + offsets) % cap
    buffer = state.buffer.to(gaps.dtype).index_copy(0, slots, gaps[n - keep :].detach())
    return QueueState(
        buffer=buffer,
        size=torch.clamp(state.size + n, max=cap),
        head=(state.head + n) % cap,
        step=state.step + 1,
        seed=state.seed,
    )


def calibrate_step(config: GammaPOConfig, state: QueueState | None, gaps) -> tuple[torch.Tensor, QueueState | None]:
    r"""Calibrated margins γ for the current gaps, and the next state (tensors; see the module docstring).

    Same contract as :func:`gammapo_spec.calibrate_step`. Batch mode (``state is None``) calibrates on
    ``gaps`` alone; queue mode samples, calibrates on ``[sampled, gaps]`` and pushes. ``gaps`` are the
    calibration set as given: in distributed training pass all ranks' gaps (``gamma_po_loss`` gathers
    them for you).

    Args:
        config: a config with dynamic margins.
        state: ``None`` in batch mode, the current :class:`QueueState` in queue mode.
        gaps: ``[n]`` current reward gaps.

    Returns:
        ``(gamma, new_state)``: ``[n]`` detached margins in the compute dtype, and the next state.

    Raises:
        StateError: a state that does not fit the config.
        InputError: gaps not 1-D, empty or (with ``check_values``, eager only) non-finite.

    Example:
        >>> import torch
        >>> from gammapo_spec import GammaPOConfig
        >>> cfg = GammaPOConfig(gamma_beta_ratio=0.1, queue_size=8, sample_size=6, queue_warmup=0)
        >>> state = init_state(cfg, seed=1)
        >>> gamma, state = calibrate_step(cfg, state, torch.tensor([3.0, -1.0]))
        >>> round(float(gamma.mean()), 6), int(state.size), int(state.step)
        (1.0, 2, 1)
    """
    check_state(config, state)
    h = check_gaps(gaps, config.check_values)
    if h.requires_grad:
        h = h.detach()
    dtype = h.dtype if h.dtype in _FLOATS else compute_dtype(h)  # the dtype policy: float32/64 stay
    return queue_step(config, state, h if h.dtype == dtype else h.to(dtype))


_PLANS: dict[tuple[int, int, int, torch.dtype], tuple[Any, ...]] = {}


def _kernel_plan(config: GammaPOConfig, capacity: int, n: int, dtype: torch.dtype) -> tuple[Any, ...]:
    """``(config, K, γ0, τ, iters, shift)`` of a kernel step, cached per config object and shapes (the
    config is held by its entry, so its ``id`` cannot be reused while cached): a few µs per call."""
    key = (id(config), capacity, n, dtype)
    plan = _PLANS.get(key)
    if plan is None or plan[0] is not config:
        n_candidates = min(capacity, max(config.sample_size - n, 0))
        if config.solver == "mirror":
            shift = normaliser_shift(n_candidates + n, config.gamma0, config.tau, dtype)
            plan = (config, n_candidates, config.gamma0, config.tau, config.iters, shift)
        else:  # the default solver: iters=None, and its iteration plan in place of the shift
            plan = (config, n_candidates, config.gamma0, config.tau, None,
                    (*iteration_plan(config.gamma0, config.tau), INFLECTION_ITERS))
        if len(_PLANS) >= 64:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan


def queue_step(config: GammaPOConfig, state: QueueState | None, h: torch.Tensor) -> tuple[torch.Tensor, QueueState | None]:
    """:func:`calibrate_step` without validation, on detached gaps already in the compute dtype.

    On eager CPU tensors (either solver), the whole step is one call of the compiled kernel of
    :mod:`gammapo_torch._cpu_calibration` (same sample and push, margins equal to rounding); the
    torch ops below run everywhere else (under ``torch.compile``, on CUDA, without a C++ compiler).
    """
    n = h.shape[0]
    if state is not None:
        buf, counters = state[0], state[1:]
        if _cpu_calibration.takes_step(buf, counters, h):
            _, n_candidates, gamma0, tau, iters, shift = _kernel_plan(config, buf.shape[0], n, h.dtype)
            gamma, buffer, (size, head, step) = _cpu_calibration.queue_step(
                buf, counters, h, n_candidates=n_candidates, gamma0=gamma0, tau=tau, iters=iters, shift=shift
            )
            return gamma, QueueState(buffer, size, head, step, state.seed)
    if (
        state is not None and config.solver == "mirror" and torch.compiler.is_compiling()
        and _cpu_calibration.traced_takes_step(state.buffer, state[1:], h)
    ):  # the same kernel inside a compiled graph, as the custom op gammapo::cpu_queue_step
        n_candidates = min(state.capacity, max(config.sample_size - n, 0))
        shift = normaliser_shift(n_candidates + n, config.gamma0, config.tau, h.dtype)
        gamma, buffer, size, head, step = torch.ops.gammapo.cpu_queue_step(
            state.buffer, *state[1:], h, n_candidates, config.gamma0, config.tau, config.iters,
            shift is not None, 0.0 if shift is None else shift,
        )
        return gamma, QueueState(buffer, size, head, step, state.seed)
    kwargs = dict(gamma0=config.gamma0, tau=config.tau, solver=config.solver, iters=config.iters)
    if state is None:
        return solve(h, **kwargs), None
    if state.buffer.device != h.device:
        h = h.to(state.buffer.device)
    n_candidates = min(state.capacity, max(config.sample_size - n, 0))
    if n_candidates == 0:
        return solve(h, **kwargs), push_gaps(state, h)
    slots, count = sample_candidates(state, n_candidates)
    calib_set = torch.cat([state.buffer.to(h.dtype)[slots], h])
    gamma = solve(calib_set, count=count, n_candidates=n_candidates, **kwargs)[n_candidates:]
    return gamma, push_gaps(state, h)


def _host(value: Any) -> Any:
    """A tensor as a NumPy value for the reference's checks (floats other than float32/64 widened)."""
    if not isinstance(value, torch.Tensor):
        return value
    value = value.detach().cpu()
    if value.is_floating_point() and value.dtype not in _FLOATS:
        value = value.to(torch.float64)
    elif value.is_complex():
        return np.zeros(value.shape, dtype=np.complex128)  # refused by the reference as complex
    return value.numpy()


def _validated(data: Any) -> Any:
    """The reference's :meth:`gammapo_spec.QueueState.from_dict` of ``data`` (its checks and messages)."""
    from gammapo_spec.state import STATE_FIELDS, QueueState as RefState

    if not hasattr(data, "keys"):
        raise StateError(f"a queue state is a dict of {list(STATE_FIELDS)}, got {type(data).__name__}", field="state")
    for key in STATE_FIELDS:
        if key not in data:
            raise StateError(f"queue state lacks {key!r}", field=key)
    return RefState.from_dict({k: _host(data[k]) for k in STATE_FIELDS})


def check_loadable(data: Any, config: GammaPOConfig) -> None:
    """Check a state dict before it is copied into a live state (``GammaPOLoss.load_state_dict``): the
    reference's invariants, a float32/float64 buffer and ``config.queue_size`` slots.

    Raises:
        StateError: naming the field.
    """
    spec_state.check_state(config, _validated(data))


def state_to_dict(state: QueueState | None) -> dict[str, Any] | None:
    """The state as ``{"buffer": tensor, "size": int, "head": int, "step": int, "seed": int}``.

    The checkpoint form (it reads the four counters back to the host: not for the per-step path).
    ``to_numpy(d["buffer"])`` and the ints equal the reference's :meth:`QueueState.to_dict` for the
    same history. ``torch.save`` / ``torch.load`` (``weights_only=True``) round-trip it.
    """
    if state is None:
        return None
    counters = torch.stack([state.size, state.head, state.step, state.seed]).tolist()
    return {"buffer": state.buffer.detach().clone(), **dict(zip(("size", "head", "step", "seed"), counters))}


def state_from_dict(data: Any, *, device: Any = None) -> QueueState | None:
    """Inverse of :func:`state_to_dict`, bit for bit; also takes the reference's ``QueueState.to_dict()``.

    The buffer keeps its dtype if it is float32 or float64 (a tensor or a NumPy array), other dtypes
    become float64; it lives on ``device`` (default: the buffer tensor's device, else CPU).

    Raises:
        StateError: a missing key or an inconsistent value, with the reference's message.
    """
    if data is None:
        return None
    ref = _validated(data)
    raw = data["buffer"]
    buf = raw if isinstance(raw, torch.Tensor) else torch.as_tensor(np.asarray(raw))
    if buf.dtype not in (torch.float32, torch.float64):
        buf = buf.to(torch.float64)
    device = buf.device if device is None else torch.device(device)
    return _from_reference(ref, buf.detach().clone(), device)
