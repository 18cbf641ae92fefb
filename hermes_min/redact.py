"""Keeps secrets (API keys, bot tokens, URL passwords) out of every message we print or log."""

from __future__ import annotations

import re
from collections.abc import Iterable

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
