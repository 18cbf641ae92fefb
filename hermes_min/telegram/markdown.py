"""Turn a model's Markdown into Telegram MarkdownV2, HTML or plain text.

The Markdown is parsed into a small tree (blocks, then CommonMark-style inline delimiters),
and each output mode renders that tree with its own escaping, so an entity is either
emitted whole or not at all. Unclosed markup stays literal text; an unclosed code fence
is rendered as a closed code block (it is one in the final answer too). Cutting a
rendered message to Telegram's size is `parts.py`'s job.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Callable, NamedTuple

__all__ = ["render", "render_plain"]


# ---------------------------------------------------------------- public API


def render(markdown: str, mode: str) -> str:
    """Render Markdown as a Telegram message for parse mode "MarkdownV2" or "HTML"."""
    if mode not in _SYNTAXES:
        raise ValueError(f"unknown parse mode {mode!r}; use 'MarkdownV2' or 'HTML'")
    return _blocks_out(_parse(markdown), _SYNTAXES[mode])


def render_plain(markdown: str) -> str:
    """The plain-text fallback: what `render` shows, with the markup dropped, never the words.

    Bullets, numbers, aligned tables and code text stay; a link becomes "label (url)" and a
    quote keeps "> " at each line, since plain text has no other way to show them.
    """
    return _blocks_out(_parse(markdown), _PLAIN)


# ---------------------------------------------------------------- block structure


class _Block(NamedTuple):
    """One block: para, heading, item, code, table, rule or quote."""

    kind: str
    text: str = ""
    extra: object = None  # item prefix, code language, table (rows, aligns), quote blocks
    gap: bool = False  # a blank line came before it


_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})[ \t]*([^`\s]*)[^`]*$")
_FENCE_END = re.compile(r" {0,3}(`{3,}|~{3,})[ \t]*$")
_HEADING = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_RULE = re.compile(r" {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_QUOTE = re.compile(r" {0,3}> ?(.*)$")
_ITEM = re.compile(r"([ \t]*)(?:([-*+])|(\d{1,9})([.)]))(?:[ \t]+(.*))?$")
_TABLE_SEP = re.compile(r"[ \t]*\|?(?:[ \t]*:?-+:?[ \t]*\|)*[ \t]*:?-+:?[ \t]*\|?[ \t]*$")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def _parse(markdown: str) -> list[_Block]:
    """Blocks of a whole message."""
    return _parse_blocks(markdown.replace("\r\n", "\n").replace("\r", "\n").split("\n"))


def _parse_blocks(lines: list[str]) -> list[_Block]:
    """Group lines into blocks, remembering where blank lines separated them."""
    blocks: list[_Block] = []
    i, gap = 0, False
    while i < len(lines):
        if not lines[i].strip():
            gap, i = bool(blocks), i + 1
            continue
        block, i = _block(lines, i)
        blocks.append(block._replace(gap=gap))
        gap = False
    return blocks


def _block(lines: list[str], i: int) -> tuple[_Block, int]:
    """The block starting at line `i` and the index of the line after it."""
    line = lines[i]
    if _FENCE.match(line):
        return _fence(lines, i)
    heading = _HEADING.match(line)
    if heading:
        return _Block("heading", heading.group(2) or ""), i + 1
    if _RULE.match(line):
        return _Block("rule"), i + 1
    if _QUOTE.match(line):
        return _quote(lines, i)
    if _is_table(lines, i):
        return _table(lines, i)
    if _ITEM.match(line):
        return _item(lines, i)
    end = _paragraph_end(lines, i)
    return _Block("para", "\n".join(s.strip() for s in lines[i:end])), end


def _starts_block(lines: list[str], i: int) -> bool:
    """Whether line `i` interrupts a paragraph."""
    line = lines[i]
    starters = (_FENCE, _HEADING, _RULE, _QUOTE, _ITEM)
    return any(p.match(line) for p in starters) or _is_table(lines, i)


def _paragraph_end(lines: list[str], i: int) -> int:
    """Index after the last line that continues the paragraph or item starting at `i`."""
    end = i + 1
    while end < len(lines) and lines[end].strip() and not _starts_block(lines, end):
        end += 1
    return end


def _fence(lines: list[str], i: int) -> tuple[_Block, int]:
    """A fenced code block; unclosed, it runs to the end of the text."""
    opening = _FENCE.match(lines[i])
    fence, lang = opening.group(1), opening.group(2)
    end = i + 1
    while end < len(lines):
        closing = _FENCE_END.match(lines[end])
        # CommonMark: the closing fence uses the same character, at least as many times
        if closing and closing.group(1)[0] == fence[0] and len(closing.group(1)) >= len(fence):
            break
        end += 1
    body = "\n".join(lines[i + 1 : end]).rstrip("\n")
    return _Block("code", body, re.sub(r"[^\w+#.-]", "", lang, flags=re.ASCII)), end + 1


def _quote(lines: list[str], i: int) -> tuple[_Block, int]:
    """A block quote: consecutive `>` lines, parsed again as blocks."""
    inner = []
    while i < len(lines) and _QUOTE.match(lines[i]):
        inner.append(_QUOTE.match(lines[i]).group(1))
        i += 1
    return _Block("quote", extra=_parse_blocks(inner)), i


def _item(lines: list[str], i: int) -> tuple[_Block, int]:
    """A list item; the bullet becomes "• " and numbers keep their own marker."""
    indent, bullet, number, delim, text = _ITEM.match(lines[i]).groups()
    prefix = indent.replace("\t", "    ") + ("• " if bullet else f"{number}{delim} ")
    end = _paragraph_end(lines, i)
    rest = [s.strip() for s in lines[i + 1 : end]]
    return _Block("item", "\n".join([(text or "").strip(), *rest]), prefix), end


def _cells(line: str) -> list[str]:
    """The cells of one pipe-table row, with `\\|` kept as a literal pipe."""
    line = line.strip()
    line = line[1:] if line.startswith("|") else line
    line = line[:-1] if line.endswith("|") and not line.endswith("\\|") else line
    return [c.strip().replace("\\|", "|") for c in _CELL_SPLIT.split(line)]


def _is_table(lines: list[str], i: int) -> bool:
    """GitHub: a header row, then a delimiter row with as many cells."""
    if i + 1 >= len(lines) or "|" not in lines[i] or "|" not in lines[i + 1]:
        return False
    return bool(_TABLE_SEP.match(lines[i + 1])) and len(_cells(lines[i])) == len(
        _cells(lines[i + 1])
    )


def _table(lines: list[str], i: int) -> tuple[_Block, int]:
    """A pipe table; rows run until a line without a pipe."""
    aligns = [(c.startswith(":"), c.endswith(":")) for c in _cells(lines[i + 1])]
    rows, end = [_cells(lines[i])], i + 2
    while end < len(lines) and "|" in lines[end] and lines[end].strip():
        rows.append(_cells(lines[end]))
        end += 1
    return _Block("table", extra=(rows, aligns)), end


# ---------------------------------------------------------------- inline structure


class _Delim:
    """A run of `*`, `_` or `~~` that may still open or close emphasis."""

    __slots__ = ("char", "count", "size", "opens", "closes")

    def __init__(self, char: str, size: int, opens: bool, closes: bool) -> None:
        self.char, self.count, self.size = char, size, size
        self.opens, self.closes = opens, closes


class _Span(NamedTuple):
    """Emphasis: style is bold, italic or strike."""

    style: str
    children: list


class _Code(NamedTuple):
    """An inline code span."""

    text: str


class _Link(NamedTuple):
    """An inline link."""

    children: list
    url: str


_ASCII_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_LITERAL = re.compile(r"[^\\`\[!*_~]*")
_DESTINATION = re.compile(
    r"[ \t]*(?:<([^<>\n]*)>|((?:[^\s()\\]|\\.|\((?:[^\s()\\]|\\.)*\))*))"
    r"(?:[ \t]+(?:\"[^\"]*\"|'[^']*'))?[ \t]*\)"
)
_URL_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_URL_OK = re.compile(r"(?:https?|ftp|tg)://\S|mailto:\S", re.IGNORECASE)


def _inline(text: str, links: bool = True) -> list:
    """Parse inline Markdown into strings, _Code, _Link and _Span nodes."""
    nodes: list = []
    i = 0
    while i < len(text):
        node, i = _next_inline(text, i, links)
        if isinstance(node, str) and nodes and isinstance(nodes[-1], str):
            nodes[-1] += node
        else:
            nodes.append(node)
    _emphasis(nodes)
    return [_literal(n) for n in nodes]


def _next_inline(text: str, i: int, links: bool) -> tuple[object, int]:
    """The node (or literal text) starting at `i`, and where it ends."""
    c = text[i]
    if c == "\\":
        return _backslash(text, i)
    if c == "`":
        return _code_span(text, i)
    if c in "*_~":
        return _delim_run(text, i)
    if links and (c == "[" or text.startswith("![", i)):
        link = _link(text, i)
        if link:
            return link
    end = _LITERAL.match(text, i + 1).end()
    return text[i:end], end


def _backslash(text: str, i: int) -> tuple[str, int]:
    """CommonMark: a backslash makes the ASCII punctuation after it literal."""
    after = text[i + 1 : i + 2]
    if after and after in _ASCII_PUNCT:
        return after, i + 2
    if after == "\n":  # a hard line break
        return "\n", i + 2
    return "\\", i + 1


def _run_end(text: str, i: int) -> int:
    """Index after the run of the character at `i`."""
    end = i + 1
    while end < len(text) and text[end] == text[i]:
        end += 1
    return end


def _code_span(text: str, i: int) -> tuple[object, int]:
    """CommonMark: a code span ends at the next backtick run of exactly the same length."""
    after = _run_end(text, i)
    ticks = text[i:after]
    close = text.find(ticks, after)
    while close != -1 and _run_end(text, close) != close + len(ticks):
        close = text.find(ticks, _run_end(text, close))
    if close == -1:
        return ticks, after
    body = text[after:close].replace("\n", " ")
    if body.startswith(" ") and body.endswith(" ") and body.strip(" "):
        body = body[1:-1]
    return _Code(body), close + len(ticks)


def _delim_run(text: str, i: int) -> tuple[object, int]:
    """A delimiter run, classified by CommonMark's flanking rules."""
    end = _run_end(text, i)
    char, size = text[i], end - i
    if char == "~" and size != 2:  # only `~~x~~` strikes; "~5 min" stays literal
        return text[i:end], end
    prev = text[i - 1] if i else " "
    after = text[end] if end < len(text) else " "
    delim = _classify(char, size, prev, after)
    return (delim if delim.opens or delim.closes else text[i:end]), end


