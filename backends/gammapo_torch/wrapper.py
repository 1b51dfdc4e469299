r"""A thin stateful wrapper for training loops: :class:`GammaPOLoss`, an ``nn.Module``.

The functional API threads the queue state explicitly (``out, state = gamma_po_loss(cfg, state, …)``).
A training loop usually wants the state to live with the model instead: moved by ``.to(device)``,
saved by ``state_dict()``, restored by ``load_state_dict()``. :class:`GammaPOLoss` holds the config
and the queue state as *buffers* (``queue_buffer``, ``queue_size``, ``queue_head``, ``queue_step``,
``queue_seed``) and updates them in place after each step, so a checkpoint of the module (or of a
model that owns it) resumes the calibration bit for bit.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gammapo_spec.config import GammaPOConfig
from gammapo_spec.gamma_po import LossOutput

from gammapo_spec.errors import StateError

from ._gamma_po import gamma_po_loss
from ._state import QueueState, check_loadable, init_state

__all__ = ["GammaPOLoss"]

_FIELDS = ("buffer", "size", "head", "step", "seed")


class GammaPOLoss(nn.Module):
    """γ-PO loss with its calibration state held as module buffers.

    Args:
        config: the loss configuration.
        seed: seed of the queue's sampling keys (queue mode).
        dtype: dtype of the queue buffer (float32 default; ``module.double()`` makes it float64).
        process_group: the group to gather gaps over in distributed training (default: world).

    Example:
        >>> import torch
        >>> from gammapo_spec import GammaPOConfig
        >>> loss_fn = GammaPOLoss(GammaPOConfig(loss="gamma-simpo", queue_size=64, sample_size=16))
        >>> out = loss_fn(chosen_logps=torch.tensor([-4.0, -8.0], requires_grad=True),
        ...               rejected_logps=torch.tensor([-9.0, -6.0]),
        ...               chosen_lengths=torch.tensor([2, 4]), rejected_lengths=torch.tensor([3, 3]))
        >>> out.loss.backward()
        >>> int(loss_fn.queue_size), int(loss_fn.queue_step)
        (10, 1)
        >>> sorted(loss_fn.state_dict())
        ['queue_buffer', 'queue_head', 'queue_seed', 'queue_size', 'queue_step']
    """

    def __init__(
        self, config: GammaPOConfig, seed: int = 0, *, dtype: torch.dtype = torch.float32, process_group: Any = None
    ):
        super().__init__()
        self.config = config
        self.process_group = process_group
        state = init_state(config, seed, dtype=dtype)
        if state is not None:
            for name in _FIELDS:
                self.register_buffer(f"queue_{name}", getattr(state, name))

    @property
    def state(self) -> QueueState | None:
        """The current state as a functional :class:`~gammapo_torch.QueueState` (views of the buffers)."""
        if not self.config.stateful:
            return None
        return QueueState(*(getattr(self, f"queue_{name}") for name in _FIELDS))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        """``load_state_dict`` checks the queue state it is given like :func:`~gammapo_torch.state_from_dict`
        (every field against the spec's invariants, and the capacity against ``config.queue_size``) and
        raises :class:`~gammapo_spec.StateError` naming the field before anything is copied."""
        if self.config.stateful:
            given = {name: state_dict[prefix + f"queue_{name}"] for name in _FIELDS if prefix + f"queue_{name}" in state_dict}
            if strict:
                for name in _FIELDS:
                    if name not in given:
                        raise StateError(f"queue state lacks {name!r}", field=name)
            if given:
                current = {name: getattr(self, f"queue_{name}") for name in _FIELDS}
                check_loadable({**current, **given}, self.config)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def forward(self, **inputs: Any) -> LossOutput:
        """One loss step (keyword arguments of :func:`gammapo_torch.gamma_po_loss`); updates the state."""
        out, new_state = gamma_po_loss(self.config, self.state, process_group=self.process_group, **inputs)
        if new_state is not None:
            with torch.no_grad():
                for name in _FIELDS:
                    getattr(self, f"queue_{name}").copy_(getattr(new_state, name))
        return out

    def extra_repr(self) -> str:
        return f"loss={self.config.loss!r}, calibration={self.config.calibration!r}, solver={self.config.solver!r}"
