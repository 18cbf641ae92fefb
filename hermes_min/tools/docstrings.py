"""Parameter descriptions from a docstring: Google-style `Args:` or Sphinx `:param x:`."""

from __future__ import annotations

import re

_SECTION = re.compile(r"\s*(Args|Arguments|Parameters|Returns|Yields|Raises|Examples?|Notes?):\s*")
_ARGS_HEADER = re.compile(r"\s*(Args|Arguments|Parameters):\s*")
_PARAM_LINE = re.compile(r"\s*:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)")
_ARG_LINE = re.compile(r"\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)")


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The first paragraph, and parameter descriptions from `Args:` or `:param x:` lines."""
    lines = doc.splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or _SECTION.fullmatch(line) or _PARAM_LINE.match(line):
            break
        summary.append(line.strip())
    return " ".join(summary), {**_google_args(lines), **_sphinx_params(lines)}


def _google_args(lines: list[str]) -> dict[str, str]:
    """Descriptions from a Google-style `Args:` section; deeper lines continue an entry."""
    found: dict[str, str] = {}
    header = next((i for i, line in enumerate(lines) if _ARGS_HEADER.fullmatch(line)), None)
    if header is None:
        return found
    base, indent, current = _indent(lines[header]), None, None
    for line in lines[header + 1 :]:
        if not line.strip():
            continue
        if _indent(line) <= base:
            break  # the next section
        indent = _indent(line) if indent is None else indent
        entry = _ARG_LINE.fullmatch(line.strip())
        if _indent(line) == indent and entry:
            current = entry.group(1)
            found[current] = entry.group(2).strip()
        elif current:
            found[current] += " " + line.strip()
    return found


def _sphinx_params(lines: list[str]) -> dict[str, str]:
    """Descriptions from `:param name:` lines; indented lines after one continue it."""
    found: dict[str, str] = {}
    current = None
    for line in lines:
        match = _PARAM_LINE.match(line)
        if match:
            current = match.group(1)
            found[current] = match.group(2).strip()
        elif current and line.strip() and not line.strip().startswith(":"):
            found[current] = f"{found[current]} {line.strip()}".strip()
        else:
            current = None
    return found


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())
