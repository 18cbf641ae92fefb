"""What getUpdates returned, checked once: the bot reads these views, never the raw JSON.

Telegram (or a gateway in front of it) may send anything. Each entry of a batch becomes an
`Update` that says which offset confirms it and either holds a checked `Incoming` message
or says, in a few words that never quote the message, why it is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# An offset is update_id + 1 and must stay a signed 64-bit integer (SQLite's INTEGER, and
# Telegram's own int64): a larger "id" is not one Telegram could have sent.
MAX_UPDATE_ID = 2**63 - 2
_MAX_CHAT_ID = 2**63 - 1
# Content a person sent that is not text (service messages such as joins and pins are not).
USER_CONTENT = frozenset(
    {
        "photo",
        "document",
        "voice",
        "video",
        "video_note",
        "audio",
        "sticker",
        "animation",
        "location",
        "venue",
        "contact",
        "poll",
        "dice",
    }
)


class _Malformed(Exception):
    """Raised while reading one message; the text says which field is wrong (never its value)."""


@dataclass(frozen=True)
class Incoming:
    """A message the bot may answer, every field it uses checked for type."""

    chat_id: int
    chat_type: str
    message_id: int | None
    thread_id: int | None  # the forum topic a reply goes to (a reply chain's id is not one)
    sender_id: int | None  # the user who wrote it; None when it was sent on behalf of a chat
    sender_chat_id: int | None  # that chat (a channel, or a group's anonymous admin)
    text: str | None
    has_content: bool  # a photo, voice, sticker, ...: something a person sent that is not text
    reply_to_sender: int | None  # who wrote the message this one replies to
    mentions: frozenset[str]  # the @usernames it mentions, lower case, without the @
    sender_name: str = ""  # " @username (First Last)", for `whoami`
    display_name: str = ""  # how the sender is named to the model in a group ("Ann Lee")
    reply_text: str = ""  # the text of the message this one replies to (capped)
    reply_name: str = ""  # who wrote that message

    @property
    def key(self) -> str:
        """Each chat, and each forum topic, has its own conversation."""
        return f"telegram:{self.chat_id}:{self.thread_id or 0}"

    @property
    def sender_key(self) -> str:
        """Who sent it, for "tell a stranger once": the user, else the chat it came from."""
        if self.sender_id is not None:
            return str(self.sender_id)
        return f"chat{self.sender_chat_id if self.sender_chat_id is not None else self.chat_id}"


@dataclass(frozen=True)
class Update:
    """One entry of a getUpdates result: the offset that confirms it, and what it holds."""

    update_id: int | None  # None: the entry has no usable id
    offset: int | None  # the getUpdates offset that confirms it (None: none can be known)
    message: Incoming | None = None  # None: nothing to answer (another kind, or malformed)
    problem: str = ""  # why it is skipped as malformed; never quotes the update

    @property
    def label(self) -> str:
        """How a log line names it."""
        return f"update {self.update_id}" if self.update_id is not None else "an update"


def read_batch(
    result: list, offset: int | None, kinds: tuple[str, ...] = ("message",)
) -> list[Update]:
    """Each entry of getUpdates' `result`, in order; `offset` is the one the request sent.
    Messages of `kinds` are read, other kinds of update are confirmed and left alone.

    An entry without a usable id is confirmed by its position: Telegram returns updates in
    id order, starting at `offset`, and gives a new update a higher id than any it holds.
    So after an update with id N (or at the start, `offset` - 1), k such entries hold k ids
    above N, and every id from N + 1 to N + k belongs to one of them: offset N + k + 1
    confirms them and nothing unseen.
    """
    updates: list[Update] = []
    known = offset  # updates below this were handled already (the store said, or this batch)
    floor = offset  # the lowest id the next entry can have
    for raw in result:
        update_id = _update_id(raw)
        if update_id is None:
            floor = floor + 1 if floor is not None else None
            updates.append(Update(None, floor, problem=_id_problem(raw)))
            continue
        if known is not None and update_id < known:
            # A server that ignored our offset, or the same id twice: answered before.
            updates.append(Update(update_id, None, problem="an id already handled"))
            continue
        known = update_id + 1
        floor = max(floor or 0, known)
        updates.append(_read_update(raw, update_id, floor, kinds))
    return updates


def _read_update(raw: dict, update_id: int, offset: int, kinds: tuple[str, ...]) -> Update:
    """The Update for an entry with a usable id: its message, or why it is skipped."""
    kind = next((kind for kind in kinds if kind in raw), None)
    if kind is None:
        return Update(update_id, offset)  # a kind not asked for (edits, ...): nothing to do
    try:
        return Update(update_id, offset, message=read_message(raw[kind]))
    except _Malformed as malformed:
        return Update(update_id, offset, problem=f"{kind}: {malformed}")


def _update_id(raw: Any) -> int | None:
    """The entry's update_id, if it is one Telegram could have sent."""
    if not isinstance(raw, dict):
        return None
    value = raw.get("update_id")
    return value if _is_int(value) and 0 <= value <= MAX_UPDATE_ID else None


