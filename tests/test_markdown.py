"""Rendering model Markdown for Telegram: escaping, structure, prefixes, splitting, previews."""

from __future__ import annotations

import html
import random
import re

import pytest

from hermes_min.telegram.markdown import render, render_plain
from hermes_min.telegram.parts import interim, split, utf16_len
from hermes_min.telegram.parts import visible as shown

# ---------------------------------------------------------------- checkers
# Written from Telegram's formatting rules, independently of the renderer: each returns the
# visible text and fails on anything Telegram would not parse. They are stricter than
# Telegram in one way: no entity but pre may cross a line break (our renderer's promise).

V2_SPECIAL = set("_*[]()~`>#+-=|{}.!")
V2_TOGGLES = ("__", "||", "*", "_", "~")


def check_v2(text: str) -> str:
    """Visible text of a MarkdownV2 message; AssertionError if it would not parse."""
    out: list[str] = []
    stack: list[tuple[str, int]] = []  # (entity, len(out) when opened)
    i = 0
    while i < len(text):
        top = stack[-1][0] if stack else ""
        if top in ("pre", "code"):
            i = _v2_code_char(text, i, top, stack, out)
        else:
            i = _v2_char(text, i, stack, out)
    if stack and stack[-1][0] == "quote":  # a quote ends with its line
        stack.pop()
    assert not stack, f"unclosed {stack} in {text!r}"
    return "".join(out)


def _close(stack: list, out: list, name: str, text: str) -> None:
    assert stack and stack[-1][0] == name, f"{name} closed out of order in {text!r}"
    assert len("".join(out)) > stack[-1][1], f"empty {name} in {text!r}"
    stack.pop()


def _v2_code_char(text: str, i: int, top: str, stack: list, out: list) -> int:
    c = text[i]
    if c == "\\":
        assert text[i + 1 : i + 2] in ("`", "\\"), f"bad escape in {top}: {text!r}"
        out.append(text[i + 1])
        return i + 2
    if top == "pre" and text.startswith("```", i):
        _close(stack, out, "pre", text)
        return i + 3
    assert c != "`" or top == "code", f"unescaped ` in pre: {text!r}"
    if c == "`":
        _close(stack, out, "code", text)
        return i + 1
    out.append(c)
    return i + 1


def _v2_char(text: str, i: int, stack: list, out: list) -> int:
    c = text[i]
    names = [name for name, _ in stack]
    if c == "\\":
        assert i + 1 < len(text) and 1 <= ord(text[i + 1]) <= 126, f"bad escape: {text!r}"
        out.append(text[i + 1])
        return i + 2
    if c == "\n":
        assert names in ([], ["quote"]), f"{names} cross a line break in {text!r}"
        stack.clear()
        out.append(c)
        return i + 1
    if c == ">" and (i == 0 or text[i - 1] == "\n"):
        stack.append(("quote", len("".join(out))))
        return i + 1
    if text.startswith("```", i):
        assert not names, f"pre inside {names}: {text!r}"
        end = text.index("\n", i)
        assert re.fullmatch(r"[\w+#.-]*", text[i + 3 : end]), f"bad language in {text!r}"
        stack.append(("pre", len("".join(out))))
        return end + 1
    if c == "`":
        stack.append(("code", len("".join(out))))
        return i + 1
    if c == "[":
        assert "link" not in names, f"link in link: {text!r}"
        stack.append(("link", len("".join(out))))
        return i + 1
    if c == "]":
        return _v2_link_end(text, i, stack, out)
    for mark in V2_TOGGLES:
        if text.startswith(mark, i):
            if mark in names:
                _close(stack, out, mark, text)
            else:
                stack.append((mark, len("".join(out))))
            return i + len(mark)
    assert c not in V2_SPECIAL, f"unescaped {c!r} at {i} in {text!r}"
    if c != "\r":  # Telegram ignores it; the renderer may use it to break `__`
        out.append(c)
    return i + 1


