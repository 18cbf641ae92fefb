"""The Telegram commands: `hermes telegram send` streams one answer into a chat."""

from __future__ import annotations

import logging
from typing import Any

from .config import Config
from .connection import resolve_verify
from .errors import ConfigError
from .transports.botapi import BotAPI
from .transports.telegram import Delivery, TelegramStreamer

log = logging.getLogger(__name__)


def open_bot(config: Config) -> BotAPI:
    """A Bot API client from the telegram settings (token from env, config or token_file)."""
    token = config.telegram.token
    if not token:
        raise ConfigError(
            "no Telegram bot token: set TELEGRAM_BOT_TOKEN, telegram.token_file or telegram.token",
            "telegram.token",
            config.source,
        )
    verify = resolve_verify(config.provider.ca_bundle, False)
    return BotAPI(token, config.telegram.api_base, verify=verify)


def streamer_for(
    api: BotAPI,
    config: Config,
    chat_id: int | str,
    *,
    thread_id: int | None = None,
    reply_to: int | None = None,
    budgets: Any = None,
) -> TelegramStreamer:
    """A streamer into one chat, set up from the streaming settings."""
    s = config.streaming
    return TelegramStreamer(
        api,
        chat_id,
        thread_id=thread_id,
        reply_to=reply_to,
        enabled=s.enabled,
        transport=s.transport,
        edit_interval=s.edit_interval,
        buffer_threshold=s.buffer_threshold,
        cursor=s.cursor,
        parse_mode=config.telegram.parse_mode,
        tool_progress=config.telegram.tool_progress,
        budgets=budgets,
    )


def stream_into(stream: Any, streamer: TelegramStreamer) -> Delivery:
    """Feed a model stream to a streamer; on Ctrl-C/SIGTERM the partial answer is delivered."""
    try:
        for event in stream:
            streamer.handle(event)
    except KeyboardInterrupt:
        stream.interrupt()
        for event in stream:  # the worker ends with Failed(interrupted), carrying the partial
            streamer.handle(event)
        streamer.close()
        raise
    return streamer.close()


def chat_id_arg(value: str) -> int | str:
    """A chat id: an integer, or a public @channelusername."""
    try:
        return int(value)
    except ValueError:
        if value.startswith("@") and len(value) > 1:
            return value
        raise ValueError(f"not a chat id: {value!r}") from None
