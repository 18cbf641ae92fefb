"""`hermes PROMPT`, `hermes models` and `hermes replay FILE`: one answer to the terminal."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from typing import IO, Union

from .. import assemble
from ..agent import Turn
from ..errors import HermesError, StreamError, Terminated, UsageError
from ..events import Answer
from ..message import Message
from ..stream import Stream
from ..transports.jsonl import EventWriter
from ..transports.terminal import TerminalPrinter
from .console import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    isatty,
    print_json,
    quiet_pipe,
    say,
    stdout_problem,
)
from .repl import chat
from .settings import conversation, load, opened_store

_Running = Union[Stream, Turn]


def ask(args: argparse.Namespace) -> int:
    """`hermes PROMPT`: one answer, streamed to the terminal (a conversation when bare)."""
    try:
        return _ask(args)
    except HermesError as error:
        if not getattr(args, "json", False):
            raise
        # --json keeps its contract on every path: the same object, plus `error`.
        print_json({**Message().to_dict(), "error": error.to_dict()})
        return error.exit_code


def _ask(args: argparse.Namespace) -> int:
    config = load(args)
    if not args.prompt and isatty(sys.stdin) and isatty(sys.stdout):
        if not (args.json or args.events or args.record):
            return chat(args, config)  # `hermes` alone on a terminal: a conversation
    text = prompt(args)
    args.system = _valid_text(args.system)
    streaming = config.streaming.enabled and not args.no_stream
    with assemble.chat_client(config, streaming) as model_client, _Recorder(args.record) as record:
        model_client.resolve_model()
        agent = assemble.agent(config, model_client, args.tool, streaming)
        agent.record = record.file
        with opened_store(config, args) as store:
            talk = conversation(store, args, model_client.model)
            turn = talk.ask(agent, text)
            try:
                code = _show(turn, args, config.terminal.mode)
            finally:
                talk.save(turn)  # whatever happened to the output, the turn is kept
    return record.checked(code)


def replay(args: argparse.Namespace) -> int:
    """`hermes replay FILE`: print a recorded response body as a live run would."""
    config = load(args)
    try:
        source = open(args.file, "rb")  # noqa: SIM115 - closed by the with block below
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    with source:
        stream = Stream(lambda slot, cancel: _FileResponse(source))
        return _show(stream, args, config.terminal.mode)


def models(args: argparse.Namespace) -> int:
    """`hermes models`: the endpoint's model ids (or the whole list as JSON)."""
    with assemble.chat_client(load(args)) as model_client:
        listed = model_client.models()
    if args.json:
        print_json(listed)
    else:
        for model in listed:
            print(model.get("id", ""))
    return EXIT_OK


def prompt(args: argparse.Namespace) -> str:
    """Piped stdin, a blank line, then the prompt words; UsageError when both are empty."""
    words = _valid_text(" ".join(args.prompt)).strip()
    piped = "" if args.no_stdin or isatty(sys.stdin) else _read_stdin()
    if piped.strip() and words:
        return f"{piped.rstrip()}\n\n{words}"
    text = piped.strip() and piped or words
    if not text.strip():
        raise UsageError("the prompt is empty: give it as an argument or pipe it on stdin")
    return text


def _valid_text(text: str | None) -> str | None:
    """Text with bytes that were not UTF-8 (argv keeps them as surrogates) replaced by U+FFFD."""
    if text is None:
        return None
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def messages(system: str | None, prompt: str) -> list[dict]:
    """The request's messages: the system prompt, if any, then the user's."""
    head = [{"role": "system", "content": system}] if system else []
    return [*head, {"role": "user", "content": prompt}]


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


def _show(stream: _Running, args: argparse.Namespace, mode: str) -> int:
    """Run a stream into the chosen output; return the exit code."""
    output = _Output(args, mode)
    with stream:
        try:
            for event in stream:
                output.handle(event)  # after a failed write, the stream is still drained
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
    code = _finish(stream, args)
    if output.failure is not None:
        say(stdout_problem(output.failure))
        return EXIT_ERROR
    return code


class _Output:
    """Where the events go; a write that fails (a full disk, a closed stdout) stops writing."""

    def __init__(self, args: argparse.Namespace, mode: str) -> None:
        self.failure: BaseException | None = None
        self._sink = _sink(args, mode)

    def handle(self, event: object) -> None:
        """Show one event, unless writing already failed."""
        if self.failure is not None:
            return
        try:
            self._sink.handle(event)
        except BrokenPipeError:
            raise  # the reader went away: a quiet exit, not a failure
        except (OSError, ValueError) as exc:  # ValueError: "I/O operation on closed file"
            self.failure = exc

    def close(self) -> None:
        """Flush the output (a failure here is remembered too)."""
        if self.failure is not None:
            return
        try:
            self._sink.close()
        except BrokenPipeError:
            raise
        except (OSError, ValueError) as exc:
            self.failure = exc


def _sink(args: argparse.Namespace, mode: str) -> EventWriter | TerminalPrinter | _Silent:
    """Where the events go: JSON lines (--events), nowhere (--json) or the terminal."""
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


def _reason(exc: BaseException) -> str:
    return (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).lower()


def _finish(stream: Answer, args: argparse.Namespace) -> int:
    """The exit code of a finished stream, after printing --json's message or the error."""
    try:
        message = stream.result()
    except StreamError as error:
        _final_json(args, stream)
        if not args.json:
            say(str(error))
        return EXIT_ERROR
    if args.json:
        print_json(message.to_dict())
    elif message.finish_reason == "length":
        say(
            "the answer was cut off at the server's length limit (finish_reason: length); "
            "a larger max_tokens in provider.extra_body allows a longer one"
        )
    return EXIT_OK


def _final_json(args: argparse.Namespace, stream: Answer, interrupted: bool = False) -> None:
    """With --json, print what arrived plus the error, as one object."""
    if not args.json:
        return
    try:
        stream.result()
        return
    except StreamError as error:
        received = error.partial if error.partial is not None else Message()
        kind = "interrupted" if interrupted else error.kind
        print_json({**received.to_dict(), "error": {**error.to_dict(), "kind": kind}})


def _read_stdin() -> str:
    """All of stdin as text (undecodable bytes replaced)."""
    if sys.stdin is None:
        return ""
    data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read()
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


class _Recorder:
    """The --record file, created 0600; a write that fails stops recording, never the answer."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.file: _Recorder | None = None
        self._handle: IO[bytes] | None = None
        self._failure = ""
        if not path:
            return
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # a body may hold
        except OSError as exc:  # anything the model said: as private as the conversation
            raise UsageError(f"cannot write {path}: {exc.strerror}") from None
        self._handle = os.fdopen(fd, "wb", buffering=0)  # each read lands as it arrives
        self.file = self

    def write(self, data: bytes) -> int:
        """Write one read of the body; remember the first failure and stop."""
        if self._handle is None or self._failure:
            return 0
        try:
            return self._handle.write(data) or 0
        except OSError as exc:
            self._failure = _reason(exc)
            return 0

    def checked(self, code: int) -> int:
        """The exit code, made 1 (with one line) if the record could not be written."""
        if not self._failure:
            return code
        say(f"the --record file {self.path} is incomplete: {self._failure}")
        return code or EXIT_ERROR

    def __enter__(self) -> _Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            try:
                handle.close()
            except OSError as exc:
                self._failure = self._failure or _reason(exc)
