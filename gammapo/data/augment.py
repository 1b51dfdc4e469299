"""Reward-augmented relabelling of a preference data set (``gammapo augment``).

The transform is :func:`gammapo.data.reward_augmented.augment_record` applied to every record, in
order; this module adds the data plumbing: ``datasets.Dataset`` in and out, the place of a bad record
in errors, skipping bad records on request, counts, and the ``"auto"`` mode (the default): a system
message for conversational prompts, a prefix for plain-string prompts, decided per record.

Counts: ``read == invalid + kept + dropped_lower + dropped_ties`` and ``written == 2 * kept``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gammapo_spec.errors import ConfigError, InputError
from gammapo.data.reward_augmented import (
    DEFAULT_TEMPLATE,
    MODES,
    augment_record,
    condition_text,
    filter_dropped,
)

from .io import DataError, Table, as_table, progress

__all__ = ["AUGMENT_MODES", "AugmentResult", "augment_pairs"]

#: ``"auto"`` (system message for conversations, prefix for plain prompts) and the spec's modes.
AUGMENT_MODES = ("auto",) + MODES


@dataclass
class AugmentResult:
    """What :func:`augment_pairs` returns: ``data`` (same kind as the input), ``counts``, and
    ``skipped``, the ``(location, message)`` of every invalid record left out."""

    data: Any
    counts: dict[str, int]
    skipped: list[tuple[str, str]]


def augment_pairs(
    data: Any,
    *,
    template: str = DEFAULT_TEMPLATE,
    mode: str = "auto",
    separator: str = "\n\n",
    chosen_score_field: str = "score_chosen",
    rejected_score_field: str = "score_rejected",
    ties: str = "keep",
    filter_chosen_field: str | None = None,
    filter_rejected_field: str | None = None,
    skip_invalid: bool = False,
    show_progress: bool | None = None,
) -> AugmentResult:
    r"""Relabel every pair with :math:`s_w \ge s_l` into two score-conditioned pairs.

    Args:
        data: ``list[dict]``, ``datasets.Dataset`` or a :class:`~gammapo.data.io.Table`.
        template, separator, chosen_score_field, rejected_score_field, ties: see
            :func:`gammapo.data.reward_augmented.augment_record`.
        filter_chosen_field: with ``filter_rejected_field`` (both or neither), keep pairs by these
            scores instead of the ones conditioned on; see
            :func:`gammapo.data.reward_augmented.augment_record`.
        filter_rejected_field: the rejected response's filter score.
        mode: ``"auto"`` (default: ``"system"`` for a conversational prompt — including the authors'
            format, a string prompt with whole conversations as responses — and ``"prefix"`` for a
            plain-string one), ``"system"`` or ``"prefix"``.
        skip_invalid: count and leave out bad records instead of raising.
        show_progress: a progress bar (``None``: only on a terminal).

    Returns:
        An :class:`AugmentResult`; a ``datasets.Dataset`` input gives a ``datasets.Dataset``.

    Raises:
        DataError: a bad record (its place and ``field`` named), unless ``skip_invalid``.
        ConfigError: a bad ``mode``, ``ties`` or ``template`` (raised even with ``skip_invalid``,
            before any record), or ``mode="system"`` on a plain-string prompt (its place named).

    Example:
        >>> rows = [{"prompt": "p", "chosen": "a", "rejected": "b", "score_chosen": 7, "score_rejected": 2}]
        >>> res = augment_pairs(rows, mode="prefix", template="[{score}] ", separator="")
        >>> [r["prompt"] for r in res.data], res.counts["written"]
        (['[7] p', '[2] p'], 2)
    """
    table: Table = as_table(data)
    if mode not in AUGMENT_MODES:
        raise ConfigError(f"mode must be one of {list(AUGMENT_MODES)}, got {mode!r}", field="mode")
    if ties not in ("keep", "drop"):
        raise ConfigError(f"ties must be 'keep' or 'drop', got {ties!r}", field="ties")
    condition_text(0, template)  # checks the template before any record
    if (filter_chosen_field is None) != (filter_rejected_field is None):
        raise ConfigError("filter_chosen_field and filter_rejected_field are given together or not at all, got "
                          f"{filter_chosen_field!r} and {filter_rejected_field!r}",
                          field="filter_chosen_field" if filter_chosen_field is None else "filter_rejected_field")
    kwargs = dict(template=template, separator=separator, chosen_score_field=chosen_score_field,
                  rejected_score_field=rejected_score_field, ties=ties, filter_chosen_field=filter_chosen_field,
                  filter_rejected_field=filter_rejected_field)
    counts = {"read": len(table) + len(table.invalid), "invalid": len(table.invalid), "kept": 0,
              "dropped_lower": 0, "dropped_ties": 0, "written": 0}
    rows = table.data  # a list of dicts, or a Dataset (which iterates as dicts)
    out: list[dict] = []
    skipped = list(table.invalid)
    for i, record in enumerate(progress(rows, total=len(table), desc="augment", enabled=show_progress)):
        # a conversation (an explicit-prompt message list, or the authors' string prompt with whole
        # conversations as responses) gets a system message; a plain-string record a prefix
        conversational = not isinstance(record.get("prompt"), str) or isinstance(record.get("chosen"), list)
        record_mode = ("system" if conversational else "prefix") if mode == "auto" else mode
        try:
            new = augment_record(record, mode=record_mode, **kwargs)
        except ConfigError as exc:  # mode 'system' on a plain-string prompt: say which record
            raise ConfigError(f"{table.where(i)}: {exc}; or use mode 'auto'", field=exc.field) from None
        except InputError as exc:
            if not skip_invalid:
                raise DataError(str(exc), field=exc.field, location=table.where(i)) from None
            counts["invalid"] += 1
            skipped.append((table.where(i), str(exc)))
            continue
        if new:
            counts["kept"] += 1
            out.extend(new)
        else:
            counts[filter_dropped(record, **kwargs)] += 1
    counts["written"] = len(out)
    assert counts["written"] == 2 * counts["kept"]
    assert counts["read"] == counts["invalid"] + counts["kept"] + counts["dropped_lower"] + counts["dropped_ties"]
    if table.kind == "datasets":
        import datasets

        return AugmentResult(datasets.Dataset.from_list(out), counts, skipped)
    return AugmentResult(out, counts, skipped)
