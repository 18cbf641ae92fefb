"""`hermes PROMPT`, `hermes models` and `hermes replay FILE`: one answer to the terminal."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from typing import IO, Union

from .. import assemble
from ..agent import Turn
from ..conversation import Conversation
from ..errors import HermesError, StorageError, StreamError, Terminated, UsageError
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
from .settings import conversation, load, opened_store, resumed
from .usage import Clock, usage_line

_Running = Union[Stream, Turn]


def ask(args: argparse.Namespace) -> int:
    """`hermes PROMPT`: one answer, streamed to the terminal (a conversation when bare)."""
    try:
        return _ask(args)
    except HermesError as error:
        if not getattr(args, "json", False):
            raise
        # --json keeps its contract on every path: the same object, plus `error`.
        print_json({**_EMPTY, "error": error.to_dict()})
        return error.exit_code
    except KeyboardInterrupt as signal_:  # before anything streamed (model discovery)
        if not getattr(args, "json", False):
            raise
        print_json({**_EMPTY, "error": _interrupted()})
        return EXIT_SIGTERM if isinstance(signal_, Terminated) else EXIT_SIGINT


_EMPTY = {**Message().to_dict(), "conversation_id": None}


def _ask(args: argparse.Namespace) -> int:
    config = load(args)
    if not args.prompt and isatty(sys.stdin) and isatty(sys.stdout):
        if not (args.json or args.events or args.record):
            return chat(args, config)  # `hermes` alone on a terminal: a conversation
    text = prompt(args)
    args.system = _valid_text(args.system)
    report = _Report(args)
    report.has_conversation = True
    with opened_store(config, args) as store, _Recorder(args.record) as record:
        config, cid = resumed(args, config, store)
        streaming = config.streaming.enabled and not args.no_stream
        with assemble.chat_client(config, streaming) as model_client:
            model_client.resolve_model()
            agent = assemble.agent(config, model_client, args.tool, streaming)
            agent.record = record.file
            talk = conversation(store, args, cid, model_client, config)
            report.clock = Clock()
            turn = talk.ask(agent, text)
            try:
                _show(turn, args, config.terminal.mode, report)
            finally:
                _save(talk, turn, report)  # whatever happened to the output, the turn is kept
    record.check(report)
    return report.end()


def _save(talk: Conversation, turn: Turn, report: _Report) -> None:
    try:
        talk.save(turn)
    except StorageError as error:
        report.fail(error, EXIT_ERROR)
    finally:
        report.conversation_id = talk.cid
        report.totals = turn.usage
        # The last response's usage holds the details (cached, reasoning tokens); the
        # turn's sum has only the totals, so the details are the turn's when it was one.
        rounds = sum(1 for message in turn.new_messages if message.get("role") == "assistant")
        report.single_response = rounds <= 1


def replay(args: argparse.Namespace) -> int:
    """`hermes replay FILE`: print a recorded response body as a live run would."""
    config = load(args)
    try:
        source = open(args.file, "rb")  # noqa: SIM115 - closed by the with block below
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    report = _Report(args)
    with source:
        stream = Stream(lambda slot, cancel: _FileResponse(source))
        _show(stream, args, config.terminal.mode, report)
    return report.end()


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


def _show(stream: _Running, args: argparse.Namespace, mode: str, report: _Report) -> None:
    """Run a stream into the chosen output; what it ended with goes into `report`."""
    output = _Output(args, mode)
    clock = report.clock
    with stream:
        try:
            for event in stream:
                if clock is not None:
                    clock.saw(event)
                output.handle(event)  # after a failed write, the stream is still drained
        except KeyboardInterrupt as signal_:
            stream.interrupt()  # the final event follows at once (or, bounded, is made up)
            output.close()
            code = EXIT_SIGTERM if isinstance(signal_, Terminated) else EXIT_SIGINT
            report.ended(stream, code, interrupted=True)
            return
        except BrokenPipeError:
            stream.interrupt()
            report.code = quiet_pipe()
            report.quiet = True
            return
    output.close()
    report.ended(stream, EXIT_OK)
    if output.failure is not None:
        report.fail(output.failure, EXIT_ERROR, line=stdout_problem(output.failure))


class _Report:
    """How the run ended, said once at its end: --json's one object, or stderr lines."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.json = bool(args.json)
        self.message = Message()  # the answer, as far as it came
        self.error: dict | None = None  # the first failure, as --json shows it
        self.lines: list[str] = []
        self.code = EXIT_OK
        self.quiet = False  # the reader of stdout went away: nothing more is said
        self.usage = bool(getattr(args, "usage", False))  # -u
        self.clock: Clock | None = None  # set when the answer is asked for
        self.totals: dict | None = None  # the turn's token counts, summed over its responses
        self.single_response = True
        self.conversation_id: str | None = None
        self.has_conversation = False  # --json of a prompt names its conversation

    def ended(self, stream: Answer, code: int, *, interrupted: bool = False) -> None:
        """Take the stream's end: its message, or its error and what arrived before it."""
        try:
            self.message = stream.result()
        except StreamError as error:
            self.message = error.partial if error.partial is not None else Message()
            if interrupted:
                self.error, self.code = _interrupted(), code
                return
            self.fail(error, EXIT_ERROR)
            return
        self.code = code
        if self.message.finish_reason == "length":
            self.lines.append(
                "the answer was cut off at the server's length limit (finish_reason: "
                "length); a larger max_tokens (-o max_tokens N, or provider.extra_body) "
                "allows a longer one"
            )

    def fail(
        self, error: BaseException, code: int, *, line: str | None = None, kind: str = ""
    ) -> None:
        """A failure after the answer began (the first one is the one --json reports)."""
        line = line or str(error)
        if self.error is None:
            self.error = _error_dict(error, line, kind)
        self.code = self.code or code
        self.lines.append(line)

    def end(self) -> int:
        """Say it (once) and return the exit code."""
        if self.quiet:
            return self.code
        if self.usage and self.clock is not None and self.error is None:
            # After an answer only: a failed run says one line, why it failed.
            detail = self.message.usage if self.single_response else None
            say(usage_line(self.totals or self.message.usage, detail, self.clock))
        if self.json:
            body = self.message.to_dict()
            if self.has_conversation:
                body["conversation_id"] = self.conversation_id
            print_json({**body, "error": self.error} if self.error else body)
        else:
            for line in self.lines:
                say(line)
        return self.code


def _error_dict(error: BaseException, line: str, kind: str) -> dict:
    if isinstance(error, HermesError) and not kind:
        return error.to_dict()
    return {"kind": kind or "output", "message": line, "status": None}


def _interrupted() -> dict:
    return {"kind": "interrupted", "message": "interrupted", "status": None}


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

    def check(self, report: _Report) -> None:
        """A record that could not be written fails the run (after the answer)."""
        if self._failure:
            line = f"the --record file {self.path} is incomplete: {self._failure}"
            report.fail(OSError(line), EXIT_ERROR, line=line, kind="record")

    def __enter__(self) -> _Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            try:
                handle.close()
            except OSError as exc:
                self._failure = self._failure or _reason(exc)
