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
from .console import EXIT_SIGINT, EXIT_SIGTERM, quiet_pipe, say
from .parser import SUBCOMMANDS, parser_for

_Handler = Union[Callable[[int, Optional[FrameType]], object], int, None]


def main(argv: list[str] | None = None) -> int:
    """Run the command; return its exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    previous = _on_sigterm()
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
    finally:
        _restore(previous)


def _dispatch(argv: list[str]) -> int:
    """Parse the arguments and run the command they name."""
    if argv and argv[0] in SUBCOMMANDS:
        command, rest = argv[0], argv[1:]
    else:
        command, rest = "ask", argv
    args = parser_for(command).parse_args(rest)
    _setup_logging(getattr(args, "verbose", False))
    return _command(command)(args)


def _command(command: str) -> Callable[[argparse.Namespace], int]:
    """The function that runs `command`, its module imported only now: `hermes --version`
    and `-h` must not pay for requests, yaml or sqlite."""
    if command == "telegram":
        from . import telegram

        return telegram.telegram
    if command == "history":
        from . import history

        return history.history
    if command == "chat":
        from . import repl

        return repl.chat
    from . import ask

    return {"models": ask.models, "replay": ask.replay}.get(command, ask.ask)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="hermes: %(message)s",
        stream=sys.stderr,
    )
    logging.captureWarnings(True)
    # One loud warning from us about provider.insecure, not one from urllib3 per request.
    warnings.filterwarnings("ignore", message="Unverified HTTPS request")


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
