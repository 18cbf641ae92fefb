"""The bot's own commands: answered by the bot itself, never sent to the model.

/new starts over, /help lists the commands that work in this chat, /system shows or sets
this chat's system prompt (kept for the chat and topic, also over /new; "/system -" goes
back to the default), /model shows or switches among telegram.models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..config import Config
from ..storage import Store
from .chats import ChatSettings
from .updates import Incoming

_PROMPT_SHOWN = 500  # characters of a system prompt /system shows
NAMES = frozenset({"/new", "/help", "/start", "/system", "/model"})  # answered by the bot


@dataclass(frozen=True)
class Reply:
    """What a command says in the chat, and the store write committed with its update."""

    text: str
    write: Callable[[], None] | None = None
    confirm: bool = True  # False: the effect is only in the store (do not confirm it alone)


def menu(config: Config) -> list[tuple[str, str]]:
    """The commands that work, as (name, description) for /help and setMyCommands."""
    commands = [
        ("new", "start a new conversation"),
        ("system", "show or set this chat's system prompt (/system - resets it)"),
    ]
    if config.telegram.models:
        commands.append(("model", "show or switch the model"))
    commands.append(("help", "what this bot does"))
    return commands


class Commands:
    """Runs one command for a message; `reply` is None for a command that is not ours."""

    def __init__(self, config: Config, store: Store, settings: ChatSettings) -> None:
        self.config, self.store, self.settings = config, store, settings

    def reply(self, name: str, argument: str, message: Incoming, model: str | None) -> Reply | None:
        """The reply to /name (None: not one of ours, so it goes to the model as text)."""
        if name in ("/start", "/help"):
            return Reply(self._help())
        if name == "/new":
            return Reply("Starting a new conversation.", self._reset(message), confirm=False)
        if name == "/system":
            return self._system(argument, message)
        if name == "/model":
            return self._model(argument, message, model)
        return None

    def _help(self) -> str:
        lines = ["Send me a message and I will answer it."]
        # /start (what Telegram sends when someone opens the bot) works too; the menu leaves
        # it out, as Telegram's own clients show a Start button instead.
        shown = {"help": "/help, /start"}
        lines += [f"{shown.get(name, '/' + name)}: {text}" for name, text in menu(self.config)]
        return "\n".join(lines)

    def _reset(self, message: Incoming) -> Callable[[], None]:
        return lambda: self.store.reset_key(message.key)

    def _system(self, argument: str, message: Incoming) -> Reply:
        if not argument:
            prompt = self.settings.persona(message) or ""
            if not prompt:
                return Reply("No system prompt. /system TEXT sets one for this chat.")
            cut = prompt if len(prompt) <= _PROMPT_SHOWN else prompt[:_PROMPT_SHOWN] + "\u2026"
            return Reply(f"System prompt:\n{cut}")
        if argument == "-":
            write = self.settings.choose_system(message, "")
            return Reply("System prompt reset to the default.", write, confirm=False)
        write = self.settings.choose_system(message, argument)
        return Reply("System prompt set for this chat.", write, confirm=False)

    def _model(self, argument: str, message: Incoming, model: str | None) -> Reply:
        offered = self.config.telegram.models
        if not offered:
            return Reply(f"This chat uses {model or 'the default model'}; switching is off.")
        if not argument:
            return Reply(f"Model: {model or 'the default'}. Available: {', '.join(offered)}.")
        if argument not in offered:
            return Reply(f"There is no model {argument!r} here. Available: {', '.join(offered)}.")
        write = self.settings.choose_model(message, argument)
        return Reply(f"Now using {argument}.", write, confirm=False)