def _is_punct(c: str) -> bool:
    """CommonMark's Unicode punctuation: categories P and S."""
    return unicodedata.category(c)[0] in "PS"


def _classify(char: str, size: int, prev: str, after: str) -> _Delim:
    """Can this run open or close emphasis? (Start and end of text count as whitespace.)"""
    left = not after.isspace() and (not _is_punct(after) or prev.isspace() or _is_punct(prev))
    right = not prev.isspace() and (not _is_punct(prev) or after.isspace() or _is_punct(after))
    # CommonMark forbids intraword `_` ("snake_case_words"). It allows intraword `*`, but
    # between ASCII letters or digits that is nearly always arithmetic (2*3*4, 2**10), so
    # such `*` runs follow the `_` rule; CJK text keeps intraword `**bold**`.
    ascii_word = (prev + after).isascii() and prev.isalnum() and after.isalnum()
    if char == "_" or ascii_word:
        return _Delim(
            char,
            size,
            left and (not right or _is_punct(prev)),
            right and (not left or _is_punct(after)),
        )
    return _Delim(char, size, left, right)


def _link(text: str, i: int) -> tuple[_Link, int] | None:
    """`[label](url)` or `![alt](url)` starting at `i`, or None if it isn't one (yet)."""
    start = i + 2 if text[i] == "!" else i + 1
    close = _bracket_end(text, start)
    if close is None or not text.startswith("(", close + 1):
        return None
    dest = _DESTINATION.match(text, close + 2)
    if not dest:
        return None
    url = _URL_ESCAPE.sub(r"\1", dest.group(1) or dest.group(2) or "")
    label = _inline(text[start:close].replace("\n", " "), links=False)
    return _Link(label, url), dest.end()


