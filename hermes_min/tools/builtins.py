"""The built-in tools, off unless listed: `hermes:now` and `hermes:read_file`."""

from __future__ import annotations

import codecs
import datetime
import errno
import glob
import os
import stat
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


def make_read_file(allowed_dirs: Iterable[str], refused: Iterable[str] = ()) -> Tool:
    """The read_file tool, limited to files whose real path is under `allowed_dirs`.

    `refused` are glob patterns of files it never reads, even there: hermes' own settings,
    keys, token and database. They are matched by file identity (device and inode) at each
    read, so a hard link, a symlink or a file created after start-up is refused as well.
    """
    roots = [Path(d).expanduser().resolve() for d in allowed_dirs]
    patterns = tuple(refused)

    def read_file(path: str, max_bytes: int = 100_000) -> str:
        """Read a UTF-8 text file from a directory the user allowed.

        Args:
            path: the file's path, absolute or relative to the current directory
            max_bytes: read at most this many bytes; a longer file is cut with a note
        """
        fd = _open_under(path, roots)
        try:
            if max_bytes < 1:
                raise ValueError("max_bytes must be at least 1")
            info = os.fstat(fd)  # the file actually opened, not whatever the path names now
            if not stat.S_ISREG(info.st_mode):
                raise FileNotFoundError(f"{path} is not a regular file")
            if (info.st_dev, info.st_ino) in _identities(patterns):
                raise PermissionError(
                    f"{path} is one of hermes' own files (its settings, keys, token or "
                    "conversations); read_file never reads them"
                )
            limit = min(max_bytes, READ_LIMIT)
            with open(fd, "rb", closefd=False) as file:  # read() loops to the size or EOF
                data = file.read(limit + 1)
        finally:
            os.close(fd)
        return _text(path, data, limit, info.st_size)

    return tool(read_file)


def _open_under(path: str, roots: list[Path]) -> int:
    """A descriptor for `path` opened strictly inside the root its real path is under.

    The real path is checked, then opened one component at a time from the root's
    descriptor, never following a symlink (O_NOFOLLOW): a directory or file swapped for a
    symlink between the check and the open makes the open fail instead of leaving the root.
    The last component is opened O_NONBLOCK, so a FIFO cannot hold the call.
    """
    if not roots:
        raise PermissionError(
            "reading files is not allowed: no directories are configured "
            "(list them under agent.read_dirs in config.yaml)"
        )
    real = Path(path).expanduser().resolve()
    root = next((r for r in roots if real == r or r in real.parents), None)
    if root is None:
        allowed = ", ".join(str(root) for root in roots)
        raise PermissionError(f"{path} is outside the allowed directories ({allowed})")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
    try:
        parts = real.relative_to(root).parts
        for index, name in enumerate(parts):
            last = index == len(parts) - 1
            flags = _FILE if last else _DIRECTORY
            try:
                inner = os.open(name, flags, dir_fd=fd)
            except OSError as exc:
                raise _open_error(path, exc) from None
            os.close(fd)
            fd = inner
        return fd
    except BaseException:
        os.close(fd)
        raise


_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = os.O_NOFOLLOW | _CLOEXEC
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW
_FILE = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | _NOFOLLOW


def _open_error(path: str, exc: OSError) -> OSError:
    """The error to report for a component that would not open, by its errno."""
    # A symlink where the check saw none: the path changed under us. It is never followed,
    # so nothing outside the root is read. (Linux says ENOTDIR for a symlink opened as a
    # directory, the same as for a file standing where a directory should be.)
    if exc.errno in (errno.ELOOP, errno.EMLINK):
        return PermissionError(f"{path} changed while it was being opened; it was not read")
    if exc.errno == errno.ENOTDIR:
        return PermissionError(
            f"{path}: a part of it is not a directory, or it changed while it was being "
            "opened; it was not read"
        )
    if exc.errno == errno.ENOENT:
        return FileNotFoundError(f"{path} does not exist")
    return type(exc)(exc.errno, f"{path}: {exc.strerror}")


def _identities(patterns: tuple[str, ...]) -> set[tuple[int, int]]:
    """(device, inode) of every existing file the glob patterns match, symlinks followed."""
    found = set()
    for pattern in patterns:
        for name in glob.glob(pattern):
            try:
                info = os.stat(name)
            except OSError:
                continue  # gone since the glob, or unreadable: nothing to match
            found.add((info.st_dev, info.st_ino))
    return found


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


# Each built-in is made from the directories read_file may read and the files it refuses.
BUILTINS: dict[str, Callable[[Iterable[str], Iterable[str]], Tool]] = {
    "now": lambda allowed_dirs, refused: tool(now),
    "read_file": make_read_file,
}
