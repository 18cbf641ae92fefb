"""The terminal commands: ask, chat, history, models, replay, and the helpers they share."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .errors import Terminated, UsageError


def load(args: argparse.Namespace) -> Any:
    """The settings, with the command line's provider flags on top."""
    from .config import load_config

    overrides = {
        "provider.model": getattr(args, "model", None),
        "provider.base_url": getattr(args, "base_url", None),
        "provider.api_key": getattr(args, "api_key", None),
        "provider.ca_bundle": getattr(args, "ca_bundle", None),
    }
    return load_config(args.config, overrides=overrides)


def client(config: Any, stream: bool = True) -> Any:
    """The model client for the provider settings."""
    from .assemble import chat_client

    return chat_client(config, stream)


def ask(args: argparse.Namespace) -> int:
    """`hermes PROMPT`: one answer, streamed to the terminal (a conversation when bare)."""
    from . import assemble
    from .cli import isatty

    config = load(args)
    if not args.prompt and isatty(sys.stdin) and isatty(sys.stdout):
        if not (args.json or args.events or args.record):
            return chat(args, config)  # `hermes` alone on a terminal: a conversation
    text = prompt(args)
    streaming = config.streaming.enabled and not args.no_stream
    with client(config, streaming) as model_client, _opened(args.record) as record:
        model_client.resolve_model()
        agent = assemble.agent(config, model_client, args.tool, streaming)
        agent.record = record
        with _store(config, args) as store:
            conversation = _conversation(store, args, model_client.model)
            turn = conversation.ask(agent, text)
            code = _show(turn, args, config.terminal.mode)
            conversation.save(turn)
            return code


def chat(args: argparse.Namespace, config: Any) -> int:
    """`hermes chat`: a conversation in the terminal."""
    from . import assemble
    from .chat import Repl
    from .storage import default_path

    with client(config) as model_client, _store(config, args) as store:
        model_client.resolve_model()
        conversation = _conversation(store, args, model_client.model)
        history = Path(config.storage.path or default_path()).with_name("chat_history")
        agent = assemble.agent(config, model_client, args.tool)  # one for the session: /model
        # changes client.model, which it shares
        repl = Repl(
            client=model_client,
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
    """The conversation to continue (--cid, --continue) or a new one."""
    from .conversation import Conversation

    cid = None
    if args.cid:
        cid = store.resolve(args.cid)
    elif args.continue_:
        cid = store.last_conversation()
        if cid is None:
            raise UsageError("there is no conversation to continue yet")
    return Conversation(store, cid, model=model, system=args.system)


def history(args: argparse.Namespace) -> int:
    """`hermes history [ID]`: list the stored conversations, or show one."""
    from . import assemble
    from .cli import EXIT_OK, print_json

    config = load(args)
    with assemble.store(config, required=True) as store:
        if args.id:
            record = store.conversation(store.resolve(args.id))
            print_json(record) if args.json else _print_conversation(record)
            return EXIT_OK
        listed = store.list_conversations(limit=args.n)
    if args.json:
        print_json(listed)
    for item in [] if args.json else listed:
        when = (item.get("updated") or "")[:16].replace("T", " ")
        print(
            f"{item['id']}  {when}  {item.get('model') or '-'}  "
            f"{item.get('turns', 0)} turn(s)  {item.get('title') or ''}"
        )
    return EXIT_OK


def _print_conversation(record: dict) -> None:
    """One stored conversation, turn by turn."""
    print(f"{record['id']}  {record.get('model') or '-'}  {record.get('title') or ''}")
    if record.get("system"):
        print(f"system: {record['system']}")
    for turn in record.get("turns", []):
        note = "  (interrupted)" if turn.get("interrupted") else ""
        print(f"\n--- turn {turn.get('number')}{note}")
        for message in turn.get("messages", []):
            print(_message_line(message))


def _message_line(message: dict) -> str:
    """A stored message as text: its content, or its tool calls and results."""
    role, content = message.get("role"), message.get("content") or ""
    if role == "tool":
        return f"  <- {content}"
    calls = [c["function"] for c in message.get("tool_calls") or []]
    lines = [f"{role}: {content}"] if content or not calls else []
    lines += [f"  -> {c['name']}({c['arguments']})" for c in calls]
    return "\n".join(lines)


def replay(args: argparse.Namespace) -> int:
    """`hermes replay FILE`: print a recorded response body as a live run would."""
    from .stream import Stream

    config = load(args)
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
    from .cli import EXIT_SIGINT, EXIT_SIGTERM, quiet_pipe

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
            return quiet_pipe()
    output.close()
    return _finish(stream, args)


def _output(args: argparse.Namespace, mode: str) -> Any:
    """Where the events go: JSON lines (--events), nowhere (--json) or the terminal."""
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
    """The exit code of a finished stream, after printing --json's message or the error."""
    from .cli import EXIT_ERROR, EXIT_OK, print_json, say
    from .errors import StreamError

    try:
        message = stream.result()
    except StreamError as error:
        _final_json(args, stream)
        if not args.json:
            say(str(error))
        return EXIT_ERROR
    if args.json:
        print_json(message.to_dict())
    return EXIT_OK


def _final_json(args: argparse.Namespace, stream: Any, interrupted: bool = False) -> None:
    """With --json, print what arrived plus the error, as one object."""
    from .cli import print_json
    from .errors import StreamError

    if not args.json:
        return
    try:
        stream.result()
        return
    except StreamError as error:
        partial = error.partial.to_dict() if error.partial is not None else {}
        kind = "interrupted" if interrupted else error.kind
        print_json({**partial, "error": {**error.to_dict(), "kind": kind}})


def models(args: argparse.Namespace) -> int:
    """`hermes models`: the endpoint's model ids (or the whole list as JSON)."""
    from .cli import EXIT_OK, print_json

    with client(load(args)) as model_client:
        listed = model_client.models()
    if args.json:
        print_json(listed)
    else:
        for model in listed:
            print(model.get("id", ""))
    return EXIT_OK


def prompt(args: argparse.Namespace) -> str:
    """Piped stdin, a blank line, then the prompt words; UsageError when both are empty."""
    from .cli import isatty

    words = " ".join(args.prompt).strip()
    piped = "" if args.no_stdin or isatty(sys.stdin) else _read_stdin()
    if piped.strip() and words:
        return f"{piped.rstrip()}\n\n{words}"
    text = piped.strip() and piped or words
    if not text.strip():
        raise UsageError("the prompt is empty: give it as an argument or pipe it on stdin")
    return text


def _read_stdin() -> str:
    """All of stdin as text (undecodable bytes replaced)."""
    if sys.stdin is None:
        return ""
    data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read()
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


def messages(system: str | None, prompt: str) -> list[dict]:
    """The request's messages: the system prompt, if any, then the user's."""
    head = [{"role": "system", "content": system}] if system else []
    return [*head, {"role": "user", "content": prompt}]


@contextlib.contextmanager
def _opened(path: str | None) -> Iterator[IO[bytes] | None]:
    """The --record file, opened for writing (None without --record)."""
    if not path:
        yield None
        return
    try:
        handle = open(path, "wb")  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    with handle:
        yield handle
