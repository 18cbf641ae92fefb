"""`hermes telegram poll`: answer each allowed message once, from cron or as a long poll.

The update offset and the chat's conversation are written in one transaction after an
update is handled, and Telegram only learns the offset (which confirms updates) at the
next getUpdates: a run killed at any instant loses nothing, and the only update that can
be answered twice is one whose answer Telegram accepted just before the kill.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

from .bot import stream_into, streamer_for
from .config import Config
from .conversation import Conversation
from .errors import ConfigError, HermesError, StreamError
from .transports import botapi
from .transports.pacing import Budgets

log = logging.getLogger(__name__)

EX_TEMPFAIL = 75  # sysexits.h: "temporary failure ... the user is invited to retry later"
LONG_POLL = 50  # seconds: Telegram's own maximum for getUpdates' timeout
_TEXT_ONLY = "I can only read text messages."
_HELP = "Send me a message and I will answer it. /new starts a new conversation."
_NEW = "Starting a new conversation."
# Failures of our own network set-up, not of Telegram: retrying later cannot help.
_SETUP_FAILURES = ("sslerror", "proxyerror", "invalidschema", "invalidurl", "socks")
_CONFIG_REFUSALS = {401, 403, 404}  # the model's endpoint refuses us: fix the config
_USER_CONTENT = {
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


class PollError(HermesError):
    """The run cannot go on; `exit_code` says: retry later (75) or a human must fix it (1)."""

    def __init__(self, message: str, exit_code: int = 1, *, final: bool = False) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.retry_after: float | None = None
        self.final = final  # stop even a long poll (another poller: waiting cannot help)


class Wakeup(BaseException):
    """A signal arrived while we were only waiting: stop waiting.

    A BaseException, like KeyboardInterrupt, so no `except Exception` on the way swallows it.
    """


class Signals:
    """SIGINT/SIGTERM: the first lets the update in progress finish, a second cuts it.

    Only one signal ever raises inside an answer: whatever follows (delivering the cut
    answer, recording it) must not be cut again, or an answer could be sent and not kept.
    """

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.signum: int | None = None
        self.idle = False  # True only while waiting on Telegram or a back-off
        self._cut = False
        self._previous: dict = {}

    def __enter__(self) -> Signals:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: object) -> None:
        second = self.stop.is_set()
        self.signum = self.signum or signum
        self.stop.set()
        if self.idle:
            self.idle = False
            raise Wakeup
        if second and not self._cut:
            self._cut = True
            raise KeyboardInterrupt  # the answer in progress is cut, delivered and kept


@contextlib.contextmanager
def run_lock(path: Path, wait: bool) -> Iterator[None]:
    """One run per bot: flock on `path`, which the kernel releases on any exit, kill -9 too."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise PollError(
                f"another poll run holds {path}; this one stops (--wait-lock waits for it instead)",
                EX_TEMPFAIL,
            ) from None
        yield
    finally:
        os.close(fd)


class Access:
    """Who may reach the model: allowed users and chats, and in groups only when asked."""

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


