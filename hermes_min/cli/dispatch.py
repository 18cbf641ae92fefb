"""`main(argv) -> exit code`: parse, configure logging (the only place), run the command."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import warnings
from types import FrameType
from typing import Callable, Optional, Union

from ..errors import HermesError, Terminated
from ..visible import printable
from .console import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    GuardedStdout,
    isatty,
    quiet_pipe,
    say,
    stdout_problem,
    valid_text,
)
from .parser import parse, split

_Handler = Union[Callable[[int, Optional[FrameType]], object], int, None]


def main(argv: list[str] | None = None) -> int:
    """Run the command; return its exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    previous = _on_sigterm()
    stdout = GuardedStdout.install()
    try:
        code = _run(argv, stdout)
    except SystemExit as done:  # argparse after -h or --version: was its text written?
        if done.code in (0, None) and _settled(stdout, EXIT_OK) != EXIT_OK:
            raise SystemExit(EXIT_ERROR) from None
        raise
    else:
        return _settled(stdout, code)
    finally:
        stdout.uninstall()
        _restore(previous)


def _run(argv: list[str], stdout: GuardedStdout) -> int:
    """Dispatch, turning every expected way of failing into one line and an exit code."""
    try:
        return _dispatch(argv)
    except HermesError as error:
        say(str(error))
        return error.exit_code
    except BrokenPipeError:
        return quiet_pipe()
    except Terminated:
        return EXIT_SIGTERM
    except KeyboardInterrupt:
        return EXIT_SIGINT
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] not in _DEPENDENCIES:
            raise  # a module of our own is missing: a broken install, worth a traceback
        say(
            f"hermes needs the Python packages requests and PyYAML ({error.name} is missing): "
            "pip install requests PyYAML, or run hermes.pyz, which bundles them"
        )
        return EXIT_ERROR
    except (OSError, ValueError) as error:
        if not stdout.raised(error):
            raise  # not stdout's failure: a bug, and its traceback is worth seeing
        say(stdout_problem(error))
        quiet_pipe()
        return EXIT_ERROR


def _settled(stdout: GuardedStdout, code: int) -> int:
    """The exit code once what is buffered has been flushed (or could not be).

    Flushed here, not at interpreter exit, where a full or closed stdout would end in
    "Exception ignored" and exit 120. A failure nobody reported yet (the command claims
    success, argparse swallowed the error) becomes the one line and exit 1.
    """
    failure = stdout.settle()
    if failure is None:
        return code
    quiet_pipe()  # whatever is still buffered goes to /dev/null at exit, not into an error
    if isinstance(failure, BrokenPipeError) or code != EXIT_OK:
        return code  # the reader left (quiet, as always), or the failure was already said
    say(stdout_problem(failure))
    return EXIT_ERROR


# What `pip install requests PyYAML` brings; a host without them gets one line, not a traceback.
_DEPENDENCIES = frozenset({"requests", "urllib3", "idna", "certifi", "charset_normalizer", "yaml"})


def _dispatch(argv: list[str]) -> int:
    """Parse the arguments and run the command they name."""
    command, rest = split(argv)
    args = _valid_text(parse(command, rest))
    _setup_logging(getattr(args, "verbose", False))
    return _command(command)(args)


# Arguments that name files: kept byte for byte, so a file whose name is not UTF-8 opens.
_PATHS = frozenset({"config", "record", "file", "ca_bundle"})


def _valid_text(args: argparse.Namespace) -> argparse.Namespace:
    """Every text argument (prompt, system prompt, model, ids) made valid Unicode."""
    for name, value in vars(args).items():
        if name in _PATHS:
            continue
        if isinstance(value, str):
            setattr(args, name, valid_text(value))
        elif isinstance(value, list):
            setattr(args, name, [_valid_item(v) for v in value])
    return args


def _valid_item(value: object) -> object:
    """A list item made valid Unicode: a string, or a list of them (-o KEY VALUE)."""
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, list):
        return [_valid_item(v) for v in value]
    return value


def _command(command: str) -> Callable[[argparse.Namespace], int]:
    """The function that runs `command`, its module imported only now: `hermes --version`
    and `-h` must not pay for requests, yaml or sqlite."""
    if command == "telegram":
        from . import telegram

        return telegram.telegram
    if command == "history":
        from . import history

        return history.history
    if command == "config":
        from . import setup

        return setup.config
    if command == "chat":
        from . import repl

        return repl.chat
    from . import ask

    return {"models": ask.models, "replay": ask.replay}.get(command, ask.ask)


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LineFormatter("hermes: %(message)s"))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])
    logging.captureWarnings(True)
    # urllib3 logs a server's unparsable header lines (with a traceback) at WARNING: a
    # header may quote the key, and the user can do nothing about it.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    # One loud warning from us about provider.insecure, not one from urllib3 per request.
    warnings.filterwarnings("ignore", message="Unverified HTTPS request")


class _LineFormatter(logging.Formatter):
    """A log line as one `hermes: ...` line: no traceback, and on a terminal, no control
    characters (a line may quote a server's words)."""

    def format(self, record: logging.LogRecord) -> str:
        line = " ".join(record.getMessage().split()) or "error"
        text = self._style._fmt % {"message": line}
        return printable(text) if isatty(sys.stderr) else text


def _on_sigterm() -> _Handler:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated()

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:
        return None  # not the main thread (a library caller): leave signals alone


def _restore(previous: _Handler) -> None:
    if previous is not None:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, previous)
