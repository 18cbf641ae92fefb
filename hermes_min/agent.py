"""The agent: stream a response, run the tools it asks for, stream again, until an answer."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable

from .context import TokenEstimate, fit, prompt_budget
from .errors import StreamError
from .events import (
    Done,
    Failed,
    ReasoningDelta,
    SegmentBreak,
    TextDelta,
    ToolCallStarted,
    ToolProgress,
)
from .message import Message, ToolCall
from .think import ThinkSplitter, split_lone_closer
from .tools import Tool, ToolResult, run_tool

if TYPE_CHECKING:
    from .client import ChatClient
    from .stream import Sink, Stream

log = logging.getLogger(__name__)
_SHOWN = (TextDelta, ReasoningDelta, ToolCallStarted)


class Agent:
    """Runs one user turn at a time against a ChatClient, with tools and an optional fallback."""

    def __init__(
        self,
        client: ChatClient,
        *,
        tools: Sequence[Tool] = (),
        max_turns: int = 8,
        tool_timeout: float = 60.0,
        strip_think_tags: bool = True,
        fallback: ChatClient | None = None,
        stream_delta_callback: Callable[[str], None] | None = None,
        on_first_delta: Callable[[], None] | None = None,
        record: Sink | None = None,
        context_tokens: int = 0,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.client = client
        self.context_tokens = context_tokens  # the model's window; 0: send everything
        self.estimate = TokenEstimate()  # learns chars per token from the server's counts
        self.secrets = tuple(secrets)  # masked in every tool result the model gets
        self.record = record  # every response body, raw, one after another
        self.fallback = fallback
        self.tools = {t.name: t for t in tools}
        self.max_turns = max_turns
        self.tool_timeout = tool_timeout
        self.strip_think_tags = strip_think_tags
        self.stream_delta_callback = stream_delta_callback
        self.on_first_delta = on_first_delta

    def turn(self, messages: list[dict], *, model: str | None = None) -> Turn:
        """Start a turn for `messages` (the conversation so far, ending with the user's), on
        `model` (else the client's own; a fallback keeps its own)."""
        return Turn(self, list(messages), model=model)


class Turn:
    """One user turn: iterate for events; `new_messages` is what the agent added."""

    def __init__(self, agent: Agent, messages: list[dict], *, model: str | None = None) -> None:
        self.agent = agent
        self._model = model  # asked of the primary client
        self.new_messages: list[dict] = []
        self.usage: dict | None = None
        self.model: str | None = None
        self._history = messages
        self._cancel = threading.Event()
        self._stream: Stream | None = None
        self._final: Done | Failed | None = None
        self._shown_text: list[str] = []  # this response's visible text, for a partial
        self._sent: list[dict] = []  # the messages of the request in flight
        self._squeeze: int | None = None  # prompt tokens after a "context too long" refusal
        self._open = False  # a response is streaming: its text is not in new_messages yet
        self._events = self._run()

    def __iter__(self) -> Iterator:
        for event in self._events:
            if isinstance(event, (Done, Failed)):
                self._final = event
            yield event

    def result(self) -> Message:
        """Drain the turn; the final answer, or its StreamError (with `.partial`)."""
        for _ in self:
            pass
        if self._final is None:  # the iteration was cut by a signal: it was interrupted
            self._final = Failed(StreamError("interrupted", "interrupted", partial=self._partial()))
        if isinstance(self._final, Failed):
            raise self._final.error
        return self._final.message

    @property
    def completed(self) -> bool:
        """Whether the turn ended with an answer (not an error or an interrupt)."""
        return isinstance(self._final, Done)

    @property
    def interrupted(self) -> bool:
        """Whether interrupt() was called."""
        return self._cancel.is_set()

    def interrupt(self) -> None:
        """Stop now, from any thread: the stream or the running tool returns at once."""
        self._cancel.set()
        if self._stream is not None:
            self._stream.interrupt()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the current stream's worker to end."""
        return self._stream.join(timeout) if self._stream is not None else True

    def close(self) -> None:
        """Interrupt if still running; safe to call twice."""
        if self._final is None:
            self.interrupt()
        if self._stream is not None:
            self._stream.close()
        self._events.close()

    def record(self) -> list[dict]:
        """The messages to store: what the agent added, plus a partial answer if cut."""
        if isinstance(self._final, Done) or not (self._open and self._shown_text):
            return list(self.new_messages)
        return [*self.new_messages, {"role": "assistant", "content": "".join(self._shown_text)}]

    def __enter__(self) -> Turn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- the loop

    def _run(self) -> Iterator:
        message = None
        for _ in range(self.agent.max_turns):
            message = yield from self._respond()
            if message is None:
                return
            self.new_messages.append(_assistant(message))
            # Tools requested = tool calls present, whatever finish_reason says. With no
            # tools to run, the calls are the answer (as `--json` reports them).
            if not message.tool_calls or not self.agent.tools:
                yield Done(message)
                return
            yield SegmentBreak()
            if not (yield from self._call_tools(message.tool_calls)):
                return
        limit = self.agent.max_turns
        yield Failed(
            StreamError(
                "max_turns",
                f"stopped after {limit} rounds of tool calls without an answer (agent.max_turns)",
                partial=message,
            )
        )

    def _respond(self) -> Iterator:
        """Stream one response; return its Message, or None after yielding Failed."""
        self._shown_text = []
        error: StreamError | None = None
        for client in self._clients():
            if self._cancel.is_set():
                break
            if error is not None:
                log.warning("%s; trying provider.fallback", error)
            outcome = yield from self._stream_from(client)
            if isinstance(outcome, StreamError) and outcome.retry == "trim_context":
                outcome = yield from self._squeezed(client, outcome)
            if not isinstance(outcome, StreamError):
                return outcome  # the Message, or None once Failed was yielded
            error = outcome  # nothing was shown: the fallback may do better
        if self._cancel.is_set() or error is None:
            error = StreamError("interrupted", "interrupted", partial=self._partial())
        yield Failed(error)
        return None

    def _squeezed(self, client: ChatClient, error: StreamError) -> Iterator:
        """The server said the prompt does not fit: once, send half of what was sent."""
        if self._squeeze is not None:
            return error
        self._squeeze = self.agent.estimate.tokens(self._sent) // 2
        log.warning("%s; trying once more with less of the conversation", error)
        return (yield from self._stream_from(client))

    def _request(self) -> list[dict]:
        """The messages to send: the conversation, its oldest turns left out to fit."""
        budget = (
            prompt_budget(self.agent.context_tokens) if self._squeeze is None else self._squeeze
        )
        keep = 1 + len(self.new_messages)  # the user's message and this turn's answers
        return fit(self._history + self.new_messages, budget, self.agent.estimate, keep_last=keep)

    def _clients(self) -> list[ChatClient]:
        return [self.agent.client] + ([self.agent.fallback] if self.agent.fallback else [])

    def _stream_from(self, client: ChatClient) -> Iterator:
        """The Message; the StreamError if nothing was shown yet; None after yielding Failed."""
        splitter = ThinkSplitter() if self.agent.strip_think_tags else None
        thought: list[str] = []
        first, tool_seen = True, False
        self._sent = messages = self._request()
        self._open = True
        model = self._model if client is self.agent.client else None
        self._stream = client.stream(
            messages, tools=self._tool_schemas(), record=self.agent.record, model=model
        )
        if self._cancel.is_set():  # interrupt() came between the check and this stream
            self._stream.interrupt()
        for event in self._stream:
            kind = type(event)
            if kind is Done:
                yield from self._pieces(splitter.flush() if splitter else [], thought, tool_seen)
                return self._finished(event.message, thought)
            if kind is Failed:
                return (yield from self._failed(event.error, first))
            if first and kind in _SHOWN and self.agent.on_first_delta:
                self.agent.on_first_delta()
            first = first and kind not in _SHOWN
            tool_seen = tool_seen or kind is ToolCallStarted
            if kind is TextDelta and splitter is not None and not splitter.passing:
                yield from self._pieces(splitter.feed(event.text), thought, tool_seen)
                continue
            if kind is TextDelta:  # the common case: the event goes out as it came
                self._shown_text.append(event.text)
                if not tool_seen and self.agent.stream_delta_callback:
                    self.agent.stream_delta_callback(event.text)
            yield event
        return None

    def _pieces(self, pieces: list, thought: list, tool_seen: bool) -> Iterator:
        for kind, piece in pieces:
            if kind == "reasoning":
                thought.append(piece)
                yield ReasoningDelta(piece)
                continue
            self._shown_text.append(piece)
            if not tool_seen and self.agent.stream_delta_callback:
                self.agent.stream_delta_callback(piece)
            yield TextDelta(piece)

    def _finished(self, message: Message, thought: list[str]) -> Message:
        self._open = False
        self._add_usage(message.usage)
        self.agent.estimate.calibrate(self._sent, (message.usage or {}).get("prompt_tokens"))
        self.model = message.model or self.model
        if not self.agent.strip_think_tags:
            return message
        content, reasoning = "".join(self._shown_text), message.reasoning + "".join(thought)
        lone = None if thought else split_lone_closer(content)
        if lone is not None:
            reasoning, content = reasoning + lone[0], lone[1]
        return replace(message, content=content, reasoning=reasoning)

    def _failed(self, error: StreamError, nothing_shown: bool) -> Iterator:
        if nothing_shown and error.kind != "interrupted" and not self._cancel.is_set():
            return error  # the caller may try the fallback provider
        error.partial = self._partial(error.partial) if self._shown_text else error.partial
        yield Failed(error)
        return None

    def _call_tools(self, calls: list[ToolCall]) -> Iterator:
        """Run each call in order, appending results; False (after Failed) if interrupted."""
        for position, call in enumerate(calls):
            yield ToolProgress(call.name, call.id)
            result = self._run_tool(call)
            if result.interrupted or self._cancel.is_set():
                # Every call gets its result, or the history could not be sent again.
                for unanswered in calls[position:]:
                    self.new_messages.append(_tool_message(unanswered, "interrupted by the user"))
                yield Failed(StreamError("interrupted", "interrupted", partial=self._partial()))
                return False
            detail = "" if result.ok else result.content.splitlines()[0][:200]
            yield ToolProgress(call.name, call.id, ok=result.ok, detail=detail)
            self.new_messages.append(_tool_message(call, result.content))
        return True

    def _run_tool(self, call: ToolCall) -> ToolResult:
        tool = self.agent.tools.get(call.name)
        if tool is None:
            names = ", ".join(sorted(self.agent.tools)) or "none"
            return ToolResult(
                False, f"error: there is no tool named {call.name!r} (available: {names})"
            )
        return run_tool(
            tool,
            call.arguments,
            timeout=self.agent.tool_timeout,
            cancel=self._cancel,
            secrets=self.agent.secrets,
        )

    def _tool_schemas(self) -> list[dict] | None:
        return [t.schema() for t in self.agent.tools.values()] or None

    def _partial(self, received: Message | None = None) -> Message:
        """What the user saw of this turn, with what the server said of itself (model, usage)."""
        received = received or Message()
        return Message(
            content="".join(self._shown_text),
            reasoning=received.reasoning,
            tool_calls=received.tool_calls,
            finish_reason=received.finish_reason,
            usage=self.usage or received.usage,
            model=received.model or self.model,
        )

    def _add_usage(self, usage: dict | None) -> None:
        if usage:
            self.usage = _summed(self.usage or {}, usage)


def _summed(total: dict, more: dict, depth: int = 0) -> dict:
    """Usage counts added up, nested ones too (prompt_tokens_details.cached_tokens, ...)."""
    out = dict(total)
    for key, value in more.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            before = out.get(key, 0)
            out[key] = (before if isinstance(before, (int, float)) else 0) + value
        elif isinstance(value, dict) and depth < 2:  # servers nest one level; bounded anyway
            before = out.get(key)
            out[key] = _summed(before if isinstance(before, dict) else {}, value, depth + 1)
    return out


def _assistant(message: Message) -> dict:
    """The assistant message as the API expects it back in the next request."""
    out: dict[str, Any] = {"role": "assistant", "content": message.content or None}
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    elif out["content"] is None:
        out["content"] = ""
    return out


def _tool_message(call: ToolCall, content: str) -> dict:
    return {"role": "tool", "tool_call_id": call.id, "content": content}
