"""Read and write preference data: JSONL and JSON files, and Hugging Face ``datasets`` directories.

One reader serves every command (``gammapo select``, ``gammapo augment``, ``gammapo train``). A data
set is read into a :class:`Table`, which remembers where each record came from (the file line, or
the ``datasets`` row) so that an error on a bad record names its place, and which kind of file it
was, so that the output is written as the same kind.

* JSONL (``.jsonl`` or any other file name): one JSON object per line, UTF-8 (a byte-order mark is
  accepted). Lines end at ``\\n`` only, so U+2028 and other Unicode separators inside strings stay
  in their record. Blank lines are skipped (they are not records).
* JSON (``.json``, or a file without a ``.jsonl`` name whose first character is ``[``): a list of objects, each named by
  the line it starts on (or an object whose ``"data"`` or ``"train"`` key holds the list; a
  ``.json`` file holding JSON lines is read as JSONL).
* ``datasets``: a directory written by ``Dataset.save_to_disk`` (or a ``DatasetDict``'s, with a
  ``split``), loaded with ``datasets.load_from_disk``. ``datasets`` is imported only for such paths.
* CSV, TSV, Parquet, Excel and compressed files are refused with a message saying what to do.

A record is **invalid** when its line is not UTF-8 or not JSON, when it is not a JSON object, or when
it holds a value no output could carry faithfully: NaN or Infinity (not JSON numbers), an integer
outside 64 bits, a lone surrogate (not Unicode), or nesting deeper than :data:`MAX_DEPTH`. An
invalid record raises :class:`DataError` naming ``file:line``, or, with ``skip_invalid=True``, is
counted in :attr:`Table.invalid` and left out; a file of which no record can be read is an error
either way. All of this is found while reading, before any work.

Writing (:func:`write_data`) is atomic and replaces only what these tools write
(:mod:`gammapo.data.output`).
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterator, Sequence

from gammapo_spec.errors import ConfigError

from . import output as _output
from ._json_read import BOM, MAX_DEPTH, read_json, read_jsonl
from ._table import DataError, Table, as_table, progress

__all__ = ["DataError", "MAX_DEPTH", "Table", "as_table", "detect_kind", "read_data", "write_data", "progress"]


def detect_kind(path: str) -> str:
    """``"datasets"`` for a directory; ``"json"`` for a ``.json`` file; ``"jsonl"`` for another file.

    Raises:
        ConfigError: ``path`` does not exist, or names a format that is not read (CSV, Parquet, a
            compressed file; ``field="input"``).
    """
    if os.path.isdir(path):
        return "datasets"
    if not os.path.isfile(path):
        raise ConfigError(f"input {path!r} does not exist", field="input")
    refused = _output.refused_format(path)
    if refused:
        raise ConfigError(f"input {path!r} is {refused}; gammapo reads JSONL (one JSON object per line), a .json list "
                          "of objects or a datasets folder (save_to_disk): convert it first, for example with "
                          "datasets.Dataset.from_csv(path).to_json('prefs.jsonl')", field="input")
    if path.lower().endswith((".json", ".jsonl", ".ndjson")):
        return "json" if path.lower().endswith(".json") else "jsonl"
    with open(path, "rb") as fh:  # a JSON list under another name (a JSONL record cannot start with "[")
        head = fh.read(4096).removeprefix(BOM).lstrip()
    return "json" if head.startswith(b"[") else "jsonl"


def _read_datasets(path: str, split: str | None) -> Table:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError(f"{path!r} is a directory (a `datasets` save); install `datasets` to read it", field="input") from exc
    try:
        loaded = datasets.load_from_disk(path)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path!r} is not a `datasets` directory written by save_to_disk ({exc})", field="input") from None
    except Exception as exc:  # noqa: BLE001 - a damaged save is a bad input for the user
        raise ConfigError(f"cannot read the `datasets` directory {path!r}: {type(exc).__name__}: {exc}", field="input") from None
    if isinstance(loaded, datasets.DatasetDict):
        if split is None:
            if len(loaded) != 1:
                raise ConfigError(f"{path!r} holds splits {sorted(loaded)}; choose one with split (--split)", field="split")
            split = next(iter(loaded))
        if split not in loaded:
            raise ConfigError(f"{path!r} has no split {split!r}; it has {sorted(loaded)}", field="split")
        loaded = loaded[split]
    elif split is not None:
        raise ConfigError(f"{path!r} is a single Dataset; it has no splits", field="split")
    return Table("datasets", path, loaded)


def read_data(path: str, *, split: str | None = None, skip_invalid: bool = False) -> Table:
    """Read a JSONL file, a JSON list or a ``datasets`` directory.

    Args:
        path: a ``.jsonl`` file (or any file name but ``.json``), a ``.json`` file, or a directory
            written by ``save_to_disk``.
        split: the split of a saved ``DatasetDict`` (not needed when it has one split).
        skip_invalid: invalid records (see the module docstring) are counted and skipped instead
            of raised.

    Returns:
        A :class:`Table`.

    Raises:
        DataError: an invalid record (message ``path:LINE: ...``), a ``.json`` file that is not a
            list, or a file of which no record can be read.
        ConfigError: a missing path, a format that is not read, a directory that is not a
            ``datasets`` save, a bad split.

    Example:
        >>> import json, os, tempfile
        >>> p = os.path.join(tempfile.mkdtemp(), "d.jsonl")
        >>> _ = open(p, "w").write(json.dumps({"prompt": "p"}) + "\\n\\n" + json.dumps({"prompt": "q"}) + "\\n")
        >>> t = read_data(p)
        >>> t.kind, len(t), t.where(1).endswith("d.jsonl:3")
        ('jsonl', 2, True)
    """
    kind = detect_kind(path)
    if kind == "datasets":
        return _read_datasets(path, split)
    if split is not None:
        raise ConfigError(f"{path!r} is a file; split is for a saved DatasetDict", field="split")
    return read_json(path, skip_invalid) if kind == "json" else read_jsonl(path, skip_invalid)


def _dumps(rows: Sequence[dict]) -> Iterator[str]:
    for i, r in enumerate(rows):
        try:
            text = json.dumps(r, ensure_ascii=False, allow_nan=False)
            text.encode("utf-8")
        except (TypeError, ValueError) as exc:  # NaN, a lone surrogate, an object JSON has no form for
            raise DataError(f"record {i} cannot be written as JSON: {exc}") from None
        yield text


def write_data(data: Any, path: str, kind: str, *, overwrite: bool = False, inputs: Sequence[str] = ()) -> int:
    """Write records as ``kind`` (``"jsonl"``, ``"json"`` or ``"datasets"``); returns the number written.

    The output is written beside ``path`` (``NAME.gammapo-tmp-PID-XXXX``) and swapped into place, so
    ``path`` always holds the old output or the new one, complete; such leftovers of a killed run
    are removed by the next write to ``path``. New files follow the umask.

    Args:
        data: ``list[dict]`` or ``datasets.Dataset`` (converted as needed).
        path: the output file (JSONL, JSON) or directory (``datasets``).
        kind: the kind to write.
        overwrite: replace an existing output, when it is a data file (``jsonl``, ``json``) or a
            ``datasets`` folder (``datasets``); anything else is refused.
        inputs: paths the output must neither be nor contain (the input files).

    Raises:
        ConfigError: unknown ``kind``, an output that cannot be written or replaced
            (see :func:`gammapo.data.output.check_output`).
        DataError: a record JSON cannot carry (NaN, a lone surrogate), before ``path`` is touched.

    Example:
        >>> import os, tempfile
        >>> p = os.path.join(tempfile.mkdtemp(), "out.jsonl")
        >>> write_data([{"a": 1}, {"a": "é"}], p, "jsonl")
        2
        >>> open(p, encoding="utf-8").read()
        '{"a": 1}\\n{"a": "é"}\\n'
    """
    if kind not in ("jsonl", "json", "datasets"):
        raise ConfigError(f"kind must be 'jsonl', 'json' or 'datasets', got {kind!r}", field="kind")
    _output.remove_stale(path)
    _output.check_output(path, kind, inputs=inputs, overwrite=overwrite)
    if kind in ("jsonl", "json"):
        rows = data.to_list() if hasattr(data, "to_list") else data

        def write(fh) -> None:
            if kind == "jsonl":
                for text in _dumps(rows):
                    fh.write(text + "\n")
                return
            fh.write("[")
            for i, text in enumerate(_dumps(rows)):
                fh.write(("\n" if i == 0 else ",\n") + text)
            fh.write("\n]\n" if rows else "]\n")

        _output.replace_file(path, write)
        return len(rows)
    import datasets

    ds = data if isinstance(data, datasets.Dataset) else datasets.Dataset.from_list(list(data))
    _output.replace_dir(path, ds.save_to_disk)
    return len(ds)
