"""The containers every ``gammapo.data`` command shares: :class:`Table` (records and where each came
from) and :class:`DataError` (a bad record, naming its place).

Import them from :mod:`gammapo.data.io`, which re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from gammapo_spec.errors import ConfigError, InputError

__all__ = ["DataError", "Table", "as_table", "progress"]


class DataError(InputError):
    """A bad record or file; ``location`` says where (``data.jsonl:12`` or ``data_dir[row 11]``)."""

    def __init__(self, message: str, *, field: str | None = None, location: str | None = None):
        super().__init__(f"{location}: {message}" if location else message, field=field)
        self.location = location


@dataclass
class Table:
    """A data set read from disk: a list of records (JSONL, JSON) or a ``datasets.Dataset``.

    Attributes:
        kind: ``"jsonl"``, ``"json"`` or ``"datasets"``.
        path: where it was read from.
        data: ``list[dict]`` (JSONL, JSON) or ``datasets.Dataset``.
        lines: for files, the 1-based line number of each record (``None``: locations are rows).
        invalid: ``(location, message)`` of each record skipped as unreadable (``skip_invalid``).
    """

    kind: str
    path: str
    data: Any
    lines: list[int] | None = None
    invalid: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.data)

    def where(self, index: int) -> str:
        """The place of record ``index``: ``path:LINE`` (files) or ``path[row INDEX]``."""
        if self.lines is not None:
            return f"{self.path}:{self.lines[index]}"
        return f"{self.path}[row {index}]"

    @property
    def columns(self) -> set[str]:
        """The field names present (in any record, for files)."""
        if self.kind == "datasets":
            return set(self.data.column_names)
        names: set[str] = set()
        for r in self.data:
            names.update(r)
        return names


def progress(iterable: Iterable, *, total: int | None = None, desc: str = "", enabled: bool | None = None) -> Iterator:
    """Wrap ``iterable`` in a ``tqdm`` progress bar on stderr when ``tqdm`` is installed.

    ``enabled=None`` shows it only on a terminal (tqdm's own rule), so logs and tests stay clean.
    """
    if enabled is False:
        return iter(iterable)
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm ships with datasets and transformers
        return iter(iterable)
    return iter(tqdm(iterable, total=total, desc=desc, disable=None if enabled is None else not enabled, leave=False))


def as_table(data: Any) -> Table:
    """Wrap ``list[dict]`` or ``datasets.Dataset`` in a :class:`Table` (a Table is returned as is)."""
    if isinstance(data, Table):
        return data
    if isinstance(data, list):
        return Table("jsonl", "<records>", data)
    if hasattr(data, "column_names") and hasattr(data, "select"):
        return Table("datasets", "<dataset>", data)
    raise ConfigError(f"data must be a list of dicts, a datasets.Dataset or a Table, got {type(data).__name__}", field="data")
