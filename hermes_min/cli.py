"""The `hermes` command: main(argv) -> exit code. The only place logging is configured."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from . import __version__
from .errors import HermesError, Terminated, UsageError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_SIGINT, EXIT_SIGTERM = 0, 1, 2, 130, 143
_SUBCOMMANDS = ("models", "replay", "telegram", "chat", "history")


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that reports bad usage as a UsageError (one line, exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} -h)")


def main(argv: list[str] | None = None) -> int:
    """Run the command; return its exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    previous = _on_sigterm()
    try:
        return _dispatch(argv)
    except HermesError as error:
        _say(str(error))
        return error.exit_code
    except BrokenPipeError:
        return _quiet_pipe()
    except Terminated:
        return EXIT_SIGTERM
    except KeyboardInterrupt:
        return EXIT_SIGINT
    finally:
        _restore(previous)


def _dispatch(argv: list[str]) -> int:
    if argv and argv[0] in _SUBCOMMANDS:
        command, rest = argv[0], argv[1:]
    else:
        command, rest = "ask", argv
    parser = _parser(command)
    args = parser.parse_args(rest)
    _setup_logging(getattr(args, "verbose", False))
    if command == "models":
        return _models(args)
    if command == "replay":
        return _replay(args)
    if command == "telegram":
        return _telegram(args)
    if command == "chat":
        return _chat(args, _load(args))
    if command == "history":
        return _history(args)
    return _ask(args)


def _parser(command: str) -> _ArgumentParser:
    if command == "models":
        parser = _ArgumentParser(prog="hermes models", description="List the endpoint's models.")
        _connection_flags(parser)
        parser.add_argument("--json", action="store_true", help="print the whole list as JSON")
        return parser
    if command == "replay":
        parser = _ArgumentParser(
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


def _chat_parser() -> _ArgumentParser:
    parser = _ArgumentParser(prog="hermes chat", description="Talk with the model in the terminal.")
    _conversation_flags(parser)
    _connection_flags(parser)
    parser.add_argument("--show-reasoning", action="store_true", help="reasoning, dim, on stderr")
    return parser


def _history_parser() -> _ArgumentParser:
    parser = _ArgumentParser(prog="hermes history", description="Show stored conversations.")
    parser.add_argument("id", nargs="?", help="a conversation id (or a unique prefix)")
    parser.add_argument("-n", type=int, default=20, help="how many to list (default 20)")
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
    parser.add_argument("--cid", help="continue the conversation with this id")
    parser.add_argument(
        "--tool",
        action="append",
        default=[],
        metavar="MODULE:FUNCTION",
        help="a tool the model may call (repeatable; hermes:now, hermes:read_file)",
    )


def _telegram_parser() -> _ArgumentParser:
    parser = _ArgumentParser(prog="hermes telegram", description="Answer into Telegram chats.")
    commands = parser.add_subparsers(dest="action", metavar="send|poll|whoami", required=True)
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
    return parser


def _poll_parser(commands: Any, parent: argparse.ArgumentParser) -> None:
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
        "--max-seconds", type=float, metavar="N", help="start no new update after N seconds"
    )
    poll.add_argument("--max-updates", type=int, metavar="N", help="handle at most N updates")
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


def _ask_parser() -> _ArgumentParser:
    parser = _ArgumentParser(
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
        from ._bundled import VERSIONS  # written only by the hermes.pyz build
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


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="hermes: %(message)s",
        stream=sys.stderr,
    )
    logging.captureWarnings(True)
    import warnings

    # One loud warning from us about provider.insecure, not one from urllib3 per request.
    warnings.filterwarnings("ignore", message="Unverified HTTPS request")


def _load(args: argparse.Namespace) -> Any:
    from .config import load_config

    overrides = {
        "provider.model": getattr(args, "model", None),
        "provider.base_url": getattr(args, "base_url", None),
        "provider.api_key": getattr(args, "api_key", None),
        "provider.ca_bundle": getattr(args, "ca_bundle", None),
    }
    return load_config(args.config, overrides=overrides)