def _v2_link_end(text: str, i: int, stack: list, out: list) -> int:
    _close(stack, out, "link", text)
    match = re.compile(r"\]\(((?:\\[)\\]|[^)\\])+)\)").match(text, i)
    assert match, f"bad link URL in {text!r}"
    assert re.match(r"(https?|tg|ftp)://|mailto:", match.group(1)), f"bad URL in {text!r}"
    return match.end()


HTML_TAG = re.compile(
    r'<(/?)(b|i|s|code|pre|a|blockquote)((?: href="[^"<>]*"| class="language-[\w+#.-]+")?)>'
)
HTML_ENTITY = re.compile(r"&(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")


def check_html(text: str) -> str:
    """Visible text of a Telegram HTML message; AssertionError if it would not parse."""
    out: list[str] = []
    stack: list[tuple[str, int]] = []
    i = 0
    while i < len(text):
        if text[i] == "<":
            tag = HTML_TAG.match(text, i)
            assert tag, f"bad tag at {i} in {text!r}"
            _html_tag(tag, stack, out, text)
            i = tag.end()
        elif text[i] == "&":
            entity = HTML_ENTITY.match(text, i)
            assert entity, f"bare & at {i} in {text!r}"
            out.append(html.unescape(entity.group()))
            i = entity.end()
        else:
            assert text[i] != ">", f"bare > at {i} in {text!r}"
            out.append(text[i])
            i += 1
    assert not stack, f"unclosed {stack} in {text!r}"
    return "".join(out)


def _html_tag(tag: re.Match, stack: list, out: list, text: str) -> None:
    closing, name, attrs = tag.groups()
    names = [n for n, _ in stack]
    if closing:
        _close(stack, out, name, text)
        return
    assert not set(names) & {"code", "pre"} or (
        name == "code" and names[-1:] == ["pre"] and attrs
    ), text
    assert (name == "a") == attrs.startswith(" href") and (name == "code") >= attrs.startswith(
        " class"
    ), text
    assert name != "pre" or not names, f"pre inside {names}: {text!r}"
    assert name not in names, f"{name} inside {name}: {text!r}"
    stack.append((name, len("".join(out))))


CHECKERS = {"MarkdownV2": check_v2, "HTML": check_html}


def visible(text: str, mode: str | None) -> str:
    """Visible text of a message in `mode` (None: plain)."""
    return text if mode is None else CHECKERS[mode](text)


def test_checkers_reject_what_telegram_rejects() -> None:
    for bad in [
        "a.b",
        "*open",
        "*a _b* c_",
        "`x",
        "```py\nx",
        "[a](b)",
        "\\",
        "**",
        "_a__b_",
        "*a\nb*",
    ]:
        with pytest.raises(AssertionError):
            check_v2(bad)
    for bad in [
        "a < b",
        "x & y",
        "<b>x",
        "<b><i>x</b></i>",
        "<u>x</u>",
        "<b></b>",
        "<a>x</a>",
        "a > b",
    ]:
        with pytest.raises(AssertionError):
            check_html(bad)
    assert check_v2(r"*a _b_* \. `c\``") == "a b . c`"
    assert check_html('<b>a</b> &amp; <a href="http://x">y</a>') == "a & y"


# ---------------------------------------------------------------- utf16_len


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("", 0),
        ("abc", 3),
        ("é", 1),
        ("ж", 1),
        ("€", 1),
        ("😀", 2),
        ("𝒜", 2),
        ("👍🏽", 4),
        ("a😀b", 4),
    ],
)
def test_utf16_len_counts_code_units(text: str, units: int) -> None:
    assert utf16_len(text) == units


# ---------------------------------------------------------------- escaping per context

V2_ESCAPES = [(c, "\\" + c) for c in "_*[]()~`>#+-=|{}.!\\"]


