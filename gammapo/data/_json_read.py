"""Reading JSONL files and JSON lists record by record, each record checked as it is read.

The rules (what a valid record is, how lines are counted, how a ``.json`` list is split into records
with the line each starts on) are in :mod:`gammapo.data.io`, which calls these readers and re-exports
:data:`MAX_DEPTH`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ._table import DataError, Table

__all__ = ["BOM", "MAX_DEPTH", "read_json", "read_jsonl"]

#: The deepest nesting a record may have (a conversational record needs 3: record, message list, message).
MAX_DEPTH = 64

#: The UTF-8 byte-order mark, accepted at the start of a file.
BOM = b"\xef\xbb\xbf"
_WS = re.compile(r"[ \t\n\r]*")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_RAW_BYTE = re.compile("[\udc80-\udcff]")  # a byte that is not UTF-8, decoded with surrogateescape
_INT_RANGE = (-(2**63), 2**64 - 1)  # int64 and uint64: what Arrow, NumPy and every JSON reader carry


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


def read_jsonl(path: str, skip_invalid: bool) -> Table:
    records: list[dict] = []
    lines: list[int] = []
    invalid: list[tuple[str, str]] = []
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):  # binary lines end at b"\n" only
            if number == 1 and raw.startswith(BOM):
                raw = raw[len(BOM):]
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


def read_json(path: str, skip_invalid: bool) -> Table:
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw.startswith(BOM):
        raw = raw[len(BOM):]
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
                return read_jsonl(path, skip_invalid)
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
