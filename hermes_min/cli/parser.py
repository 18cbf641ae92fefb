"""The command line's grammar: one argparse parser per command, errors as UsageError.

`hermes [options] COMMAND [options]`: split() finds the command wherever the options put it
and moves the options given before it to after it, so each command's own parser reads them
(and one it does not take is a usage error naming both).
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Sequence
from typing import Callable

from .. import __version__
from ..errors import UsageError

# The command words; any other first word starts a prompt (`hermes -- WORDS` or `hermes ask`
# sends a prompt whose first word is one of these).
COMMANDS = ("ask", "chat", "models", "history", "replay", "config", "telegram")
MAX_LISTED = 1_000_000  # `history -n`: more is a typo (and past SQLite's integer range)
MAX_UPDATES = 1_000_000_000  # `--max-updates`
MAX_SECONDS = 1e9  # `--max-seconds`: about 30 years
_NEGATIVE = re.compile(r"^-\d+$|^-\d*\.\d+$")  # argparse reads these as values, not options

COMMAND_LIST = """\
commands (each has -h; its options may also come before its name):
  hermes [ask] PROMPT...           stream an answer (the default command)
  hermes chat                      a conversation in the terminal
  hermes models                    the endpoint's models, one id per line
  hermes history [ID | rm ID]      list (-q TEXT searches), show or delete conversations
  hermes replay FILE               play back a body written by --record
  hermes config init|path|show     write the documented config, print its path, show the
                                   effective settings and where each came from
  hermes telegram send             stream an answer into a Telegram chat
  hermes telegram poll|whoami|setup
                                   answer the bot's messages, list who wrote, register commands
A prompt whose first word is a command's name: hermes -- models are wrong (or hermes ask ...)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports bad usage as a UsageError (one line, exit 2)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.actions: dict[str, argparse.ArgumentParser] = {}  # `telegram send`, `config show`

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} -h)")


def parser_for(command: str) -> ArgumentParser:
    """The parser of one command ("ask" for a plain prompt)."""
    if command == "models":
        parser = ArgumentParser(prog="hermes models", description="List the endpoint's models.")
        _connection_flags(parser)
        parser.add_argument("--json", action="store_true", help="print the whole list as JSON")
        parser.set_defaults(needs_model=True)
        return parser
    if command == "replay":
        parser = ArgumentParser(
            prog="hermes replay", description="Print a recorded response body as a live run would."
        )
        parser.add_argument("file", help="a body written by --record (SSE or JSON)")
        _output_flags(parser)
        _common_flags(parser)
        return parser
    if command == "telegram":
        return _telegram_parser()
    if command == "chat":
        return _chat_parser()
    if command == "history":
        return _history_parser()
    if command == "config":
        return _config_parser()
    return _ask_parser("hermes ask" if command == "ask" else "hermes")


def split(argv: Sequence[str]) -> tuple[str, list[str]]:
    """The command `argv` names, and its arguments, with the options given before the
    command's name (or before `telegram`'s and `config`'s action) moved after it."""
    argv = list(argv)
    if argv and argv[0] in COMMANDS:
        return argv[0], _moved(argv[0], [], argv[1:])
    head = argv[: argv.index("--")] if "--" in argv else argv
    if not any(token in COMMANDS for token in head):
        return "ask", argv  # the common case: a prompt, and no parser built to find out
    # Which word is the command depends on which options take values (`-m chat models`, `-s
    # models hi`), and `-n` takes one only in `history`: read the options as each would.
    ask = _grammar(parser_for("ask"))
    words = _positionals(head, ask)
    if words and head[words[0]] in COMMANDS:
        return _named(argv, words[0])
    if _first_unknown(head, ask) is None and not any(head[i] in COMMANDS for i in words):
        return "ask", argv  # a prompt: no command word is where a command could stand
    for owner in COMMANDS:
        words = _positionals(head, _grammar(parser_for(owner)))
        if words and head[words[0]] == owner:
            return _named(argv, words[0])
    # No reading fits: a command word that only options (and what may be their values)
    # precede is the command, and its parser names the option it does not take.
    for index, token in enumerate(head):
        if token in COMMANDS and _only_options_before(head, index):
            return _named(argv, index)
    return "ask", argv