@pytest.mark.parametrize(("char", "escaped"), V2_ESCAPES)
def test_v2_escapes_every_special_in_text(char: str, escaped: str) -> None:
    # the leading letter keeps "#", "-" and ">" from starting a heading, item or quote
    assert render(f"a {char} b", "MarkdownV2") == f"a {escaped} b"
    assert check_v2(render(f"a {char}{char}. b", "MarkdownV2")).startswith(f"a {char}")


@pytest.mark.parametrize("char", "_*[]()~>#+-=|{}.!<&")
def test_v2_code_and_pre_leave_other_specials_alone(char: str) -> None:
    assert render(f"`a{char}b`", "MarkdownV2") == f"`a{char}b`"
    assert render(f"```\na{char}b\n```", "MarkdownV2") == f"```\na{char}b```"


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("`` a`b ``", "`a\\`b`"),
        ("`a\\b`", "`a\\\\b`"),
        ("```sh\necho `pwd` \\n\n```", "```sh\necho \\`pwd\\` \\\\n```"),
    ],
)
def test_v2_code_escapes_backtick_and_backslash(markdown: str, expected: str) -> None:
    assert render(markdown, "MarkdownV2") == expected


@pytest.mark.parametrize(
    ("url", "written"),
    [
        ("https://en.wikipedia.org/wiki/Foo_(bar)", "https://en.wikipedia.org/wiki/Foo_(bar\\)"),
        ("https://x.com/a.b-c_d*e", "https://x.com/a.b-c_d*e"),
        ("<https://x.com/a\\b>", "https://x.com/a\\\\b"),
        ("<https://x.com/a)b>", "https://x.com/a\\)b"),
    ],
)
def test_v2_link_url_escapes_only_paren_and_backslash(url: str, written: str) -> None:
    assert render(f"[a.b]({url})", "MarkdownV2") == f"[a\\.b]({written})"


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("a < b && c > d", "a &lt; b &amp;&amp; c &gt; d"),
        ("`x<y&z>`", "<code>x&lt;y&amp;z&gt;</code>"),
        (
            "```c\nif (a<b && c) {}\n```",
            '<pre><code class="language-c">if (a&lt;b &amp;&amp; c) {}</code></pre>',
        ),
        (
            '[x](https://a.com/?q="1"&r=<2>)',
            '<a href="https://a.com/?q=&quot;1&quot;&amp;r=&lt;2&gt;">x</a>',
        ),
        ("<b>not a tag</b>", "&lt;b&gt;not a tag&lt;/b&gt;"),
        ("&amp; stays text", "&amp;amp; stays text"),
        ("_*.!#-", "_*.!#-"),
    ],
)
def test_html_escapes_lt_gt_amp_in_every_context(markdown: str, expected: str) -> None:
    assert render(markdown, "HTML") == expected


# ---------------------------------------------------------------- structure