def _client(config: Any, stream: bool = True) -> Any:
    from .assemble import chat_client

    return chat_client(config, stream)


def _ask(args: argparse.Namespace) -> int:
    from . import assemble

    config = _load(args)
    if not args.prompt and _isatty(sys.stdin) and _isatty(sys.stdout):
        if not (args.json or args.events or args.record):
            return _chat(args, config)  # `hermes` alone on a terminal: a conversation
    text = _prompt(args)
    streaming = config.streaming.enabled and not args.no_stream
    with _client(config, streaming) as client, _opened(args.record) as record:
        client.resolve_model()
        agent = assemble.agent(config, client, args.tool, streaming)
        agent.record = record
        with _store(config, args) as store:
            conversation = _conversation(store, args, client.model)
            turn = conversation.ask(agent, text)
            code = _show(turn, args, config.terminal.mode)
            conversation.save(turn)
            return code


def _chat(args: argparse.Namespace, config: Any) -> int:
    from . import assemble
    from .chat import Repl
    from .storage import default_path

    with _client(config) as client, _store(config, args) as store:
        client.resolve_model()
        conversation = _conversation(store, args, client.model)
        history = Path(config.storage.path or default_path()).with_name("chat_history")
        agent = assemble.agent(config, client, args.tool)  # one for the session: /model
        # changes client.model, which it shares
        repl = Repl(
            client=client,
            conversation=conversation,
            agent_for=lambda: agent,
            stdin=sys.stdin,
            stdout=sys.stdout,
            stderr=sys.stderr,
            history_file=history,
            mode=config.terminal.mode,
            show_reasoning=args.show_reasoning,
        )
        try:
            return repl.run()
        finally:
            if agent.fallback is not None:
                agent.fallback.close()


@contextlib.contextmanager
def _store(config: Any, args: argparse.Namespace) -> Iterator[Any]:
    """The conversation store; required only when continuing a conversation."""
    from . import assemble

    store = assemble.store(config, required=bool(args.continue_ or args.cid))
    try:
        yield store
    finally:
        if store is not None:
            store.close()


def _conversation(store: Any, args: argparse.Namespace, model: str | None) -> Any:
    from .conversation import Conversation

    cid = None
    if args.cid:
        cid = store.resolve(args.cid)
    elif args.continue_:
        cid = store.last_conversation()
        if cid is None:
            raise UsageError("there is no conversation to continue yet")
    return Conversation(store, cid, model=model, system=args.system)


def _history(args: argparse.Namespace) -> int:
    from . import assemble

    config = _load(args)
    with assemble.store(config, required=True) as store:
        if args.id:
            record = store.conversation(store.resolve(args.id))
            _print_json(record) if args.json else _print_conversation(record)
            return EXIT_OK
        listed = store.list_conversations(limit=args.n)
    if args.json:
        _print_json(listed)
    for item in [] if args.json else listed:
        when = (item.get("updated") or "")[:16].replace("T", " ")
        print(
            f"{item['id']}  {when}  {item.get('model') or '-'}  "
            f"{item.get('turns', 0)} turn(s)  {item.get('title') or ''}"
        )
    return EXIT_OK


def _print_conversation(record: dict) -> None:
    print(f"{record['id']}  {record.get('model') or '-'}  {record.get('title') or ''}")
    if record.get("system"):
        print(f"system: {record['system']}")
    for turn in record.get("turns", []):
        note = "  (interrupted)" if turn.get("interrupted") else ""
        print(f"\n--- turn {turn.get('number')}{note}")
        for message in turn.get("messages", []):
            print(_message_line(message))


def _message_line(message: dict) -> str:
    role, content = message.get("role"), message.get("content") or ""
    if role == "tool":
        return f"  <- {content}"
    calls = [c["function"] for c in message.get("tool_calls") or []]
    lines = [f"{role}: {content}"] if content or not calls else []
    lines += [f"  -> {c['name']}({c['arguments']})" for c in calls]
    return "\n".join(lines)


def _telegram(args: argparse.Namespace) -> int:
    if args.action == "poll":
        return _telegram_poll(args)
    if args.action == "whoami":
        return _telegram_whoami(args)
    return _telegram_send(args)