def _named(argv: list[str], index: int) -> tuple[str, list[str]]:
    """The command at `argv[index]`, with the options before it moved after it."""
    return argv[index], _moved(argv[index], argv[:index], argv[index + 1 :])


def _only_options_before(tokens: list[str], index: int) -> bool:
    """Whether each word before `tokens[index]` is an option or directly follows one."""
    return all(
        _is_option(token) or (at > 0 and _is_option(tokens[at - 1]))
        for at, token in enumerate(tokens[:index])
    )


def _moved(command: str, before: list[str], rest: list[str]) -> list[str]:
    """`rest` with the options in `before` put where the command's parser reads them."""
    if not before and command not in ("telegram", "config"):
        return rest  # nothing to move, and no parser to build twice
    parser = parser_for(command)
    if parser.actions:
        arities: dict[str, int] = {}
        for action in parser.actions.values():
            arities.update(_arities(action))
        index = _first_positional(rest, arities)
        if index is not None and rest[index] in parser.actions:
            name = rest[index]
            leading = before + rest[:index]
            _check(leading, parser.actions[name], f"hermes {command} {name}")
            return [name, *leading, *rest[index + 1 :]]
        return [*before, *rest]  # no action named: the parser says what is missing
    _check(before, parser, parser.prog)
    return [*before, *rest]


def _check(leading: list[str], parser: argparse.ArgumentParser, name: str) -> None:
    """Refuse an option given before the command when the command does not take it."""
    unknown = _first_unknown(leading, _arities(parser))
    if unknown is not None:
        raise UsageError(f"{unknown} is not an option of {name} (see {name} -h)")


def _first_unknown(tokens: list[str], arities: dict[str, int]) -> str | None:
    """The first option in `tokens` that a parser with these `arities` does not take."""
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if not _is_option(token):
            index += 1
            continue
        unknown = _unknown(token, arities)
        if unknown is not None:
            return unknown
        index += 1 + _values(token, arities)
    return None


def _grammar(parser: ArgumentParser) -> dict[str, int]:
    """The options of a command and of all its actions (`telegram send`'s --chat-id)."""
    arities = _arities(parser)
    for action in parser.actions.values():
        arities.update(_arities(action))
    return arities


def _arities(parser: argparse.ArgumentParser) -> dict[str, int]:
    """Each option string of the parser, and how many values follow it."""
    arities = {}
    for action in parser._actions:  # noqa: SLF001 - the documented way to list them is none
        nargs = action.nargs
        count = 1 if nargs is None else nargs if isinstance(nargs, int) else 1
        for option in action.option_strings:
            arities[option] = count
    return arities


def _is_option(token: str) -> bool:
    return token.startswith("-") and token != "-" and not _NEGATIVE.match(token)


def _first_positional(tokens: list[str], arities: dict[str, int]) -> int | None:
    """The index of the first word that is neither an option nor an option's value."""
    words = _positionals(tokens, arities)
    return words[0] if words else None


def _positionals(tokens: list[str], arities: dict[str, int]) -> list[int]:
    """The indexes of the words that are neither options nor options' values, up to `--`."""
    words, index = [], 0
    while index < len(tokens):
        token = tokens[index]
        if token == "--":
            break  # what follows is the prompt, whatever it says
        if _is_option(token):
            index += 1 + _values(token, arities)
        else:
            words.append(index)
            index += 1
    return words


def parse(command: str, rest: list[str]) -> argparse.Namespace:
    """The arguments of `command`; a prompt's words may sit on both sides of an option
    (hermes why -m gpt-4o is the sky blue), and whatever follows `--` is prompt."""
    parser = parser_for(command)
    if command != "ask":
        return parser.parse_args(rest)
    # parse_intermixed_args drops "--" and reads what follows it as options (every Python to
    # 3.13): "--" ends the options (POSIX, Utility Syntax Guideline 10), so it is cut here.
    cut = rest.index("--") if "--" in rest else len(rest)
    args = parser.parse_intermixed_args(rest[:cut])
    args.prompt = [*args.prompt, *rest[cut + 1 :]]
    return args


