"""Moves <think>...</think> blocks out of an answer's text into its reasoning.

Models served without a reasoning parser (llama.cpp `--reasoning-format none`, vLLM
without `--reasoning-parser`) put their reasoning in the content, wrapped in tags. A tag
opens a block only where nothing but whitespace precedes it in the response (so a tag
mentioned in prose is left alone); tags split across deltas are held back until whole.
"""

from __future__ import annotations

_NAMES = ("think", "thinking", "thought", "reasoning")
_OPENERS = tuple(f"<{name}>" for name in _NAMES)


class ThinkSplitter:
    """Feed it text deltas in order; it returns ("text" | "reasoning", piece) pairs."""

    def __init__(self) -> None:
        self._held = ""  # a possible tag cut by the end of a delta
        self._closer: str | None = None  # set while inside a block
        self._leading = True  # only whitespace so far (outside blocks)
        self._space: list[str] = []  # that whitespace, held: dropped if a block follows
        self._blocks = 0  # how many blocks were opened (0: none, a lone closer may follow)

    @property
    def passing(self) -> bool:
        """Past the start, no block open, nothing held: from now on text passes unchanged."""
        return not self._leading and self._closer is None and not self._held

    def feed(self, text: str) -> list[tuple[str, str]]:
        """Split one delta."""
        out: list[tuple[str, str]] = []
        rest = self._held + text
        self._held = ""
        while rest:
            rest = self._inside(rest, out) if self._closer else self._outside(rest, out)
        return [(kind, piece) for kind, piece in out if piece]

    def flush(self) -> list[tuple[str, str]]:
        """The response ended: whatever was held back, as what it was part of."""
        held, self._held = self._held, ""
        if not self._closer:
            held = ("" if self._blocks else "".join(self._space)) + held
        self._space = []
        return [("reasoning" if self._closer else "text", held)] if held else []

    def _inside(self, rest: str, out: list) -> str:
        assert self._closer is not None
        end = rest.lower().find(self._closer)
        if end < 0:
            keep = _partial_suffix(rest, (self._closer,))
            out.append(("reasoning", rest[: len(rest) - keep]))
            self._held = rest[len(rest) - keep :]
            return ""
        out.append(("reasoning", rest[:end]))
        after = rest[end + len(self._closer) :]
        self._closer = None
        self._leading = True  # a second block may follow the first
        return after

    def _outside(self, rest: str, out: list) -> str:
        if not self._leading:
            out.append(("text", rest))
            return ""
        stripped = rest.lstrip()
        self._space.append(rest[: len(rest) - len(stripped)])  # a list: linear, not quadratic
        lower = stripped.lower()
        for opener in _OPENERS:
            if lower.startswith(opener):
                self._space, self._blocks = [], self._blocks + 1
                self._closer = "</" + opener[1:]
                return stripped[len(opener) :]
        if stripped and any(o.startswith(lower) for o in _OPENERS):
            self._held = stripped  # "<thi" so far: wait for the rest of the tag
            return ""
        if stripped:
            # Whitespace before the answer stays, unless it only separated it from a block.
            out.append(("text", ("" if self._blocks else "".join(self._space)) + stripped))
            self._leading, self._space = False, []
        return ""


def split_lone_closer(content: str) -> tuple[str, str] | None:
    """(reasoning, answer) when `content` is "reasoning</think>answer" with no opening tag.

    Chat templates of some reasoning models put `<think>` in the prompt, so the reply
    starts inside the block. Live deltas of such a reply were shown as they came; this
    cleans the final message and what is stored.
    """
    lower = content.lower()
    for name in _NAMES:
        closer = f"</{name}>"
        end = lower.find(closer)
        if end > 0 and f"<{name}>" not in lower[:end]:
            return content[:end].strip(), content[end + len(closer) :].lstrip()
    return None


def _partial_suffix(text: str, tags: tuple[str, ...]) -> int:
    """How many trailing characters of `text` could begin one of `tags`."""
    lower = text.lower()
    for size in range(min(len(text), max(len(t) for t in tags) - 1), 0, -1):
        if any(tag.startswith(lower[-size:]) for tag in tags):
            return size
    return 0