def _telegram_poll(args: argparse.Namespace) -> int:
    from .poll import EX_TEMPFAIL, PollError, Signals, Wakeup
    from .storage import StorageError

    with Signals() as signals:
        try:
            return _poll_with(args, signals)
        except (Wakeup, KeyboardInterrupt):
            return 128 + (signals.signum or signal.SIGINT)
        except StorageError as error:
            busy = "locked" in str(error) or "busy" in str(error)
            raise PollError(str(error), EX_TEMPFAIL if busy else 1) from None
        except HermesError as error:
            if isinstance(error, PollError) or error.exit_code != 2:
                raise
            raise PollError(str(error), 1) from None  # cron's contract: 1 = fix by hand


def _poll_with(args: argparse.Namespace, signals: Any) -> int:
    from . import assemble
    from .bot import open_bot
    from .poll import Poller, bot_id, get_me, run_lock
    from .storage import default_path

    config = _load(args)
    state = Path(config.storage.path or default_path())
    with open_bot(config) as api:
        with run_lock(
            state.with_name(f"telegram-{bot_id(config.telegram.token)}.lock"), args.wait_lock
        ):
            bot = get_me(api)
            if args.delete_webhook:
                api.delete_webhook()
            with assemble.store(config, required=True) as store, _LazyAgent(config) as agent:
                poller = Poller(config, api, store, agent.get, signals, bot=bot)
                return poller.run(
                    once=args.once, max_seconds=args.max_seconds, max_updates=args.max_updates
                )


