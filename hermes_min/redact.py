"""Keeps secrets (API keys, bot tokens, URL passwords) out of every message we print or log."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace

from .message import Message, ToolCall

_PATTERNS = (
    re.compile(r"\bsk-[A-Za-z0-9_*\-]{6,}"),  # OpenAI-style keys, also as providers mask them
    re.compile(r"\bbot\d{5,}:[A-Za-z0-9_\-]{20,}"),  # a Bot API URL's path segment
    re.compile(r"(?<=://)[^/@\s:]+:[^/@\s]+(?=@)"),  # user:password@ in a URL
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with each known secret, and anything shaped like one, replaced by `***`."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    for pattern in _PATTERNS:
        text = pattern.sub("***", text)
    return text


def redact_message(message: Message, secrets: Iterable[str] = ()) -> Message:
    """The message with every text field redacted (a server may echo the key anywhere)."""
    secrets = tuple(secrets)
    calls = [
        ToolCall(redact(c.id, secrets), redact(c.name, secrets), redact(c.arguments, secrets))
        for c in message.tool_calls
    ]
    return replace(
        message,
        content=redact(message.content, secrets),
        reasoning=redact(message.reasoning, secrets),
        tool_calls=calls,
        model=redact(message.model, secrets) if message.model else message.model,
    )