CASES = [
    # (markdown, MarkdownV2, HTML, plain)
    ("snake_case_words", "snake\\_case\\_words", "snake_case_words", "snake_case_words"),
    ("2*3*4 and 2**10", "2\\*3\\*4 and 2\\*\\*10", "2*3*4 and 2**10", "2*3*4 and 2**10"),
    ("a * b * c", "a \\* b \\* c", "a * b * c", "a * b * c"),
    ("**unclosed bold", "\\*\\*unclosed bold", "**unclosed bold", "**unclosed bold"),
    ("`unclosed code", "\\`unclosed code", "`unclosed code", "`unclosed code"),
    ("[half](http://x", "\\[half\\]\\(http://x", "[half](http://x", "[half](http://x"),
    (
        "**b** *i* _i_ __b__ ~~s~~",
        "*b* _i_ _i_ *b* ~s~",
        "<b>b</b> <i>i</i> <i>i</i> <b>b</b> <s>s</s>",
        "b i i b s",
    ),
    ("***both***", "_*both*_", "<i><b>both</b></i>", "both"),
    (
        "**bold *and italic* here**",
        "*bold _and italic_ here*",
        "<b>bold <i>and italic</i> here</b>",
        None,
    ),
    ("*a **b** c*", "_a *b* c_", "<i>a <b>b</b> c</i>", None),
    ("**x **y** z**", "*x y z*", "<b>x y z</b>", None),
    ("*a*_b_", "_ab_", "<i>ab</i>", "ab"),
    ("~5 min ~ ok", "\\~5 min \\~ ok", "~5 min ~ ok", None),
    ("**粗体**文字", "*粗体*文字", "<b>粗体</b>文字", "粗体文字"),
    (r"\*not italic\*", "\\*not italic\\*", "*not italic*", "*not italic*"),
    ("**a\nb**", "*a*\n*b*", "<b>a</b>\n<b>b</b>", "a\nb"),
    ("`` `x` ``", "`\\`x\\``", "<code>`x`</code>", "`x`"),
    ("**`code` in bold**", "*`code` in bold*", "<b><code>code</code> in bold</b>", None),
    (
        "[`x` **y**](https://e.com)",
        "[x *y*](https://e.com)",
        '<a href="https://e.com">x <b>y</b></a>',
        "x y (https://e.com)",
    ),
    ("[rel](/docs)", "rel \\(/docs\\)", "rel (/docs)", "rel (/docs)"),
    (
        "![cat](https://c.at/1.png)",
        "[cat](https://c.at/1.png)",
        '<a href="https://c.at/1.png">cat</a>',
        None,
    ),
    ("# Title #", "*Title*", "<b>Title</b>", "Title"),
    ("### **Bold** title", "*Bold title*", "<b>Bold title</b>", "Bold title"),
    ("#hashtag", "\\#hashtag", "#hashtag", "#hashtag"),
    (
        "- one\n* two\n+ three",
        "• one\n• two\n• three",
        "• one\n• two\n• three",
        "• one\n• two\n• three",
    ),
    ("1. a\n2) b\n  - c", "1\\. a\n2\\) b\n  • c", "1. a\n2) b\n  • c", "1. a\n2) b\n  • c"),
    ("- item\ncontinued", "• item\ncontinued", "• item\ncontinued", None),
    (
        "> quoted *x*\n> more\n\nafter",
        ">quoted _x_\n>more\n\nafter",
        "<blockquote>quoted <i>x</i>\nmore</blockquote>\n\nafter",
        "> quoted x\n> more\n\nafter",
    ),
    ("> a\n>> b", ">a\n>b", "<blockquote>a\nb</blockquote>", None),
    ("> ```\n> code\n> ```", ">code", "<blockquote>code</blockquote>", "> code"),
    ("---", "──────────", "──────────", "──────────"),
    ("a\n\n\n\nb", "a\n\nb", "a\n\nb", "a\n\nb"),
    ("```\n\n```", "", "", ""),
    (
        "```python\nx = 1\n```",
        "```python\nx = 1```",
        '<pre><code class="language-python">x = 1</code></pre>',
        "x = 1",
    ),
    (
        "```python\nx = 1",
        "```python\nx = 1```",
        '<pre><code class="language-python">x = 1</code></pre>',
        "x = 1",
    ),
    ("~~~\na\n```\n~~~", "```\na\n\\`\\`\\````", "<pre>a\n```</pre>", "a\n```"),
]


@pytest.mark.parametrize(("markdown", "v2", "html_", "plain"), CASES)
def test_render_structure(markdown: str, v2: str, html_: str, plain: str | None) -> None:
    assert render(markdown, "MarkdownV2") == v2
    assert render(markdown, "HTML") == html_
    if plain is not None:
        assert render_plain(markdown) == plain
    assert check_v2(v2) == check_html(html_)


def test_table_becomes_aligned_preformatted_block() -> None:
    table = "| Name | Qty | Note |\n|:--|--:|:-:|\n"
    table += "| **apple** | 3 | `red` |\n| kiwi | 12 | a\\|b |\n\nafter"
    expected = "Name  | Qty | Note\n------+-----+-----\napple |   3 | red\nkiwi  |  12 | a|b"
    assert render(table, "MarkdownV2") == "```\n" + expected.replace("\\", "\\\\") + "```\n\nafter"
    assert render(table, "HTML") == f"<pre>{expected}</pre>\n\nafter"
    assert render_plain(table) == expected + "\n\nafter"