class _LazyAgent:
    """The model client and agent, built at the first message (a quiet run needs neither)."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.client: Any = None
        self.agent: Any = None

    def get(self) -> Any:
        from . import assemble

        if self.agent is None:
            streaming = self.config.streaming.enabled
            client = self.client or assemble.chat_client(self.config, streaming)
            self.client = client
            client.resolve_model()
            self.agent = assemble.agent(self.config, client, (), streaming)
        return self.agent

    def __enter__(self) -> _LazyAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.close()
        if self.agent is not None and self.agent.fallback is not None:
            self.agent.fallback.close()


def _telegram_whoami(args: argparse.Namespace) -> int:
    from .bot import open_bot
    from .poll import whoami

    with open_bot(_load(args)) as api:
        lines = whoami(api)
    for line in lines:
        print(line)
    if not lines:
        _say("no pending messages: send the bot a message, then run this again")
    return EXIT_OK


def _telegram_send(args: argparse.Namespace) -> int:
    from . import assemble
    from .bot import chat_id_arg, open_bot, stream_into, streamer_for

    try:
        chat_id = chat_id_arg(args.chat_id)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    config = _load(args)
    messages = _messages(args.system, _prompt(args))
    streaming = config.streaming.enabled
    with open_bot(config) as api, _client(config, streaming) as client:
        client.resolve_model()
        agent = assemble.agent(config, client, args.tool, streaming)
        streamer = streamer_for(
            api, config, chat_id, thread_id=args.thread_id, reply_to=args.reply_to
        )
        with agent.turn(messages) as turn:
            try:
                delivery = stream_into(turn, streamer)
            except KeyboardInterrupt:
                _say(f"interrupted; {streamer.delivery.describe()}")
                raise
    if delivery.complete:
        return EXIT_OK
    _say(delivery.describe())
    return EXIT_ERROR


def _replay(args: argparse.Namespace) -> int:
    from .stream import Stream

    config = _load(args)
    try:
        source = open(args.file, "rb")  # noqa: SIM115 - closed by the opener's close()
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    with source:
        stream = Stream(lambda slot, cancel: _FileResponse(source))
        return _show(stream, args, config.terminal.mode)


class _FileResponse:
    """A recorded body read back as if from the socket."""

    status = 200

    def __init__(self, source: IO[bytes]) -> None:
        self._source = source
        head = source.peek(64)[:64] if hasattr(source, "peek") else b""
        json_body = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"[")
        self.content_type = "application/json" if json_body else "text/event-stream"

    def reads(self) -> Iterator[bytes]:
        while True:
            data = self._source.read(64 * 1024)
            if not data:
                return
            yield data

    def close(self) -> None:
        """The file is closed by whoever opened it."""


def _show(stream: Any, args: argparse.Namespace, mode: str) -> int:
    """Run a stream into the chosen output; return the exit code."""
    output = _output(args, mode)
    with stream:
        try:
            for event in stream:
                output.handle(event)
        except KeyboardInterrupt as signal_:
            stream.interrupt()
            stream.join(2.0)
            output.close()
            _final_json(args, stream, interrupted=True)
            return EXIT_SIGTERM if isinstance(signal_, Terminated) else EXIT_SIGINT
        except BrokenPipeError:
            stream.interrupt()
            return _quiet_pipe()
    output.close()
    return _finish(stream, args)


def _output(args: argparse.Namespace, mode: str) -> Any:
    from .transports.jsonl import EventWriter
    from .transports.terminal import TerminalPrinter

    if args.events:
        return EventWriter(sys.stdout)
    if args.json:
        return _Silent()
    return TerminalPrinter(sys.stdout, sys.stderr, mode=mode, show_reasoning=args.show_reasoning)


class _Silent:
    """--json prints nothing until the end."""

    def handle(self, event: object) -> None:
        """Ignore the event."""

    def close(self) -> None:
        """Nothing to flush."""


def _finish(stream: Any, args: argparse.Namespace) -> int:
    from .errors import StreamError

    try:
        message = stream.result()
    except StreamError as error:
        _final_json(args, stream)
        if not args.json:
            _say(str(error))
        return EXIT_ERROR
    if args.json:
        _print_json(message.to_dict())
    return EXIT_OK


def _final_json(args: argparse.Namespace, stream: Any, interrupted: bool = False) -> None:
    """With --json, print what arrived plus the error, as one object."""
    from .errors import StreamError

    if not args.json:
        return
    try:
        stream.result()
        return
    except StreamError as error:
        partial = error.partial.to_dict() if error.partial is not None else {}
        kind = "interrupted" if interrupted else error.kind
        _print_json({**partial, "error": {**error.to_dict(), "kind": kind}})


def _models(args: argparse.Namespace) -> int:
    with _client(_load(args)) as client:
        models = client.models()
    if args.json:
        _print_json(models)
    else:
        for model in models:
            print(model.get("id", ""))
    return EXIT_OK


def _prompt(args: argparse.Namespace) -> str:
    prompt = " ".join(args.prompt).strip()
    piped = "" if args.no_stdin or _isatty(sys.stdin) else _read_stdin()
    if piped.strip() and prompt:
        return f"{piped.rstrip()}\n\n{prompt}"
    text = piped.strip() and piped or prompt
    if not text.strip():
        raise UsageError("the prompt is empty: give it as an argument or pipe it on stdin")
    return text


def _read_stdin() -> str:
    if sys.stdin is None:
        return ""
    data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read()
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


def _messages(system: str | None, prompt: str) -> list[dict]:
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, {"role": "user", "content": prompt}]


@contextlib.contextmanager
def _opened(path: str | None) -> Iterator[IO[bytes] | None]:
    if not path:
        yield None
        return
    try:
        handle = open(path, "wb")  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    with handle:
        yield handle


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream) and stream.isatty()
    except (AttributeError, ValueError):
        return False


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


def _say(message: str) -> None:
    """One line on stderr, prefixed `hermes:`."""
    first = " ".join(str(message).split()) or "error"
    sys.stderr.write(f"hermes: {first}\n")
    sys.stderr.flush()


def _quiet_pipe() -> int:
    # The reader went away (`hermes ... | head -1`): no traceback, no noise at exit.
    # https://docs.python.org/3/library/signal.html#note-on-sigpipe
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_OK


def _on_sigterm() -> Any:
    def handler(signum: int, frame: object) -> None:
        raise Terminated()

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:
        return None  # not the main thread (a library caller): leave signals alone


def _restore(previous: Any) -> None:
    if previous is not None:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, previous)
