"""Folds chat.completion.chunk objects into one Message, reporting events as they happen.

Chunks come from a server, so every field may have any JSON type. A value of a near type is
taken as data (a numeric tool-call id becomes a string, an object of arguments becomes its
JSON text); a shape nothing can be made of raises StreamError(protocol) naming the field.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from .errors import StreamError
from .events import ReasoningDelta, TextDelta, ToolCallStarted
from .message import Message, ToolCall

MAX_ANSWER = 32 * 1024 * 1024  # characters of text, reasoning and arguments in one answer
MAX_CALLS = 128  # tool calls in one response; a model that asks for more is broken
_CALL_COST = 256  # characters a tool call is charged against MAX_ANSWER, whatever its size
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Call:
    """A tool call being assembled from fragments."""

    __slots__ = ("id", "name", "parts", "announced", "made_up_id", "position")

    def __init__(self, position: int) -> None:
        self.position = position  # in creation order
        self.id = ""
        self.made_up_id = ""
        self.name = ""
        self.parts: list[str] = []
        self.announced = False


class Accumulator:
    """Feed it decoded chunks in order; `message()` is the answer so far."""

    def __init__(self, max_answer: int = MAX_ANSWER) -> None:
        self._content = _Text()
        self._reasoning = _Text()
        self._calls: list[_Call] = []
        self._by_index: dict[int, _Call] = {}
        self.finish_reason: str | None = None
        self._usage: dict | None = None
        self._model: str | None = None
        self._size = 0
        self._max = max_answer

    def feed(self, chunk: dict) -> list:
        """Fold one chunk; return the events it produced (StreamError if it is unusable)."""
        if not self._model:
            model = chunk.get("model")
            if model and type(model) is str:
                self._model = model
        usage = chunk.get("usage")
        if not usage and "x_groq" in chunk and isinstance(chunk["x_groq"], dict):
            usage = chunk["x_groq"].get("usage")
        if usage and type(usage) is dict:
            self._usage = usage  # the last non-null wins: running totals and late chunks alike
        choice = _choice_zero(chunk.get("choices"))
        if choice is None:
            return []
        reason = choice.get("finish_reason")
        if reason and isinstance(reason, str):
            self.finish_reason = reason
        delta = choice.get("delta") or choice.get("message")
        if not delta:
            return []
        if not isinstance(delta, dict):
            raise _shape("choices[0].delta", delta, "an object")
        return self._delta(delta)

    def message(self) -> Message:
        """The message as far as it has arrived."""
        calls = [
            ToolCall(_call_id(c), _valid(c.name), _valid("".join(c.parts))) for c in self._calls
        ]
        return Message(
            content=self._content.text(),
            reasoning=self._reasoning.text(),
            tool_calls=calls,
            finish_reason=self.finish_reason,
            usage=self._usage,
            model=self._model,
        )

    def _delta(self, delta: dict) -> list:
        events: list = []
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning:  # one field per delta: some servers send both
            reasoning = self._reasoning.add(self._grown(_text(reasoning)))
            if reasoning:
                events.append(ReasoningDelta(reasoning))
        text = delta.get("content")
        if text:
            if type(text) is not str:
                text = _text(text)
            self._size += len(text)  # the hot path, inlined: one delta per chunk
            if self._size > self._max:
                self._charge(0)  # raises, naming the cap
            content = self._content
            if not content.held and text.isascii():
                content.pieces.append(text)
            else:
                text = content.add(text)
            if text:
                events.append(TextDelta(text))
        fragments = delta.get("tool_calls")
        if fragments:
            if not isinstance(fragments, (list, tuple)):
                raise _shape("delta.tool_calls", fragments, "a list")
            for fragment in fragments:
                if isinstance(fragment, dict):
                    self._tool_fragment(fragment, events)
        return events

    def _grow(self, piece: str) -> None:
        self._charge(len(piece))

    def _grown(self, piece: str) -> str:
        """`piece`, charged against the answer's cap (the hot path: one call per delta)."""
        self._size += len(piece)
        if self._size > self._max:
            self._charge(0)  # raises, with the message
        return piece

    def _charge(self, size: int) -> None:
        self._size += size
        if self._size > self._max:
            raise StreamError(
                "too_large",
                f"the answer grew past {self._max // 2**20} Mi characters; stopped reading "
                "(a cap that keeps memory bounded)",
            )

    def _tool_fragment(self, fragment: dict, events: list) -> None:
        function = fragment.get("function") or {}
        if not isinstance(function, dict):
            raise _shape("tool_calls[].function", function, "an object")
        name = function.get("name") or ""
        if not isinstance(name, str):
            raise _shape("tool_calls[].function.name", name, "a string")
        new_id = _call_id_text(fragment.get("id"))
        call = self._target(_index(fragment.get("index")), name, new_id)
        if new_id and not call.id:
            call.id = (
                new_id  # set once: some servers repeat it, LM Studio sends a new one each time
            )
        if name and name != call.name:
            self._grow(name)
            call.name += name  # a repeated name is not appended
        arguments = _arguments(function.get("arguments"))
        if arguments:
            self._grow(arguments)
            call.parts.append(arguments)
        if call.name and not call.announced:
            call.announced = True
            events.append(ToolCallStarted(call.position, _valid(call.name)))

    def _target(self, index: int | None, name: str, new_id: str) -> _Call:
        if index is None:
            last = self._calls[-1] if self._calls else None
            if last is None or name or (new_id and new_id != last.id):
                return self._new_call(None)
            return last
        call = self._by_index.get(index)
        if call is None or (name and new_id and call.id and new_id != call.id):
            return self._new_call(index)
        return call

    def _new_call(self, index: int | None) -> _Call:
        if len(self._calls) >= MAX_CALLS:
            raise StreamError(
                "too_large", f"the model asked for more than {MAX_CALLS} tool calls in one reply"
            )
        self._charge(_CALL_COST)
        call = _Call(len(self._calls))
        self._calls.append(call)
        if index is not None:
            self._by_index[index] = call
        return call


