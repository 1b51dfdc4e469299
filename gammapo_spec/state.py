r"""Calibration state for queue mode: an explicit value a caller carries between steps.

Queue mode is the paper's Algorithm 2: the calibration set of each step is the current batch's gaps
plus a sample of recent gaps, so a small batch still calibrates against a stable population. The
state is a FIFO of recent detached gaps held in a ring buffer, plus the counter and seed of its
random numbers. Nothing else: a state saved with :meth:`QueueState.to_dict` and restored with
:meth:`QueueState.from_dict` continues bit for bit.

One step, :func:`calibrate_step`, with the current gaps ``h`` (n of them; in data-parallel training
the gaps gathered from every rank, in rank order):

1. ``S = min(size, max(sample_size − n, 0))`` stored gaps are sampled without replacement: the S
   valid slots (``slot < size``) with the smallest keys
   ``slot_keys(stream_key(seed, STREAM_SAMPLE, step), queue_size)`` (see :mod:`gammapo_spec.random`),
   in increasing key order;
2. the calibration set is ``[sampled gaps, h]`` (M = S + n) and the margins of ``h`` are the last n
   entries of :func:`~gammapo_spec.calibrate_margins` on it;
3. *then* ``h`` is pushed: for j = 0 .. n−1, ``buffer[(head + j) mod capacity] = h_j``; afterwards
   ``head ← (head + n) mod capacity``, ``size ← min(size + n, capacity)``, ``step ← step + 1``.
   (When n > capacity only the last ``capacity`` gaps survive, as the sequential writes imply.)

A new state holds ``queue_warmup`` standard-normal draws (the released code seeds its queue with 8),
from :func:`~gammapo_spec.random.warmup_normals`.

What the spec leaves out of the released code: it samples with Python's ``random`` on the host,
copies gaps to the host every step and keeps one unsynchronised queue per rank. Here the sample is
a pure function of the state, identical on every backend and rank.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from .calibration import calibrate_margins
from .config import GammaPOConfig
from .errors import StateError
from .random import MASK32, STREAM_SAMPLE, slot_keys, stream_key, warmup_normals
from .validation import check_finite, check_gaps_shape

__all__ = ["QueueState", "init_state", "sample_slots", "push_gaps", "calibrate_step"]


@dataclasses.dataclass(frozen=True)
class QueueState:
    """The queue of recent gaps (queue-mode calibration state).

    Attributes:
        buffer: ``[capacity]`` float64 ring buffer; slots ``>= size`` hold zeros until written.
        size: number of valid stored gaps (≤ capacity); valid slots are ``0 .. size-1`` until the
            buffer first wraps, then all of them.
        head: the slot the next gap is written to.
        step: number of calibration steps taken (the counter of the sampling keys).
        seed: 32-bit seed of the sampling keys.
    """

    buffer: np.ndarray
    size: int
    head: int
    step: int
    seed: int

    @property
    def capacity(self) -> int:
        return int(self.buffer.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (``numpy`` array + ints) for checkpoints; :meth:`from_dict` restores it bit for bit."""
        return {
            "buffer": self.buffer.copy(),
            "size": self.size,
            "head": self.head,
            "step": self.step,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "QueueState":
        """Rebuild a state from :meth:`to_dict`'s output (also from ``np.load`` of an ``.npz``).

        Raises:
            StateError: a missing key or an inconsistent value, naming the field.
        """
        for key in ("buffer", "size", "head", "step", "seed"):
            if key not in data:
                raise StateError(f"queue state lacks {key!r}", field=key)
        buffer = np.array(data["buffer"], dtype=np.float64)
        if buffer.ndim != 1 or buffer.shape[0] == 0:
            raise StateError(f"buffer must be 1-D and non-empty, got shape {buffer.shape}", field="buffer")
        ints = {k: int(np.asarray(data[k])) for k in ("size", "head", "step", "seed")}
        cap = buffer.shape[0]
        if not 0 <= ints["size"] <= cap:
            raise StateError(f"size must be in [0, {cap}], got {ints['size']}", field="size")
        if not 0 <= ints["head"] < cap:
            raise StateError(f"head must be in [0, {cap}), got {ints['head']}", field="head")
        if ints["step"] < 0:
            raise StateError(f"step must be >= 0, got {ints['step']}", field="step")
        if not 0 <= ints["seed"] <= MASK32:
            raise StateError(f"seed must be in [0, 2**32), got {ints['seed']}", field="seed")
        return cls(buffer=buffer, **ints)


def init_state(config: GammaPOConfig, seed: int = 0) -> QueueState | None:
    """The initial calibration state for ``config``: a :class:`QueueState`, or ``None`` if it needs none.

    Only dynamic margins in queue mode carry state; batch mode and constant-margin losses return
    ``None`` (and :func:`gamma_po_loss` passes ``None`` through).

    Args:
        config: the loss configuration (``queue_size``, ``queue_warmup``).
        seed: an integer in ``[0, 2**32)``; the same seed gives the same samples on every backend.

    Raises:
        StateError: a seed outside ``[0, 2**32)`` (field ``"seed"``).

    Example:
        >>> from gammapo_spec import GammaPOConfig, init_state
        >>> state = init_state(GammaPOConfig(queue_size=16, queue_warmup=8), seed=0)
        >>> state.capacity, state.size, state.head, state.step
        (16, 8, 8, 0)
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= MASK32:
        raise StateError(f"seed must be an integer in [0, 2**32), got {seed!r}", field="seed")
    if not config.stateful:
        return None
    cap, warm = config.queue_size, config.queue_warmup
    buffer = np.zeros(cap, dtype=np.float64)
    buffer[:warm] = warmup_normals(int(seed), warm)
    return QueueState(buffer=buffer, size=warm, head=warm % cap, step=0, seed=int(seed))


def sample_slots(state: QueueState, count: int) -> np.ndarray:
    """The ``count`` slots sampled at this step: the valid slots with the smallest keys, in key order."""
    keys = slot_keys(stream_key(state.seed, STREAM_SAMPLE, state.step & MASK32), state.capacity).astype(np.int64)
    keys[state.size :] = 1 << 32  # invalid slots sort last
    return np.argsort(keys, kind="stable")[:count]


def push_gaps(state: QueueState, gaps: np.ndarray) -> QueueState:
    """Append gaps to the ring buffer (step 3 of the module docstring) and advance the step counter."""
    cap = state.capacity
    n = gaps.shape[0]
    buffer = state.buffer.copy()
    keep = min(n, cap)
    slots = (state.head + np.arange(n - keep, n)) % cap
    buffer[slots] = gaps[n - keep :]
    return QueueState(
        buffer=buffer,
        size=min(state.size + n, cap),
        head=(state.head + n) % cap,
        step=state.step + 1,
        seed=state.seed,
    )


def check_state(config: GammaPOConfig, state: Any) -> None:
    """Check that ``state`` fits ``config``: ``None`` when it needs none, a matching queue otherwise."""
    if not config.stateful:
        if state is not None:
            raise StateError(
                f"loss {config.loss!r} with calibration={config.calibration!r} carries no state; pass None",
                field="state",
            )
        return
    if not isinstance(state, QueueState):
        raise StateError(
            f"queue calibration needs the state from init_state(config), got {type(state).__name__}",
            field="state",
        )
    if state.capacity != config.queue_size:
        raise StateError(
            f"state holds {state.capacity} slots but queue_size is {config.queue_size}", field="queue_size"
        )


def calibrate_step(config: GammaPOConfig, state: QueueState | None, gaps) -> tuple[np.ndarray, QueueState | None]:
    r"""Calibrated margins γ for the current gaps, and the next state.

    Batch mode (``state is None``): γ = ``calibrate_margins(gaps)``. Queue mode: the three steps of
    the module docstring (sample, calibrate on ``[sampled, gaps]``, then push).

    Args:
        config: a config with dynamic margins (``gamma-*``).
        state: ``None`` in batch mode, the current :class:`QueueState` in queue mode.
        gaps: ``[n]`` current reward gaps (all ranks' gaps, gathered, in distributed training).

    Returns:
        ``(gamma, new_state)``: ``[n]`` float64 margins and the state to pass to the next step.

    Raises:
        StateError: a state that does not fit the config.
        InputError: gaps not 1-D, empty or (with ``check_values``) non-finite.

    Example:
        >>> from gammapo_spec import GammaPOConfig, init_state, calibrate_step
        >>> cfg = GammaPOConfig(gamma_beta_ratio=0.1, queue_size=8, sample_size=6, queue_warmup=0)
        >>> state = init_state(cfg, seed=1)
        >>> gamma, state = calibrate_step(cfg, state, [3.0, -1.0])
        >>> round(float(gamma.mean()), 12), state.size, state.step
        (1.0, 2, 1)
    """
    check_state(config, state)
    h = np.asarray(gaps, dtype=np.float64)
    n = check_gaps_shape(h.shape)
    if config.check_values:
        check_finite("gaps", bool(np.all(np.isfinite(h))))
    kwargs = dict(gamma0=config.gamma0, tau=config.tau, solver=config.solver, iters=config.iters, check_values=False)
    if state is None:
        return calibrate_margins(h, **kwargs), None
    count = min(state.size, max(config.sample_size - n, 0))
    sampled = state.buffer[sample_slots(state, count)]
    gamma = calibrate_margins(np.concatenate([sampled, h]), **kwargs)[count:]
    return gamma, push_gaps(state, h)