def _bracket_end(text: str, i: int) -> int | None:
    """Index of the `]` matching an opening bracket just before `i`."""
    depth = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 1
        elif c == "[":
            depth += 1
        elif c == "]":
            if not depth:
                return i
            depth -= 1
        i += 1
    return None


def _emphasis(nodes: list) -> None:
    """CommonMark's "process emphasis": pair each closer with the nearest fitting opener."""
    i = 0
    while i < len(nodes):
        closer = nodes[i]
        j = _opener(nodes, i) if isinstance(closer, _Delim) and closer.closes else None
        i = i + 1 if j is None else _pair(nodes, j, i)


def _opener(nodes: list, i: int) -> int | None:
    """Index of the opener that the closer at `i` matches."""
    closer = nodes[i]
    for j in range(i - 1, -1, -1):
        node = nodes[j]
        if isinstance(node, _Delim) and node.char == closer.char and node.opens:
            # CommonMark "rule of 3" for runs that can both open and close
            both = node.closes or closer.opens
            if not both or (node.size + closer.size) % 3 or node.size % 3 == closer.size % 3 == 0:
                return j
    return None


def _pair(nodes: list, j: int, i: int) -> int:
    """Wrap the nodes between opener `j` and closer `i` in a span; where to continue."""
    opener, closer = nodes[j], nodes[i]
    use = 2 if opener.count >= 2 and closer.count >= 2 else 1
    style = "strike" if opener.char == "~" else ("bold" if use == 2 else "italic")
    opener.count -= use
    closer.count -= use
    nodes[j + 1 : i] = [_Span(style, [_literal(n) for n in nodes[j + 1 : i]])]
    i = j + 2
    if not opener.count:
        del nodes[j]
        i -= 1
    if not closer.count:
        del nodes[i]
    return i


