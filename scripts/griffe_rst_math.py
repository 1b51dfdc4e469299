"""A griffe extension that lets the API reference render the reStructuredText bits of our docstrings.

The docstrings of ``gammapo_spec`` and the backends are Google style (``Args:``, ``Returns:`` …), which
mkdocstrings parses, but their equations and cross-references are reStructuredText roles, which
Markdown would show verbatim. Before mkdocstrings renders a docstring this extension rewrites, in
the docstring text only (the source files are untouched):

* ``:math:`x``` → ``$x$`` and ``.. math::`` blocks → ``$$ … $$`` (rendered by ``pymdownx.arithmatex``
  and KaTeX, like the equations of the theory pages);
* ``:func:`~a.b``` and the other Python roles → the code span ``b`` (``a.b`` without the tilde);
* ``.. code-block:: lang`` blocks and doctest (``>>>``) blocks → fenced code blocks (Markdown would
  read ``>>>`` as nested quotes and ``x[0]`` as a link);
* simple tables (``====  ====`` rules) → Markdown tables;
* ``text::`` before a literal block → ``text:`` (the indented block stays a Markdown code block);
* a ``Raises:`` line naming two exceptions (``A: why. B: why``) → two entries;
* section titles underlined with ``---`` or ``===`` → bold lines (a heading inside an API entry would
  break the page's table of contents).

Loaded from ``mkdocs.yml`` (``plugins.mkdocstrings.handlers.python.options.extensions``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

__all__ = ["RstMath", "rst_to_markdown"]

_INLINE_MATH = re.compile(r":math:`([^`]+)`")
_PY_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|exc|obj|const):`~?([^`]+)`")
_TILDE_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|exc|obj|const):`~([^`]+)`")
_DIRECTIVE = re.compile(r"^(\s*)\.\. (math|code-block|code)::\s*(.*)$")
_TABLE_RULE = re.compile(r"^(\s*)(=+)((?:\s+=+)+)\s*$")
_UNDERLINE = re.compile(r"^\s*(-{3,}|={3,})\s*$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _block(lines: list[str], start: int, base: int) -> tuple[list[str], int]:
    """The indented body of a directive that starts at line ``start - 1`` (indent ``base``)."""
    body: list[str] = []
    i = start
    while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > base):
        body.append(lines[i])
        i += 1
    while body and not body[-1].strip():
        body.pop()
        i -= 1
    while body and not body[0].strip():
        body.pop(0)
    if body:
        cut = min(_indent(b) for b in body if b.strip())
        body = [b[cut:] for b in body]
    return body, i


def _table_cell(cell: str) -> str:
    """A table cell: ``|`` inside math becomes ``\\vert`` (a bare ``|`` would split the Markdown cell)."""
    cell = _INLINE_MATH.sub(lambda m: "$" + m.group(1).replace("|", r"\vert ") + "$", cell)
    return cell.replace("|", r"\|")


def _table(lines: list[str], i: int) -> tuple[list[str], int] | None:
    """Convert a simple reST table starting at rule line ``i`` (returns the Markdown and the next line)."""
    rule = _TABLE_RULE.match(lines[i])
    if not rule:
        return None
    pad = rule.group(1)
    spans = [(m.start(), m.end()) for m in re.finditer(r"=+", lines[i])]
    rows: list[list[str]] = []
    j = i + 1
    while j < len(lines) and not _TABLE_RULE.match(lines[j]):
        if lines[j].strip():
            text = lines[j]
            cells = []
            for k, (s, _) in enumerate(spans):
                end = spans[k + 1][0] if k + 1 < len(spans) else len(text)
                cells.append(text[s:end].strip())
            rows.append(cells)
        j += 1
    if j >= len(lines):
        return None
    if not rows:
        return None
    esc = [[_table_cell(c) for c in r] for r in rows]
    header = ["" for _ in spans]
    md = [pad + "| " + " | ".join(header) + " |", pad + "|" + "---|" * len(spans)]
    md += [pad + "| " + " | ".join(r) + " |" for r in esc]
    return md, j + 1


_RAISES_ENTRY = re.compile(r"^\s+[\w.]+:\s")
_TWO_RAISES = re.compile(r"^(\s+)(\w+Error: .*?\.) (\w+Error: .*)$")


def _split_raises(lines: list[str]) -> list[str]:
    """Split ``A: why. B: why`` lines of a ``Raises:`` section into one entry per exception, and indent
    continuation lines written at the entries' own indent (griffe would read them as malformed entries)."""
    out: list[str] = []
    section = None
    for line in lines:
        if line.strip().endswith(":") and _indent(line) == 0:
            section = line.strip()
        elif line.strip() and _indent(line) == 0:
            section = None
        m = _TWO_RAISES.match(line) if section == "Raises:" else None
        if m:
            out += [m.group(1) + m.group(2), m.group(1) + m.group(3)]
        elif section == "Raises:" and line.strip() and _indent(line) > 0 and not _RAISES_ENTRY.match(line):
            out.append("    " + line)  # a continuation written at the entry's indent
        else:
            out.append(line)
    return out


def rst_to_markdown(text: str) -> str:
    """Rewrite the reST roles, directives, simple tables and underlined titles of a docstring.

    Example:
        >>> rst_to_markdown("The gap :math:`h = u_w - u_l`, see :func:`~gammapo_spec.reward_gap`.")
        'The gap $h = u_w - u_l$, see `reward_gap`.'
    """
    lines = _split_raises(text.split("\n"))
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        d = _DIRECTIVE.match(line)
        if d:
            pad, kind, arg = d.group(1), d.group(2), d.group(3).strip()
            body, i = _block(lines, i + 1, len(pad))
            if kind == "math":
                eq = ([arg] if arg else []) + body
                out += [pad + "$$"] + [pad + b for b in eq] + [pad + "$$"]
            else:
                out += [pad + "```" + (arg or "text")] + [pad + b for b in body] + [pad + "```"]
            continue
        if line.rstrip().endswith("::") and not line.lstrip().startswith(".."):
            line = line.rstrip()[:-1]  # reST "text::" introduces a literal block: Markdown indents it
        if line.lstrip().startswith(">>>"):
            pad = line[: _indent(line)]
            body = []
            while i < len(lines) and lines[i].strip():
                body.append(lines[i][len(pad):] if lines[i].startswith(pad) else lines[i].strip())
                i += 1
            out += [pad + "```pycon"] + [pad + b for b in body] + [pad + "```"]
            continue
        table = _table(lines, i)
        if table is not None:
            md, i = table
            out += md
            continue
        if i + 1 < len(lines) and line.strip() and _UNDERLINE.match(lines[i + 1]) and not _TABLE_RULE.match(line):
            out.append(f"**{line.strip()}**")
            out.append("")
            i += 2
            continue
        out.append(line)
        i += 1
    md = "\n".join(out)
    md = _INLINE_MATH.sub(lambda m: "$" + m.group(1) + "$", md)
    md = _TILDE_ROLE.sub(lambda m: "`" + m.group(1).rsplit(".", 1)[-1] + "`", md)
    return _PY_ROLE.sub(lambda m: "`" + m.group(1) + "`", md)


class RstMath(griffe.Extension):
    """Rewrite every loaded docstring with :func:`rst_to_markdown`."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:  # noqa: D102
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
