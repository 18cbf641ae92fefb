"""`-u/--usage`: one line after the answer, tokens in and out, seconds, tokens per second."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ..events import ReasoningDelta, TextDelta, ToolCallStarted

_SHOWN = (TextDelta, ReasoningDelta, ToolCallStarted)


class Clock:
    """When an answer was asked for, when its first piece arrived, and when it ended."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.first: float | None = None
        self.ended: float | None = None

    def saw(self, event: object) -> None:
        """Note the first piece of the answer (text, reasoning or a tool call)."""
        if self.first is None and isinstance(event, _SHOWN):
            self.first = time.monotonic()

    def stop(self) -> None:
        """Note the end (once)."""
        if self.ended is None:
            self.ended = time.monotonic()


def usage_line(
    totals: Mapping[str, Any] | None, detail: Mapping[str, Any] | None, clock: Clock
) -> str:
    """The -u line: tokens in (cached) and out (reasoning) as the server reported them,
    seconds (and when the first token came), tokens per second after the first token."""
    clock.stop()
    assert clock.ended is not None
    seconds = clock.ended - clock.started
    timing = f"{seconds:.1f} s"
    if clock.first is not None:
        timing += f" (first token after {clock.first - clock.started:.1f} s)"
    given = _count(totals, "prompt_tokens")
    made = _count(totals, "completion_tokens")
    if given is None and made is None:
        return f"usage: the server reported no token counts; {timing}"
    cached = _count(_part(detail, "prompt_tokens_details"), "cached_tokens")
    if cached is None:
        cached = _count(detail, "prompt_cache_hit_tokens")  # DeepSeek's name for it
    reasoning = _count(_part(detail, "completion_tokens_details"), "reasoning_tokens")
    tokens_in = f"{given if given is not None else '?'} in"
    if cached:
        tokens_in += f" ({cached} cached)"
    tokens_out = f"{made if made is not None else '?'} out"
    if reasoning:
        tokens_out += f" ({reasoning} reasoning)"
    line = f"usage: {tokens_in}, {tokens_out}; {timing}"
    making = clock.ended - (clock.first if clock.first is not None else clock.started)
    if made and making > 0:
        line += f", {made / making:.1f} tokens/s"
    return line


def _part(usage: Mapping[str, Any] | None, name: str) -> Mapping[str, Any] | None:
    value = (usage or {}).get(name)
    return value if isinstance(value, Mapping) else None


def _count(usage: Mapping[str, Any] | None, name: str) -> int | None:
    """A token count the server reported: a whole number from 0 (anything else is not one)."""
    value = (usage or {}).get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value
