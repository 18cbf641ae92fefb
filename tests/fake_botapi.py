"""A fake Telegram Bot API server for tests: real sockets on 127.0.0.1, Telegram's rules, every call
recorded.

    with FakeBotAPI(per_chat_interval=0.05) as fake:
        api = BotAPI(fake.token, fake.api_base)
        api.send_message(42, "*hi*", parse_mode="MarkdownV2")
        assert fake.texts(42) == ["hi"]
        fake.assert_clean()                     # no payload broke the Bot API spec

Rules it enforces the way Telegram answers them: token (401), unknown method (404), text length in
UTF-16 units after entity parsing, MarkdownV2/HTML markup, "message is not modified", unknown
message ids, drafts only in private chats, forum topics, per-chat and per-group flood limits,
getUpdates offsets / long polling / 409 conflicts. Failures can be scripted per method
(`fail`, `reply`, `drop_connection`, `hang`), and `queue_raw` queues a malformed update.
Every payload is checked with the project's `shared/botapi/validate_payload.py` when that
folder exists beside the checkout.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import socket
import struct
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

DEFAULT_TOKEN = "123456789:AAHermesFakeToken_abcdefghijklmnopq"
VALIDATOR_PATH = Path(__file__).resolve().parents[2] / "shared" / "botapi" / "validate_payload.py"

# Descriptions exactly as the Bot API server words them.
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
TOO_LONG = "Bad Request: message is too long"
TEXT_EMPTY = "Bad Request: message text is empty"
EDIT_NOT_FOUND = "Bad Request: message to edit not found"
DELETE_NOT_FOUND = "Bad Request: message to delete not found"
THREAD_NOT_FOUND = "Bad Request: message thread not found"
DRAFT_PEER_INVALID = "Bad Request: TEXTDRAFT_PEER_INVALID"
DRAFT_ID_INVALID = "Bad Request: DRAFT_ID_INVALID"
BLOCKED = "Forbidden: bot was blocked by the user"
UPGRADED = "Bad Request: group chat was upgraded to a supergroup chat"
WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
POLL_CONFLICT = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)

_CHAT_METHODS = {
    "sendMessage",
    "editMessageText",
    "deleteMessage",
    "sendChatAction",
    "sendMessageDraft",
}
_GROUP_METHODS = {"sendMessage", "editMessageText"}  # "20 messages per minute to the same group"
_ACTIONS = {
    "typing",
    "upload_photo",
    "record_video",
    "upload_video",
    "record_voice",
    "upload_voice",
    "upload_document",
    "choose_sticker",
    "find_location",
    "record_video_note",
    "upload_video_note",
}
# getUpdates with an empty allowed_updates list: "all update types except chat_member,
# message_reaction, and message_reaction_count".
_NOT_BY_DEFAULT = {"chat_member", "message_reaction", "message_reaction_count"}
_WHITESPACE = " \t\r\n"  # Telegram strips these around a message's text


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's limits and entity offsets."""
    return len(text.encode("utf-16-le")) // 2


def _byte_offset(text: str, index: int) -> int:
    """UTF-8 byte offset of `text[index]`, the unit of Telegram's parse error messages."""
    return len(text[:index].encode("utf-8"))


class EntityParseError(Exception):
    """The markup does not parse; the text follows "can't parse entities: "."""