def test_table_counts_wide_characters_as_two_columns() -> None:
    assert render_plain("| 名前 | x |\n|---|---|\n| ab | y |") == "名前 | x\n-----+--\nab   | y"


def test_emoji_and_astral_characters_pass_through() -> None:
    markdown = "**😀 bold** 𝒜 `👍🏽` [🔗](https://e.com)"
    assert render(markdown, "MarkdownV2") == "*😀 bold* 𝒜 `👍🏽` [🔗](https://e.com)"
    assert (
        render(markdown, "HTML")
        == '<b>😀 bold</b> 𝒜 <code>👍🏽</code> <a href="https://e.com">🔗</a>'
    )


def test_unknown_mode_is_an_error() -> None:
    with pytest.raises(ValueError):
        render("x", "Markdown")
    with pytest.raises(ValueError):
        split("x", "Markdown")


# ---------------------------------------------------------------- every prefix parses

CORPUS = """# Result of `run()`

Here is **bold**, *italic*, ~~gone~~ and ***both***; snake_case_name and 2*3*4 = 24.
A [link](https://en.wikipedia.org/wiki/Foo_(bar)) and a.b@c.de! Cost: $5 (≈ €4.6) #1 {x} | y.

- first *point*
- second with `code <b> & \\ `` ` `` x`
  1. nested 😀
> **Note:** quoted _text_
> more > here

| Col | *Val* |
|-----|------:|
| a   | 1.5   |

```python
def f(x):
    return x ** 2  # `tick` \\ <tag> & 𝒜
```
---
Done_ with __under__ and *unclosed
"""


@pytest.mark.parametrize("mode", ["MarkdownV2", "HTML"])
def test_every_prefix_renders_to_parseable_text(mode: str) -> None:
    check = CHECKERS[mode]
    for cut in range(len(CORPUS) + 1):
        check(render(CORPUS[:cut], mode))


def test_every_prefix_shows_the_same_text_in_both_modes() -> None:
    for cut in range(0, len(CORPUS) + 1, 3):
        v2, html_ = render(CORPUS[:cut], "MarkdownV2"), render(CORPUS[:cut], "HTML")
        assert check_v2(v2) == check_html(html_) == shown(v2, "MarkdownV2") == shown(html_, "HTML")


def test_visible_is_what_telegram_shows() -> None:
    assert shown(r"*a* \. `c\`` [x\]](https://e.com/\))", "MarkdownV2") == "a . c` x]"
    assert shown('<b>a</b> &lt;&amp;&quot; <a href="https://e.com">x</a>', "HTML") == 'a <&" x'
    assert shown(">quote\n```py\ncode```", "MarkdownV2") == "quote\ncode"
    assert shown("a *b* &amp;", None) == "a *b* &amp;"


ATOMS = ["*", "**", "***", "_", "__", "~~", "`", "``", "```py\n", "\n```\n", "[", "]", "(", ")"]
ATOMS += ["](https://x.com/a_(b))", "](/rel)", "![", "> ", "\n> ", "# ", "\n- ", "\n1. ", "\n"]
ATOMS += ["\n\n", "|", "\n|---|---|\n", " ", "word", "2", "\\", "<", ">", "&amp;", ".", "😀", "---"]


def test_random_markdown_renders_and_splits_cleanly() -> None:
    rnd = random.Random(20240611)
    for _ in range(300):
        markdown = "".join(rnd.choice(ATOMS) for _ in range(rnd.randint(1, 40)))
        texts = {mode: visible(render(markdown, mode), mode) for mode in CHECKERS}
        assert all(shown(render(markdown, m), m) == t for m, t in texts.items()), markdown
        assert texts["MarkdownV2"] == texts["HTML"], markdown
        for mode, text in texts.items():
            parts = split(render(markdown, mode), mode, 100)
            assert all(utf16_len(p) <= 100 for p in parts), markdown
            assert "".join(visible(p, mode) for p in parts) == text, markdown