class Poller:
    """Fetches updates and handles them one at a time, recording each as it is done."""

    def __init__(
        self,
        config: Config,
        api: Any,
        store: Any,
        make_agent: Callable[[], Any],
        signals: Signals,
        *,
        bot: dict,
        budgets: Budgets | None = None,
    ) -> None:
        self.config, self.api, self.store, self.signals = config, api, store, signals
        self._make_agent = make_agent
        self._agent: Any = None
        self.budgets = budgets or Budgets(config.streaming.edit_interval)
        self.access = Access(config, bot)
        self.offset_key = f"telegram.{self.access.bot_id}.offset"
        self.handled = 0
        self._last_reason = ""

    # ---------------------------------------------------------------- the loop

    def run(self, *, once: bool, max_seconds: float | None, max_updates: int | None) -> int:
        """Poll until done (once), a limit, or a signal; return the exit code."""
        deadline = time.monotonic() + max_seconds if max_seconds is not None else None
        failures = 0
        while not self._should_stop(deadline, max_updates):
            try:
                updates = self._fetch(0 if once else self._poll_timeout(deadline))
            except Wakeup:
                break
            except PollError as error:
                if once or error.exit_code != EX_TEMPFAIL or error.final:
                    raise
                failures = self._back_off(failures, error)
                continue
            if not updates and once:
                break
            outcome = self._handle_all(updates, deadline, max_updates)
            if outcome == "retry":
                if once:
                    raise PollError("will retry the next run: " + self._last_reason, EX_TEMPFAIL)
                failures = self._back_off(failures, PollError(self._last_reason, EX_TEMPFAIL))
            else:
                failures = 0
        return self._exit_code(once)

    @staticmethod
    def _poll_timeout(deadline: float | None) -> int:
        """Long-poll no longer than --max-seconds has left."""
        if deadline is None:
            return LONG_POLL
        return max(0, min(LONG_POLL, int(deadline - time.monotonic())))

    def _should_stop(self, deadline: float | None, max_updates: int | None) -> bool:
        if self.signals.stop.is_set():
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return True
        return max_updates is not None and self.handled >= max_updates

    def _exit_code(self, once: bool) -> int:
        if self.signals.signum is None or not once:
            return 0  # a long poll stopped by a signal has done its job
        return 128 + self.signals.signum

    def _fetch(self, timeout: int) -> list[dict]:
        offset = self.store.get_state(self.offset_key)
        try:
            self.signals.idle = True
            return self.api.get_updates(offset=offset, timeout=timeout, allowed_updates=["message"])
        except botapi.TelegramError as error:
            raise poll_error(error) from None
        finally:
            self.signals.idle = False

    def _back_off(self, failures: int, error: PollError) -> int:
        """Wait longer after each failure in a row (never spin); a signal ends the wait."""
        delay = min(2.0**failures, 60.0) * random.uniform(0.8, 1.2)
        delay = max(delay, error.retry_after or 0.0)
        log.warning("%s; trying again in %.0f s", error, delay)
        try:
            self.signals.idle = True
            self.signals.stop.wait(delay)
        except Wakeup:
            pass
        finally:
            self.signals.idle = False
        return failures + 1

    def _handle_all(
        self, updates: list[dict], deadline: float | None, max_updates: int | None
    ) -> str:
        for update in updates:
            if self._should_stop(deadline, max_updates):
                return "done"
            if self._handle(update) == "retry":
                return "retry"  # order matters: nothing after it is started
            self.handled += 1
        return "done"

    # ---------------------------------------------------------------- one update

    def _handle(self, update: dict) -> str:
        message = update.get("message")
        if not isinstance(message, dict):
            return self._skip(update)  # nothing else is asked for; confirm and move on
        verdict = self.access.verdict(message)
        if verdict == "deny":
            self._deny(message)
        if verdict != "answer":
            return self._skip(update)
        text = message.get("text")
        if not isinstance(text, str):
            if _USER_CONTENT.intersection(message):  # not for joins, pins, topic events
                self._say(message, _TEXT_ONLY)
            return self._skip(update)
        command = self.access.command(text)
        if command in ("/start", "/help"):
            self._say(message, _HELP)
            return self._skip(update)
        if command == "/new":
            return self._new(update, message)
        return self._answer(update, message, self.access.strip_mention(text))

    def _skip(self, update: dict) -> str:
        with self.store.transaction():
            self.store.set_state(self.offset_key, update["update_id"] + 1)
        return "done"

    def _new(self, update: dict, message: dict) -> str:
        with self.store.transaction():
            self.store.reset_key(_key(message))
            self.store.set_state(self.offset_key, update["update_id"] + 1)
        self._say(message, _NEW)
        return "done"

    def _answer(self, update: dict, message: dict, text: str) -> str:
        agent = self._agent_or_retry()
        if agent is None:
            return "retry"
        conversation = Conversation.for_key(self.store, _key(message), model=agent.client.model)
        streamer = streamer_for(
            self.api,
            self.config,
            message["chat"]["id"],
            thread_id=_thread(message),
            reply_to=message.get("message_id"),
            budgets=self.budgets,
            announce_failures=False,
        )
        turn = conversation.ask(agent, text)
        try:
            delivery = stream_into(turn, streamer)
        except KeyboardInterrupt:  # a second signal: what reached the chat is kept
            delivery = streamer.close()  # (waits, if the cut was mid-delivery)
            if delivery.parts_sent or (delivery.error is not None and delivery.error.uncertain):
                self._record(update, conversation, turn, delivery)
            raise
        return self._settle(update, conversation, turn, delivery, streamer)

    def _agent_or_retry(self) -> Any:
        """The agent (built at the first message); None if the model cannot be reached now."""
        if self._agent is not None:
            return self._agent
        try:
            self._agent = self._make_agent()
        except StreamError as error:
            if not _transient(error):
                raise PollError(f"the model cannot be used: {error}") from None
            self._last_reason = str(error)
            return None
        return self._agent

    def _settle(
        self, update: dict, conversation: Any, turn: Any, delivery: Any, streamer: Any
    ) -> str:
        """Record the update as handled, or leave it for the next try."""
        error = delivery.error
        if delivery.parts_sent or (error is not None and botapi.is_fatal_for_chat(error)):
            return self._record(update, conversation, turn, delivery)  # never asked again
        if error is not None and error.uncertain:
            return self._record(update, conversation, turn, delivery)  # it may be there
        model_error = _turn_error(turn)
        if model_error is not None and not _transient(model_error):
            return self._refused(update, conversation, turn, delivery, model_error)
        if error is not None and not (botapi.is_transient(error) or botapi.is_rate_limited(error)):
            log.error("update %s skipped: %s", update["update_id"], error)
            return self._record(update, conversation, turn, delivery)  # retrying cannot help
        self._last_reason = str(model_error or error or "nothing was delivered")
        streamer.discard_preview()  # the next try starts clean
        return "retry"

    def _refused(
        self, update: dict, conversation: Any, turn: Any, delivery: Any, error: StreamError
    ) -> str:
        """The model cannot answer this message; say so, and let the next ones through."""
        if error.status in _CONFIG_REFUSALS:
            raise PollError(f"the model refused: {error}")
        log.warning("update %s: %s", update["update_id"], error)
        message = update["message"]
        self._say(
            message,
            "I could not answer that (the model stopped with an error; if "
            "this conversation has grown long, /new starts over).",
        )
        return self._record(update, conversation, turn, delivery)

    def _record(self, update: dict, conversation: Any, turn: Any, delivery: Any) -> str:
        with self.store.transaction():
            conversation.save(turn)
            self.store.set_state(self.offset_key, update["update_id"] + 1)
        if delivery.complete:
            log.info("answered update %s in chat %s", update["update_id"], conversation.key)
        else:
            log.warning("update %s: %s", update["update_id"], delivery.describe())
        return "done"

    def _deny(self, message: dict) -> None:
        """Tell a stranger once (only if deny_message is set); never more than that."""
        if not self.config.telegram.deny_message:
            return
        told = f"{self.offset_key}.denied.{(message.get('from') or {}).get('id')}"
        if self.store.get_state(told) is None:
            with self.store.transaction():
                self.store.set_state(told, 1)
            self._say(message, self.config.telegram.deny_message)

    def _say(self, message: dict, text: str) -> None:
        """A short reply; best effort (a failure is logged, the update still counts)."""
        try:
            self.api.send_message(
                message["chat"]["id"],
                text,
                message_thread_id=_thread(message),
                reply_to_message_id=message.get("message_id"),
            )
        except botapi.TelegramError as error:
            log.warning("could not reply in chat %s: %s", message["chat"].get("id"), error)


