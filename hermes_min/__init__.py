"""hermes_min: stream chat-completion answers from any OpenAI-compatible endpoint."""

from __future__ import annotations

__version__ = "0.1.0"

from .client import ChatClient  # noqa: E402
from .errors import ConfigError, HermesError, StreamError, TelegramError  # noqa: E402
from .events import Done, Failed, ReasoningDelta, TextDelta, ToolCallStarted  # noqa: E402
from .message import Message, ToolCall  # noqa: E402
from .response import replay  # noqa: E402
from .stream import Stream  # noqa: E402

__all__ = [
    "ChatClient",
    "ConfigError",
    "Done",
    "Failed",
    "HermesError",
    "Message",
    "ReasoningDelta",
    "Stream",
    "StreamError",
    "TelegramError",
    "TextDelta",
    "ToolCall",
    "ToolCallStarted",
    "__version__",
    "replay",
]
