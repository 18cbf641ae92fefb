"""Cut a rendered Telegram message into parts that fit, and show what a part displays.

Sizes are Telegram's: UTF-16 code units. A cut never falls inside an escape, an entity,
a tag or a surrogate pair, and entities open at a cut are closed at the end of one part
and re-opened at the start of the next, so every part parses on its own.
"""

from __future__ import annotations

import html
import re
from itertools import accumulate
from typing import NamedTuple

__all__ = ["interim", "split", "utf16_len", "visible"]

#: Interim frames keep this many UTF-16 units below the limit (cursor not included).
INTERIM_MARGIN = 100


# ---------------------------------------------------------------- public API


def utf16_len(text: str) -> int:
    """Length of `text` in UTF-16 code units, the unit of Telegram's 4096 limit."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def split(rendered: str, mode: str | None, limit: int = 4096) -> list[str]:
    """Cut a rendered message into parts of at most `limit` UTF-16 units, each parseable alone.

    Cuts prefer a blank line, then a line break, then a space (in the second half of the
    room, else anywhere), and avoid links; entities open at a cut are closed at the end of
    the part and re-opened at the start of the next. Trailing whitespace is dropped
    (Telegram trims it anyway), so "" gives []. Sizes include markup, an over-estimate.
    ValueError if `limit` can't hold one character with the markup around it (a
    4000-unit link URL, say): send `split(render_plain(...), None)` then.
    """
    toks = _tokens(rendered, mode)
    while toks and _is_space(toks[-1]):
        toks.pop()
    stacks = _stacks(toks)
    ends = list(accumulate((utf16_len(t.raw) for t in toks), initial=0))
    sizes = {id(s): utf16_len(_close(s)) for s in stacks}
    shut = [sizes[id(s)] for s in stacks]  # what closing the entities open there costs
    parts: list[str] = []
    start = 0
    while start < len(toks):
        end = _cut(toks, stacks, ends, shut, start, limit)
        parts.append(_part(toks, stacks, start, end))
        start = end
    return parts


def interim(text: str, cursor: str, limit: int = 4096) -> str:
    """The frame shown while streaming: the tail of `text` as plain text, then `cursor`.

    The tail is the last part `split(text, None, ...)` gives, so what the preview shows is
    what will stay once earlier parts become their own messages (the start of a long answer
    is never shown twice). The result is at most `limit - 100` UTF-16 units, and no parse
    mode is needed, so it can never fail to parse. `text` is shown as given: pass
    `render_plain(markdown)` for a preview without Markdown markup.
    """
    room = limit - INTERIM_MARGIN - utf16_len(cursor)
    if room < 2:  # one astral character needs two units
        raise ValueError(f"limit {limit} leaves no room for text")
    parts = split(text, None, room)
    return (parts[-1] if parts else "") + cursor


def visible(rendered: str, mode: str | None, *, urls: bool = False) -> str:
    """The text Telegram shows for a rendered message: markup dropped, escapes undone.

    A link shows only its label, unless `urls`: then "label (url)", as `render_plain`
    writes it (the plain-text fallback must not lose a link's target).
    """
    out: list[str] = []
    opened: list[_Tok] = []
    for tok in _tokens(rendered, mode):
        if tok.kind == "text":
            out.append(_shown(tok, mode))
        elif tok.kind == "open":
            opened.append(tok)
        elif tok.kind == "close" and opened:
            url = _link_url(opened.pop(), tok, mode) if urls else None
            if url:
                out.append(f" ({url})")
    return "".join(out)


def _link_url(opener: _Tok, closer: _Tok, mode: str | None) -> str | None:
    """The target of the link these tokens open and close, if they are a link."""
    if mode == "MarkdownV2" and closer.raw.startswith("]("):
        return re.sub(r"\\(.)", r"\1", closer.raw[2:-1])
    if mode == "HTML" and opener.raw.startswith("<a "):
        match = re.search(r'href="([^"]*)"', opener.raw)
        return html.unescape(match.group(1)) if match else None
    return None


# ---------------------------------------------------------------- splitting


class _Tok(NamedTuple):
    """One indivisible piece of a rendered message."""

    raw: str
    kind: str = "text"  # text, open, close or line (a MarkdownV2 quote marker)
    closer: str = ""  # for open: what closes it


_CHAR = re.compile(r"[\ud800-\udbff][\udc00-\udfff]|.", re.DOTALL)
_HTML_TOKEN = re.compile(
    r"<(/?)([a-zA-Z][\w-]*)[^<>]*>|&#?\w+;|[\ud800-\udbff][\udc00-\udfff]|.", re.DOTALL
)
_V2_LINK_END = re.compile(r"\]\((?:\\.|[^)\\])*\)", re.DOTALL)


def _tokens(text: str, mode: str | None) -> list[_Tok]:
    """Tokens of a rendered message: escapes, entities, tags and surrogate pairs stay whole."""
    if mode == "MarkdownV2":
        return _v2_tokens(text)
    if mode == "HTML":
        return [_html_token(m) for m in _HTML_TOKEN.finditer(text)]
    if mode is None:
        return [_Tok(c) for c in _CHAR.findall(text)]
    raise ValueError(f"unknown parse mode {mode!r}; use 'MarkdownV2', 'HTML' or None")


def _html_token(match: re.Match) -> _Tok:
    """A tag opens or closes; an entity or character is text."""
    if not match.group(2):
        return _Tok(match.group())
    if match.group(1):
        return _Tok(match.group(), "close")
    return _Tok(match.group(), "open", f"</{match.group(2)}>")


def _v2_tokens(text: str) -> list[_Tok]:
    """Tokens of MarkdownV2, tracking whether we are inside code or pre."""
    toks: list[_Tok] = []
    stack: list[str] = []
    i = 0
    while i < len(text):
        tok = _v2_token(text, i, stack[-1] if stack else "")
        if tok.kind in ("open", "line"):
            stack.append(tok.raw)
        elif tok.kind == "close" and stack:
            stack.pop()
        elif tok.raw == "\n":
            stack = [s for s in stack if s != ">"]
        toks.append(tok)
        i += len(tok.raw)
    return toks


def _v2_token(text: str, i: int, top: str) -> _Tok:
    """The MarkdownV2 token at `i`, given the innermost open entity."""
    c = text[i]
    if c == "\\":
        return _Tok(text[i : i + 2])
    if top == "`" or top.startswith("```"):  # code and pre end at their fence, nothing else
        fence = "`" if top == "`" else "```"
        return _Tok(fence, "close") if text.startswith(fence, i) else _v2_char(text, i)
    if text.startswith("```", i):
        end = text.find("\n", i)
        return _Tok(text[i : end + 1] if end != -1 else text[i:], "open", "```")
    if c == ">" and (i == 0 or text[i - 1] == "\n"):
        return _Tok(">", "line")
    if c == "[":
        end = _V2_LINK_END.search(text, i)
        return _Tok("[", "open", end.group() if end else "")
    if c == "]":
        end = _V2_LINK_END.match(text, i)
        return _Tok(end.group() if end else "]", "close")
    mark = text[i : i + 2] if text.startswith(("__", "||"), i) else c
    if mark in ("*", "_", "__", "~", "||", "`"):
        return _Tok(mark, "close" if top == mark else "open", mark)
    return _v2_char(text, i)


def _v2_char(text: str, i: int) -> _Tok:
    """One character (a whole surrogate pair if the text holds one)."""
    return _Tok(_CHAR.match(text, i).group())


def _shown(tok: _Tok, mode: str | None) -> str:
    """What one text token shows: `\\.` is ".", `&amp;` is "&"."""
    if mode == "MarkdownV2" and tok.raw.startswith("\\"):
        return tok.raw[1:]
    if mode == "HTML" and tok.raw.startswith("&"):
        return html.unescape(tok.raw)
    return tok.raw


def _stacks(toks: list[_Tok]) -> list[tuple[_Tok, ...]]:
    """The entities open before each token (and after the last)."""
    stack: tuple[_Tok, ...] = ()
    stacks = [stack]
    for tok in toks:
        if tok.kind in ("open", "line"):
            stack = (*stack, tok)
        elif tok.kind == "close" and stack:
            stack = stack[:-1]
        elif tok.raw == "\n" and stack:  # a MarkdownV2 quote lasts to the end of its line
            stack = tuple(t for t in stack if t.kind != "line")
        stacks.append(stack)  # the same object while nothing changes
    return stacks


def _reopen(stack: tuple[_Tok, ...]) -> str:
    """Markup that re-opens the entities of `stack`."""
    return "".join(t.raw for t in stack)


def _close(stack: tuple[_Tok, ...]) -> str:
    """Markup that closes the entities of `stack`."""
    return "".join(t.closer for t in reversed(stack))


def _is_space(tok: _Tok) -> bool:
    """Whether a token is visible whitespace."""
    return tok.kind == "text" and tok.raw.isspace()


def _cut(
    toks: list[_Tok], stacks: list, ends: list[int], shut: list[int], start: int, limit: int
) -> int:
    """Where the part starting at token `start` should end (see `split` for the order)."""
    base = utf16_len(_reopen(stacks[start])) - ends[start]
    if base + ends[-1] + shut[-1] <= limit:
        return len(toks)
    last = start + 1
    while last < len(toks) and base + ends[last + 1] <= limit:
        last += 1
    half = (limit - base - ends[start]) / 2
    best: tuple | None = None
    for end in range(last, start, -1):  # right to left, so ties keep the longest part
        early = ends[end] - ends[start] < half
        if early and best and best[0][:2] == (3, False):
            break  # a cut in the second half was found; nothing earlier can beat it
        if base + ends[end] + shut[end] > limit:
            continue
        rank = _rank(toks, stacks, start, end)
        # ranks 0-3 in the second half of the room first, then 0-3 anywhere, then 4, then 5
        key = (max(rank, 3), early, rank)
        if best is None or key < best[0]:
            best = (key, end)
    if best is None:
        raise ValueError(f"limit {limit} can't hold {toks[start].raw!r} and the markup around it")
    return best[1]


def _rank(toks: list[_Tok], stacks: list, start: int, end: int) -> int:
    """How good a cut before token `end` is: 0 after a blank line, 1 after a line break (so
    the next line keeps its indentation), 2 after spaces, 3 elsewhere, 4 inside a link,
    5 where an entity would be left empty."""
    before, after = end - 1, end
    while before >= start and _is_space(toks[before]):
        before -= 1
    while after < len(toks) and _is_space(toks[after]):
        after += 1
    if before < start or toks[before].kind in ("open", "line"):
        return 5
    if after < len(toks) and toks[after].kind == "close":
        return 5
    if any(t.raw == "[" or t.raw.startswith("<a ") for t in stacks[end]):
        return 4
    newlines = sum(toks[k].raw == "\n" for k in range(before + 1, end))
    if toks[end - 1].raw == "\n" and not any(t.raw == "\n" for t in toks[end:after]):
        return 0 if newlines >= 2 else 1
    return 2 if end == after and before < end - 1 and not newlines else 3


def _part(toks: list[_Tok], stacks: list, start: int, end: int) -> str:
    """Tokens start..end as a message: open entities re-opened and closed, before any
    trailing whitespace (which Telegram trims)."""
    body = toks[start:end]
    keep = len(body)
    while keep and _is_space(body[keep - 1]):
        keep -= 1
    text = "".join(t.raw for t in body[:keep])
    tail = "".join(t.raw for t in body[keep:])
    return _reopen(stacks[start]) + text + _close(stacks[end]) + tail
