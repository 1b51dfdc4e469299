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
from .config import MAX_QUEUE_SIZE, GammaPOConfig
from .errors import StateError
from .random import MASK32, STREAM_SAMPLE, slot_keys, stream_key, warmup_normals
from .validation import check_finite, check_gaps_shape

__all__ = ["QueueState", "init_state", "sample_slots", "push_gaps", "calibrate_step", "check_state_fields",
           "STATE_FIELDS", "STEP_LIMIT"]


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

    def __post_init__(self) -> None:
        check_state_fields(self.buffer, self.size, self.head, self.step, self.seed, finite=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "QueueState":
        """Rebuild a state from :meth:`to_dict`'s output (also from ``np.load`` of an ``.npz``).

        Every field is checked against the invariants of :func:`check_state_fields` (a checkpoint
        is untrusted input: a counter outside the buffer would index memory out of bounds in a
        compiled kernel), including a finite buffer.

        Raises:
            StateError: a missing key or an inconsistent value, naming the field.
        """
        for key in STATE_FIELDS:
            if key not in data:
                raise StateError(f"queue state lacks {key!r}", field=key)
        buffer = state_buffer(data["buffer"])
        ints = {k: state_int(data[k], k) for k in STATE_FIELDS[1:]}
        check_state_fields(buffer, **ints, finite=True)
        return cls(buffer=buffer, **ints)


#: The five fields of a queue state, in checkpoint order.
STATE_FIELDS = ("buffer", "size", "head", "step", "seed")
#: ``step`` is a count in ``[0, 2**63)`` (a signed 64-bit integer on every backend; the sampling keys
#: use it modulo 2**32).
STEP_LIMIT = 1 << 63


def state_buffer(value: Any) -> np.ndarray:
    """A state's buffer as a float64 NumPy copy; a buffer that is not a real floating array raises.

    Accepts NumPy arrays and anything ``np.asarray`` reads (a CPU tensor, a JAX array); float16,
    bfloat16, float32 and float64 are read exactly.

    Raises:
        StateError: an integer, boolean, complex, string or object buffer (field ``"buffer"``).
    """
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise StateError(f"buffer must be a float array, got {type(value).__name__} ({exc})", field="buffer") from None
    if arr.dtype.kind != "f" and arr.dtype.name != "bfloat16":
        raise StateError(f"buffer must hold floats (float32 or float64), got dtype {arr.dtype}", field="buffer")
    return np.array(arr, dtype=np.float64)


def state_int(value: Any, field: str) -> int:
    """A state counter as a Python int: an integer (Python, NumPy, or a 0-dim integer array).

    Raises:
        StateError: a float (even a whole one), a bool, a string or an array with more than one entry.
    """
    if isinstance(value, (bool, np.bool_)):
        raise StateError(f"{field} must be an integer, got {value!r}", field=field)
    if isinstance(value, (int, np.integer)):
        return int(value)
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError, RuntimeError):
        arr = None
    if arr is None or arr.ndim != 0 or arr.dtype.kind not in "iu":
        if arr is None or (arr.ndim == 0 and arr.dtype.kind in "OUS"):
            shown = repr(value)
        elif arr.ndim == 0:
            shown = f"{arr.item()!r} ({arr.dtype})"
        else:
            shown = f"an array of shape {arr.shape}"
        raise StateError(f"{field} must be an integer, got {shown}", field=field)
    return int(arr)