class _Text:
    """Text that arrives in pieces, kept valid: a UTF-16 surrogate pair that a server split
    across two chunks (JSON escapes it as "\\ud83d" then "\\ude00") is joined again, and a
    surrogate with no partner becomes U+FFFD, so no encoder downstream ever fails."""

    __slots__ = ("pieces", "held")

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.held = ""  # a high surrogate at the end of the last piece, waiting for its pair

    def add(self, piece: str) -> str:
        """Keep a piece; return the part of it that can be shown now."""
        if not self.held and piece.isascii():  # nearly always: nothing to pair or replace
            self.pieces.append(piece)
            return piece
        if not piece:
            return piece
        piece = self.held + piece
        self.held = ""
        if "\ud800" <= piece[-1] <= "\udbff":
            piece, self.held = piece[:-1], piece[-1]
        piece = _valid(piece)
        if piece:
            self.pieces.append(piece)
        return piece

    def text(self) -> str:
        """All of it (a surrogate still held is U+FFFD)."""
        return "".join(self.pieces) + _valid(self.held)


def _valid(text: str) -> str:
    """`text` with surrogate pairs joined and lone surrogates as U+FFFD."""
    if text.isascii() or not _SURROGATE.search(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _choice_zero(choices: Any) -> dict | None:
    """Choice 0 (a missing `index` counts as 0: Cloudflare omits it)."""
    if not choices:
        return None
    if not isinstance(choices, list):
        raise _shape("choices", choices, "a list")
    first = choices[0]
    if isinstance(first, dict) and first.get("index", 0) in (0, "0"):
        return first  # nearly always: servers send one choice
    for choice in choices:
        if isinstance(choice, dict) and choice.get("index", 0) in (0, "0"):
            return choice
    return None


def _text(value: Any) -> str:
    """A delta's text: a string, or the text parts of a list (Mistral sends content parts)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = (p.get("text") for p in value if isinstance(p, dict))
        return "".join(p for p in parts if isinstance(p, str))
    return ""


def _arguments(value: Any) -> str:
    """A fragment of a call's arguments as JSON text (some servers send the object itself)."""
    if value is None or isinstance(value, str):
        return value or ""
    return json.dumps(value, separators=(",", ":"))


def _call_id_text(value: Any) -> str:
    """A call's id as a string: the API pairs results with ids, and ids are strings after this."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return ""


def _index(value: Any) -> int | None:
    """A tool call's `index`; some gateways send it as a digit string."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdecimal() and value.isascii() and len(value) <= 9:
        return int(value)
    return None


def _call_id(call: _Call) -> str:
    """The call's id, or a stable made-up one: the API pairs each result with an id."""
    if call.id:
        return call.id
    if not call.made_up_id:
        call.made_up_id = "call_" + uuid.uuid4().hex[:24]
    return call.made_up_id


def _shape(field: str, value: Any, wanted: str) -> StreamError:
    """The protocol error for a field of the wrong type, naming both."""
    kind = {str: "a string", int: "a number", float: "a number", bool: "true/false"}
    got = kind.get(type(value), {list: "a list", dict: "an object"}.get(type(value), "null"))
    return StreamError("protocol", f"the server sent a chunk whose {field} is {got}, not {wanted}")
