"""The Telegram commands: `hermes telegram send` streams one answer into a chat."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .config import Config
from .connection import resolve_verify
from .errors import ConfigError, StreamError
from .transports.botapi import BotAPI

if TYPE_CHECKING:  # the streamer loads only when a message is answered (cron runs that
    # find nothing to do never need it)
    from .events import Failed
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
    # Not provider.ca_bundle: that may hold only an internal CA, which would make every
    # call to api.telegram.org fail. The CA environment variables and the system store apply.
    proxy = config.telegram.proxy
    proxies = {"http": proxy, "https": proxy} if proxy else None  # else HTTPS_PROXY etc.
    return BotAPI(
        token, config.telegram.api_base, verify=resolve_verify(None, False), proxies=proxies
    )


def streamer_for(
    api: BotAPI,
    config: Config,
    chat_id: int | str,
    *,
    thread_id: int | None = None,
    reply_to: int | None = None,
    budgets: Any = None,
    announce_failures: bool = True,
) -> TelegramStreamer:
    """A streamer into one chat, set up from the streaming settings."""
    from .transports.telegram import TelegramStreamer

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
        announce_failures=announce_failures,
        budgets=budgets,
    )


def stream_into(stream: Any, streamer: TelegramStreamer) -> Delivery:
    """Feed a model stream (or agent turn) to a streamer; on Ctrl-C/SIGTERM the partial
    answer is delivered, marked as cut, and the signal re-raised."""
    try:
        for event in stream:
            streamer.handle(event)
            if streamer.stopped:  # the chat is gone: stop paying for the answer
                stream.interrupt()
                break
    except KeyboardInterrupt:
        stream.interrupt()
        streamer.handle(_ending(stream))
        streamer.close()
        raise
    return streamer.close()


def _ending(stream: Any) -> Failed:
    """The interrupted stream's last event, with what had arrived."""
    from .events import Failed

    try:
        stream.result()
    except StreamError as error:
        return Failed(error)
    return Failed(StreamError("interrupted", "interrupted"))


def chat_id_arg(value: str) -> int | str:
    """A chat id: an integer, or a public @channelusername."""
    try:
        return int(value)
    except ValueError:
        if value.startswith("@") and len(value) > 1:
            return value
        raise ValueError(f"not a chat id: {value!r}") from None
