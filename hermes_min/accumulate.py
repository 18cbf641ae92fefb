"""Folds chat.completion.chunk objects into one Message, reporting events as they happen."""

from __future__ import annotations

import json
import uuid
from typing import Any

from .events import ReasoningDelta, TextDelta, ToolCallStarted
from .message import Message, ToolCall


class _Call:
    """A tool call being assembled from fragments."""

    __slots__ = ("id", "name", "parts", "announced", "made_up_id")

    def __init__(self) -> None:
        self.id = ""
        self.made_up_id = ""
        self.name = ""
        self.parts: list[str] = []
        self.announced = False


class Accumulator:
    """Feed it decoded chunks in order; `message()` is the answer so far."""

    def __init__(self) -> None:
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._calls: list[_Call] = []
        self._by_index: dict[int, _Call] = {}
        self.finish_reason: str | None = None
        self._usage: dict | None = None
        self._model: str | None = None

    def feed(self, chunk: dict) -> list:
        """Fold one chunk; return the events it produced."""
        if not self._model and chunk.get("model"):
            self._model = chunk["model"]
        usage = chunk.get("usage")
        if not usage and "x_groq" in chunk:
            usage = (chunk["x_groq"] or {}).get("usage")
        if usage:
            self._usage = usage  # the last non-null wins: running totals and late chunks alike
        choice = _choice_zero(chunk.get("choices"))
        if choice is None:
            return []
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        delta = choice.get("delta") or choice.get("message")
        return self._delta(delta) if delta else []

    def message(self) -> Message:
        """The message as far as it has arrived."""
        calls = [ToolCall(_call_id(c), c.name, "".join(c.parts)) for c in self._calls]
        return Message(
            content="".join(self._content),
            reasoning="".join(self._reasoning),
            tool_calls=calls,
            finish_reason=self.finish_reason,
            usage=self._usage,
            model=self._model,
        )

    def _delta(self, delta: dict) -> list:
        events: list = []
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and isinstance(reasoning, str):  # one field per delta: some send both
            self._reasoning.append(reasoning)
            events.append(ReasoningDelta(reasoning))
        text = delta.get("content")
        if text and isinstance(text, str):
            self._content.append(text)
            events.append(TextDelta(text))
        for fragment in delta.get("tool_calls") or ():
            if isinstance(fragment, dict):
                self._tool_fragment(fragment, events)
        return events

    def _tool_fragment(self, fragment: dict, events: list) -> None:
        function = fragment.get("function") or {}
        name = function.get("name") or ""
        new_id = fragment.get("id") or ""
        call = self._target(_index(fragment.get("index")), name, new_id)
        if new_id and not call.id:
            call.id = (
                new_id  # set once: some servers repeat it, LM Studio sends a new one each time
            )
        if name and name != call.name:
            call.name += name  # a repeated name is not appended
        arguments = function.get("arguments")
        if isinstance(arguments, (dict, list)):
            arguments = json.dumps(arguments, separators=(",", ":"))
        if arguments:
            call.parts.append(arguments)
        if call.name and not call.announced:
            call.announced = True
            events.append(ToolCallStarted(self._calls.index(call), call.name))

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
        call = _Call()
        self._calls.append(call)
        if index is not None:
            self._by_index[index] = call
        return call


def _choice_zero(choices: Any) -> dict | None:
    """Choice 0 (a missing `index` counts as 0: Cloudflare omits it)."""
    if not choices or not isinstance(choices, list):
        return None
    first = choices[0]
    if isinstance(first, dict) and first.get("index", 0) in (0, "0"):
        return first  # nearly always: servers send one choice
    for choice in choices:
        if isinstance(choice, dict) and choice.get("index", 0) in (0, "0"):
            return choice
    return None


def _index(value: Any) -> int | None:
    """A tool call's `index`; some gateways send it as a digit string."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _call_id(call: _Call) -> str:
    """The call's id, or a stable made-up one: the API pairs each result with an id."""
    if call.id:
        return call.id
    if not call.made_up_id:
        call.made_up_id = "call_" + uuid.uuid4().hex[:24]
    return call.made_up_id
