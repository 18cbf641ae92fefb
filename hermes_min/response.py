"""Reads one chat-completions response (status, content type, body reads) into events."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any, Callable

from .accumulate import Accumulator
from .errors import StreamError
from .events import Done, Failed
from .message import Message
from .redact import redact
from .sse import SSEDecoder

_ERROR_BODY_LIMIT = 64 * 1024  # enough for any provider's error JSON or proxy page
MAX_BODY = 16 * 1024 * 1024  # a whole (non-streamed) answer; past this it is not one
_PAGE_HEAD = 4096  # of an HTML page, what is read for its title
_TAG = re.compile(r"<[^<>]*>")  # no nesting, no backtracking: linear
# How servers say the prompt does not fit the context (OpenAI and OpenRouter, vLLM,
# llama.cpp's exceed_context_size_error, Anthropic-compatible gateways, TGI).
_CONTEXT_FULL = (
    "context_length_exceeded",
    "maximum context length",
    "context length exceeded",
    "exceeds the available context size",
    "exceed_context_size_error",
    "longer than the maximum model length",
    "prompt is too long",
    "input is too long",
    "too many tokens",
)
# No 401 here: the client that sent the request says which key was refused, or that none
# was sent (a generic list of key sources named some that never go to that endpoint).
_HINTS = {
    403: "the key is not allowed to use this model or endpoint",
    404: "check the base URL and the model name",
}


class BodyFolder:
    """Feed it the body's reads; it returns events, ending with one Done or Failed."""

    def __init__(
        self,
        status: int = 200,
        content_type: str = "text/event-stream",
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.status = status
        self._secrets = secrets  # out of every message, before any excerpt is cut
        self.content_type = (content_type or "").split(";")[0].strip().lower()
        self.done = False  # nothing more needs reading: [DONE], an error, or the end
        self._acc = Accumulator()
        self._sse = SSEDecoder() if self._is_sse() else None
        self._body = bytearray()
        self._saw_done = self._failed = self._finished = False

    def feed(self, read: bytes) -> list:
        """Fold one read of the body."""
        if self.done or not read:
            return []
        if self._sse is None:
            return self._keep(read)
        try:
            return self._events(self._sse.feed(read))
        except StreamError as error:  # a cap, or a chunk of an unusable shape
            return [self._fail(error.kind, error.message)]

    def _keep(self, read: bytes) -> list:
        """Keep a read of a whole-body reply, up to its cap."""
        limit = MAX_BODY if self.status == 200 else _ERROR_BODY_LIMIT
        if len(self._body) + len(read) <= limit:
            self._body += read
            return []
        if self.status != 200:
            self._body += read[: max(limit - len(self._body), 0)]
            return []  # the start of an error page says enough; the rest is not read
        return [
            self._fail(
                "too_large",
                f"the server's reply grew past {MAX_BODY // 2**20} MiB without being an event "
                "stream; stopped reading (a cap that keeps memory bounded)",
            )
        ]

    def finish(self) -> list:
        """The body ended (or [DONE] came): the last events, ending in Done or Failed."""
        if self._failed or self._finished:
            return []
        self._finished = self.done = True
        if self._sse is None:
            return self._whole_body()
        events: list = []
        if not self._saw_done:
            try:
                pending = self._sse.close()
                if pending is not None and _parses(pending[1]):
                    events = self._events([pending])  # a last event without its blank line
            except StreamError as error:
                return [self._fail(error.kind, error.message)]
        if self._failed:
            return events
        if self._saw_done or self._acc.finish_reason:
            return [*events, Done(self._acc.message())]
        return [*events, self._fail("incomplete", "the stream ended before the answer was done")]

    def partial(self) -> Message:
        """What has arrived so far."""
        return self._acc.message()

    def _is_sse(self) -> bool:
        if self.status != 200:
            return False
        return self.content_type not in ("application/json", "text/html")

    def _events(self, pairs: Iterable[tuple[str, str]]) -> list:
        events: list = []
        for kind, data in pairs:
            if len(data) < 32 and data.strip() == "[DONE]":
                self.done = self._saw_done = True  # nothing after [DONE] is read
                break
            failure = self._chunk(kind, data, events)
            if failure is not None:
                events.append(failure)
                break
        return events

    def _chunk(self, kind: str, data: str, events: list) -> Failed | None:
        try:  # inline, not _object(): this runs once per chunk
            chunk = json.loads(data)
        except (ValueError, RecursionError):
            chunk = None
        if type(chunk) is not dict:  # says why it is not an object (the excerpt scrubbed)
            return self._fail("invalid_json", str(_object(self._scrub(data))))
        events.extend(self._acc.feed(chunk))
        if chunk.get("error"):
            return self._api_error(chunk)
        if kind == "error":  # `event: error` whose body is the error object itself
            return self._api_error({"error": chunk})
        return None

    def _api_error(self, obj: dict) -> Failed:
        """An error the provider sent inside a 200 (an event, or a whole JSON body)."""
        failed = self._fail("api_error", _provider_error(obj, self._scrub))
        if any(words in self._scrub(json.dumps(obj)).lower() for words in _CONTEXT_FULL):
            failed.error.retry = "trim_context"  # OpenRouter refuses this way once streaming
        return failed

    def _whole_body(self) -> list:
        if self.status != 200:
            return [self._http_failure()]
        if self.content_type == "text/html":
            page = _html_title(self._scrub(bytes(self._body).decode("utf-8", "replace")))
            return [
                self._fail(
                    "http_error", f"expected an event stream, got an HTML page: {page}", status=200
                )
            ]
        return self._json_body()

    def _json_body(self) -> list:
        # A 200 application/json body is the server ignoring `stream: true`: the whole answer.
        text = self._body.decode("utf-8", "replace")
        obj = _object(text)
        if not isinstance(obj, dict):
            return [self._fail("invalid_json", str(_object(self._scrub(text))))]
        try:
            events = self._acc.feed(obj)
        except StreamError as error:
            return [self._fail(error.kind, error.message)]
        if obj.get("error"):
            return events + [self._api_error(obj)]
        if not isinstance(obj.get("choices"), list) or not obj["choices"]:
            return events + [self._no_choices(obj)]
        return events + [Done(self._acc.message())]

    def _no_choices(self, obj: dict) -> Failed:
        """A JSON reply without an answer: an error in another shape, or not an answer at all."""
        for key in ("detail", "message"):
            if obj.get(key):
                return self._api_error({"error": obj[key]})
        excerpt = _clip(self._scrub(json.dumps(obj)))
        return self._fail("protocol", f"the server's reply has no choices: {excerpt}")

    def _http_failure(self) -> Failed:
        body = bytes(self._body)
        detail, param = _describe(self._scrub(body.decode("utf-8", "replace")), self.content_type)
        error = self._fail("http_error", _status_line(self.status, detail), status=self.status)
        error.error.retry = _retry_hint(self.status, detail, param, body)
        return error

    def _fail(self, kind: str, message: str, status: int | None = None) -> Failed:
        self.done = self._failed = True
        return Failed(
            StreamError(kind, self._scrub(message), status=status, partial=self._acc.message())
        )

    def _scrub(self, text: str) -> str:
        """`text` without the known secrets (a server may echo the key it was sent)."""
        return redact(text, self._secrets)


def replay(
    reads: Iterable[bytes], status: int = 200, content_type: str = "text/event-stream"
) -> Message:
    """Fold a recorded body into its Message with the live client's parser; raise StreamError."""
    folder = BodyFolder(status, content_type)
    for read in reads:
        _raise_on_failure(folder.feed(read))
        if folder.done:
            break
    events = folder.finish()
    _raise_on_failure(events)
    return events[-1].message


def _raise_on_failure(events: list) -> None:
    if events and isinstance(events[-1], Failed):
        raise events[-1].error


def _object(data: str) -> dict | str:
    """The JSON object in `data`, or the message saying why there is none."""
    try:
        obj = json.loads(data)
    except ValueError:
        return f"the server sent data that is not JSON: {_clip(data)}"
    except RecursionError:  # the C decoder recurses per level: [[[[... 100,000 deep
        return f"the server sent JSON nested too deeply to read: {_clip(data)}"
    return (
        obj
        if isinstance(obj, dict)
        else f"the server sent JSON that is not an object: {_clip(data)}"
    )


def _provider_error(obj: dict, scrub: Callable[[str], str]) -> str:
    return "the provider reported an error: " + _error_text(obj, scrub)


def _parses(data: str) -> bool:
    return isinstance(_object(data), dict)


def _clip(text: str, width: int = 80) -> str:
    """A one-line excerpt: a 5 MB line of garbage must not become a 5 MB error message."""
    flat = " ".join(text.split())
    return repr(flat[:width] + ("..." if len(flat) > width else ""))


def _error_text(obj: dict, scrub: Callable[[str], str]) -> str:
    """The provider's message, scrubbed, then cut (in that order: a cut key is not found)."""
    error = obj.get("error")
    if isinstance(error, dict):
        message = error.get("message") or error.get("msg") or error
    else:
        message = error
    if message is None or message == "" or message is True:
        return "no message given"
    text = message if isinstance(message, str) else json.dumps(message)
    return scrub(text)[:300]


def _describe(text: str, content_type: str) -> tuple[str, Any]:
    """The provider's message and the `param` it blamed, from an error body of any shape
    (already scrubbed of secrets)."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        obj = None
    if isinstance(obj, dict):
        for key in ("error", "message", "detail"):
            if obj.get(key):
                error = obj.get("error")
                param = error.get("param") if isinstance(error, dict) else None
                return _error_text({"error": obj[key]}, _same), param
    if content_type == "text/html" or text.lstrip()[:1] == "<":
        return "HTML page (a proxy?): " + _html_title(text), None
    return " ".join(text.split())[:200] or "empty body", None


def _html_title(text: str) -> str:
    """The page's title (or its first words), looking only at its start: a page of a million
    "<" must cost nothing, and every step here is linear."""
    head = text[:_PAGE_HEAD]
    lower = head.lower()
    start = lower.find("<title")
    if start >= 0:
        opened = lower.find(">", start)
        end = lower.find("</title", opened)
        if opened >= 0:
            head = head[opened + 1 : end if end >= 0 else len(head)]
    words = _TAG.sub(" ", head)
    return " ".join(words.split())[:120] or "no title"


def _same(text: str) -> str:
    return text


def _status_line(status: int, detail: str) -> str:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    hint = _HINTS.get(status)
    line = f"HTTP {status} {reason}".rstrip() + f": {detail}"
    return f"{line} ({hint})" if hint else line


def _retry_hint(status: int, detail: str, param: Any, body: bytes) -> str | None:
    """Which request change could succeed where this one failed (providers.md §5.2).

    Decided once, here, where the refusal is read. Servers give no code for "I refuse
    stream_options" or "I refuse streaming" (only `param`, sometimes), so their words decide.
    """
    text = body.decode("utf-8", "replace").lower()
    if status in (400, 422, 500) and ("stream_options" in text or "include_usage" in text):
        return "drop_stream_options"  # Mistral 422, Azure AI Foundry 400, Bedrock via LiteLLM 500
    if status == 400 and (param == "stream" or _refuses_streaming(detail.lower())):
        return "non_streaming"
    if status in (400, 413, 422) and any(words in text for words in _CONTEXT_FULL):
        return "trim_context"
    return None


def _refuses_streaming(detail: str) -> bool:
    if "stream" not in detail:
        return False
    return any(w in detail for w in ("not supported", "unsupported", "verified", "not allowed"))
