"""The events a stream puts on its queue: the one vocabulary shared by every consumer."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from .errors import StreamError
from .message import Message


@dataclass(frozen=True)
class TextDelta:
    """A piece of the answer's text, in order."""

    text: str

    def to_dict(self) -> dict:
        """One `--events` line."""
        return {"type": "text", "text": self.text}


@dataclass(frozen=True)
class ReasoningDelta:
    """A piece of the model's reasoning (never part of the answer)."""

    text: str

    def to_dict(self) -> dict:
        """One `--events` line."""
        return {"type": "reasoning", "text": self.text}


@dataclass(frozen=True)
class ToolCallStarted:
    """The model began a tool call; `index` is its position in creation order."""

    index: int
    name: str

    def to_dict(self) -> dict:
        """One `--events` line."""
        return {"type": "tool_call", "index": self.index, "name": self.name}


@dataclass(frozen=True)
class SegmentBreak:
    """The model called tools: the text that follows is a new segment, below the tool notes."""

    def to_dict(self) -> dict:
        """One `--events` line."""
        return {"type": "segment_break"}


@dataclass(frozen=True)
class ToolProgress:
    """A tool started (`ok` is None) or ended (`ok` says how; `detail` says why not)."""

    name: str
    call_id: str
    ok: bool | None = None
    detail: str = ""

    @property
    def started(self) -> bool:
        """Whether this is the start of the call."""
        return self.ok is None

    def to_dict(self) -> dict:
        """One `--events` line."""
        state = "start" if self.ok is None else ("ok" if self.ok else "error")
        return {
            "type": "tool",
            "name": self.name,
            "id": self.call_id,
            "state": state,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Done:
    """The response ended normally; `message` is the whole of it."""

    message: Message

    def to_dict(self) -> dict:
        """One `--events` line."""
        return {"type": "done", "message": self.message.to_dict()}


@dataclass(frozen=True)
class Failed:
    """The response ended in an error; `error.partial` holds what arrived before it."""

    error: StreamError

    def to_dict(self) -> dict:
        """One `--events` line."""
        partial = self.error.partial
        return {
            "type": "error",
            "error": self.error.to_dict(),
            "partial": partial.to_dict() if partial is not None else None,
        }


class Answer(Protocol):
    """What yields these events: a Stream, or an agent's Turn."""

    def __iter__(self) -> Iterator[object]: ...

    def interrupt(self) -> None: ...

    def result(self) -> Message: ...
