"""Skip and xfail files: gradual adoption for a backend that does not pass everything yet.

Format: one test id pattern per line, optionally followed by ``# reason``; blank lines and lines
starting with ``#`` are ignored. A pattern matches a test when it is a substring of the test's node
id (e.g. ``test_calibrate_margins.py::test_calibrate_margins_values`` or just ``calibrate_margins``).

Example:
    >>> parse_lines(["# comment", "test_pair_losses.py::test_pair_losses_values  # overflows in float32"])
    [('test_pair_losses.py::test_pair_losses_values', 'overflows in float32')]
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["parse_lines", "load", "match"]


def parse_lines(lines) -> list[tuple[str, str]]:
    """``[(pattern, reason)]`` from the lines of a skip/xfail file."""
    out = []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pattern, _, reason = line.partition("#")
        out.append((pattern.strip(), reason.strip() or "listed in the file"))
    return out


def load(path: str | Path | None) -> list[tuple[str, str]]:
    """The entries of the file at ``path`` (``[]`` for ``None``)."""
    return [] if path is None else parse_lines(Path(path).read_text(encoding="utf-8").splitlines())


def match(nodeid: str, entries: list[tuple[str, str]]) -> str | None:
    """The reason of the first entry matching ``nodeid``, or ``None``."""
    for pattern, reason in entries:
        if pattern in nodeid:
            return reason
    return None