def bot_id(token: str) -> str:
    """The bot's id: the token's part before the colon (public, unlike the rest)."""
    return token.split(":", 1)[0] if ":" in token else "bot"


def get_me(api: Any) -> dict:
    """The bot's user (id, username); a bad token or an outage is a PollError."""
    try:
        return api.get_me()
    except botapi.TelegramError as error:
        raise poll_error(error) from None


def whoami(api: Any) -> list[str]:
    """One line per sender of the pending messages (nothing is confirmed or answered)."""
    try:
        updates = api.get_updates(timeout=0)  # no offset: confirms nothing
    except botapi.TelegramError as error:
        raise poll_error(error) from None
    seen, lines = set(), []
    for update in updates:
        message = update.get("message") or update.get("edited_message") or {}
        sender, chat = message.get("from") or {}, message.get("chat") or {}
        if not sender or (sender.get("id"), chat.get("id")) in seen:
            continue
        seen.add((sender.get("id"), chat.get("id")))
        name = " ".join(filter(None, [sender.get("first_name"), sender.get("last_name")]))
        handle = f" @{sender['username']}" if sender.get("username") else ""
        lines.append(
            f"user {sender.get('id')}{handle} ({name}) in {chat.get('type')} chat {chat.get('id')}"
        )
    return lines


def poll_error(error: Any) -> PollError:
    """A getUpdates failure: 409s and bad tokens need a human, the rest a later retry."""
    text = (error.description or "").lower()
    if error.error_code == 409 and "webhook" in text:
        return PollError(
            "a webhook is set for this bot, so it cannot poll; remove it with "
            "`hermes telegram poll --delete-webhook`"
        )
    if error.error_code == 409:
        return PollError(
            "another program is polling this bot (Telegram said: "
            f"{error.description}); only one may",
            EX_TEMPFAIL,
            final=True,
        )
    if error.error_code is None and any(k in text for k in _SETUP_FAILURES):
        return PollError(
            f"cannot reach Telegram: {error.description} (check telegram.proxy, "
            "HTTPS_PROXY and the CA settings)"
        )
    if error.error_code in (401, 404):
        return PollError(
            "Telegram does not accept the bot token (check TELEGRAM_BOT_TOKEN "
            "or telegram.token_file)"
        )
    failure = PollError(f"Telegram is unavailable: {error}", EX_TEMPFAIL)
    failure.retry_after = error.retry_after  # a 429 says how long; waiting less extends it
    return failure


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


def _transient(error: StreamError) -> bool:
    """A model failure the same request may not meet later (down, slow, busy, cut)."""
    if error.kind in ("connection", "timeout", "incomplete") or error.transient:
        return True
    return error.status is not None and (error.status == 429 or error.status >= 500)


def _turn_error(turn: Any) -> StreamError | None:
    try:
        turn.result()
    except StreamError as error:
        return error
    return None


def _thread(message: dict) -> int | None:
    # Only a topic message names a thread a reply can go to (a reply chain's id is not one).
    return message.get("message_thread_id") if message.get("is_topic_message") else None


def _key(message: dict) -> str:
    """Each chat, and each forum topic, has its own conversation."""
    return f"telegram:{message['chat']['id']}:{_thread(message) or 0}"
