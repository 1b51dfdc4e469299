"""Loading and checking a preference file before any training starts.

Accepted: a ``.jsonl`` file (one JSON object per line), a ``.json`` file (a list of objects), or a
folder written by ``datasets.Dataset.save_to_disk``. Each row is TRL's preference format:

* standard: ``{"prompt": str, "chosen": str, "rejected": str}``;
* conversational: ``prompt``, ``chosen`` and ``rejected`` are lists of ``{"role", "content"}`` messages
  (``prompt`` may be left out when ``chosen``/``rejected`` hold the whole conversation; TRL then takes
  their common prefix as the prompt).

Every problem raises :class:`DataError` naming the file, the row and the column.

Example:
    >>> check_rows([{"prompt": "Hi", "chosen": " Hello!", "rejected": ""}], "x.jsonl")
    Traceback (most recent call last):
    ...
    gammapo.train.data.DataError: x.jsonl: row 0: 'rejected' is empty
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["DataError", "load_preferences", "check_rows", "is_conversational"]

REQUIRED = ("chosen", "rejected")


class DataError(ValueError):
    """A preference file that cannot be trained on (the message says where and why)."""


def is_conversational(row: dict[str, Any]) -> bool:
    """Whether a row holds message lists rather than strings."""
    return isinstance(row.get("chosen"), list)


def _empty(value: Any) -> bool:
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list):
        return not value or all(not str(m.get("content", "")).strip() for m in value if isinstance(m, dict))
    return value is None


def _check_messages(value: Any, where: str) -> None:
    if not isinstance(value, list) or not all(isinstance(m, dict) and "role" in m and "content" in m for m in value):
        raise DataError(f"{where} must be a list of {{'role', 'content'}} messages in the conversational format")


def check_rows(rows: list[dict[str, Any]], source: str) -> list[dict[str, Any]]:
    """Check every row (columns present, types consistent, no empty response); returns ``rows``.

    Raises:
        DataError: no rows, a missing column, a wrong type, or an empty response.
    """
    if not rows:
        raise DataError(f"{source}: no preference pairs found")
    conversational = is_conversational(rows[0])
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataError(f"{source}: row {i} is not an object")
        missing = [c for c in REQUIRED if c not in row]
        if "prompt" not in row and not conversational:
            missing.insert(0, "prompt")
        if missing:
            raise DataError(
                f"{source}: row {i}: missing column(s) {missing}; a preference row needs 'prompt', 'chosen' and "
                f"'rejected' (found {sorted(row)})"
            )
        for col in ("prompt", "chosen", "rejected"):
            if col not in row:
                continue
            where = f"{source}: row {i}: {col!r}"
            if conversational:
                _check_messages(row[col], where)
            elif not isinstance(row[col], str):
                raise DataError(f"{where} must be a string, got {type(row[col]).__name__}")
            if col != "prompt" and _empty(row[col]):
                raise DataError(f"{where} is empty")
        if row["chosen"] == row["rejected"]:
            raise DataError(f"{source}: row {i}: 'chosen' and 'rejected' are identical")
    return rows


def load_preferences(path: str) -> list[dict[str, Any]]:
    """Read and check a preference file (``.jsonl``, ``.json`` or a ``save_to_disk`` folder).

    Raises:
        DataError: the path does not exist, cannot be parsed, or holds bad rows (see :func:`check_rows`).
    """
    if not os.path.exists(path):
        raise DataError(f"dataset path {path!r} does not exist")
    if os.path.isdir(path):
        try:
            from datasets import load_from_disk

            rows = load_from_disk(path).to_list()
        except Exception as exc:  # noqa: BLE001 - any failure is a bad data set for the user
            raise DataError(f"{path}: not a folder written by datasets' save_to_disk ({exc})") from exc
        return check_rows(rows, path)
    from gammapo_spec.errors import GammaPOError

    from gammapo.data.io import read_data

    try:  # the reader every command shares: JSONL lines end at \n only, a BOM is accepted, bad records name file:line
        rows = read_data(path).data
    except (GammaPOError, OSError) as exc:
        raise DataError(str(exc)) from None
    return check_rows(rows, path)
