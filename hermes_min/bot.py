"""The Telegram commands: `hermes telegram send` streams one answer into a chat, `poll`
answers the bot's messages, `whoami` lists who wrote to it."""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Config
from .connection import bundled_ca_context, resolve_verify
from .errors import ConfigError, HermesError, StreamError, UsageError
from .transports.botapi import BotAPI

if TYPE_CHECKING:  # the streamer loads only when a message is answered (cron runs that
    # find nothing to do never need it)
    from .events import Failed
    from .transports.telegram import Delivery, TelegramStreamer

log = logging.getLogger(__name__)


def telegram(args: argparse.Namespace) -> int:
    """`hermes telegram send|poll|whoami`."""
    if args.action == "poll":
        return _poll(args)
    if args.action == "whoami":
        return _whoami(args)
    return _send(args)


def _poll(args: argparse.Namespace) -> int:
    """Answer the pending messages; map failures to cron's exit codes (1 by hand, 75 later)."""
    from .poll import EX_TEMPFAIL, PollError, Signals, Wakeup
    from .storage import StorageError

    with Signals() as signals:
        try:
            return _poll_with(args, signals)
        except (Wakeup, KeyboardInterrupt):
            return 128 + (signals.signum or signal.SIGINT)
        except StorageError as error:
            busy = "locked" in str(error) or "busy" in str(error)
            raise PollError(str(error), EX_TEMPFAIL if busy else 1) from None
        except HermesError as error:
            if isinstance(error, PollError) or error.exit_code != 2:
                raise
            raise PollError(str(error), 1) from None  # cron's contract: 1 = fix by hand


def _poll_with(args: argparse.Namespace, signals: Any) -> int:
    """Run the poller under the bot's lock, with the store and a lazily built agent."""
    from . import assemble
    from .commands import load
    from .poll import Poller, bot_id, get_me, run_lock
    from .storage import default_path

    config = load(args)
    state = Path(config.storage.path or default_path())
    with open_bot(config) as api:
        with run_lock(
            state.with_name(f"telegram-{bot_id(config.telegram.token)}.lock"), args.wait_lock
        ):
            bot = get_me(api)
            if args.delete_webhook:
                api.delete_webhook()
            with assemble.store(config, required=True) as store, _LazyAgent(config) as agent:
                poller = Poller(config, api, store, agent.get, signals, bot=bot)
                return poller.run(
                    once=args.once, max_seconds=args.max_seconds, max_updates=args.max_updates
                )


class _LazyAgent:
    """The model client and agent, built at the first message (a quiet run needs neither)."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.client: Any = None
        self.agent: Any = None

    def get(self) -> Any:
        from . import assemble

        if self.agent is None:
            streaming = self.config.streaming.enabled
            client = self.client or assemble.chat_client(self.config, streaming)
            self.client = client
            client.resolve_model()
            self.agent = assemble.agent(self.config, client, (), streaming)
        return self.agent

    def __enter__(self) -> _LazyAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.close()
        if self.agent is not None and self.agent.fallback is not None:
            self.agent.fallback.close()


def _whoami(args: argparse.Namespace) -> int:
    """Print who has written to the bot; answers and confirms nothing."""
    from .cli import EXIT_OK, say
    from .commands import load
    from .poll import whoami

    with open_bot(load(args)) as api:
        lines = whoami(api)
    for line in lines:
        print(line)
    if not lines:
        say("no pending messages: send the bot a message, then run this again")
    return EXIT_OK


def _send(args: argparse.Namespace) -> int:
    """Stream the answer to a prompt into one chat; 0 only when all of it was delivered."""
    from . import assemble
    from .cli import EXIT_ERROR, EXIT_OK, say
    from .commands import client, load, messages, prompt

    try:
        chat_id = chat_id_arg(args.chat_id)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    config = load(args)
    request = messages(args.system, prompt(args))
    streaming = config.streaming.enabled
    with open_bot(config) as api, client(config, streaming) as model_client:
        model_client.resolve_model()
        agent = assemble.agent(config, model_client, args.tool, streaming)
        streamer = streamer_for(
            api, config, chat_id, thread_id=args.thread_id, reply_to=args.reply_to
        )
        with agent.turn(request) as turn:
            try:
                delivery = stream_into(turn, streamer)
            except KeyboardInterrupt:
                say(f"interrupted; {streamer.delivery.describe()}")
                raise
    if delivery.complete:
        return EXIT_OK
    say(delivery.describe())
    return EXIT_ERROR


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
    verify = resolve_verify(None, False)
    context = bundled_ca_context() if verify is True else None  # no CA file: certifi's
    return BotAPI(
        token, config.telegram.api_base, verify=verify, proxies=proxies, ssl_context=context
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
