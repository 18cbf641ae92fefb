"""The final assistant message a stream folds into, shaped like a non-streaming response."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ToolCall:
    """One function call the model asked for; `arguments` is the JSON text as sent."""

    id: str
    name: str
    arguments: str

    def to_dict(self) -> dict:
        """The `{id, name, arguments}` object of `--json` output."""
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass(frozen=True)
class Message:
    """Everything a chat-completions response said, whichever way it arrived."""

    content: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict | None = None
    model: str | None = None

    def to_dict(self) -> dict:
        """The JSON object `hermes --json` prints."""
        return {
            "content": self.content,
            "reasoning": self.reasoning,
            "tool_calls": [call.to_dict() for call in self.tool_calls],
            "finish_reason": self.finish_reason,
            "usage": self.usage,
            "model": self.model,
        }