def _id_problem(raw: Any) -> str:
    """Why an entry has no usable id, in words that quote nothing of it."""
    if not isinstance(raw, dict):
        return f"not an object but {json_type(raw)}"
    if "update_id" not in raw:
        return "no update_id"
    return f"update_id is not an id Telegram uses ({json_type(raw['update_id'])})"


def read_message(raw: Any) -> Incoming:
    """The checked view of a Message object; _Malformed names the first field that is wrong."""
    message = _object(raw, "message")
    chat = _object(message.get("chat"), "chat")
    chat_id = _int(chat.get("id"), "chat.id", limit=_MAX_CHAT_ID)
    sender = _optional_object(message.get("from"), "from")
    sender_chat = _optional_object(message.get("sender_chat"), "sender_chat")
    reply = _optional_object(message.get("reply_to_message"), "reply_to_message")
    reply_sender = _optional_object(reply.get("from"), "reply_to_message.from") if reply else {}
    text = _optional(message.get("text"), str, "text")
    caption = _optional(message.get("caption"), str, "caption")
    entities = _entities(message.get("entities"), "entities")
    entities += _entities(message.get("caption_entities"), "caption_entities")
    # "For backward compatibility, if the message was sent on behalf of a chat, the field
    # [from] contains a fake sender user in non-channel chats": the chat is the sender.
    on_behalf = bool(sender_chat)
    return Incoming(
        chat_id=chat_id,
        chat_type=_optional(chat.get("type"), str, "chat.type") or "",
        message_id=_optional_int(message.get("message_id"), "message_id"),
        thread_id=_thread(message),
        sender_id=None if on_behalf else _optional_int(sender.get("id"), "from.id", sender),
        sender_chat_id=_optional_int(sender_chat.get("id"), "sender_chat.id", sender_chat),
        text=text,
        has_content=bool(USER_CONTENT.intersection(message)),
        reply_to_sender=_optional_int(
            reply_sender.get("id"), "reply_to_message.from.id", reply_sender
        ),
        mentions=_mentions(text if text is not None else caption or "", entities),
        sender_name=_name(sender),
        display_name=_display(sender, sender_chat),
        reply_text=_reply_text(reply),
        reply_name=_display(reply_sender, {}),
    )


REPLY_QUOTE = 300  # characters of a replied-to message the model sees


def _display(user: dict, chat: dict) -> str:
    """A person's name as a reader would say it: "First Last", else @username, else the
    chat's title; a name of the wrong type is left out (it is only shown)."""
    names = [user.get(field) for field in ("first_name", "last_name")]
    name = " ".join(n for n in names if isinstance(n, str) and n.strip())
    handle, title = user.get("username"), chat.get("title")
    for candidate in (name, handle, title):
        if isinstance(candidate, str) and candidate.strip():
            return " ".join(candidate.split())[:64]
    return ""