class _Output:
    """Visible text and entities (UTF-16 offsets) as a markup parser produces them."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.u16 = 0
        self.entities: list[dict] = []

    def emit(self, text: str) -> None:
        """Append visible text."""
        self.parts.append(text)
        self.u16 += utf16_len(text)

    def add(self, kind: str, start: int, **extra: Any) -> None:
        """Add an entity from `start` to here; Telegram silently drops empty ones."""
        if self.u16 > start:
            self.entities.append(
                {"type": kind, "offset": start, "length": self.u16 - start, **extra}
            )

    def result(self) -> tuple[str, list[dict]]:
        """The visible text and its entities ordered by offset."""
        return "".join(self.parts), sorted(self.entities, key=lambda e: (e["offset"], -e["length"]))


# ---------------------------------------------------------------------------- MarkdownV2

_MDV2_RESERVED = "_*[]()~`>#+-=|{}.!"
_MDV2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
}
_MDV2_WIDTH = {"underline": 2, "spoiler": 2, "pre": 3}


class _MarkdownV2:
    """A parser for Telegram's MarkdownV2 that follows the Bot API formatting rules."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.out = _Output()
        self.stack: list[tuple[str, int, int, dict]] = []  # kind, u16 start, byte offset, extra
        self.quote: tuple[int, bool] | None = None  # u16 start, expandable

    def parse(self) -> tuple[str, list[dict]]:
        """Visible text and entities, or EntityParseError."""
        s = self.s
        while self.i < len(s):
            at_line_start = self.i == 0 or s[self.i - 1] == "\n"
            if at_line_start and self._quote_marker():
                continue
            c = s[self.i]
            # "Any character with code between 1 and 126 inclusively can be escaped anywhere
            # with a preceding '\' character, in which case it is treated as an ordinary one."
            if c == "\\" and 0 < ord(s[self.i + 1 : self.i + 2] or "\0") <= 126:
                self.out.emit(s[self.i + 1])
                self.i += 2
            elif c not in self._reserved():
                self.out.emit(c)
                self.i += 1
            elif not self._closes_quote():
                self._close() if self.stack and self._ends(self.stack[-1][0]) else self._open()
        if self.stack:
            kind, _, offset, _ = self.stack[-1]
            raise EntityParseError(
                f"Can't find end of {_MDV2_NAMES[kind]} entity at byte offset {offset}"
            )
        self._end_quote()
        return self.out.result()

    def _reserved(self) -> str:
        # "Inside pre and code entities, all '`' and '\' characters must be escaped."
        if self.stack and self.stack[-1][0] in ("code", "pre"):
            return "`"
        return _MDV2_RESERVED

    def _ends(self, kind: str) -> bool:
        s, i = self.s, self.i
        return {
            "bold": s[i] == "*",
            "italic": s[i] == "_" and not s.startswith("__", i),
            "underline": s.startswith("__", i),  # "__" is greedily an underline delimiter
            "strikethrough": s[i] == "~",
            "spoiler": s.startswith("||", i),
            "code": s[i] == "`",
            "pre": s.startswith("```", i),
            "text_link": s[i] == "]",
            "custom_emoji": s[i] == "]",
        }[kind]

    def _open(self) -> None:
        s, i = self.s, self.i
        starts = (
            ("```", "pre"),
            ("__", "underline"),
            ("||", "spoiler"),
            ("![", "custom_emoji"),
            ("_", "italic"),
            ("*", "bold"),
            ("~", "strikethrough"),
            ("[", "text_link"),
            ("`", "code"),
        )
        marker, kind = next(((m, k) for m, k in starts if s.startswith(m, i)), ("", ""))
        if not marker:
            raise EntityParseError(
                f"Character '{s[i]}' is reserved and must be escaped with the preceding '\\'"
            )
        self.i += len(marker)
        extra = self._pre_language() if kind == "pre" else {}
        self.stack.append((kind, self.out.u16, _byte_offset(s, i), extra))

    def _pre_language(self) -> dict:
        """Read "```language" and skip the newline that starts the block."""
        s, start = self.s, self.i
        end = start
        while end < len(s) and not s[end].isspace() and s[end] != "`":
            end += 1
        extra = {}
        if start < end < len(s) and s[end] != "`":
            extra["language"] = s[start:end]
            self.i = end
        if s[self.i : self.i + 1] in ("\n", "\r"):
            pair = s[self.i : self.i + 2]
            self.i += 2 if pair in ("\r\n", "\n\r") else 1
        return extra

    def _close(self) -> None:
        kind, start, _, extra = self.stack.pop()
        self.i += _MDV2_WIDTH.get(kind, 1)
        if kind in ("text_link", "custom_emoji"):
            url = self._link_target()
            if kind == "custom_emoji":
                if not url or not url.startswith("tg://emoji?id="):
                    raise EntityParseError("Custom emoji entity must contain a tg://emoji URL")
                extra = {"custom_emoji_id": url.split("=", 1)[1]}
            elif url is None:
                return  # "[text]" alone: Telegram keeps the text, adds no link
            else:
                extra = {"url": url}
        self.out.add(kind, start, **extra)

    def _link_target(self) -> str | None:
        """The "(url)" after "]"; "Inside (...) part ... ')' and '\\' must be escaped"."""
        s = self.s
        if s[self.i : self.i + 1] != "(":
            return None
        begin = i = self.i + 1
        url = []
        while i < len(s) and s[i] != ")":
            if s[i] == "\\" and 0 < ord(s[i + 1 : i + 2] or "\0") <= 126:
                i += 1
            url.append(s[i])
            i += 1
        if i >= len(s):
            offset = _byte_offset(s, begin)
            raise EntityParseError(f"Can't find end of a URL at byte offset {offset}")
        self.i = i + 1
        return "".join(url)

    def _quote_marker(self) -> bool:
        """At a line start: consume ">" (blockquote) or "**>" (expandable); else end a quote."""
        if self.stack and self.stack[-1][0] in ("code", "pre"):
            return False
        s, i = self.s, self.i
        width = 3 if s.startswith("**>", i) else 1 if s.startswith(">", i) else 0
        if not width:
            self._end_quote()
            return False
        if self.quote is None:
            self.quote = (self.out.u16, width == 3)
        self.i += width
        return True

    def _closes_quote(self) -> bool:
        """ "||" at the end of a line closes an expandable blockquote."""
        s, i = self.s, self.i
        if not (self.quote and self.quote[1] and s.startswith("||", i)):
            return False
        if (self.stack and self.stack[-1][0] == "spoiler") or s[i + 2 : i + 3] not in ("", "\n"):
            return False
        self.i += 2
        self._end_quote()
        return True

    def _end_quote(self) -> None:
        if self.quote is not None:
            start, expandable = self.quote
            self.out.add("expandable_blockquote" if expandable else "blockquote", start)
            self.quote = None


# ---------------------------------------------------------------------------- HTML

_HTML_TAGS = {
    "a": "text_link",
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "span": "spoiler",
    "tg-spoiler": "spoiler",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
    "tg-time": "date_time",
}
# "All numerical HTML entities are supported. The API currently supports only the following
# named HTML entities: &lt;, &gt;, &amp; and &quot;."
_HTML_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_HTML_ENTITY = re.compile(r"&(?:#([0-9]{1,7})|#[xX]([0-9a-fA-F]{1,6})|([a-zA-Z]+));")


def _html_entity(match: re.Match | None) -> str | None:
    """The character an HTML entity stands for, or None if Telegram does not know it."""
    if match is None:
        return None
    if match.group(3):
        return _HTML_NAMED.get(match.group(3))
    code = int(match.group(1)) if match.group(1) else int(match.group(2), 16)
    return chr(code) if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else None


