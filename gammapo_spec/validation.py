"""Input validation shared by every backend.

The checks work on *shapes* (plain tuples) and on *booleans* computed by the caller, so a backend
reuses them verbatim and raises exactly the reference's error class and message. The policy:

* every per-pair input is a 1-D array of the same length ``N`` ≥ 1
  (:func:`check_pair_shapes`);
* the inputs a loss needs must be given, and inputs it cannot use must not be (a reference log-prob
  passed to SimPO is a mistake, not something to ignore silently);
* with ``config.check_values`` on (the default), a non-finite log-prob or a length that is not
  finite and > 0 raises :class:`~gammapo_spec.errors.InputError` naming the argument
  (:func:`check_finite`, :func:`check_positive`). With it off, non-finite inputs propagate as NaN
  into the losses of the pairs that hold them and, through the calibration's normalisation, into
  every margin of the calibration set: nothing is repaired silently.
* the same holds for finite inputs whose reward gap ``h = u_w − u_l`` is not finite in the compute
  dtype (the implicit rewards overflow it, e.g. ``chosen_logps = −1e308`` with β = 10): with value
  checks on, :func:`check_gaps_finite` raises ``InputError`` (field ``"gaps"``) in every loss, plain
  or ``gamma-``; with them off, the overflow propagates as NaN/±inf into those pairs' losses.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .config import GammaPOConfig
from .errors import InputError

__all__ = [
    "LOGP_FIELDS",
    "REFERENCE_FIELDS",
    "LENGTH_FIELDS",
    "required_fields",
    "check_pair_shapes",
    "check_gaps_shape",
    "check_finite",
    "check_positive",
    "check_gaps_finite",
    "check_real_dtype",
    "as_real_array",
]

LOGP_FIELDS = ("chosen_logps", "rejected_logps")
REFERENCE_FIELDS = ("ref_chosen_logps", "ref_rejected_logps")
LENGTH_FIELDS = ("chosen_lengths", "rejected_lengths")


def required_fields(config: GammaPOConfig) -> tuple[str, ...]:
    """The per-pair inputs a loss needs: log-probs, plus references or lengths by loss family.

    * reference-based losses (``dpo``, ``ipo``, ``hinge``, ``robust``) need the two reference
      log-probs; ``rdpo`` needs those and the two lengths (for its length margin);
    * ``simpo`` needs the two lengths and no reference.
    """
    if config.reference_free:
        return LOGP_FIELDS + LENGTH_FIELDS
    if config.base_loss == "rdpo":
        return LOGP_FIELDS + REFERENCE_FIELDS + LENGTH_FIELDS
    return LOGP_FIELDS + REFERENCE_FIELDS


def check_pair_shapes(config: GammaPOConfig, shapes: Mapping[str, tuple[int, ...] | None]) -> int:
    """Check that the loss gets exactly the inputs it needs, all 1-D of one length N ≥ 1.

    Args:
        config: the loss configuration.
        shapes: for each of the six input names, the shape of the given array or ``None`` if the
            argument was not given.

    Returns:
        N, the number of pairs.

    Raises:
        InputError: naming the first missing, unexpected, non-1-D, empty or mismatched argument.
    """
    needed = required_fields(config)
    for name in LOGP_FIELDS + REFERENCE_FIELDS + LENGTH_FIELDS:
        given = shapes.get(name) is not None
        if name in needed and not given:
            raise InputError(f"loss {config.loss!r} needs {name}, which was not given", field=name)
        if name not in needed and given:
            raise InputError(
                f"loss {config.loss!r} does not use {name}; pass only {list(needed)}", field=name
            )
    return check_same_length_1d(shapes, needed, unit="batch")


def check_same_length_1d(shapes: Mapping[str, tuple[int, ...]], names: tuple[str, ...], *, unit: str) -> int:
    """Check that the arrays ``names`` (in order) are 1-D, non-empty and of one length N; returns N.

    ``unit`` names what needs at least one pair in the message ("batch", "step").

    Raises:
        InputError: naming the first non-1-D, empty or mismatched argument.
    """
    n = None
    for name in names:
        shape = tuple(shapes[name])
        if len(shape) != 1:
            raise InputError(f"{name} must be 1-D (one value per pair), got shape {shape}", field=name)
        if shape[0] == 0:
            raise InputError(f"{name} is empty: a {unit} needs at least one pair", field=name)
        if n is None:
            n = shape[0]
        elif shape[0] != n:
            raise InputError(
                f"{name} has {shape[0]} pairs but {names[0]} has {n}; all inputs need the same length",
                field=name,
            )
    assert n is not None
    return int(n)


def check_gaps_shape(shape: tuple[int, ...], field: str = "gaps") -> int:
    """Check a calibration set: 1-D with at least one gap. Returns its length M."""
    shape = tuple(shape)
    if len(shape) != 1:
        raise InputError(f"{field} must be 1-D, got shape {shape}", field=field)
    if shape[0] == 0:
        raise InputError(f"{field} is empty: calibration needs at least one gap", field=field)
    return shape[0]


def check_finite(field: str, all_finite: bool) -> None:
    """Raise ``InputError`` unless ``all_finite`` (computed by the caller on its own arrays)."""
    if not all_finite:
        raise InputError(f"{field} contains NaN or infinite values", field=field)


def check_positive(field: str, all_positive_finite: bool) -> None:
    """Raise ``InputError`` unless every length is finite and > 0."""
    if not all_positive_finite:
        raise InputError(f"{field} must be finite and > 0 for every pair", field=field)


def check_gaps_finite(all_finite: bool) -> None:
    """Raise ``InputError`` (field ``"gaps"``) unless every reward gap of finite inputs is finite.

    Called by every ``gamma_po_loss`` with value checks on, after the inputs passed
    :func:`check_finite`: a non-finite gap then means the implicit rewards overflowed the compute dtype.
    """
    if not all_finite:
        raise InputError(
            "the reward gaps u_w - u_l are not finite for finite inputs (the implicit rewards overflow "
            "the compute dtype); rescale the log-probs or beta",
            field="gaps",
        )


def check_real_dtype(field: str, kind: str, dtype_name: str) -> None:
    """Raise ``InputError`` unless a dtype holds real numbers (NumPy ``kind`` ``b``, ``i``, ``u``, ``f``, or
    bfloat16): a complex input is refused rather than losing its imaginary part, text rather than parsed."""
    if kind == "c":
        raise InputError(f"{field} must be real, got complex values ({dtype_name})", field=field)
    if kind not in "biuf" and dtype_name != "bfloat16":
        raise InputError(f"{field} must hold numbers, got dtype {dtype_name}", field=field)


def as_real_array(field: str, value: Any) -> np.ndarray:
    """``np.asarray(value)`` after :func:`check_real_dtype` (a ragged or unconvertible value is an
    ``InputError`` too)."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{field} must be an array of numbers ({exc})", field=field) from None
    check_real_dtype(field, arr.dtype.kind, arr.dtype.name)
    return arr