def _reply_text(reply: dict) -> str:
    """The replied-to message's text or caption, cut to REPLY_QUOTE characters."""
    text = reply.get("text")
    if not isinstance(text, str):
        text = reply.get("caption")
    if not isinstance(text, str):
        return ""
    return text if len(text) <= REPLY_QUOTE else text[: REPLY_QUOTE - 1] + "\u2026"


def _name(user: dict) -> str:
    """ " @username (First Last)"; a name of the wrong type is left out (it is only shown)."""
    names = [user.get(field) for field in ("first_name", "last_name")]
    name = " ".join(n for n in names if isinstance(n, str) and n)
    handle = user.get("username")
    return (f" @{handle}" if isinstance(handle, str) and handle else "") + f" ({name})"


def _thread(message: dict) -> int | None:
    """The forum topic to answer in."""
    # Only a topic message names a thread a reply can go to (a reply chain's id is not one).
    thread = _optional_int(message.get("message_thread_id"), "message_thread_id")
    topic = _optional(message.get("is_topic_message"), bool, "is_topic_message")
    return thread if topic else None


def _entities(raw: Any, name: str) -> list[tuple[str, int, int]]:
    """(type, offset, length) of each entity, offsets in UTF-16 code units."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _Malformed(f"{name} is not a list")
    found = []
    for entity in raw:
        entity = _object(entity, f"an entry of {name}")
        kind = _optional(entity.get("type"), str, f"{name}.type") or ""
        start = _int(entity.get("offset"), f"{name}.offset", limit=2**31)
        length = _int(entity.get("length"), f"{name}.length", limit=2**31)
        found.append((kind, start, length))
    return found


def _mentions(text: str, entities: list[tuple[str, int, int]]) -> frozenset[str]:
    """The @usernames a message mentions (from its entities, so @hermes_bot2 is not us)."""
    names = {
        _utf16_slice(text, start, length).lstrip("@").lower()
        for kind, start, length in entities
        if kind == "mention"
    }
    if not names:  # servers that send no entities: whole words only
        names = {w.lstrip("@").lower().rstrip(".,!?:;") for w in text.split() if w.startswith("@")}
    return frozenset(names)


def _utf16_slice(text: str, start: int, length: int) -> str:
    """text[start:start+length] with offsets in UTF-16 code units, as Telegram counts."""
    encoded = text.encode("utf-16-le")
    return encoded[start * 2 : (start + length) * 2].decode("utf-16-le", "replace")


def _object(value: Any, name: str) -> dict:
    """A required JSON object."""
    if value is None:
        raise _Malformed(f"no {name}")
    if not isinstance(value, dict):
        raise _Malformed(f"{name} is not an object but {json_type(value)}")
    return value


def _optional_object(value: Any, name: str) -> dict:
    """An optional JSON object ({} when absent)."""
    return {} if value is None else _object(value, name)


def _optional(value: Any, kind: type, name: str) -> Any:
    """An optional field of one type (a bool is no int here, as in JSON)."""
    if value is None or (isinstance(value, kind) and (kind is bool or not isinstance(value, bool))):
        return value
    raise _Malformed(f"{name} is not {kind.__name__} but {json_type(value)}")


def _int(value: Any, name: str, *, limit: int) -> int:
    """A required integer within ±`limit`."""
    if value is None:
        raise _Malformed(f"no {name}")
    if not _is_int(value) or not -limit <= value <= limit:
        raise _Malformed(f"{name} is not an integer Telegram uses ({json_type(value)})")
    return value


def _optional_int(value: Any, name: str, required_in: dict | None = None) -> int | None:
    """An optional integer field; required (when `required_in` is a non-empty object)."""
    if value is None and not required_in:
        return None
    return _int(value, name, limit=_MAX_CHAT_ID)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def json_type(value: Any) -> str:
    """The JSON type of a value, for a log line that must not quote the value itself."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an out-of-range number" if abs(value) > _MAX_CHAT_ID else "a number"
    names = {float: "a number", str: "a string", list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)