def _literal(node: object) -> object:
    """An unmatched delimiter as the text it was."""
    return node.char * node.count if isinstance(node, _Delim) else node


# ---------------------------------------------------------------- rendering


class _Syntax(NamedTuple):
    """How one output mode writes each construct; every input string is raw text."""

    text: Callable[[str], str]
    code: Callable[[str], str]
    pre: Callable[[str, str], str]  # (body, language)
    link: Callable[[str, str], str]  # (rendered label, url)
    quote: Callable[[str], str]  # rendered lines
    marks: dict  # style -> (open, close)


_RULE_LINE = "─" * 10  # Telegram has no horizontal rule


def _blocks_out(blocks: list[_Block], syn: _Syntax, quoted: bool = False) -> str:
    """Render blocks, one line break between them, two where the source had a blank line."""
    out: list[str] = []
    for block in blocks:
        # trailing whitespace is always bare text here (markup never ends in it); drop it
        text = _block_out(block, syn, quoted).rstrip()
        if text:
            out.append(("\n\n" if block.gap else "\n") if out else "")
            out.append(text)
    return "".join(out)


def _block_out(block: _Block, syn: _Syntax, quoted: bool) -> str:
    """Render one block; headings become a bold line, lists keep a text bullet."""
    kind = block.kind
    if kind == "para":
        return _inline_out(_inline(block.text), syn)
    if kind == "heading":
        return _inline_out([_Span("bold", _inline(block.text))], syn)
    if kind == "item":
        return syn.text(block.extra) + _inline_out(_inline(block.text), syn)
    if kind == "rule":
        return _RULE_LINE
    if kind == "quote":
        inner = _blocks_out(block.extra, syn, quoted=True)
        # Telegram: "blockquote entities can't be nested", so inner quotes are flattened
        return inner if quoted or not inner.strip() else syn.quote(inner)
    body = block.text if kind == "code" else _table_text(*block.extra)
    if not body.strip():
        return ""
    # a pre entity can't sit inside a blockquote, so there it is plain text
    return syn.text(body) if quoted else syn.pre(body, block.extra if kind == "code" else "")


def _inline_out(nodes: list, syn: _Syntax) -> str:
    """Render a paragraph's inline nodes, line by line."""
    return "\n".join(_nodes_out(line, syn, ()) for line in _split_lines(nodes))


def _nodes_out(nodes: list, syn: _Syntax, active: tuple) -> str:
    """Render inline nodes; `active` holds the styles (and "link") already open around them."""
    return "".join(_node_out(node, syn, active) for node in _merged(nodes))


def _split_lines(nodes: list) -> list[list]:
    """Inline nodes cut at line breaks, a span repeated on each line it covers.

    That way no entity crosses a line, so each MarkdownV2 quote line can start with ">",
    and a split at a line break never has to close and re-open them.
    """
    lines: list[list] = [[]]
    for node in nodes:
        if isinstance(node, str):
            pieces = [[p] if p else [] for p in node.split("\n")]
        elif isinstance(node, _Span):
            pieces = [[_Span(node.style, p)] if p else [] for p in _split_lines(node.children)]
        else:  # code spans and link labels never hold a line break
            pieces = [[node]]
        lines[-1].extend(pieces[0])
        lines.extend(pieces[1:])
    return lines


def _merged(nodes: list) -> list:
    """Join adjacent spans of one style, so MarkdownV2 never writes `_a__b_` (underline)."""
    out: list = []
    for node in nodes:
        if (
            isinstance(node, _Span)
            and out
            and isinstance(out[-1], _Span)
            and out[-1].style == node.style
        ):
            out[-1] = _Span(node.style, out[-1].children + node.children)
        else:
            out.append(node)
    return out


def _node_out(node: object, syn: _Syntax, active: tuple) -> str:
    """Render one inline node."""
    if isinstance(node, str):
        return syn.text(node)
    if isinstance(node, _Code):
        # Telegram: code and text links "can't contain each other"
        return syn.text(node.text) if "link" in active else syn.code(node.text) if node.text else ""
    if isinstance(node, _Link):
        return _link_out(node, syn, active)
    if node.style in active:  # `**a __b__**`: one style nested in itself is emitted once
        return _nodes_out(node.children, syn, active)
    inner = _nodes_out(node.children, syn, (*active, node.style))
    opening, closing = syn.marks[node.style]
    return opening + inner + closing if inner else ""


