"""What the model is told for a Telegram chat: the chat's system prompt and model, and each
message with who wrote it and what it replies to."""

from __future__ import annotations

from collections.abc import Callable

from ..config import Config
from ..storage import Store
from .updates import Incoming

_GROUPS = ("group", "supergroup")


class ChatSettings:
    """Per-chat settings: config overrides by chat id, and the chat's own /model choice."""

    def __init__(self, config: Config, store: Store, bot_id: object) -> None:
        self.telegram = config.telegram
        self.store = store
        self._model_key = f"telegram.{bot_id}.model"
        self._system_key = f"telegram.{bot_id}.system"

    def persona(self, message: Incoming) -> str | None:
        """The system prompt: this chat's /system (kept for the chat and topic, also over
        /new), else the chat's configured one, else the bot's."""
        chosen = self.store.get_state(f"{self._system_key}.{message.key}")
        if isinstance(chosen, str) and chosen:
            return chosen
        own = self._override(message).get("system")
        return own if own else self.telegram.system

    def choose_system(self, message: Incoming, system: str) -> Callable[[], None]:
        """The store write that makes `system` this chat's prompt ("": back to the default)."""
        return lambda: self.store.set_state(f"{self._system_key}.{message.key}", system)

    def model(self, message: Incoming, default: str | None) -> str | None:
        """The model to answer in this chat: its /model choice (while still offered), else
        the chat's configured one, else `default`."""
        chosen = self.store.get_state(f"{self._model_key}.{message.key}")
        if isinstance(chosen, str) and chosen in self.telegram.models:
            return chosen
        return self._override(message).get("model") or default

    def choose_model(self, message: Incoming, name: str) -> Callable[[], None]:
        """The store write that makes `name` this chat's model (committed with the update)."""
        return lambda: self.store.set_state(f"{self._model_key}.{message.key}", name)

    def _override(self, message: Incoming) -> dict:
        found = self.telegram.chats.get(message.chat_id)
        return found if isinstance(found, dict) else {}


def user_text(message: Incoming, text: str) -> str:
    """The user's turn as the model reads it: in a group, who speaks; anywhere, the message
    it replies to (quoted, capped), so "translate this" has something to translate."""
    lines = []
    if message.reply_text:
        by = f" {message.reply_name}" if message.reply_name else ""
        quoted = "\n".join(f"> {line}" for line in message.reply_text.splitlines() or [""])
        lines.append(f"(replying to a message{by and ' from' + by}:)\n{quoted}")
    if message.chat_type in _GROUPS and message.display_name:
        text = f"{message.display_name}: {text}"
    lines.append(text)
    return "\n".join(lines)
