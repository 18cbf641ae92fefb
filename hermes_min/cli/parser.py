"""The command line's grammar: one argparse parser per command, errors as UsageError."""

from __future__ import annotations

import argparse
import math
from typing import Callable

from .. import __version__
from ..errors import UsageError

SUBCOMMANDS = ("models", "replay", "telegram", "chat", "history")
MAX_LISTED = 1_000_000  # `history -n`: more is a typo (and past SQLite's integer range)
MAX_UPDATES = 1_000_000_000  # `--max-updates`
MAX_SECONDS = 1e9  # `--max-seconds`: about 30 years


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports bad usage as a UsageError (one line, exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} -h)")


def parser_for(command: str) -> ArgumentParser:
    """The parser of one command ("ask" for a plain prompt)."""
    if command == "models":
        parser = ArgumentParser(prog="hermes models", description="List the endpoint's models.")
        _connection_flags(parser)
        parser.add_argument("--json", action="store_true", help="print the whole list as JSON")
        return parser
    if command == "replay":
        parser = ArgumentParser(
            prog="hermes replay", description="Print a recorded response body as a live run would."
        )
        parser.add_argument("file", help="a body written by --record (SSE or JSON)")
        _output_flags(parser)
        parser.add_argument("--config", help="config file (default $HERMES_CONFIG, then XDG)")
        return parser
    if command == "telegram":
        return _telegram_parser()
    if command == "chat":
        return _chat_parser()
    if command == "history":
        return _history_parser()
    return _ask_parser()


def _chat_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="hermes chat", description="Talk with the model in the terminal.")
    _conversation_flags(parser)
    _connection_flags(parser)
    parser.add_argument("--show-reasoning", action="store_true", help="reasoning, dim, on stderr")
    return parser


def _history_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="hermes history", description="Show stored conversations.")
    parser.add_argument(
        "id", nargs="?", type=_non_empty, help="a conversation id (or a unique prefix)"
    )
    parser.add_argument(
        "-n",
        type=_count(1, MAX_LISTED),
        default=20,
        help=f"how many to list, 1 to {MAX_LISTED} (default 20)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--config", help="config file (default $HERMES_CONFIG, then XDG)")
    return parser


def _conversation_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--model", help="model name (HERMES_MODEL, provider.model)")
    parser.add_argument("-s", "--system", help="system prompt")
    parser.add_argument(
        "-c",
        "--continue",
        dest="continue_",
        action="store_true",
        help="continue the last conversation",
    )
    parser.add_argument("--cid", type=_non_empty, help="continue the conversation with this id")
    parser.add_argument(
        "--tool",
        action="append",
        default=[],
        metavar="MODULE:FUNCTION",
        help="a tool the model may call (repeatable; hermes:now, hermes:read_file)",
    )


def _telegram_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="hermes telegram", description="Answer into Telegram chats.")
    commands = parser.add_subparsers(dest="action", metavar="send|poll|whoami|setup", required=True)
    send = commands.add_parser(
        "send",
        help="stream the answer to a prompt into one chat",
        description="Run the prompt and stream the answer into a chat; exit 0 only when the "
        "whole answer was delivered.",
    )
    send.error = parser.error  # type: ignore[method-assign]
    send.add_argument("prompt", nargs="*", help="the prompt (or pipe it on stdin)")
    send.add_argument("--chat-id", required=True, help="the chat: an id, or @channelname")
    send.add_argument("--thread-id", type=int, help="a forum topic's message_thread_id")
    send.add_argument("--reply-to", type=int, metavar="MSG_ID", help="reply to this message")
    send.add_argument("-m", "--model", help="model name (HERMES_MODEL, provider.model)")
    send.add_argument("-s", "--system", help="system prompt")
    send.add_argument("--no-stdin", action="store_true", help="do not read piped stdin")
    send.add_argument(
        "--tool",
        action="append",
        default=[],
        metavar="MODULE:FUNCTION",
        help="a tool the model may call (repeatable)",
    )
    _connection_flags(send)
    _poll_parser(commands, parser)
    whoami = commands.add_parser(
        "whoami", help="print who has written to the bot (answers and confirms nothing)"
    )
    whoami.error = parser.error  # type: ignore[method-assign]
    whoami.add_argument("--config", help="config file (default $HERMES_CONFIG, then XDG)")
    setup = commands.add_parser(
        "setup",
        help="register the bot's commands, so Telegram's menu shows them",
        description="Tell Telegram the bot's commands (setMyCommands), for private chats "
        "and for groups; `telegram poll` without --once does this at its start too.",
    )
    setup.error = parser.error  # type: ignore[method-assign]
    setup.add_argument("--config", help="config file (default $HERMES_CONFIG, then XDG)")
    return parser