def _long(name: str, arities: dict[str, int]) -> str | None:
    """A long option as argparse resolves it: exact, else a unique prefix."""
    if name in arities:
        return name
    matches = [option for option in arities if option.startswith("--") and option.startswith(name)]
    return matches[0] if len(matches) == 1 else None


def _values(token: str, arities: dict[str, int]) -> int:
    """How many of the following words an option token takes (0 when unknown)."""
    if token.startswith("--"):
        name, equals, _ = token.partition("=")
        option = _long(name, arities)
        if equals or option is None:
            return 0
        return arities[option]
    if token in arities:
        return arities[token]
    count = arities.get(token[:2])
    if count is None:
        return 0
    if count:
        return count - 1  # the first value is attached: -mgpt-4o
    return _values("-" + token[2:], arities)  # a cluster of flags: -vc


def _unknown(token: str, arities: dict[str, int]) -> str | None:
    """The option in `token` the parser does not take, if any."""
    if token.startswith("--"):
        name = token.partition("=")[0]
        return None if _long(name, arities) is not None else name
    count = arities.get(token[:2])
    if count is None:
        return token[:2]
    if count or len(token) == 2:
        return None
    return _unknown("-" + token[2:], arities)


def _ask_parser(prog: str) -> ArgumentParser:
    parser = ArgumentParser(
        prog=prog,
        usage=f"{prog} [options] [PROMPT ...]",
        description="Stream an answer from an OpenAI-compatible endpoint. Piped stdin comes "
        "first, then a blank line, then the prompt.",
        epilog=COMMAND_LIST,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("prompt", nargs="*", help="the prompt (words are joined by spaces)")
    _conversation_flags(parser)
    _request_flags(parser)
    _connection_flags(parser)
    parser.add_argument("--no-stream", action="store_true", help="ask for one whole response")
    parser.add_argument("--no-stdin", action="store_true", help="do not read piped stdin")
    parser.add_argument("--record", metavar="FILE", help="write the raw response body to FILE")
    _output_flags(parser)
    parser.add_argument("--version", action="version", version=_version_text())
    return parser


def _chat_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="hermes chat", description="Talk with the model in the terminal.")
    _conversation_flags(parser)
    _request_flags(parser)
    _connection_flags(parser)
    parser.add_argument("--show-reasoning", action="store_true", help="reasoning, dim, on stderr")
    return parser


def _history_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="hermes history",
        usage="hermes history [options] [ID | rm ID]",
        description="List the stored conversations (newest first), show one by its id (a "
        "unique prefix is enough), or delete one with `rm ID`.",
    )
    parser.add_argument(
        "words", nargs="*", metavar="ID | rm ID", help="a conversation to show, or rm and one"
    )
    parser.add_argument(
        "-n",
        type=_count(1, MAX_LISTED),
        default=20,
        help=f"how many to list, 1 to {MAX_LISTED} (default 20)",
    )
    parser.add_argument(
        "-q", "--query", metavar="TEXT", help="only conversations whose messages hold these words"
    )
    parser.add_argument("--model", metavar="NAME", help="only conversations that used this model")
    parser.add_argument("--json", action="store_true", help="print JSON")
    _common_flags(parser)
    return parser


def _config_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="hermes config",
        description="The config file: write the documented one, print its path, show the "
        "settings in effect.",
    )
    actions = parser.add_subparsers(dest="action", metavar="init|path|show", required=True)
    init = _action(
        actions,
        parser,
        "init",
        "write the documented config to the config path (mode 0600; never overwrites)",
    )
    _common_flags(init)
    path = _action(actions, parser, "path", "print the path of the config file in use")
    _common_flags(path)
    show = _action(
        actions,
        parser,
        "show",
        "print the effective settings (secrets masked) and where each came from",
    )
    show.add_argument("-m", "--model", help="model name (HERMES_MODEL, provider.model)")
    _connection_flags(show)
    show.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _action(
    actions: argparse._SubParsersAction, parent: ArgumentParser, name: str, text: str
) -> ArgumentParser:
    """One action of a command with actions (`config init`), erring like its parent."""
    action = actions.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
    action.error = parent.error  # type: ignore[method-assign]
    parent.actions[name] = action
    return action


