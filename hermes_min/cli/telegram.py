"""The Telegram commands: `hermes telegram send` streams one answer into a chat, `poll`
answers the bot's messages, `whoami` lists who wrote to it."""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path

from .. import assemble
from ..agent import Agent
from ..client import ChatClient
from ..config import Config
from ..errors import ConfigError, PollError, StorageError, TelegramError, UsageError, Wakeup
from ..storage import default_path, open_store
from ..telegram.botapi import BotAPI
from ..telegram.commands import menu
from ..telegram.poller import Poller, get_me, poll_error, whoami
from ..telegram.runlock import EX_TEMPFAIL, lock_path, run_lock
from ..telegram.signals import Signals
from ..visible import printable
from .ask import messages, prompt
from .console import EXIT_ERROR, EXIT_OK, say
from .settings import load

log = logging.getLogger(__name__)


def telegram(args: argparse.Namespace) -> int:
    """`hermes telegram send|poll|whoami`."""
    if args.action == "poll":
        return _poll(args)
    if args.action == "whoami":
        return _whoami(args)
    if args.action == "setup":
        return _setup(args)
    return _send(args)


def _poll(args: argparse.Namespace) -> int:
    """Answer the pending messages; map failures to cron's exit codes (1 by hand, 75 later)."""
    with Signals() as signals:
        try:
            return _poll_with(args, signals)
        except (Wakeup, KeyboardInterrupt):
            return 128 + (signals.signum or signal.SIGINT)
        except StorageError as error:
            raise PollError(str(error), EX_TEMPFAIL if error.busy else 1) from None
        except (ConfigError, UsageError) as error:
            raise PollError(str(error), 1) from None  # cron's contract: 1 = fix by hand


def _poll_with(args: argparse.Namespace, signals: Signals) -> int:
    """Run the poller under the bot's lock, with the store and a lazily built agent."""
    config = load(args)
    state = Path(config.storage.path or default_path())
    with open_bot(config) as api:
        assert config.telegram.token is not None  # open_bot refuses a missing token
        with run_lock(lock_path(state, config.telegram.token), args.wait_lock):
            bot = get_me(api)
            if args.delete_webhook:
                api.delete_webhook()
            if not args.once:  # a long-running bot keeps Telegram's menu current
                _register_quietly(api, config)
            store = open_store(config, required=True)
            assert store is not None  # required: a failure raised
            with store, _LazyAgent(config) as agent:
                poller = Poller(config, api, store, agent.get, signals, bot=bot)
                return poller.run(
                    once=args.once, max_seconds=args.max_seconds, max_updates=args.max_updates
                )


class _LazyAgent:
    """The model client and agent, built at the first message (a quiet run needs neither)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.client: ChatClient | None = None
        self.agent: Agent | None = None

    def get(self) -> Agent:
        """The agent, built (and its model resolved) on first use."""
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


def _setup(args: argparse.Namespace) -> int:
    """Register the bot's commands with Telegram (its menu shows them)."""
    config = load(args)
    with open_bot(config) as api:
        names = register_commands(api, config)
    print(f"registered {len(names)} commands: {', '.join('/' + name for name in names)}")
    return EXIT_OK


def _whoami(args: argparse.Namespace) -> int:
    """Print who has written to the bot; answers and confirms nothing."""
    config = load(args)
    with open_bot(config) as api:
        lines = whoami(api, config)
    for line in lines:
        print(printable(line))  # names are a stranger's text: no control characters
    if not lines:
        say("no pending messages: send the bot a message, then run this again")
    return EXIT_OK


def _send(args: argparse.Namespace) -> int:
    """Stream the answer to a prompt into one chat; 0 only when all of it was delivered."""
    from ..telegram.streamer import stream_into, streamer_for

    try:
        chat_id = chat_id_arg(args.chat_id)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    config = load(args)
    request = messages(args.system, prompt(args))
    streaming = config.streaming.enabled
    with open_bot(config) as api, assemble.chat_client(config, streaming) as model_client:
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


def register_commands(api: BotAPI, config: Config) -> list[str]:
    """setMyCommands with the commands that work; their names."""
    commands = menu(config)
    try:
        api.set_my_commands(commands)
    except TelegramError as error:
        raise poll_error(error) from None
    return [name for name, _ in commands]


def _register_quietly(api: BotAPI, config: Config) -> None:
    """The menu is a convenience: a failure to set it is logged, the bot runs on."""
    try:
        register_commands(api, config)
    except PollError as error:
        log.warning("the command menu was not updated: %s", error)


def open_bot(config: Config) -> BotAPI:
    """A Bot API client from the telegram settings (token from env, config or token_file)."""
    token = config.telegram.token
    if not token:
        raise ConfigError(
            "no Telegram bot token: set TELEGRAM_BOT_TOKEN, telegram.token_file or telegram.token",
            "telegram.token",
            config.source,
        )
    return BotAPI(token, config.telegram.api_base, proxy=config.telegram.proxy)


def chat_id_arg(value: str) -> int | str:
    """A chat id: an integer, or a public @channelusername."""
    try:
        return int(value)
    except ValueError:
        if value.startswith("@") and len(value) > 1:
            return value
        raise ValueError(f"not a chat id: {value!r}") from None