class _HTML:
    """A parser for Telegram's HTML subset; stricter than Telegram about a bare '&'."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.out = _Output()
        self.stack: list[tuple[str, int, dict]] = []  # tag, u16 start, attributes

    def parse(self) -> tuple[str, list[dict]]:
        """Visible text and entities, or EntityParseError."""
        while self.i < len(self.s):
            c = self.s[self.i]
            if c == "&":
                self.out.emit(self._entity())
            elif c != "<":
                self.out.emit(c)
                self.i += 1
            elif self.s.startswith("</", self.i):
                self._close_tag()
            else:
                self._open_tag()
        if self.stack:
            raise EntityParseError(
                f'Can\'t find end tag corresponding to start tag "{self.stack[-1][0]}"'
            )
        return self.out.result()

    def _at(self, index: int) -> int:
        return _byte_offset(self.s, index)

    def _entity(self) -> str:
        # The docs say '&' "must be replaced with &amp;"; the real server keeps a bare '&'
        # literally, this fake refuses it so renderer bugs show up in tests.
        match = _HTML_ENTITY.match(self.s, self.i)
        char = _html_entity(match)
        if match is None or char is None:
            raise EntityParseError(f"Unescaped '&' at byte offset {self._at(self.i)}")
        self.i = match.end()
        return char

    def _open_tag(self) -> None:
        s, begin = self.s, self.i
        end = begin + 1
        while end < len(s) and not s[end].isspace() and s[end] != ">":
            end += 1
        if end >= len(s):
            raise EntityParseError(f"Unclosed start tag at byte offset {self._at(begin)}")
        tag = s[begin + 1 : end].lower()
        if tag not in _HTML_TAGS:
            raise EntityParseError(
                f'Unsupported start tag "{tag}" at byte offset {self._at(begin)}'
            )
        attributes, end = self._attributes(tag, end, begin)
        if tag == "span" and attributes.get("class") != "tg-spoiler":
            raise EntityParseError(
                f'Tag "span" must have class "tg-spoiler" at byte offset {self._at(begin)}'
            )
        self.stack.append((tag, self.out.u16, attributes))
        self.i = end + 1

    def _attributes(self, tag: str, j: int, begin: int) -> tuple[dict, int]:
        """Parse `name="value"` pairs up to '>'; returns them and the index of '>'."""
        s, attributes = self.s, {}
        while True:
            while j < len(s) and s[j].isspace():
                j += 1
            if j >= len(s):
                raise EntityParseError(f"Unclosed start tag at byte offset {self._at(begin)}")
            if s[j] == ">":
                return attributes, j
            k = j
            while k < len(s) and not s[k].isspace() and s[k] not in "=>":
                k += 1
            name = s[j:k].lower()
            if not name:
                raise EntityParseError(
                    f'Empty attribute name in the tag "{tag}" at byte offset {self._at(begin)}'
                )
            while k < len(s) and s[k].isspace():
                k += 1
            if s[k : k + 1] != "=":
                if not (tag == "blockquote" and name == "expandable"):
                    raise EntityParseError(
                        "Expected equal sign in declaration of an attribute "
                        f'of the tag "{tag}" at byte offset {self._at(begin)}'
                    )
                attributes[name], j = "", k
                continue
            attributes[name], j = self._attribute_value(k + 1, begin)

    def _attribute_value(self, j: int, begin: int) -> tuple[str, int]:
        s = self.s
        while j < len(s) and s[j].isspace():
            j += 1
        if j < len(s) and s[j] in "\"'":
            end = s.find(s[j], j + 1)
            if end < 0:
                raise EntityParseError(f"Unclosed start tag at byte offset {self._at(begin)}")
            raw = s[j + 1 : end]
            return _HTML_ENTITY.sub(lambda m: _html_entity(m) or m.group(0), raw), end + 1
        k = j  # "a name token (a sequence of letters, digits, periods, or hyphens)"
        while k < len(s) and (s[k].isalnum() or s[k] in ".-"):
            k += 1
        if k < len(s) and not s[k].isspace() and s[k] != ">":
            raise EntityParseError(f"Unexpected end of name token at byte offset {self._at(k)}")
        return s[j:k].lower(), k

    def _close_tag(self) -> None:
        s, begin = self.s, self.i
        if not self.stack:
            raise EntityParseError(f"Unexpected end tag at byte offset {self._at(begin)}")
        end = begin + 2
        while end < len(s) and not s[end].isspace() and s[end] != ">":
            end += 1
        name = s[begin + 2 : end].lower()
        while end < len(s) and s[end].isspace():
            end += 1
        if end >= len(s) or s[end] != ">":
            raise EntityParseError(f"Unclosed end tag at byte offset {self._at(begin)}")
        tag, start, attributes = self.stack[-1]
        if name and name != tag:
            raise EntityParseError(
                f"Unmatched end tag at byte offset {self._at(begin)}, "
                f'expected "</{tag}>", found "</{name}>"'
            )
        self.stack.pop()
        self._add(tag, start, attributes)
        self.i = end + 1

    def _add(self, tag: str, start: int, attributes: dict) -> None:
        kind, extra = _HTML_TAGS[tag], {}
        if tag == "a":
            if not attributes.get("href"):
                return
            extra["url"] = attributes["href"]
        elif tag == "code" and attributes.get("class", "").startswith("language-"):
            extra["language"] = attributes["class"][len("language-") :]
        elif tag == "pre" and self.out.entities and self.out.entities[-1]["offset"] == start:
            inner = self.out.entities[-1]  # <pre><code class="language-x"> is one pre entity
            if inner["type"] == "code" and inner["length"] == self.out.u16 - start:
                self.out.entities.pop()
                extra = {"language": inner["language"]} if "language" in inner else {}
        elif tag == "blockquote" and "expandable" in attributes:
            kind = "expandable_blockquote"
        elif tag == "tg-emoji":
            extra["custom_emoji_id"] = attributes.get("emoji-id", "")
        self.out.add(kind, start, **extra)


def parse_text(text: str, parse_mode: str | None) -> tuple[str, list[dict]]:
    """What a user sees: (visible text, entities) for "MarkdownV2", "HTML" or no parse mode."""
    mode = (parse_mode or "none").lower()
    if mode == "markdownv2":
        return _MarkdownV2(text).parse()
    if mode == "html":
        return _HTML(text).parse()
    if mode == "none":
        return text, []
    raise ValueError(f"parse mode {parse_mode!r} is not modelled")


def _strip(text: str, entities: list[dict]) -> tuple[str, list[dict]]:
    """Telegram trims whitespace around a message; entities are shifted and clipped to match."""
    stripped = text.strip(_WHITESPACE)
    shift = utf16_len(text[: len(text) - len(text.lstrip(_WHITESPACE))])
    size, kept = utf16_len(stripped), []
    for entity in entities:
        start = max(entity["offset"] - shift, 0)
        end = min(entity["offset"] + entity["length"] - shift, size)
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    return stripped, kept


# ---------------------------------------------------------------------------- validator

_STRUCTURAL = {"unknown_method", "missing_required", "unknown_param", "wrong_type", "invalid_json"}
# Bot API 10.3 fields of sendMessageDraft (notes §1.2), for specs that predate them.
_DRAFT_FIELDS = {
    "chat_id": int,
    "message_thread_id": int,
    "draft_id": int,
    "text": str,
    "parse_mode": str,
    "entities": list,
    "can_stop": bool,
    "keep_on_stop": bool,
}
# Prose rules the fake answers itself, with Telegram's own descriptions.
_SELF_ANSWERED = {"text", "parse_mode", "draft_id", "chat_id"}
_validators: dict[Path, Callable[[str, dict], list[dict]] | None] = {}


def load_validator(path: Path = VALIDATOR_PATH) -> Callable[[str, dict], list[dict]] | None:
    """`check(method, payload) -> errors` from the shared validator, or None if it is absent."""
    if path not in _validators:
        _validators[path] = _import_validator(path) if path.parent.is_dir() else None
    return _validators[path]


def _import_validator(path: Path) -> Callable[[str, dict], list[dict]]:
    spec = importlib.util.spec_from_file_location("hermes_shared_validate_payload", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    backend = module.SpecBackend(str(path.with_name("api.json")))

    def check(method: str, payload: dict) -> list[dict]:
        errors = module.validate(method, payload, backend)["errors"]
        if method == "sendMessageDraft":
            errors = _draft_errors(errors, payload)
        return errors

    return check


def _draft_errors(errors: list[dict], payload: dict) -> list[dict]:
    """Judge sendMessageDraft by the notes' field list where the spec lacks the method/fields."""
    if any(e["kind"] == "unknown_method" for e in errors):
        errors = [
            {"kind": "missing_required", "param": name, "detail": "required"}
            for name in ("chat_id", "draft_id")
            if name not in payload
        ]
        for name, value in payload.items():
            kind = _DRAFT_FIELDS.get(name)
            if kind is None or not _is_a(value, kind):
                errors.append(
                    {
                        "kind": "unknown_param" if kind is None else "wrong_type",
                        "param": name,
                        "detail": "per Bot API 10.3",
                    }
                )
    return [e for e in errors if not (e["kind"] == "unknown_param" and e["param"] in _DRAFT_FIELDS)]


