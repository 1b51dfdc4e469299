"""Where the data commands write, and how: checked before any work, replaced only when recognised, atomically.

* :func:`check_output` runs before the input is read: the output's folder exists, is a folder and
  is writable; the output is neither the input, nor a folder holding it, nor inside an input
  folder; an existing output is refused without ``overwrite``, and with it is replaced only when
  it is what these tools write — a JSON or JSONL file (a regular file whose first character is
  ``{`` or ``[``, or an empty one) or a ``datasets`` folder (only the files ``save_to_disk``
  writes). A folder holding anything else is never deleted.
* :func:`replace_file` and :func:`replace_dir` write beside the output (``NAME.gammapo-tmp-PID-XXXX``)
  and swap it in: ``os.replace`` for a file, an atomic exchange of the two folders for a
  ``datasets`` folder (``renameat2(RENAME_EXCHANGE)`` on Linux; elsewhere two renames, the old
  folder kept as ``NAME.gammapo-old-PID-XXXX`` until the new one is in place). A kill at any
  moment leaves the old output or the new one, complete.
* :func:`remove_stale` removes what a killed run left beside the output (entries with those names
  whose process is gone), and puts an old folder back if a kill fell between the two renames.

New files are created with mode ``0o666`` less the umask, as any other program's.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import sys
from typing import Callable, Sequence

from gammapo_spec.errors import ConfigError

__all__ = ["check_output", "output_kind", "refused_format", "remove_stale", "replace_dir", "replace_file"]

TMP_MARK = ".gammapo-tmp-"
OLD_MARK = ".gammapo-old-"
_DATASET_FILE = re.compile(r"(state\.json|dataset_info\.json|data-\d{5}-of-\d{5}\.arrow|cache-[\w.-]+\.arrow)\Z")
_REFUSED = {".csv": "a CSV file", ".tsv": "a TSV file", ".parquet": "a Parquet file", ".arrow": "an Arrow file",
            ".xlsx": "an Excel file", ".xls": "an Excel file", ".gz": "a compressed file", ".bz2": "a compressed file",
            ".xz": "a compressed file", ".zst": "a compressed file", ".zip": "a compressed file"}


def refused_format(path: str) -> str | None:
    """``"a CSV file"`` (and so on) when ``path``'s suffix names a format that is not read or written, else ``None``."""
    return _REFUSED.get(os.path.splitext(path)[1].lower())


def output_kind(path: str, input_kind: str) -> str:
    """The kind to write: ``"datasets"`` for a ``datasets`` input, else ``"json"`` for a ``.json`` name, else ``"jsonl"``.

    Raises:
        ConfigError: ``path`` names a format that is not written (CSV, Parquet, ...; ``field="output"``).
    """
    if input_kind == "datasets":
        return "datasets"
    refused = refused_format(path)
    if refused:
        raise ConfigError(f"output {path!r} names {refused}; the output is JSONL (or a JSON list for a .json name)",
                          field="output")
    return "json" if path.lower().endswith(".json") else "jsonl"


def _inside(inner: str, outer: str) -> bool:
    inner, outer = os.path.realpath(inner), os.path.realpath(outer)
    return inner != outer and inner.startswith(outer.rstrip(os.sep) + os.sep)


def _only_dataset_files(path: str) -> list[str]:
    """The entries of folder ``path`` that ``save_to_disk`` does not write."""
    return sorted(e for e in os.listdir(path) if not (_DATASET_FILE.match(e) and os.path.isfile(os.path.join(path, e))))


def _not_replaceable(path: str, kind: str) -> str | None:
    if os.path.islink(path):
        return "is a symbolic link"
    if kind == "datasets":
        if not os.path.isdir(path):
            return "is not a folder"
        others = _only_dataset_files(path)
        entries = set(os.listdir(path))
        if others or not {"state.json", "dataset_info.json"} <= entries:
            held = f" (it holds {', '.join(repr(e) for e in others[:3])}{', ...' if len(others) > 3 else ''})" if others else ""
            return f"is not a datasets folder written by save_to_disk{held}"
        return None
    if os.path.isdir(path):
        return "is a folder"
    if not os.path.isfile(path):
        return "is not a regular file"
    with open(path, "rb") as fh:
        head = fh.read(4096).removeprefix(b"\xef\xbb\xbf").lstrip()
    if head and head[:1] not in (b"{", b"["):
        return f"does not look like a JSON or JSONL file (it starts with {head[:20].decode('utf-8', 'replace')!r})"
    return None


