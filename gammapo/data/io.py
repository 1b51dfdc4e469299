"""Read and write preference data: JSONL files and Hugging Face ``datasets`` directories.

A data set is read into a :class:`Table`, which remembers where each record came from (the JSONL
line, or the ``datasets`` row) so that an error on a bad record names its place, and which kind of
file it was, so that the output is written as the same kind.

* JSONL: one JSON object per line, UTF-8. Blank lines are skipped (they are not records). A line
  that is not a JSON object is a bad record: an error with its line number, or, with
  ``skip_invalid=True``, counted in :attr:`Table.invalid` and left out.
* ``datasets``: a directory written by ``Dataset.save_to_disk`` (or a ``DatasetDict``'s, with a
  ``split``), loaded with ``datasets.load_from_disk``. ``datasets`` is imported only for such paths.

Writing is atomic for JSONL (a temporary file renamed into place); an existing output is refused
unless ``overwrite=True``, and the output may never be the input.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

from gammapo_spec.errors import ConfigError, InputError

__all__ = ["DataError", "Table", "as_table", "detect_kind", "read_data", "write_data", "progress"]


class DataError(InputError):
    """A bad record or file; ``location`` says where (``data.jsonl:12`` or ``data_dir[row 11]``)."""

    def __init__(self, message: str, *, field: str | None = None, location: str | None = None):
        super().__init__(f"{location}: {message}" if location else message, field=field)
        self.location = location


@dataclass
class Table:
    """A data set read from disk: a list of records (JSONL) or a ``datasets.Dataset``.

    Attributes:
        kind: ``"jsonl"`` or ``"datasets"``.
        path: where it was read from.
        data: ``list[dict]`` (JSONL) or ``datasets.Dataset``.
        lines: for JSONL, the 1-based line number of each record.
        invalid: ``(location, message)`` of each line skipped as unreadable (``skip_invalid``).
    """

    kind: str
    path: str
    data: Any
    lines: list[int] | None = None
    invalid: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.data)

    def where(self, index: int) -> str:
        """The place of record ``index``: ``path:LINE`` (JSONL) or ``path[row INDEX]``."""
        if self.lines is not None:
            return f"{self.path}:{self.lines[index]}"
        return f"{self.path}[row {index}]"

    @property
    def columns(self) -> set[str]:
        """The field names present (in any record, for JSONL)."""
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


def detect_kind(path: str) -> str:
    """``"datasets"`` for a directory, ``"jsonl"`` for a file.

    Raises:
        ConfigError: ``path`` does not exist (``field="input"``).
    """
    if os.path.isdir(path):
        return "datasets"
    if os.path.isfile(path):
        return "jsonl"
    raise ConfigError(f"input {path!r} does not exist", field="input")


def _read_jsonl(path: str, skip_invalid: bool) -> Table:
    records: list[dict] = []
    lines: list[int] = []
    invalid: list[tuple[str, str]] = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                message = f"not valid JSON ({exc.msg} at column {exc.colno})"
                if not skip_invalid:
                    raise DataError(message, location=where) from None
                invalid.append((where, message))
                continue
            if not isinstance(value, dict):
                message = f"a record must be a JSON object, got {type(value).__name__}"
                if not skip_invalid:
                    raise DataError(message, location=where)
                invalid.append((where, message))
                continue
            records.append(value)
            lines.append(number)
    return Table("jsonl", path, records, lines, invalid)


def _read_datasets(path: str, split: str | None) -> Table:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError(f"{path!r} is a directory (a `datasets` save); install `datasets` to read it", field="input") from exc
    try:
        loaded = datasets.load_from_disk(path)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path!r} is not a `datasets` directory written by save_to_disk ({exc})", field="input") from None
    if isinstance(loaded, datasets.DatasetDict):
        if split is None:
            if len(loaded) != 1:
                raise ConfigError(f"{path!r} holds splits {sorted(loaded)}; choose one with split", field="split")
            split = next(iter(loaded))
        if split not in loaded:
            raise ConfigError(f"{path!r} has no split {split!r}; it has {sorted(loaded)}", field="split")
        loaded = loaded[split]
    elif split is not None:
        raise ConfigError(f"{path!r} is a single Dataset; it has no splits", field="split")
    return Table("datasets", path, loaded)


def read_data(path: str, *, split: str | None = None, skip_invalid: bool = False) -> Table:
    """Read a JSONL file or a ``datasets`` directory.

    Args:
        path: a ``.jsonl`` file or a directory written by ``save_to_disk``.
        split: the split of a saved ``DatasetDict`` (not needed when it has one split).
        skip_invalid: JSONL lines that are not JSON objects are counted and skipped instead of raised.

    Returns:
        A :class:`Table`.

    Raises:
        DataError: an unreadable JSONL line (message ``path:LINE: ...``).
        ConfigError: a missing path, a directory that is not a ``datasets`` save, a bad split.

    Example:
        >>> import json, os, tempfile
        >>> p = os.path.join(tempfile.mkdtemp(), "d.jsonl")
        >>> _ = open(p, "w").write(json.dumps({"prompt": "p"}) + "\\n\\n" + json.dumps({"prompt": "q"}) + "\\n")
        >>> t = read_data(p)
        >>> t.kind, len(t), t.where(1).endswith("d.jsonl:3")
        ('jsonl', 2, True)
    """
    kind = detect_kind(path)
    return _read_jsonl(path, skip_invalid) if kind == "jsonl" else _read_datasets(path, split)


def _check_output(path: str, inputs: Sequence[str], overwrite: bool) -> None:
    for src in inputs:
        if os.path.exists(src) and os.path.exists(path) and os.path.samefile(src, path):
            raise ConfigError(f"output {path!r} is the input; write to another path", field="output")
    if os.path.exists(path) and not overwrite:
        raise ConfigError(f"output {path!r} exists; pass overwrite=True (--overwrite) to replace it", field="output")


def write_data(data: Any, path: str, kind: str, *, overwrite: bool = False, inputs: Sequence[str] = ()) -> int:
    """Write records as ``kind`` (``"jsonl"`` or ``"datasets"``); returns the number written.

    Args:
        data: ``list[dict]`` or ``datasets.Dataset`` (converted as needed).
        path: the output file (JSONL) or directory (``datasets``).
        kind: the kind to write.
        overwrite: replace an existing output.
        inputs: paths the output must not be (the input files).

    Raises:
        ConfigError: unknown ``kind``, an existing output without ``overwrite``, or output == input.

    Example:
        >>> import os, tempfile
        >>> p = os.path.join(tempfile.mkdtemp(), "out.jsonl")
        >>> write_data([{"a": 1}, {"a": "é"}], p, "jsonl")
        2
        >>> open(p, encoding="utf-8").read()
        '{"a": 1}\\n{"a": "é"}\\n'
    """
    if kind not in ("jsonl", "datasets"):
        raise ConfigError(f"kind must be 'jsonl' or 'datasets', got {kind!r}", field="kind")
    _check_output(path, inputs, overwrite)
    if kind == "jsonl":
        rows = data.to_list() if hasattr(data, "to_list") else data
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".gammapo-", suffix=".jsonl")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                for r in rows:
                    fh.write(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n")
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return len(rows)
    import datasets

    ds = data if isinstance(data, datasets.Dataset) else datasets.Dataset.from_list(list(data))
    if os.path.exists(path):
        shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
    ds.save_to_disk(path)
    return len(ds)
