"""Who may reach the model: allowed users and chats, and in groups only when addressed."""

from __future__ import annotations

from ..config import Config
from ..errors import ConfigError


class Access:
    """The bot's access rules, from telegram.allowed_users, allowed_chats and group_mode."""

    def __init__(self, config: Config, bot: dict) -> None:
        t = config.telegram
        if not (t.allowed_users or t.allowed_chats):
            raise ConfigError(
                "telegram poll answers nobody until telegram.allowed_users or "
                "telegram.allowed_chats is set; `hermes telegram whoami` shows the ids of "
                "whoever has written to the bot",
                "telegram.allowed_users",
                config.source,
            )
        self.users, self.chats = set(t.allowed_users), set(t.allowed_chats)
        self.group_mode = t.group_mode
        self.bot_id, self.username = bot.get("id"), (bot.get("username") or "").lower()

    def verdict(self, message: dict) -> str:
        """ "answer", "deny" (a stranger) or "ignore" (a group message not meant for us)."""
        sender = (message.get("from") or {}).get("id")
        chat = message.get("chat") or {}
        if chat.get("type") in ("group", "supergroup") and self.group_mode == "mention":
            if not self._addressed(message):
                return "ignore"  # group chatter is nobody's business, allowed or not
        if sender not in self.users and chat.get("id") not in self.chats:
            return "deny"
        return "answer"

    def _addressed(self, message: dict) -> bool:
        reply = message.get("reply_to_message") or {}
        if (reply.get("from") or {}).get("id") == self.bot_id:
            return True
        return bool(self.username) and self.username in _mentions(message)

    def command(self, text: str) -> str:
        """The bot command the text starts with ("/new"), if it is meant for this bot."""
        word = text.strip().split()[0] if text.strip() else ""
        if not word.startswith("/"):
            return ""
        name, _, target = word.partition("@")
        return name.lower() if not target or target.lower() == self.username else ""

    def strip_mention(self, text: str) -> str:
        """The text without the bot's @name (the model needs the question, not the address)."""
        if not self.username:
            return text
        at = f"@{self.username}"
        index = text.lower().find(at)
        return (text[:index] + text[index + len(at) :]).strip() if index >= 0 else text


def _mentions(message: dict) -> set[str]:
    """The @usernames a message mentions (from its entities, so @hermes_bot2 is not us)."""
    text = message.get("text") or message.get("caption") or ""
    names = set()
    for entity in message.get("entities") or message.get("caption_entities") or ():
        if entity.get("type") == "mention":
            start, length = entity.get("offset", 0), entity.get("length", 0)
            names.add(_utf16_slice(text, start, length).lstrip("@").lower())
    if not names:  # servers that send no entities: whole words only
        names = {w.lstrip("@").lower().rstrip(".,!?:;") for w in text.split() if w.startswith("@")}
    return names


def _utf16_slice(text: str, start: int, length: int) -> str:
    """text[start:start+length] with offsets in UTF-16 code units, as Telegram counts."""
    encoded = text.encode("utf-16-le")
    return encoded[start * 2 : (start + length) * 2].decode("utf-16-le", "replace")
