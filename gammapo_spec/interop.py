"""The reference's side of the interoperability functions every backend provides.

A backend is used from framework-agnostic code (the conformance suite, the CLI, benchmarks) through
five small functions besides the spec's ops; in the reference they are thin NumPy wrappers:

* :func:`asarray` / :func:`to_numpy` move values in and out of the backend's arrays;
* :func:`state_to_dict` / :func:`state_from_dict` give the calibration state as a plain dict and back
  (the checkpoint format; the NumPy form of the dict is the same in every backend);
* :func:`gamma_po_loss_and_grad` returns the loss step together with the gradient of its scalar loss
  with respect to the log-prob inputs (the reference uses its analytic :func:`~gammapo_spec.loss_vjp`;
  a backend uses its autodiff).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .config import GammaPOConfig
from .gamma_po import LossOutput, gamma_po_loss, loss_vjp
from .state import QueueState

__all__ = ["asarray", "to_numpy", "state_to_dict", "state_from_dict", "gamma_po_loss_and_grad"]

_DTYPES = {"float64": np.float64, "float32": np.float32}


def asarray(x, dtype: str = "float64") -> np.ndarray:
    """A NumPy array of ``x`` (``dtype`` "float64" or "float32"; the reference computes in float64).

    Example:
        >>> asarray([1, 2], dtype="float32").dtype
        dtype('float32')
    """
    if dtype not in _DTYPES:
        raise ValueError(f"the numpy reference supports dtypes {sorted(_DTYPES)}, got {dtype!r}")
    return np.asarray(x, dtype=_DTYPES[dtype])


def to_numpy(x) -> np.ndarray:
    """``x`` as a float64 NumPy array.

    Example:
        >>> to_numpy([1, 2])
        array([1., 2.])
    """
    return np.asarray(x, dtype=np.float64)


def state_to_dict(state: QueueState | None) -> dict[str, Any] | None:
    """The state as ``{"buffer", "size", "head", "step", "seed"}`` (``None`` stays ``None``).

    Example:
        >>> from gammapo_spec import GammaPOConfig, init_state
        >>> sorted(state_to_dict(init_state(GammaPOConfig(queue_size=4, queue_warmup=0))))
        ['buffer', 'head', 'seed', 'size', 'step']
    """
    return None if state is None else state.to_dict()


def state_from_dict(data: Mapping[str, Any] | None) -> QueueState | None:
    """Inverse of :func:`state_to_dict`, bit for bit.

    Example:
        >>> from gammapo_spec import GammaPOConfig, init_state
        >>> state = init_state(GammaPOConfig(queue_size=16), seed=7)
        >>> state_from_dict(state_to_dict(state)).buffer.tobytes() == state.buffer.tobytes()
        True
    """
    return None if data is None else QueueState.from_dict(data)


def gamma_po_loss_and_grad(
    config: GammaPOConfig, state: QueueState | None, **inputs: Any
) -> tuple[LossOutput, QueueState | None, dict[str, np.ndarray]]:
    """:func:`~gammapo_spec.gamma_po_loss` plus the gradient of ``output.loss`` w.r.t. each log-prob input.

    Returns:
        ``(output, new_state, grads)`` with ``grads`` as :func:`~gammapo_spec.loss_vjp` returns them.

    Example:
        >>> from gammapo_spec import GammaPOConfig
        >>> cfg = GammaPOConfig(loss="dpo", beta=1.0)
        >>> out, state, grads = gamma_po_loss_and_grad(cfg, None, chosen_logps=[0.0], rejected_logps=[0.0],
        ...                                            ref_chosen_logps=[0.0], ref_rejected_logps=[0.0])
        >>> float(grads["chosen_logps"][0])
        -0.5
    """
    out, new_state = gamma_po_loss(config, state, **inputs)
    return out, new_state, loss_vjp(config, out.margins, **inputs)