def check_output(
    path: str,
    kind: str,
    *,
    inputs: Sequence[str] = (),
    overwrite: bool = False,
    overwrite_flag: str = "overwrite=True",
) -> None:
    """Refuse an output that cannot be written, or replaced, before any work (see the module docstring).

    Args:
        path: the output file or folder.
        kind: ``"jsonl"``, ``"json"`` or ``"datasets"``.
        inputs: the input paths (the output may neither be one nor hold one).
        overwrite: whether an existing output may be replaced.
        overwrite_flag: how the messages name the permission (``"--overwrite"`` on the command line).

    Raises:
        ConfigError: the reason, naming ``path`` (``field="output"``).
    """
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(parent):
        raise ConfigError(f"cannot write {path!r}: the folder {parent!r} does not exist; create it first", field="output")
    if not os.path.isdir(parent):
        raise ConfigError(f"cannot write {path!r}: {parent!r} is not a folder", field="output")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {path!r}: the folder {parent!r} is not writable", field="output")
    for src in inputs:
        if not os.path.exists(src):
            continue
        if os.path.exists(path) and os.path.samefile(src, path):
            raise ConfigError(f"output {path!r} is the input; write to another path", field="output")
        if _inside(src, path):
            raise ConfigError(f"output {path!r} holds the input {src!r}; write to another path", field="output")
        if os.path.isdir(src) and _inside(path, src):
            raise ConfigError(f"output {path!r} is inside the input folder {src!r}; write to another path", field="output")
    if not os.path.lexists(path):
        return
    if not overwrite:
        raise ConfigError(f"output {path!r} exists; use {overwrite_flag} to replace it", field="output")
    problem = _not_replaceable(path, kind)
    if problem:
        what = "a datasets folder" if kind == "datasets" else "a JSON or JSONL file"
        raise ConfigError(f"output {path!r} {problem}; {overwrite_flag} replaces only {what} written by these tools: "
                          "choose another path", field="output")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftovers(path: str) -> list[tuple[str, str]]:
    """``(mark, entry)`` of each leftover of a gone process beside ``path``."""
    parent, name = os.path.split(os.path.abspath(path))
    if not os.path.isdir(parent):
        return []
    pattern = re.compile(re.escape(name) + r"(\.gammapo-(?:tmp|old)-)(\d+)-[0-9a-f]+\Z")
    found = []
    for entry in os.listdir(parent):
        m = pattern.match(entry)
        if m and not _alive(int(m.group(2))):
            found.append((m.group(1), os.path.join(parent, entry)))
    return sorted(found)


def _remove(entry: str) -> None:
    if os.path.isdir(entry) and not os.path.islink(entry):
        if not _only_dataset_files(entry):  # only what save_to_disk writes, never anything else
            shutil.rmtree(entry, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry)


def remove_stale(path: str) -> None:
    """Remove the leftovers of killed writes to ``path``; restore an old folder a kill left in place of ``path``."""
    leftovers = _leftovers(path)
    if not os.path.lexists(path):
        old = [e for mark, e in leftovers if mark == OLD_MARK and os.path.isdir(e)]
        if old:
            os.rename(old[-1], path)
    for _, entry in leftovers:
        if os.path.lexists(entry):
            _remove(entry)


def _beside(path: str, mark: str) -> str:
    parent, name = os.path.split(os.path.abspath(path))
    return os.path.join(parent, f"{name}{mark}{os.getpid()}-{secrets.token_hex(4)}")


def replace_file(path: str, write: Callable) -> None:
    """Write a text file with ``write(fh)`` beside ``path``, flush it to disk and rename it onto ``path``."""
    tmp = _beside(path, TMP_MARK)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _exchange(a: str, b: str) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); ``False`` where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2  # a libc function, no library file is loaded
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def replace_dir(path: str, save: Callable[[str], object]) -> None:
    """Write a folder with ``save(tmp)`` beside ``path`` and swap it in atomically; the old one is then removed."""
    tmp = _beside(path, TMP_MARK)
    try:
        save(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not os.path.lexists(path):
        os.rename(tmp, path)
    elif _exchange(tmp, path):
        shutil.rmtree(tmp)  # now the old folder
    else:
        old = _beside(path, OLD_MARK)
        os.rename(path, old)
        os.rename(tmp, path)
        shutil.rmtree(old)
