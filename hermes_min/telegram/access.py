"""Who may reach the model: allowed users and chats, and in groups only when addressed."""

from __future__ import annotations

import re

from ..config import Config
from ..errors import ConfigError
from .commands import NAMES
from .updates import Incoming


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

    def verdict(self, message: Incoming) -> str:
        """ "answer", "deny" (a stranger) or "ignore" (a group message not meant for us)."""
        if message.chat_type in ("group", "supergroup") and self.group_mode == "mention":
            if not self._addressed(message):
                return "ignore"  # group chatter is nobody's business, allowed or not
        allowed_user = message.sender_id is not None and message.sender_id in self.users
        if not allowed_user and message.chat_id not in self.chats:
            return "deny"
        return "answer"

    def _addressed(self, message: Incoming) -> bool:
        if message.reply_to_sender is not None and message.reply_to_sender == self.bot_id:
            return True
        if bool(self.username) and self.username in message.mentions:
            return True
        # A command is addressed: /new@thisbot, and one of ours with no bot named (/new);
        # one addressed to another bot, or another bot's own, is not for us.
        text = message.text or ""
        return self.command(text) in NAMES or _names_us(text, self.username)

    def command(self, text: str) -> str:
        """The bot command the text starts with ("/new"), if it is meant for this bot."""
        word = text.strip().split()[0] if text.strip() else ""
        if not word.startswith("/") or len(word) < 2:
            return ""
        name, _, target = word.partition("@")
        return name.lower() if not target or target.lower() == self.username else ""

    def for_another_bot(self, text: str) -> bool:
        """Whether the text starts with a command addressed to another bot (/start@other)."""
        word = text.strip().split()[0] if text.strip() else ""
        name, at, target = word.partition("@")
        return word.startswith("/") and bool(at) and target.lower() != self.username

    @staticmethod
    def argument(text: str) -> str:
        """What follows the command word ("/system Be brief" -> "Be brief")."""
        parts = text.strip().split(maxsplit=1)
        return parts[1].strip() if len(parts) > 1 else ""

    def strip_mention(self, text: str) -> str:
        """The text without the bot's @name (the model needs the question, not the address);
        a longer name that starts like ours (@hermes_bot2) is not ours."""
        if not self.username:
            return text
        mention = re.compile(rf"@{re.escape(self.username)}(?![A-Za-z0-9_])", re.IGNORECASE)
        return " ".join(mention.sub(" ", text).split()) if mention.search(text) else text


def _names_us(text: str, username: str) -> bool:
    """Whether the text starts with a command addressed to us by name (/cmd@us)."""
    word = text.strip().split()[0] if text.strip() else ""
    return bool(username) and word.startswith("/") and word.lower().endswith("@" + username)
