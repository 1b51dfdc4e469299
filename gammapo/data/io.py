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
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

from gammapo_spec.errors import ConfigError, InputError

from . import output as _output

__all__ = ["DataError", "MAX_DEPTH", "Table", "as_table", "detect_kind", "read_data", "write_data", "progress"]

#: The deepest nesting a record may have (a conversational record needs 3: record, message list, message).
MAX_DEPTH = 64

_BOM = b"\xef\xbb\xbf"
_WS = re.compile(r"[ \t\n\r]*")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_RAW_BYTE = re.compile("[\udc80-\udcff]")  # a byte that is not UTF-8, decoded with surrogateescape
_INT_RANGE = (-(2**63), 2**64 - 1)  # int64 and uint64: what Arrow, NumPy and every JSON reader carry


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
        head = fh.read(4096).removeprefix(_BOM).lstrip()
    return "json" if head.startswith(b"[") else "jsonl"


def _value_problem(record: dict, strings: bool) -> str | None:
    """Why ``record`` cannot be carried to an output faithfully, or ``None``; ``strings``: check for lone surrogates."""
    stack: list[tuple[str, Any, int]] = []
    for key, value in record.items():
        if strings and _bad_string(key):
            return f"a field name holds a lone surrogate ({ascii(key)}), which is not valid Unicode"
        stack.append((key, value, 2))
    while stack:
        key, v, depth = stack.pop()
        if isinstance(v, float):
            if not math.isfinite(v):
                text = "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")
                return f"field {key!r} holds {text}, which is not a JSON number (a number out of range reads as Infinity)"
        elif isinstance(v, int):
            if not isinstance(v, bool) and not _INT_RANGE[0] <= v <= _INT_RANGE[1]:
                return f"field {key!r} holds a {len(str(abs(v)))}-digit integer, which does not fit in 64 bits"
        elif isinstance(v, str):
            if strings and _bad_string(v):
                return f"field {key!r} holds a lone surrogate, which is not valid Unicode"
        elif isinstance(v, (list, dict)):
            if depth > MAX_DEPTH:
                return f"field {key!r} is nested more than {MAX_DEPTH} levels deep"
            items = v.items() if isinstance(v, dict) else ((None, x) for x in v)
            for k, x in items:
                if strings and k is not None and _bad_string(k):
                    return f"field {key!r} holds a name with a lone surrogate, which is not valid Unicode"
                stack.append((key, x, depth + 1))
    return None


def _bad_string(s: str) -> bool:
    if s.isascii():
        return False
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _record_problem(value: Any, strings: bool) -> str | None:
    if not isinstance(value, dict):
        return f"a record must be a JSON object, got {type(value).__name__}"
    return _value_problem(value, strings)


def _parse_line(raw: bytes) -> tuple[Any, str | None]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line); save the file as UTF-8"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg} at column {exc.colno})"
    except RecursionError:
        return None, f"nested more than {MAX_DEPTH} levels deep"
    except ValueError as exc:  # an integer past Python's digit limit
        return None, f"not readable JSON ({str(exc).split(':')[0]})"
    return value, _record_problem(value, bool(_SURROGATE_ESCAPE.search(text)))


def _no_record(path: str, invalid: list[tuple[str, str]], what: str) -> DataError:
    where, message = invalid[0]
    return DataError(f"no {what} of {path} holds a JSON record ({len(invalid)} invalid; the first, {where}: {message}); "
                     "gammapo reads JSONL (one JSON object per line) or a .json list of objects", field="input")


def _read_jsonl(path: str, skip_invalid: bool) -> Table:
    records: list[dict] = []
    lines: list[int] = []
    invalid: list[tuple[str, str]] = []
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):  # binary lines end at b"\n" only
            if number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            if not raw.strip():
                continue
            value, problem = _parse_line(raw)
            if problem is not None:
                if not skip_invalid:
                    raise DataError(problem, location=f"{path}:{number}")
                invalid.append((f"{path}:{number}", problem))
                continue
            records.append(value)
            lines.append(number)
    if invalid and not records:
        raise _no_record(path, invalid, "line")
    return Table("jsonl", path, records, lines, invalid)


