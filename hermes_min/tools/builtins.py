"""The built-in tools, off unless listed: `hermes:now` and `hermes:read_file`."""

from __future__ import annotations

import codecs
import datetime
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Callable

from .schema import Tool, tool

READ_LIMIT = 1_000_000  # read_file never reads more than this, whatever max_bytes says

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def now() -> str:
    """Return the current local date and time (ISO 8601 with UTC offset) and the weekday."""
    moment = datetime.datetime.now().astimezone()
    # Weekday names from a table: strftime("%A") would follow the process locale.
    return f"{moment.isoformat(timespec='seconds')} ({_WEEKDAYS[moment.weekday()]})"


def make_read_file(allowed_dirs: Iterable[str]) -> Tool:
    """The read_file tool, limited to files whose real path is under `allowed_dirs`."""
    roots = [Path(d).expanduser().resolve() for d in allowed_dirs]

    def read_file(path: str, max_bytes: int = 100_000) -> str:
        """Read a UTF-8 text file from a directory the user allowed.

        Args:
            path: the file's path, absolute or relative to the current directory
            max_bytes: read at most this many bytes; a longer file is cut with a note
        """
        real = _allowed_path(path, roots)
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        with open(real, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            data = file.read(min(max_bytes, READ_LIMIT) + 1)
        return _text(path, data, min(max_bytes, READ_LIMIT), size)

    return tool(read_file)


def _allowed_path(path: str, roots: list[Path]) -> Path:
    """The real path of `path` (symlinks and `..` resolved) if it is under a root."""
    if not roots:
        raise PermissionError(
            "reading files is not allowed: no directories are configured "
            "(list them under agent.read_dirs in config.yaml)"
        )
    real = Path(path).expanduser().resolve()
    if not any(real == root or root in real.parents for root in roots):
        allowed = ", ".join(str(root) for root in roots)
        raise PermissionError(f"{path} is outside the allowed directories ({allowed})")
    if not real.is_file():
        raise FileNotFoundError(f"{path} is not a regular file")
    return real


def _text(path: str, data: bytes, limit: int, size: int) -> str:
    """Decode what was read, refusing binary files and noting a cut."""
    if b"\0" in data:
        raise ValueError(f"{path} is a binary file (it contains NUL bytes); only text is read")
    cut = len(data) > limit
    try:  # an incremental decoder leaves a character split by the cut out instead of failing
        text = codecs.getincrementaldecoder("utf-8")().decode(data[:limit], final=not cut)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if cut:
        text += f"\n[truncated: showed the first {limit} of {size} bytes]"
    return text


BUILTINS: dict[str, Callable[[Iterable[str]], Tool]] = {
    "now": lambda allowed_dirs: tool(now),
    "read_file": make_read_file,
}
