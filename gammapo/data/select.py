"""Alignment-potential selection over a preference data set (``gammapo select``).

Each record needs, by metric (:mod:`gammapo_spec.alignment_potential`):

* the explicit margin: ``score_chosen``, ``score_rejected`` (names configurable);
* the implicit margin: ``chosen_logps``, ``rejected_logps`` and either ``chosen_lengths``,
  ``rejected_lengths`` (``variant="reference-free"``) or ``ref_chosen_logps``,
  ``ref_rejected_logps`` (``variant="reference-based"``). :mod:`gammapo.data.logprobs` computes
  them with a local model when they are missing.

A record whose needed field is missing or not a finite number (or a length that is not > 0) is a bad
record: an error naming its place and the field, or, with ``skip_invalid=True``, counted as invalid
and left out *before* scoring (z-scores are over the valid records). The kept records are written
in their input order, unchanged except for the optional ``score_field`` column.

Counts: ``read == invalid + filtered + written`` (``filtered`` = valid but not selected).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from gammapo_spec.alignment_potential import (
    METRICS,
    VARIANTS,
    explicit_margin,
    implicit_margin,
    select_top_fraction,
    selection_scores,
    selection_size,
)
from gammapo_spec.errors import ConfigError

from .io import DataError, Table, as_table

__all__ = ["SelectResult", "needed_fields", "select_pairs"]

LENGTH_COLUMNS = ("chosen_lengths", "rejected_lengths")
REFERENCE_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
LOGP_COLUMNS = ("chosen_logps", "rejected_logps")


@dataclass
class SelectResult:
    """What :func:`select_pairs` returns.

    Attributes:
        data: the selected records (``list[dict]`` or ``datasets.Dataset``, like the input).
        indices: their positions in the input, ascending.
        scores: the metric of *every valid* record, in input order (NaN for invalid ones).
        counts: ``read``, ``invalid``, ``filtered``, ``written``.
        skipped: ``(location, message)`` of every invalid record left out (``skip_invalid``).
    """

    data: Any
    indices: list[int]
    scores: np.ndarray
    counts: dict[str, int]
    skipped: list[tuple[str, str]]


def needed_fields(
    metric: str = "alignment-potential",
    variant: str = "reference-free",
    chosen_score_field: str = "score_chosen",
    rejected_score_field: str = "score_rejected",
) -> tuple[str, ...]:
    """The fields each record needs for ``metric`` and ``variant``.

    Example:
        >>> needed_fields("implicit-margin", "reference-based")
        ('chosen_logps', 'rejected_logps', 'ref_chosen_logps', 'ref_rejected_logps')
    """
    if metric not in METRICS:
        raise ConfigError(f"metric must be one of {list(METRICS)}, got {metric!r}", field="metric")
    if variant not in VARIANTS:
        raise ConfigError(f"variant must be one of {list(VARIANTS)}, got {variant!r}", field="variant")
    fields: tuple[str, ...] = ()
    if metric != "implicit-margin":
        fields += (chosen_score_field, rejected_score_field)
    if metric != "explicit-margin":
        fields += LOGP_COLUMNS + (LENGTH_COLUMNS if variant == "reference-free" else REFERENCE_COLUMNS)
    return fields


def _problem(value: Any, positive: bool) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be a number, got {value!r}"
    if isinstance(value, int) and not -1e308 < value < 1e308:
        return f"must be a number within float range, got an integer of {value.bit_length()} bits"
    if not math.isfinite(value):
        return f"must be finite, got {value!r}"
    if positive and value <= 0:
        return f"must be > 0 (a length in tokens), got {value!r}"
    return None


def _columns(table: Table, fields: tuple[str, ...]) -> dict[str, list]:
    if table.kind == "datasets":
        present = set(table.data.column_names)
        n = len(table.data)
        return {f: (table.data[f] if f in present else [_MISSING] * n) for f in fields}
    return {f: [r.get(f, _MISSING) for r in table.data] for f in fields}


_MISSING = object()


def select_pairs(
    data: Any,
    *,
    fraction: float,
    metric: str = "alignment-potential",
    variant: str = "reference-free",
    weight: float = 1.0,
    chosen_score_field: str = "score_chosen",
    rejected_score_field: str = "score_rejected",
    skip_invalid: bool = False,
    score_field: str | None = None,
    replace_score_field: bool = False,
) -> SelectResult:
    """Keep the top ``fraction`` of records by alignment potential (or a baseline metric).

    Args:
        data: ``list[dict]``, ``datasets.Dataset`` or a :class:`~gammapo.data.io.Table`.
        fraction: in (0, 1]; ``floor(fraction * valid)`` records are kept.
        metric: ``"alignment-potential"`` (default), ``"explicit-margin"`` or ``"implicit-margin"``.
        variant: ``"reference-free"`` (default) or ``"reference-based"`` implicit margin.
        weight: the alignment potential's weight w ≥ 0 of the implicit term.
        chosen_score_field, rejected_score_field: where the explicit scores are.
        skip_invalid: count and leave out bad records instead of raising.
        score_field: if given, the metric is written into each kept record under this name.
        replace_score_field: allow ``score_field`` to be a field the data already has (its values
            are then replaced in the output); without it that is an error.

    Returns:
        A :class:`SelectResult`.

    Raises:
        DataError: a bad record (its place and ``field`` named), unless ``skip_invalid``.
        ConfigError: a bad ``fraction``, ``metric``, ``variant`` or ``weight``; a ``score_field``
            the data already has, without ``replace_score_field``.

    Example:
        >>> rows = [{"score_chosen": 9, "score_rejected": 1, "chosen_logps": -4.0, "rejected_logps": -8.0,
        ...          "chosen_lengths": 2, "rejected_lengths": 2},
        ...         {"score_chosen": 9, "score_rejected": 1, "chosen_logps": -4.0, "rejected_logps": -4.0,
        ...          "chosen_lengths": 2, "rejected_lengths": 2}]
        >>> res = select_pairs(rows, fraction=0.5)
        >>> res.indices, res.counts
        ([1], {'read': 2, 'invalid': 0, 'filtered': 1, 'written': 1})
    """
    table = as_table(data)
    selection_size(0, fraction)  # validates the fraction before any work
    fields = needed_fields(metric, variant, chosen_score_field, rejected_score_field)
    if metric == "alignment-potential":
        selection_scores(metric, explicit_margins=[0.0], implicit_margins=[0.0], weight=weight)
    if score_field is not None and not replace_score_field and score_field in table.columns:
        raise ConfigError(f"score_field {score_field!r} is already a field of the data; choose another name, or pass "
                          "replace_score_field=True to replace its values", field="score_field")
    cols = _columns(table, fields)
    n = len(table)
    valid = np.ones(n, dtype=bool)
    skipped = list(table.invalid)
    for i in range(n):
        for f in fields:
            value = cols[f][i]
            problem = "is missing" if value is _MISSING or value is None else _problem(value, f in LENGTH_COLUMNS)
            if problem is not None:
                if not skip_invalid:
                    raise DataError(f"field {f!r} {problem}", field=f, location=table.where(i))
                valid[i] = False
                skipped.append((table.where(i), f"field {f!r} {problem}"))
                break
    idx = np.flatnonzero(valid)
    scores = np.full(n, np.nan)
    chosen: list[int] = []
    if idx.size:
        arr = {f: np.asarray([cols[f][i] for i in idx], dtype=np.float64) for f in fields}
        ex = im = None
        if metric != "implicit-margin":
            ex = explicit_margin(arr[chosen_score_field], arr[rejected_score_field])
        if metric != "explicit-margin":
            extra = {f: arr[f] for f in fields if f in LENGTH_COLUMNS + REFERENCE_COLUMNS}
            im = implicit_margin(arr["chosen_logps"], arr["rejected_logps"], variant=variant, **extra)
        s = selection_scores(metric, explicit_margins=ex, implicit_margins=im, weight=weight)
        scores[idx] = s
        chosen = idx[select_top_fraction(s, fraction)].tolist()
    if table.kind == "datasets":
        out = table.data.select(chosen)
        if score_field is not None:
            if score_field in out.column_names:
                out = out.remove_columns(score_field)
            out = out.add_column(score_field, [float(scores[i]) for i in chosen])
    else:
        out = [dict(table.data[i], **{score_field: float(scores[i])}) if score_field else table.data[i] for i in chosen]
    read = n + len(table.invalid)
    counts = {"read": read, "invalid": int(n - idx.size) + len(table.invalid), "filtered": int(idx.size) - len(chosen), "written": len(chosen)}
    assert counts["read"] == counts["invalid"] + counts["filtered"] + counts["written"]
    return SelectResult(out, chosen, scores, counts, skipped)