def _read_json(path: str, skip_invalid: bool) -> Table:
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw.startswith(_BOM):
        raw = raw[len(_BOM):]
    text = raw.decode("utf-8", errors="surrogateescape")
    bad_bytes = bool(_RAW_BYTE.search(text))
    strings = bool(_SURROGATE_ESCAPE.search(text))

    def fatal(message: str, pos: int) -> DataError:
        return DataError(message, location=f"{path}:{text.count(chr(10), 0, pos) + 1}")

    pos = _WS.match(text).end()
    if pos == len(text):
        return Table("json", path, [], [], [])
    if text[pos] == "{":  # {"data": [...]} or {"train": [...]}: rows have no line numbers
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg == "Extra data":  # JSON lines in a .json file
                return _read_jsonl(path, skip_invalid)
            raise fatal(f"not valid JSON ({exc.msg} at column {exc.colno})", exc.pos) from None
        except (ValueError, RecursionError) as exc:
            raise fatal(f"not valid JSON ({getattr(exc, 'msg', 'nested too deeply')})", getattr(exc, "pos", pos)) from None
        rows = value.get("data", value.get("train")) if isinstance(value, dict) else None
        if not isinstance(rows, list):
            raise fatal("a .json file must hold a list of records ([{...}, ...]); use .jsonl for one object per line", pos)
        table = Table("json", path, [], None, [])
        for i, row in enumerate(rows):
            problem = _record_problem(row, strings)
            if problem is not None:
                if not skip_invalid:
                    raise DataError(problem, location=f"{path}[row {i}]")
                table.invalid.append((f"{path}[row {i}]", problem))
            else:
                table.data.append(row)
        return table
    if text[pos] != "[":
        raise fatal("a .json file must hold a list of records ([{...}, ...]); use .jsonl for one object per line", pos)
    decoder = json.JSONDecoder()
    records: list[dict] = []
    lines: list[int] = []
    invalid: list[tuple[str, str]] = []
    line, counted = 1, 0
    pos = _WS.match(text, pos + 1).end()
    if text.startswith("]", pos):
        pos += 1
    else:
        while True:
            line += text.count("\n", counted, pos)
            counted = pos
            try:
                value, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                raise fatal(f"not valid JSON ({exc.msg} at column {exc.colno})", exc.pos) from None
            except RecursionError:
                raise fatal(f"nested more than {MAX_DEPTH} levels deep (a .json list cannot be read past it)", pos) from None
            except ValueError as exc:
                raise fatal(f"not readable JSON ({str(exc).split(':')[0]})", pos) from None
            if bad_bytes and _RAW_BYTE.search(text, pos, end):
                byte = ord(_RAW_BYTE.search(text, pos, end).group()) - 0xDC00
                problem: str | None = f"not UTF-8 (byte 0x{byte:02x}); save the file as UTF-8"
            else:
                problem = _record_problem(value, strings)
            if problem is None:
                records.append(value)
                lines.append(line)
            elif not skip_invalid:
                raise DataError(problem, location=f"{path}:{line}")
            else:
                invalid.append((f"{path}:{line}", problem))
            pos = _WS.match(text, end).end()
            if text.startswith(",", pos):
                pos = _WS.match(text, pos + 1).end()
            elif text.startswith("]", pos):
                pos += 1
                break
            else:
                raise fatal("not valid JSON (expected ',' or ']' after a record)", pos)
    if _WS.match(text, pos).end() != len(text):
        raise fatal("not valid JSON (extra data after the list)", pos)
    if invalid and not records:
        raise _no_record(path, invalid, "element")
    return Table("json", path, records, lines, invalid)


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
    return _read_json(path, skip_invalid) if kind == "json" else _read_jsonl(path, skip_invalid)


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