def test_render_plain_keeps_every_word() -> None:
    words = set(re.findall(r"[A-Za-z0-9]+", CORPUS)) - {"python"}  # the fence's language
    assert words <= set(re.findall(r"[A-Za-z0-9]+", render_plain(CORPUS)))


# ---------------------------------------------------------------- split


def long_answer() -> str:
    """Over 10 000 characters: prose, lists, quotes, emoji, and code blocks too long for one
    4096-unit part, so some cut must fall inside one."""
    chunks = []
    for n in range(2):
        link = f"[link](https://e.com/{n}_(x))"
        chunks.append(f"## Step {n}\n\nSome *prose* for step {n}, with **bold** and a {link}.")
        chunks.append("- item 😀 one\n- item two & <three>\n> a quote with `code`")
        code = "\n".join(f"    line_{n}_{k} = call({k}) * 2  # `x` \\ <y> & 𝒜" for k in range(100))
        chunks.append(f"```python\ndef step_{n}():\n{code}\n```")
        chunks.append(" ".join(f"word{n}.{k}" for k in range(60)))
    return "\n\n".join(chunks)


OPENING = {"MarkdownV2": "```python\n", "HTML": '<pre><code class="language-python">', None: ""}


@pytest.mark.parametrize("mode", ["MarkdownV2", "HTML", None])
@pytest.mark.parametrize("limit", [4096, 1000, 333])
def test_split_long_answer_fits_parses_and_loses_nothing(mode: str | None, limit: int) -> None:
    markdown = long_answer()
    assert len(markdown) > 10_000
    rendered = render_plain(markdown) if mode is None else render(markdown, mode)
    parts = split(rendered, mode, limit)
    assert len(parts) >= 3
    for part in parts:
        assert utf16_len(part) <= limit
        assert visible(part, mode).strip()
    assert "".join(visible(p, mode) for p in parts) == visible(rendered, mode)
    if mode:  # some code block spans a cut: it was closed and re-opened
        opening = OPENING[mode]
        assert sum(p.count(opening) for p in parts) > rendered.count(opening)


@pytest.mark.parametrize("mode", ["MarkdownV2", "HTML"])
def test_split_reopens_code_block_with_its_language(mode: str) -> None:
    body = "\n".join(f"  x_{k} = {k}  # <&>" for k in range(100))
    parts = split(render(f"intro\n\n```python\n{body}\n```", mode), mode, 500)
    opening = "```python\n" if mode == "MarkdownV2" else '<pre><code class="language-python">'
    assert parts[0].startswith("intro\n\n" + opening)
    assert all(p.startswith(opening + "  x_") for p in parts[1:])  # indentation kept
    assert all(
        p.rstrip().endswith("```" if mode == "MarkdownV2" else "</code></pre>") for p in parts
    )
    assert all(check_v2(p) if mode == "MarkdownV2" else check_html(p) for p in parts)


def test_split_prefers_paragraph_then_line_then_space() -> None:
    para = "a" * 60 + "\n\n" + "b" * 30 + "\n" + "c" * 10 + " " + "d" * 5
    assert split(para, None, 100) == ["a" * 60 + "\n\n", "b" * 30 + "\n" + "c" * 10 + " " + "d" * 5]
    assert (
        split("a" * 30 + "\n" + "b" * 50 + " " + "c" * 40, None, 100)[0]
        == "a" * 30 + "\n" + "b" * 50 + " "
    )
    assert split("a" * 250, None, 100) == ["a" * 100, "a" * 100, "a" * 50]


