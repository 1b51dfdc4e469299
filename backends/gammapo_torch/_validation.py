r"""Input validation on tensors, with the reference's error classes and messages.

Shape checks reuse :mod:`gammapo_spec.validation` verbatim (they look at ``tensor.shape`` only), so
they always run, cost nothing on any device and raise exactly what the reference raises.

Value checks (non-finite log-probs or gaps, lengths that are not finite and > 0) run only when
``config.check_values`` is true. They need the answer on the host, so on an accelerator they cost one
device→host synchronisation per call: every check of a call is reduced on the device into one small
boolean vector that is copied once. Under ``torch.compile`` (``torch.compiler.is_compiling()``) the
value checks are skipped, so a compiled step has no synchronisation and no graph break; everything
else behaves the same. Turn them off (``check_values=False``) for a sync-free eager step.
"""

from __future__ import annotations

from typing import Any

import torch

from gammapo_spec.config import GammaPOConfig
from gammapo_spec.validation import (
    LENGTH_FIELDS,
    as_real_array,
    check_finite,
    check_gaps_finite,
    check_real_dtype,
    check_gaps_shape,
    check_pair_shapes,
    check_positive,
    required_fields,
)

from ._dtypes import as_tensor

__all__ = ["prepare_inputs", "finish_value_checks", "check_gaps", "value_checks_active"]


def value_checks_active(check_values: bool) -> bool:
    """Whether value checks run now: asked for, and not being traced by ``torch.compile``."""
    return bool(check_values) and not torch.compiler.is_compiling()


def _device_of(inputs: dict[str, Any]) -> torch.device | None:
    for value in inputs.values():
        if isinstance(value, torch.Tensor):
            return value.device
    return None


def prepare_inputs(config: GammaPOConfig, *, defer_values: bool = False, **inputs: Any):
    """Validate the per-pair inputs of ``config``'s loss and return them as tensors on one device.

    The device is that of the first tensor argument (in the order of the signature), and the others
    are moved there. Dtypes are left alone: see :mod:`gammapo_torch._dtypes` for the compute dtype.

    With ``defer_values`` the value checks are not answered yet: the call returns ``(tensors,
    pending)`` and :func:`finish_value_checks` answers them together with the gap check, in one
    host synchronisation.

    Raises:
        InputError: as :func:`gammapo_spec.rewards.prepare_inputs` (same class and message).
    """
    device = _device_of(inputs)
    tensors = {}
    for k, v in inputs.items():
        if v is None:
            continue
        if not isinstance(v, torch.Tensor):
            v = as_real_array(k, v)
        elif v.is_complex():
            check_real_dtype(k, "c", str(v.dtype).removeprefix("torch."))
        tensors[k] = as_tensor(v, device)
    check_pair_shapes(config, {k: tuple(t.shape) for k, t in tensors.items()})
    pending = None
    if value_checks_active(config.check_values):
        names = required_fields(config)
        flags = []
        for name in names:
            t = tensors[name]
            ok = torch.isfinite(t) if t.is_floating_point() else torch.ones_like(t, dtype=torch.bool)
            if name in LENGTH_FIELDS:
                ok = ok & (t > 0)
            flags.append(ok.all())
        pending = (names, flags)
    if defer_values:
        return tensors, pending
    finish_value_checks(pending)
    return tensors


def finish_value_checks(pending, gaps: torch.Tensor | None = None) -> None:
    """Answer the value checks of ``prepare_inputs(..., defer_values=True)`` and, given ``gaps``, the
    spec's :func:`~gammapo_spec.validation.check_gaps_finite`: one host synchronisation for all."""
    if pending is None:
        return
    names, flags = pending
    if gaps is not None:
        flags = [*flags, torch.isfinite(gaps).all()]
    answers = torch.stack(flags).tolist()  # the one host synchronisation of the checks
    for name, ok in zip(names, answers):
        if name in LENGTH_FIELDS:
            check_positive(name, ok)
        else:
            check_finite(name, ok)
    if gaps is not None:
        check_gaps_finite(answers[-1])


def check_gaps(gaps: Any, check_values: bool, field: str = "gaps") -> torch.Tensor:
    """A calibration set as a tensor: 1-D, non-empty and (with value checks on) finite.

    Raises:
        InputError: as :func:`gammapo_spec.validation.check_gaps_shape` / ``check_finite``.
    """
    h = as_tensor(gaps)
    check_gaps_shape(tuple(h.shape), field)
    if value_checks_active(check_values) and h.is_floating_point():
        check_finite(field, bool(torch.isfinite(h).all()))
    return h