def _link_out(link: _Link, syn: _Syntax, active: tuple) -> str:
    """A link, or its label and URL as text when Telegram would reject the URL."""
    label = _nodes_out(link.children, syn, (*active, "link"))
    if not _URL_OK.match(link.url):
        return label + (syn.text(f" ({link.url})") if link.url else "")
    return syn.link(label or syn.text(link.url), link.url)


def _table_text(rows: list[list[str]], aligns: list[tuple[bool, bool]]) -> str:
    """A pipe table laid out in aligned columns, for a preformatted block."""
    cells = [[_inline_out(_inline(c), _PLAIN) for c in row] for row in rows]
    ncols = max(len(row) for row in cells)
    widths = [max(_width(row[k]) for row in cells if k < len(row)) for k in range(ncols)]
    aligns = aligns + [(False, False)] * (ncols - len(aligns))
    lines = [_row_text(row, widths, aligns) for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _row_text(row: list[str], widths: list[int], aligns: list[tuple[bool, bool]]) -> str:
    """One table row, each cell padded to its column's width."""
    out = []
    for cell, width, (left, right) in zip(row, widths, aligns):
        pad = width - _width(cell)
        before = pad // 2 if left and right else pad if right else 0
        out.append(" " * before + cell + " " * (pad - before))
    return " | ".join(out).rstrip()


def _width(text: str) -> int:
    """Columns a string takes in a monospace font (wide East Asian characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


# Telegram: "Any character with code between 1 and 126 inclusively can be escaped anywhere
# with a preceding '\' character". Escaped "in all other places": _*[]()~`>#+-=|{}.!
_V2_TEXT = re.compile(r"([_*\[\]()~`>#+\-=|{}.!\\])")
# "Inside pre and code entities, all '`' and '\' characters must be escaped"
_V2_CODE = re.compile(r"([`\\])")
# "Inside the (...) part of the inline link ..., all ')' and '\' must be escaped"
_V2_URL = re.compile(r"([)\\])")


def _v2_text(text: str) -> str:
    """MarkdownV2 text outside entities that change the rules."""
    return _V2_TEXT.sub(r"\\\1", text)


def _v2_code(text: str) -> str:
    """MarkdownV2 text inside code and pre."""
    return _V2_CODE.sub(r"\\\1", text)


def _v2_link(label: str, url: str) -> str:
    """A MarkdownV2 inline link."""
    return "[" + label + "](" + _V2_URL.sub(r"\\\1", url) + ")"


def _html(text: str) -> str:
    """Telegram HTML: "All <, > and & symbols that are not a part of a tag or an HTML
    entity must be replaced with the corresponding HTML entities"."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _html_link(label: str, url: str) -> str:
    """An HTML link; the URL is an attribute, so `"` is escaped too."""
    return '<a href="' + _html(url).replace('"', "&quot;") + f'">{label}</a>'


def _html_pre(body: str, lang: str) -> str:
    """`<pre>`, with `<code class="language-x">` inside when the fence named a language."""
    if not lang:
        return f"<pre>{_html(body)}</pre>"
    return f'<pre><code class="language-{lang}">{_html(body)}</code></pre>'


_SYNTAXES = {
    "MarkdownV2": _Syntax(
        text=_v2_text,
        code=lambda s: f"`{_v2_code(s)}`",
        pre=lambda body, lang: f"```{lang}\n{_v2_code(body)}```",
        link=_v2_link,
        quote=lambda inner: "\n".join(">" + line for line in inner.split("\n")),
        marks={"bold": ("*", "*"), "italic": ("_", "_"), "strike": ("~", "~")},
    ),
    "HTML": _Syntax(
        text=_html,
        code=lambda s: f"<code>{_html(s)}</code>",
        pre=_html_pre,
        link=_html_link,
        quote=lambda inner: f"<blockquote>{inner}</blockquote>",
        marks={"bold": ("<b>", "</b>"), "italic": ("<i>", "</i>"), "strike": ("<s>", "</s>")},
    ),
}

_PLAIN = _Syntax(
    text=str,
    code=str,
    pre=lambda body, lang: body,
    link=lambda label, url: label if label == url else f"{label} ({url})",
    quote=lambda inner: "\n".join(("> " + line).rstrip() for line in inner.split("\n")),
    marks={"bold": ("", ""), "italic": ("", ""), "strike": ("", "")},
)
