"""Fits a conversation into the model's context: the oldest whole turns go first.

Tokens are estimated from characters (no tokenizer ships with hermes), and the estimate is
calibrated by the `prompt_tokens` a server reports for what was actually sent.
"""

from __future__ import annotations

import json

CHARS_PER_TOKEN = 4.0  # English prose on common tokenizers; calibration corrects it
_PER_MESSAGE = 4  # tokens of role and framing around each message (OpenAI's cookbook count)
_ANSWER_SHARE = 0.25  # of the context kept free for the answer


class TokenEstimate:
    """Characters to tokens, learning the ratio from what servers report."""

    def __init__(self, chars_per_token: float = CHARS_PER_TOKEN) -> None:
        self.chars_per_token = chars_per_token

    def tokens(self, messages: list[dict]) -> int:
        """About how many prompt tokens `messages` cost."""
        chars = sum(_chars(m) for m in messages)
        return int(chars / self.chars_per_token) + _PER_MESSAGE * len(messages)

    def calibrate(self, messages: list[dict], prompt_tokens: object) -> None:
        """Learn from the server's count of the prompt that was `messages`."""
        if not isinstance(prompt_tokens, int) or isinstance(prompt_tokens, bool):
            return
        text_tokens = prompt_tokens - _PER_MESSAGE * len(messages)
        if text_tokens <= 0:
            return
        ratio = sum(_chars(m) for m in messages) / text_tokens
        # Clamped: a server that counts oddly (cached tokens, images) must not make the
        # estimate absurd; 0.5 covers CJK text on any tokenizer, 8 long identifiers.
        self.chars_per_token = min(max(ratio, 0.5), 8.0)


def prompt_budget(context_tokens: int) -> int | None:
    """The prompt tokens a context window of `context_tokens` leaves room for (0: no bound)."""
    return int(context_tokens * (1 - _ANSWER_SHARE)) if context_tokens else None


def fit(
    messages: list[dict], budget: int | None, estimate: TokenEstimate, *, keep_last: int
) -> list[dict]:
    """`messages` without their oldest whole turns, until they cost at most `budget` tokens.

    The system prompt stays. A turn (a user message and every assistant and tool message
    after it) goes whole, so a tool call never loses its result. The last `keep_last`
    messages (the turn in progress) always stay, even when they alone are too long: the
    server then says so.
    """
    if budget is None:
        return messages
    head = [m for m in messages[:1] if m.get("role") == "system"]
    body = messages[len(head) :]
    fixed = body[len(body) - keep_last :] if keep_last else []
    turns = _turns(body[: len(body) - len(fixed)])
    while turns and estimate.tokens(head + _flat(turns) + fixed) > budget:
        turns.pop(0)
    return head + _flat(turns) + fixed


def _turns(messages: list[dict]) -> list[list[dict]]:
    """The messages grouped by turn: each starts at a user message."""
    turns: list[list[dict]] = []
    for message in messages:
        if message.get("role") == "user" or not turns:
            turns.append([])
        turns[-1].append(message)
    return turns


def _flat(turns: list[list[dict]]) -> list[dict]:
    return [message for turn in turns for message in turn]


def _chars(message: dict) -> int:
    """The characters of a message that the model reads."""
    content = message.get("content")
    size = len(content) if isinstance(content, str) else len(json.dumps(content or ""))
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        size += len(str(function.get("name", ""))) + len(str(function.get("arguments", "")))
    return size