def test_split_never_cuts_escapes_entities_surrogates_or_links() -> None:
    assert all(
        re.fullmatch(r"(\\\.)+", p)
        for p in split(render("." * 500, "MarkdownV2"), "MarkdownV2", 99)
    )
    assert all(re.fullmatch(r"(&amp;)+", p) for p in split("&amp;" * 100, "HTML", 99))
    assert "".join(split("😀" * 100, None, 99)) == "😀" * 100
    assert all(utf16_len(p) <= 99 and len(p) <= 49 for p in split("😀" * 100, None, 99))
    link = render("x " * 30 + "[a link text](https://e.com/a)" + " y" * 30, "HTML")
    assert all(p.count("<a ") == p.count("</a>") for p in split(link, "HTML", 80))
    assert any('<a href="https://e.com/a">a link text</a>' in p for p in split(link, "HTML", 80))


def test_split_closes_and_reopens_entities_and_quotes() -> None:
    rendered = render("> " + " ".join(f"**w{k}**" for k in range(40)), "MarkdownV2")
    parts = split(rendered, "MarkdownV2", 60)
    assert all(p.startswith(">") for p in parts)
    assert "".join(check_v2(p) for p in parts) == check_v2(rendered)
    long_bold = render("**" + " ".join(["bold"] * 50) + "**", "HTML")
    parts = split(long_bold, "HTML", 60)
    assert all(p.startswith("<b>") and p.rstrip().endswith("</b>") for p in parts)


def test_split_short_and_empty_messages() -> None:
    assert split("hello", "MarkdownV2") == ["hello"]
    assert split("", "HTML") == []
    assert split("  \n\n", None) == []


def test_split_every_prefix_of_the_corpus() -> None:
    for mode in ("MarkdownV2", "HTML"):
        for cut in range(0, len(CORPUS) + 1, 7):
            rendered = render(CORPUS[:cut], mode)
            parts = split(rendered, mode, 80)
            assert all(utf16_len(p) <= 80 for p in parts)
            assert "".join(visible(p, mode) for p in parts) == visible(rendered, mode)


# ---------------------------------------------------------------- interim


def test_interim_short_text_is_text_plus_cursor() -> None:
    assert interim("Hello **wor", " ▉") == "Hello **wor ▉"
    assert interim("", " ▉") == " ▉"


def test_interim_never_exceeds_limit_at_any_prefix() -> None:
    text = CORPUS * 2
    for limit, step in ((300, 1), (4096, 5)):
        for cut in range(0, len(text) + 1, step):
            frame = interim(text[:cut], " ▉", limit)
            assert utf16_len(frame) <= limit - 100
            assert frame.endswith(" ▉")
            assert frame[: -len(" ▉")] in text[:cut]


def test_interim_shows_the_tail_that_will_stay() -> None:
    text = "\n\n".join(f"Paragraph {k}: " + "x" * 200 for k in range(40))
    frame = interim(text, "|", 1000)
    assert utf16_len(frame) <= 900
    assert frame.endswith("x|") and "Paragraph 39" in frame
    assert frame[:-1] == split(text, None, 899)[-1]
    assert "Paragraph 0:" not in frame


def test_interim_counts_astral_characters_and_keeps_pairs() -> None:
    frame = interim("😀" * 3000, "▉", 4096)
    assert utf16_len(frame) <= 3996 and frame.endswith("😀▉")
    assert "".join(split("😀" * 3000, None, 3995)).count("😀") == 3000


def test_interim_rejects_a_limit_without_room() -> None:
    with pytest.raises(ValueError):
        interim("x", " ▉", 101)


def test_split_moves_a_whole_quote_rather_than_leave_it_empty() -> None:
    # regression: a late cut right after <blockquote> once beat an earlier line break
    # (the line break is in the first half of the room, <blockquote> in the second)
    rendered = render("a" * 38 + "\n> [" + "b" * 20 + "](https://e.com/" + "c" * 20 + ")", "HTML")
    parts = split(rendered, "HTML", 100)
    assert [check_html(p) for p in parts] == ["a" * 38 + "\n", "b" * 20]