def _poll_parser(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    poll = commands.add_parser(
        "poll",
        help="answer the messages sent to the bot",
        description="Answer each text message from an allowed user once, streaming the "
        "answer. Exit 0 when all were handled, 1 when a human must fix something, 75 to "
        "retry later (another run holds the lock, Telegram or the model is down).",
    )
    poll.error = parent.error  # type: ignore[method-assign]
    poll.add_argument("--once", action="store_true", help="handle what is pending and exit")
    poll.add_argument(
        "--max-seconds", type=_seconds, metavar="N", help="start no new update after N seconds"
    )
    poll.add_argument(
        "--max-updates", type=_count(0, MAX_UPDATES), metavar="N", help="handle at most N updates"
    )
    poll.add_argument(
        "--wait-lock",
        action="store_true",
        help="wait for another run to finish instead of exiting 75",
    )
    poll.add_argument(
        "--delete-webhook",
        action="store_true",
        help="remove the bot's webhook first (polling and webhooks exclude each other)",
    )
    poll.add_argument("--config", help="config file (default $HERMES_CONFIG, then XDG)")
    poll.add_argument("-v", "--verbose", action="store_true", help="one line per update handled")


def _ask_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="hermes",
        description="Stream an answer from an OpenAI-compatible endpoint. Piped stdin comes "
        "first, then a blank line, then the prompt.",
        epilog="other commands: hermes chat, hermes history [ID], hermes models, "
        "hermes replay FILE, hermes telegram send",
    )
    parser.add_argument("prompt", nargs="*", help="the prompt (words are joined by spaces)")
    _conversation_flags(parser)
    _connection_flags(parser)
    parser.add_argument("--no-stream", action="store_true", help="ask for one whole response")
    parser.add_argument("--no-stdin", action="store_true", help="do not read piped stdin")
    parser.add_argument("--record", metavar="FILE", help="write the raw response body to FILE")
    _output_flags(parser)
    parser.add_argument("--version", action="version", version=_version_text())
    return parser


def _version_text() -> str:
    """`hermes X`, plus the bundled dependencies' versions in a single-file build."""
    try:
        from .._bundled import VERSIONS  # written only by the hermes.pyz build
    except ImportError:
        return f"hermes {__version__}"
    deps = ", ".join(f"{name} {version}" for name, version in VERSIONS.items())
    return f"hermes {__version__} (bundled: {deps})"


def _connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base-url", help="endpoint, with or without /v1 (OPENAI_BASE_URL)")
    parser.add_argument("--api-key", help="API key (OPENAI_API_KEY; prefer the environment)")
    parser.add_argument("--ca-bundle", metavar="FILE", help="CA certificates to trust")
    parser.add_argument("--config", help="config file (default $HERMES_CONFIG, then XDG)")
    parser.add_argument("-v", "--verbose", action="store_true", help="say what is retried")


def _output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--show-reasoning", action="store_true", help="reasoning, dim, on stderr")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print only the final message as JSON")
    out.add_argument("--events", action="store_true", help="print every event as a JSON line")


def _non_empty(text: str) -> str:
    """An id: anything but nothing (an empty --cid silently started a new conversation)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _count(least: int, most: int) -> Callable[[str], int]:
    """The type of a count flag: a whole number from `least` to `most`."""
    bound = f"a whole number from {least} to {most}"

    def count(text: str) -> int:
        # The text is never echoed: it may be thousands of digits.
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {bound}") from None
        if not least <= value <= most:
            raise argparse.ArgumentTypeError(f"must be {bound}")
        return value

    return count


def _seconds(text: str) -> float:
    """A number of seconds: 0 or more (0: start nothing new), finite, not absurdly large."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number of seconds") from None
    if not (math.isfinite(value) and 0 <= value <= MAX_SECONDS):
        raise argparse.ArgumentTypeError(f"must be a number of seconds from 0 to {MAX_SECONDS:g}")
    return value
