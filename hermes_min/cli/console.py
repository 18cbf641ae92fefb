"""What every command writes to the console: exit codes, one-line errors, JSON, pipes."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Any, TextIO

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_SIGINT, EXIT_SIGTERM = 0, 1, 2, 130, 143


def isatty(stream: TextIO | None) -> bool:
    """Whether the stream is a terminal (False when it is missing or closed)."""
    try:
        return bool(stream) and stream.isatty()  # type: ignore[union-attr]
    except (AttributeError, ValueError):
        return False


def print_json(value: Any) -> None:
    """The value as indented JSON on stdout."""
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


def say(message: str) -> None:
    """One line on stderr, prefixed `hermes:`."""
    first = " ".join(str(message).split()) or "error"
    sys.stderr.write(f"hermes: {first}\n")
    sys.stderr.flush()


def quiet_pipe() -> int:
    """Send further output to /dev/null; the exit code for a reader that went away."""
    # The reader went away (`hermes ... | head -1`): no traceback, no noise at exit.
    # https://docs.python.org/3/library/signal.html#note-on-sigpipe
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_OK