def check_state_fields(buffer: np.ndarray, size: int, head: int, step: int, seed: int, *, finite: bool) -> None:
    r"""Check a state's fields against the invariants of a queue state.

    With capacity C = ``len(buffer)``:

    * ``buffer`` is a 1-D float64 array, 1 ≤ C ≤ :data:`~gammapo_spec.config.MAX_QUEUE_SIZE`, and (with
      ``finite``, as on loading a checkpoint) every entry is finite;
    * ``size``, ``head``, ``step``, ``seed`` are integers with 0 ≤ size ≤ C, 0 ≤ head < C,
      0 ≤ step < 2**63, 0 ≤ seed < 2**32;
    * until the buffer first wraps the gaps fill slots ``0 .. size-1`` in order, so ``size < C``
      implies ``head = size``.

    Raises:
        StateError: naming the first field that breaks them.
    """
    if not isinstance(buffer, np.ndarray) or buffer.dtype != np.float64:
        raise StateError(f"buffer must be a float64 numpy array, got {type(buffer).__name__}", field="buffer")
    if buffer.ndim != 1 or not 1 <= buffer.shape[0] <= MAX_QUEUE_SIZE:
        raise StateError(
            f"buffer must be 1-D with 1 to {MAX_QUEUE_SIZE} slots, got shape {buffer.shape}", field="buffer"
        )
    for key, value in (("size", size), ("head", head), ("step", step), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise StateError(f"{key} must be an integer, got {value!r}", field=key)
    cap = buffer.shape[0]
    if not 0 <= size <= cap:
        raise StateError(f"size must be in [0, {cap}], got {size}", field="size")
    if not 0 <= head < cap:
        raise StateError(f"head must be in [0, {cap}), got {head}", field="head")
    if not 0 <= step < STEP_LIMIT:
        raise StateError(f"step must be in [0, 2**63), got {step}", field="step")
    if not 0 <= seed <= MASK32:
        raise StateError(f"seed must be in [0, 2**32), got {seed}", field="seed")
    if size < cap and head != size:
        raise StateError(
            f"head must equal size ({size}) until the buffer of {cap} slots is full, got {head}", field="head"
        )
    if finite and not np.all(np.isfinite(buffer)):
        raise StateError("buffer contains NaN or infinite values", field="buffer")


def describe_foreign_state(state: Any) -> str:
    """How a state error names an object that is not this backend's state: its type, and for a
    queue state of another backend, which backend it belongs to and how to convert it."""
    module = type(state).__module__
    owner = module.split(".")[0]
    if type(state).__name__ == "QueueState" and owner in ("gammapo_spec", "gammapo_torch", "gammapo_jax"):
        return (f"a QueueState of {owner}; convert it with this backend's "
                f"state_from_dict({owner}.state_to_dict(state))" if owner != "gammapo_spec" else
                "a QueueState of gammapo_spec (the NumPy reference); convert it with this backend's "
                "state_from_dict(state.to_dict())")
    return type(state).__name__


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


def check_state(config: GammaPOConfig, state: Any, *, state_type: type | None = None, convert=None) -> Any:
    """Check that ``state`` fits ``config``: ``None`` when it needs none, a matching queue otherwise.

    Written once for every backend: a backend passes its own ``state_type`` (its ``QueueState``) and,
    when it accepts states in another form, ``convert`` (applied first; it returns anything it does not
    convert unchanged). The messages are the same on every backend.

    Args:
        config: the loss configuration.
        state: the state to check.
        state_type: the class a queue state must be (default: this module's :class:`QueueState`).
        convert: optional ``state -> state`` applied before the checks.

    Returns:
        The (converted) state, ``None`` when the config carries none.

    Raises:
        StateError: a state where none belongs (field ``"state"``), something else than a
            ``state_type`` (naming what it is and, for another backend's state, how to convert it), or
            a buffer whose capacity is not ``config.queue_size`` (field ``"queue_size"``).
    """
    if not config.stateful:
        if state is not None:
            raise StateError(
                f"loss {config.loss!r} with calibration={config.calibration!r} carries no state; pass None",
                field="state",
            )
        return None
    if convert is not None:
        state = convert(state)
    if not isinstance(state, QueueState if state_type is None else state_type):
        raise StateError(
            f"queue calibration needs the state from init_state(config), got {describe_foreign_state(state)}",
            field="state",
        )
    if state.capacity != config.queue_size:
        raise StateError(
            f"state holds {state.capacity} slots but queue_size is {config.queue_size}", field="queue_size"
        )
    return state


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