def _conversation_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--model", help="model name (HERMES_MODEL, provider.model)")
    parser.add_argument("-s", "--system", help="system prompt")
    parser.add_argument(
        "-c",
        "--continue",
        dest="continue_",
        action="store_true",
        help="continue the last conversation (on its own model and endpoint)",
    )
    parser.add_argument("--cid", type=_non_empty, help="continue the conversation with this id")
    parser.add_argument(
        "-n",
        "--no-log",
        dest="no_log",
        action="store_true",
        help="do not store this conversation",
    )
    parser.add_argument(
        "--tool",
        action="append",
        default=[],
        metavar="MODULE:FUNCTION",
        help="a tool the model may call (repeatable; hermes:now, hermes:read_file)",
    )


def _request_flags(parser: argparse.ArgumentParser) -> None:
    _option_flag(parser)
    parser.add_argument(
        "-u",
        "--usage",
        action="store_true",
        help="after the answer, a line on stderr: tokens in and out, seconds, tokens/s",
    )


def _option_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--option",
        dest="options",
        nargs=2,
        action="append",
        default=[],
        metavar=("KEY", "VALUE"),
        help="a request-body key for this run (repeatable): -o temperature 0.2; the value is "
        "read as JSON when it is JSON, else as text",
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
    parser.actions["send"] = send
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
    _option_flag(send)
    _connection_flags(send)
    send.set_defaults(needs_model=True)
    _poll_parser(commands, parser)
    whoami = commands.add_parser(
        "whoami", help="print who has written to the bot (answers and confirms nothing)"
    )
    whoami.error = parser.error  # type: ignore[method-assign]
    parser.actions["whoami"] = whoami
    _common_flags(whoami)
    setup = commands.add_parser(
        "setup",
        help="register the bot's commands, so Telegram's menu shows them",
        description="Tell Telegram the bot's commands (setMyCommands), for private chats "
        "and for groups; `telegram poll` without --once does this at its start too.",
    )
    setup.error = parser.error  # type: ignore[method-assign]
    parser.actions["setup"] = setup
    _common_flags(setup)
    return parser


def _poll_parser(commands: argparse._SubParsersAction, parent: ArgumentParser) -> None:
    poll = commands.add_parser(
        "poll",
        help="answer the messages sent to the bot",
        description="Answer each text message from an allowed user once, streaming the "
        "answer. Exit 0 when all were handled, 1 when a human must fix something, 75 to "
        "retry later (another run holds the lock, Telegram or the model is down).",
    )
    poll.error = parent.error  # type: ignore[method-assign]
    parent.actions["poll"] = poll
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


def _version_text() -> str:
    """`hermes X`, plus the bundled dependencies' versions in a single-file build."""
    try:
        from .._bundled import VERSIONS  # written only by the hermes.pyz build
    except ImportError:
        return f"hermes {__version__}"
    deps = ", ".join(f"{name} {version}" for name, version in VERSIONS.items())
    return f"hermes {__version__} (bundled: {deps})"


def _common_flags(parser: argparse.ArgumentParser) -> None:
    """The two options every command takes."""
    parser.add_argument("--config", help="config file (default $HERMES_CONFIG, then XDG)")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="say what is retried, and which key is used"
    )


def _connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-p", "--provider", metavar="NAME", help="a named endpoint under providers: in the config"
    )
    parser.add_argument("--base-url", help="endpoint, with or without /v1 (OPENAI_BASE_URL)")
    parser.add_argument("--api-key", help="API key (HERMES_API_KEY; prefer the environment)")
    parser.add_argument("--ca-bundle", metavar="FILE", help="CA certificates to trust")
    _common_flags(parser)


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
