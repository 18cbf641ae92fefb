"""What every command writes to the console: exit codes, one-line errors, JSON, pipes."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import sys
from typing import Any, TextIO

from ..visible import printable

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_SIGINT, EXIT_SIGTERM = 0, 1, 2, 130, 143


def isatty(stream: TextIO | None) -> bool:
    """Whether the stream is a terminal (False when it is missing or closed)."""
    try:
        return bool(stream) and stream.isatty()  # type: ignore[union-attr]
    except (AttributeError, ValueError):
        return False


def print_json(value: Any) -> None:
    """The value as indented JSON on stdout (a server's NaN or Infinity as null: not JSON)."""
    text = json.dumps(_finite(value), ensure_ascii=False, indent=2, allow_nan=False)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _finite(value: Any) -> Any:
    """`value` with every float that JSON cannot hold (NaN, ±Infinity) as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def say(message: str) -> None:
    """One line on stderr, prefixed `hermes:`."""
    if sys.stderr is None:
        return  # stderr closed (2>&-): there is nowhere to say it
    first = " ".join(str(message).split()) or "error"
    if isatty(sys.stderr):  # the line may quote a server's or a model's words
        first = printable(first)
    sys.stderr.write(f"hermes: {first}\n")
    sys.stderr.flush()


def valid_text(text: str) -> str:
    """`text` with what was not UTF-8 (argv's and stdin's surrogate escapes) as U+FFFD.

    Python turns undecodable bytes into lone surrogates, which no UTF-8 encoder (a JSON
    body, SQLite) accepts: text that enters from the command line or a terminal is made
    valid here, once, where it enters.
    """
    if text.isascii():
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate that stands for no byte
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def quiet_pipe() -> int:
    """Send further output to /dev/null; the exit code for a reader that went away."""
    # The reader went away (`hermes ... | head -1`): no traceback, no noise at exit.
    # https://docs.python.org/3/library/signal.html#note-on-sigpipe
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_OK


class GuardedStdout:
    """sys.stdout while a command runs: a write or flush that fails is remembered.

    A closed stdout (`>&-`) or a full one (`> /dev/full`) fails on a write, or only at the
    final flush, and some callers (argparse) swallow the error: main() asks this object,
    by the identity of the exception, whether stdout was what failed.
    """

    def __init__(self, stream: TextIO, original: TextIO | None) -> None:
        self.stream = stream
        self.original = original
        self.failure: BaseException | None = None  # the first write or flush that failed
        self._raised: list[BaseException] = []

    @classmethod
    def install(cls) -> GuardedStdout:
        """Put a guard in front of sys.stdout (a stand-in that fails when fd 1 is closed)."""
        original = sys.stdout
        guard = cls(original if original is not None else _closed_stdout(), original)
        sys.stdout = guard  # type: ignore[assignment]
        return guard

    def uninstall(self) -> None:
        """Give sys.stdout back."""
        if sys.stdout is self:
            sys.stdout = self.original  # type: ignore[assignment]

    def write(self, text: str) -> int:
        """Write, remembering a failure."""
        try:
            return self.stream.write(text)
        except (OSError, ValueError) as exc:
            self._failed(exc)
            raise

    def flush(self) -> None:
        """Flush, remembering a failure."""
        try:
            self.stream.flush()
        except (OSError, ValueError) as exc:
            self._failed(exc)
            raise

    def raised(self, error: BaseException) -> bool:
        """Whether `error` is one this stream raised."""
        return any(error is seen for seen in self._raised)

    def settle(self) -> BaseException | None:
        """Flush what is buffered; the error that kept output from stdout, if any."""
        try:
            self.flush()
        except (OSError, ValueError):
            pass
        return self.failure

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    def _failed(self, exc: BaseException) -> None:
        self.failure = self.failure or exc
        self._raised.append(exc)


def stdout_problem(error: BaseException) -> str:
    """The line for a stdout that could not be written, by the kind of error."""
    if isinstance(error, UnicodeEncodeError):
        encoding = getattr(sys.stdout, "encoding", None) or "its encoding"
        return f"cannot write to stdout: {encoding} cannot hold the text (set LANG to UTF-8)"
    if isinstance(error, OSError) and error.errno != errno.EBADF:
        return f"cannot write to stdout: {(error.strerror or str(error)).lower()}"
    return "cannot write to stdout: it is closed"  # EBADF, or a closed file object


def _closed_stdout() -> TextIO:
    """A stdout for a process started with fd 1 closed: every write fails with EBADF.

    /dev/null opened read-only takes fd 1, so no file hermes opens later (the database, a
    lock) can land there and receive what is printed.
    """
    try:
        os.fstat(1)
    except OSError:
        pass
    else:  # fd 1 is open after all (an embedding that set sys.stdout to None)
        return open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115 - fd 1, kept open
    fd = os.open(os.devnull, os.O_RDONLY)
    if fd != 1:
        os.dup2(fd, 1)
        os.close(fd)
    return open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115 - fd 1, kept open
