"""hermes_min: stream chat-completion answers from any OpenAI-compatible endpoint."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Names load on first use (PEP 562), so `hermes --version` does not pay for requests.
_EXPORTS = {
    "Agent": "agent",
    "ChatClient": "client",
    "Conversation": "conversation",
    "ConfigError": "errors",
    "Done": "events",
    "Failed": "events",
    "HermesError": "errors",
    "Message": "message",
    "ReasoningDelta": "events",
    "Stream": "stream",
    "StreamError": "errors",
    "TelegramError": "errors",
    "SegmentBreak": "events",
    "TextDelta": "events",
    "ToolCall": "message",
    "ToolCallStarted": "events",
    "ToolProgress": "events",
    "Turn": "agent",
    "tool": "tools",
    "load_config": "config",
    "replay": "response",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hermes_min' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