def _is_a(value: Any, kind: type) -> bool:
    """isinstance, except that True/False are Booleans only, never Integers."""
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


# ---------------------------------------------------------------------------- records


@dataclass
class Call:
    """One request the fake received and what it answered."""

    method: str
    payload: dict
    time: float
    chat_id: int | str | None
    status: int | None  # None when the connection was dropped or left hanging
    response: Any  # the JSON object sent back, raw bytes, or None
    action: str | None = None  # "drop" / "hang" for scripted network failures

    @property
    def ok(self) -> bool:
        """Whether the call succeeded."""
        return isinstance(self.response, dict) and self.response.get("ok") is True

    @property
    def description(self) -> str | None:
        """Telegram's error description, if any."""
        return self.response.get("description") if isinstance(self.response, dict) else None


@dataclass
class FakeMessage:
    """A message in a chat as the user sees it; `text` is the visible text."""

    message_id: int
    chat_id: int | str
    text: str
    entities: list[dict]
    source: str  # the text as sent, markup included
    parse_mode: str | None
    message_thread_id: int | None
    from_bot: bool = True
    reply_to: int | None = None
    date: int = 0
    edit_date: int | None = None
    deleted: bool = False
    history: list[str] = field(default_factory=list)  # earlier visible texts, oldest first


@dataclass
class FakeDraft:
    """The streaming draft currently shown in a chat/topic."""

    draft_id: int
    text: str
    entities: list[dict]
    source: str
    parse_mode: str | None
    message_thread_id: int | None
    updated_at: float
    updates: int = 1


@dataclass
class _Chat:
    chat_id: int | str
    messages: dict[int, FakeMessage] = field(default_factory=dict)
    topics: set[int] = field(default_factory=set)
    drafts: dict[int | None, FakeDraft] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)
    next_message_id: int = 1
    tokens: float | None = None  # per-chat token bucket
    refilled_at: float = 0.0
    group_times: deque = field(default_factory=deque)
    refusal: Reply | None = None  # blocked / migrated: every chat call gets this


@dataclass
class Reply:
    """An HTTP answer: JSON (or raw bytes), or a network failure ("drop", "hang")."""

    status: int = 200
    body: Any = None
    content_type: str = "application/json"
    action: str | None = None
    seconds: float = 0.0


@dataclass
class RawUpdate:
    """An entry of getUpdates' result exactly as a broken server would send it (any JSON
    value), queued at position `update_id` so offsets confirm it like any other update."""

    update_id: int
    value: Any


def _id_of(update: dict | RawUpdate) -> int:
    return update.update_id if isinstance(update, RawUpdate) else update["update_id"]


def _json_of(update: dict | RawUpdate) -> Any:
    return update.value if isinstance(update, RawUpdate) else dict(update)


class FakeClock:
    """A clock tests move by hand: `FakeBotAPI(clock=clock)`, then `clock.advance(1.5)`."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


class _Refusal(Exception):
    """Raised by rules: the call is answered with this Bot API error."""

    def __init__(self, code: int, description: str, parameters: dict | None = None) -> None:
        super().__init__(description)
        self.reply = error_reply(code, description, parameters)


class _Violation(Exception):
    """Raised by rules: the payload breaks the spec or the project's calling convention."""

    def __init__(self, errors: list) -> None:
        super().__init__(errors)
        self.errors = errors


def error_reply(code: int, description: str, parameters: dict | None = None) -> Reply:
    """The Bot API error shape; "The HTTP status equals error_code"."""
    body = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return Reply(code, body)


def text_update(
    user_id: int,
    text: str,
    *,
    chat_id: int | None = None,
    message_id: int = 1,
    message_thread_id: int | None = None,
) -> dict:
    """An Update (without update_id) for a text message from `user_id` (private unless chat_id)."""
    chat_id = user_id if chat_id is None else chat_id
    message = {
        "message_id": message_id,
        "date": int(time.time()),
        "chat": _chat_json(chat_id),
        "from": {"id": user_id, "is_bot": False, "first_name": "Test"},
        "text": text,
    }
    if message_thread_id is not None:
        message.update(message_thread_id=message_thread_id, is_topic_message=True)
    return {"message": message}


def _chat_json(chat_id: int | str) -> dict:
    if isinstance(chat_id, str):
        name = chat_id.lstrip("@")
        return {"id": -1001000000001, "type": "channel", "title": name, "username": name}
    if chat_id > 0:
        return {"id": chat_id, "type": "private", "first_name": "Test"}
    kind = "supergroup" if chat_id <= -1000000000000 else "group"
    return {"id": chat_id, "type": kind, "title": "Test group"}


def _chat_key(chat_id: Any) -> int | str:
    """The server accepts an integer id, its decimal string, or an @username."""
    if isinstance(chat_id, str) and chat_id.lstrip("-").isdigit():
        return int(chat_id)
    return chat_id


# ---------------------------------------------------------------------------- the server


class FakeBotAPI:
    """A threaded fake Bot API on 127.0.0.1 that enforces Telegram's rules and records calls."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        per_chat_interval: float = 1.0,
        per_chat_burst: int = 3,
        group_limit: int = 20,
        group_window: float = 60.0,
        bot_limit: int = 30,
        bot_window: float = 1.0,
        retry_after: float | None = None,
        rate_limits: bool = True,
        clock: Callable[[], float] = time.monotonic,
        validator_path: Path | None = VALIDATOR_PATH,
        draft_ttl: float = 30.0,
        first_update_id: int = 1000,
    ) -> None:
        self.token = token
        #: Flood control: a token bucket per chat over every chat method (one call per
        #: `per_chat_interval` seconds, `per_chat_burst` in a row), plus at most `group_limit`
        #: sends/edits per `group_window` seconds in a group (negative chat id).
        self.per_chat_interval = per_chat_interval
        self.per_chat_burst = per_chat_burst
        self.group_limit = group_limit
        self.group_window = group_window
        #: "not more than 30 messages per second" for the whole bot, whatever the chats.
        self.bot_limit = bot_limit
        self.bot_window = bot_window
        self._bot_times: deque[float] = deque()
        self.commands: dict[str, list[str]] = {}  # scope (as JSON) -> the commands set for it
        self.retry_after = retry_after  # None: ceil(seconds until allowed), at least 1
        self.rate_limits = rate_limits
        self.clock = clock
        self.draft_ttl = draft_ttl
        self.webhook_url = ""
        self.poll_conflict = False  # True: getUpdates answers 409 as if another bot polls
        self._check = load_validator(validator_path) if validator_path else None
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._calls: list[Call] = []
        self._violations: list[dict] = []
        self._scripts: dict[str, deque[Reply]] = {}
        self._chats: dict[int | str, _Chat] = {}
        self._updates: list[dict | RawUpdate] = []
        self._next_update_id = first_update_id
        self._allowed: set[str] | None = None
        self._poll_generation = 0
        self._pollers = 0
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._closed = False
        self._handlers = self._method_table()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self.api_base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.005}, daemon=True
        )
        self._thread.start()

    def __repr__(self) -> str:
        return f"FakeBotAPI({self.api_base!r})"

    def __enter__(self) -> FakeBotAPI:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving, wake hanging requests and long polls, close sockets; idempotent."""
        with self._changed:
            if self._closed:
                return
            self._closed = True
            self._stopping.set()
            self._changed.notify_all()
        self._server.shutdown()
        self._server.server_close()
        for connection in list(self._connections):
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)

    @property
    def validating(self) -> bool:
        """Whether payloads are checked with the shared validator."""
        return self._check is not None

    # ------------------------------------------------------------------ test API: scripting

    def script(self, method: str, reply: Reply, times: int = 1) -> None:
        """Answer the next `times` calls of `method` ("*" = any method) with `reply`."""
        with self._lock:
            self._scripts.setdefault(method, deque()).extend([reply] * times)

    def fail(
        self,
        method: str,
        error_code: int = 500,
        description: str | None = None,
        *,
        times: int = 1,
        retry_after: int | None = None,
        migrate_to_chat_id: int | None = None,
    ) -> None:
        """Make the next calls fail with a Bot API error (default 500 Internal Server Error)."""
        parameters = {"retry_after": retry_after, "migrate_to_chat_id": migrate_to_chat_id}
        parameters = {k: v for k, v in parameters.items() if v is not None}
        text = description or ("Internal Server Error" if error_code >= 500 else "Bad Request")
        self.script(method, error_reply(error_code, text, parameters), times)

    def reply(
        self,
        method: str,
        status: int,
        body: bytes | str,
        content_type: str = "text/html",
        times: int = 1,
    ) -> None:
        """Make the next calls get a raw body, e.g. a proxy's HTML error page."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.script(method, Reply(status, data, content_type), times)

    def drop_connection(self, method: str, times: int = 1) -> None:
        """Make the next calls see the connection reset without an answer."""
        self.script(method, Reply(action="drop"), times)

    def hang(self, method: str, seconds: float = 30.0, times: int = 1) -> None:
        """Make the next calls get no answer for `seconds` (or until close), then a reset."""
        self.script(method, Reply(action="hang", seconds=seconds), times)

    # ------------------------------------------------------------------ test API: world state

    def add_topic(self, chat_id: int, message_thread_id: int) -> None:
        """Register a forum topic, so `message_thread_id` is accepted in that chat."""
        with self._lock:
            self._chat(chat_id).topics.add(message_thread_id)

    def remove_topic(self, chat_id: int, message_thread_id: int) -> None:
        """Delete a forum topic: later calls naming it get "message thread not found"."""
        with self._lock:
            self._chat(chat_id).topics.discard(message_thread_id)

    def block_chat(
        self, chat_id: int | str, description: str = BLOCKED, error_code: int = 403
    ) -> None:
        """Every later call to this chat fails (default: the user blocked the bot)."""
        with self._lock:
            self._chat(chat_id).refusal = error_reply(error_code, description)

    def migrate_chat(self, chat_id: int, new_chat_id: int) -> None:
        """The group became a supergroup: calls to `chat_id` carry `migrate_to_chat_id`."""
        with self._lock:
            self._chat(chat_id).refusal = error_reply(
                400, UPGRADED, {"migrate_to_chat_id": new_chat_id}
            )

    def queue_update(self, update: dict) -> dict:
        """Add an Update (update_id is assigned) for getUpdates; wakes long polls."""
        with self._changed:
            update = {"update_id": self._next_update_id, **update}
            self._next_update_id += 1
            if self._wanted(update):
                self._updates.append(update)
                self._changed.notify_all()
            return update

    def queue_raw(self, value: Any) -> int:
        """Queue any JSON value as an entry of getUpdates' result (a malformed update); it
        takes the next update id, which a well-formed update would have had. Returns it."""
        with self._changed:
            update_id = self._next_update_id
            self._next_update_id += 1
            self._updates.append(RawUpdate(update_id, value))
            self._changed.notify_all()
            return update_id

    def queue_text(
        self,
        user_id: int,
        text: str,
        *,
        chat_id: int | None = None,
        message_thread_id: int | None = None,
    ) -> dict:
        """Queue a user's text message (private unless `chat_id`); the chat remembers it."""
        with self._lock:
            chat = self._chat(user_id if chat_id is None else chat_id)
            message = self._store(chat, text, [], text, None, message_thread_id, from_bot=False)
            update = text_update(
                user_id,
                text,
                chat_id=chat_id,
                message_id=message.message_id,
                message_thread_id=message_thread_id,
            )
            return self.queue_update(update)

    def _wanted(self, update: dict) -> bool:
        """Whether `allowed_updates` (the last one a getUpdates call passed) lets it through."""
        kind = next((key for key in update if key != "update_id"), "")
        if self._allowed is None:
            return kind not in _NOT_BY_DEFAULT
        return kind in self._allowed

    # ------------------------------------------------------------------ test API: inspection

    @property
    def calls(self) -> list[Call]:
        """Every call received so far, in order."""
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str, chat_id: int | str | None = None) -> list[Call]:
        """The calls of one method (optionally in one chat)."""
        return [
            c
            for c in self.calls
            if c.method == method and (chat_id is None or c.chat_id == chat_id)
        ]

    @property
    def violations(self) -> list[dict]:
        """Payloads that broke the Bot API spec or the project's convention (POST + JSON)."""
        with self._lock:
            return list(self._violations)

    def assert_clean(self) -> None:
        """Fail the test if any payload was a violation."""
        assert not self.violations, f"Bot API payload violations: {self.violations}"

    def wait_for_calls(
        self, count: int = 1, method: str | None = None, timeout: float = 5.0
    ) -> list[Call]:
        """Block until `count` calls (of `method`) were answered; returns them."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(matching := [c for c in self._calls if method in (None, c.method)]) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"waited {timeout}s for {count} {method or 'calls'}, got {len(matching)}"
                    )
                self._changed.wait(remaining)
            return matching

    def wait_for_pollers(self, count: int = 1, timeout: float = 5.0) -> None:
        """Block until `count` getUpdates long polls are waiting for updates."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._pollers < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no getUpdates long poll within {timeout}s")
                self._changed.wait(remaining)

    def messages(self, chat_id: int | str, *, include_deleted: bool = False) -> list[FakeMessage]:
        """The bot's messages in a chat, oldest first."""
        with self._lock:
            chat = self._chat(chat_id)
            return [
                m
                for m in chat.messages.values()
                if m.from_bot and (include_deleted or not m.deleted)
            ]

    def texts(self, chat_id: int | str) -> list[str]:
        """The visible text of each of the bot's messages in a chat: what the user reads."""
        return [m.text for m in self.messages(chat_id)]

    def message(self, chat_id: int | str, message_id: int) -> FakeMessage | None:
        """Any message of a chat (the bot's or a user's, deleted or not)."""
        with self._lock:
            return self._chat(chat_id).messages.get(message_id)

    def draft(self, chat_id: int, message_thread_id: int | None = None) -> FakeDraft | None:
        """The draft the user sees now: None once a message replaced it or it expired."""
        with self._lock:
            draft = self._chat(chat_id).drafts.get(message_thread_id)
            if draft and self.clock() - draft.updated_at >= self.draft_ttl:
                return None  # "the draft is an ephemeral 30-second preview"
            return draft

    def chat_actions(self, chat_id: int | str) -> list[str]:
        """The chat actions ("typing", ...) sent to a chat, in order."""
        with self._lock:
            return list(self._chat(chat_id).actions)

    @property
    def pending_updates(self) -> list[dict]:
        """Updates not yet confirmed by a getUpdates offset."""
        with self._lock:
            return [_json_of(update) for update in self._updates]

    # ------------------------------------------------------------------ request handling

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        match = re.fullmatch(r"/bot([^/]*)/([A-Za-z0-9_]+)/?", urlsplit(handler.path).path)
        if match is None:
            reply = error_reply(404, "Not Found")
        else:
            content_type = handler.headers.get("Content-Type", "")
            reply = self._answer(handler.command, content_type, match[1], match[2], body)
        if reply.action == "hang":
            self._stopping.wait(reply.seconds)
        _send(handler, reply)

    def _answer(self, verb: str, content_type: str, token: str, name: str, body: bytes) -> Reply:
        method = _canonical(name, self._handlers)
        payload, problem = _decode(verb, content_type, body)
        try:
            with self._lock:
                reply = self._route(token, method, payload, problem)
        except Exception:  # a bug in the fake: say so loudly rather than drop the connection
            self._violation(
                method, payload, [{"kind": "fake_crashed", "detail": traceback.format_exc()}]
            )
            reply = error_reply(500, "Internal Server Error: the fake Bot API crashed")
        self._record(method, payload, reply)
        return reply

    def _route(self, token: str, method: str, payload: dict, problem: str | None) -> Reply:
        if token != self.token:
            return error_reply(401, "Unauthorized")
        handler = self._handlers.get(method)
        if handler is None:
            return error_reply(404, "Not Found: method not found")
        try:
            if problem:
                raise _Violation([{"kind": "convention", "detail": problem}])
            self._validate(method, payload)
            scripted = self._next_script(method)
            if scripted is not None:
                return scripted
            self._chat_rules(method, payload)
            return Reply(200, {"ok": True, "result": handler(payload)})
        except _Refusal as refusal:
            return refusal.reply
        except _Violation as violation:
            self._violation(method, payload, violation.errors)
            summary = "; ".join(f"{e.get('kind')}:{e.get('param')}" for e in violation.errors)
            return error_reply(400, f"Bad Request: payload violates the Bot API spec ({summary})")

    def _validate(self, method: str, payload: dict) -> None:
        if self._check is None:
            return
        errors = self._check(method, payload)
        answered_here = [
            e for e in errors if e["kind"] == "bad_value" and e["param"] in _SELF_ANSWERED
        ]
        wrong = [e for e in errors if e not in answered_here]
        if wrong:
            raise _Violation(wrong)

    def _next_script(self, method: str) -> Reply | None:
        for key in (method, "*"):
            queue = self._scripts.get(key)
            if queue:
                return queue.popleft()
        return None

    def _violation(self, method: str, payload: dict, errors: list) -> None:
        with self._lock:
            self._violations.append({"method": method, "payload": payload, "errors": errors})

    def _record(self, method: str, payload: dict, reply: Reply) -> None:
        chat_id = _chat_key(payload.get("chat_id")) if isinstance(payload, dict) else None
        status = None if reply.action else reply.status
        call = Call(method, payload, self.clock(), chat_id, status, reply.body, reply.action)
        with self._changed:
            self._calls.append(call)
            self._changed.notify_all()

    # ------------------------------------------------------------------ chat rules

    def _chat(self, chat_id: Any) -> _Chat:
        key = _chat_key(chat_id)
        if key not in self._chats:
            self._chats[key] = _Chat(key)
        return self._chats[key]

    def _chat_rules(self, method: str, payload: dict) -> None:
        if method not in _CHAT_METHODS:
            return
        chat = self._chat(payload["chat_id"])
        if chat.refusal is not None:
            raise _Refusal(
                chat.refusal.body["error_code"],
                chat.refusal.body["description"],
                chat.refusal.body.get("parameters"),
            )
        self._flood_control(chat, method)
        thread = payload.get("message_thread_id")
        if thread is not None and thread not in chat.topics:
            raise _Refusal(400, THREAD_NOT_FOUND)

    def _flood_control(self, chat: _Chat, method: str) -> None:
        """A 429 past ~1 call/s per chat or 20 messages/min per group (Bots FAQ)."""
        if not self.rate_limits:
            return
        now = self.clock()
        is_group = isinstance(chat.chat_id, int) and chat.chat_id < 0
        counts_in_group = is_group and method in _GROUP_METHODS
        wait = max(self._bucket_wait(chat, now), self._group_wait(chat, now, counts_in_group))
        wait = max(wait, self._bot_wait(now))
        if wait > 0:
            seconds = self.retry_after if self.retry_after is not None else max(1, math.ceil(wait))
            raise _Refusal(
                429, f"Too Many Requests: retry after {seconds}", {"retry_after": seconds}
            )
        if self.per_chat_interval > 0:
            chat.tokens -= 1
        if counts_in_group:
            chat.group_times.append(now)
        self._bot_times.append(now)

    def _bot_wait(self, now: float) -> float:
        times = self._bot_times
        while times and times[0] <= now - self.bot_window:
            times.popleft()
        if not self.bot_limit or len(times) < self.bot_limit:
            return 0.0
        return times[0] + self.bot_window - now

    def _bucket_wait(self, chat: _Chat, now: float) -> float:
        if self.per_chat_interval <= 0:
            return 0.0
        if chat.tokens is None:
            chat.tokens = float(self.per_chat_burst)
        else:
            refill = (now - chat.refilled_at) / self.per_chat_interval
            chat.tokens = min(float(self.per_chat_burst), chat.tokens + refill)
        chat.refilled_at = now
        return 0.0 if chat.tokens >= 1 else (1 - chat.tokens) * self.per_chat_interval

    def _group_wait(self, chat: _Chat, now: float, counts: bool) -> float:
        times = chat.group_times
        while times and times[0] <= now - self.group_window:
            times.popleft()
        if not counts or not self.group_limit or len(times) < self.group_limit:
            return 0.0
        return times[0] + self.group_window - now

    def _visible(self, payload: dict, *, allow_empty: bool = False) -> tuple[str, list[dict]]:
        """The text a user would see, or the error Telegram gives for it."""
        text, mode = payload.get("text", ""), payload.get("parse_mode")
        if len(text.encode("utf-8")) > 32768:
            raise _Refusal(400, "Bad Request: text is too long")
        if (mode or "").lower() == "markdown":
            raise _Violation(
                [
                    {
                        "kind": "not_modelled",
                        "param": "parse_mode",
                        "detail": "legacy Markdown; use MarkdownV2 or HTML",
                    }
                ]
            )
        try:
            plain, entities = parse_text(text, mode)
        except ValueError:
            raise _Refusal(400, "Bad Request: unsupported parse_mode") from None
        except EntityParseError as exc:
            raise _Refusal(400, f"Bad Request: can't parse entities: {exc}") from None
        if not mode:
            entities = list(payload.get("entities") or [])
        plain, entities = _strip(plain, entities)
        # "1-4096 characters after entities parsing"; counted here in UTF-16 units.
        if utf16_len(plain) > 4096:
            raise _Refusal(400, TOO_LONG)
        if not plain and not allow_empty:
            raise _Refusal(400, TEXT_EMPTY)
        return plain, entities

    # ------------------------------------------------------------------ methods

    def _method_table(self) -> dict[str, Callable[[dict], Any]]:
        return {
            "getMe": self._get_me,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "deleteMessage": self._delete_message,
            "sendMessageDraft": self._send_message_draft,
            "sendChatAction": self._send_chat_action,
            "getUpdates": self._get_updates,
            "getWebhookInfo": self._get_webhook_info,
            "deleteWebhook": self._delete_webhook,
            "setWebhook": self._set_webhook,
            "setMyCommands": self._set_my_commands,
        }

    def _bot_user(self) -> dict:
        prefix = self.token.split(":")[0]
        return {
            "id": int(prefix) if prefix.isdigit() else 1,
            "is_bot": True,
            "first_name": "Hermes Test",
            "username": "hermes_test_bot",
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "has_topics_enabled": False,
        }

    def _get_me(self, payload: dict) -> dict:
        return self._bot_user()

    def _store(
        self,
        chat: _Chat,
        text: str,
        entities: list,
        source: str,
        parse_mode: str | None,
        thread: int | None,
        **extra: Any,
    ) -> FakeMessage:
        message = FakeMessage(
            chat.next_message_id,
            chat.chat_id,
            text,
            entities,
            source,
            parse_mode,
            thread,
            date=int(time.time()),
            **extra,
        )
        chat.messages[message.message_id] = message
        chat.next_message_id += 1
        return message

    def _message_json(self, message: FakeMessage) -> dict:
        out = {
            "message_id": message.message_id,
            "from": self._bot_user(),
            "date": message.date,
            "chat": _chat_json(message.chat_id),
            "text": message.text,
        }
        if message.entities:
            out["entities"] = message.entities
        if message.message_thread_id is not None:
            out.update(message_thread_id=message.message_thread_id, is_topic_message=True)
        if message.edit_date is not None:
            out["edit_date"] = message.edit_date
        return out

    def _send_message(self, payload: dict) -> dict:
        chat = self._chat(payload["chat_id"])
        text, entities = self._visible(payload)
        reply_to = self._reply_target(chat, payload.get("reply_parameters"))
        thread = payload.get("message_thread_id")
        message = self._store(
            chat,
            text,
            entities,
            payload["text"],
            payload.get("parse_mode"),
            thread,
            reply_to=reply_to,
        )
        # Clients delete a draft "when a normal message arrives in the same chat / topic".
        chat.drafts.pop(thread, None)
        return self._message_json(message)

    def _reply_target(self, chat: _Chat, parameters: dict | None) -> int | None:
        if not parameters:
            return None
        target = chat.messages.get(parameters.get("message_id"))
        if target is not None and not target.deleted:
            return target.message_id
        if parameters.get("allow_sending_without_reply"):
            return None
        raise _Refusal(400, "Bad Request: message to be replied not found")

    def _edit_message_text(self, payload: dict) -> dict:
        if "inline_message_id" in payload:
            raise _Violation([{"kind": "not_modelled", "param": "inline_message_id"}])
        message = self._chat(payload["chat_id"]).messages.get(payload["message_id"])
        if message is None or message.deleted:
            raise _Refusal(400, EDIT_NOT_FOUND)
        if not message.from_bot:
            raise _Refusal(400, "Bad Request: message can't be edited")
        text, entities = self._visible(payload)
        # Telegram compares what the user would see: visible text and its entities.
        if (text, entities) == (message.text, message.entities):
            raise _Refusal(400, NOT_MODIFIED)
        message.history.append(message.text)
        message.text, message.entities, message.source = text, entities, payload["text"]
        message.parse_mode, message.edit_date = payload.get("parse_mode"), int(time.time())
        return self._message_json(message)

    def _delete_message(self, payload: dict) -> bool:
        message = self._chat(payload["chat_id"]).messages.get(payload["message_id"])
        if message is None or message.deleted:
            raise _Refusal(400, DELETE_NOT_FOUND)
        message.deleted = True
        return True

    def _send_message_draft(self, payload: dict) -> bool:
        chat_id = _chat_key(payload["chat_id"])
        # "Unique identifier for the target private chat"; groups answer TEXTDRAFT_PEER_INVALID.
        if not isinstance(chat_id, int) or chat_id < 0:
            raise _Refusal(400, DRAFT_PEER_INVALID)
        if payload.get("draft_id") == 0:  # "must be non-zero"
            raise _Refusal(400, DRAFT_ID_INVALID)
        text, entities = self._visible(payload, allow_empty=True)  # 0-4096 since Bot API 10.0
        chat, thread = self._chat(chat_id), payload.get("message_thread_id")
        previous = chat.drafts.get(thread)
        same_id = previous is not None and previous.draft_id == payload["draft_id"]
        updates = previous.updates + 1 if same_id else 1
        chat.drafts[thread] = FakeDraft(
            payload["draft_id"],
            text,
            entities,
            payload.get("text", ""),
            payload.get("parse_mode"),
            thread,
            self.clock(),
            updates,
        )
        return True

    def _send_chat_action(self, payload: dict) -> bool:
        if payload["action"] not in _ACTIONS:
            raise _Refusal(400, "Bad Request: wrong parameter action in request")
        self._chat(payload["chat_id"]).actions.append(payload["action"])
        return True

    def _get_updates(self, payload: dict) -> list[dict]:
        if self.webhook_url:
            raise _Refusal(409, WEBHOOK_CONFLICT)
        if self.poll_conflict:
            raise _Refusal(409, POLL_CONFLICT)
        if "allowed_updates" in payload:  # omitted: "the previous setting will be used"
            self._allowed = set(payload["allowed_updates"]) or None
        self._confirm(payload.get("offset"))
        self._long_poll(min(max(payload.get("timeout", 0), 0), 50))
        limit = min(max(payload.get("limit", 100), 1), 100)
        return [_json_of(update) for update in self._updates[:limit]]

    def _confirm(self, offset: int | None) -> None:
        """ "An update is considered confirmed as soon as getUpdates is called with an offset
        higher than its update_id"; a negative offset keeps only the last -offset updates."""
        if offset is None:
            return
        if offset < 0:
            self._updates = self._updates[offset:]
        else:
            self._updates = [u for u in self._updates if _id_of(u) >= offset]

    def _long_poll(self, timeout: float) -> None:
        """Wait (lock released) until an update arrives, time runs out, or a newer poll
        supersedes this one ("terminated by other getUpdates request")."""
        self._poll_generation += 1
        generation, deadline = self._poll_generation, time.monotonic() + timeout
        self._pollers += 1
        self._changed.notify_all()
        try:
            while not self._updates and not self._stopping.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._changed.wait(remaining)
                if self._poll_generation != generation:
                    raise _Refusal(409, POLL_CONFLICT)
        finally:
            self._pollers -= 1

    def _get_webhook_info(self, payload: dict) -> dict:
        return {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }

    def _delete_webhook(self, payload: dict) -> bool:
        self.webhook_url = ""
        if payload.get("drop_pending_updates"):
            self._updates = []
        return True

    def _set_my_commands(self, payload: dict) -> bool:
        """ "command: Text of the command; 1-32 characters. Can contain only lowercase English
        letters, digits and underscores"; "description: 1-256 characters"; at most 100."""
        commands = payload.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _Refusal(400, "Bad Request: too many commands")
        for command in commands:
            name = command.get("command", "") if isinstance(command, dict) else ""
            if not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise _Refusal(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(command.get("description", "")) <= 256:
                raise _Refusal(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        scope = payload.get("scope") or {"type": "default"}
        self.commands[json.dumps(scope, sort_keys=True)] = [c["command"] for c in commands]
        return True

    def _set_webhook(self, payload: dict) -> bool:
        self.webhook_url = payload["url"]
        return True


def _canonical(name: str, handlers: dict) -> str:
    """Method names are case-insensitive: "getme" is getMe."""
    return next((known for known in handlers if known.lower() == name.lower()), name)


def _decode(verb: str, content_type: str, body: bytes) -> tuple[dict, str | None]:
    """The JSON payload, or a note when the request breaks the project's POST+JSON rule."""
    if verb != "POST" or not content_type.startswith("application/json"):
        return {}, f"hermes_min must POST JSON (got {verb} {content_type or 'no body'})"
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        return {}, "the body is not JSON"
    return (payload, None) if isinstance(payload, dict) else ({}, "the JSON body is not an object")


def _send(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
    """Write `reply` with a Content-Length, or reset the connection for "drop"/"hang"."""
    if reply.action:
        handler.close_connection = True
        # SO_LINGER 0: closing sends a TCP RST, the way a crashed proxy or NAT drops a request.
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return
    data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
    handler.send_response(reply.status)
    handler.send_header("Content-Type", reply.content_type)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeBotAPI

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up are normal here (timeouts, resets); other errors are printed."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like api.telegram.org
    disable_nagle_algorithm = True  # headers and body are two writes: avoid a 40 ms stall

    def setup(self) -> None:
        super().setup()
        self.server.fake._connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._connections.discard(self.connection)

    def do_POST(self) -> None:
        self.server.fake._serve(self)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read `fake.calls` instead."""
