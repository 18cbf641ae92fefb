"""`hermes telegram poll`: answer each allowed message once, from cron or as a long poll.

Updates are fetched here and handed to one lane per chat (telegram.concurrency chats are
answered at once, each chat's messages in order). An update and its chat's conversation
are recorded in one transaction when it is done, and Telegram is told an offset only up
to the updates recorded (ledger.py): a run killed at any instant loses nothing, and
repeats at most the answers in flight. When the store cannot be written, the update is
confirmed to Telegram directly instead where that drops nothing, so no later run sends
its answer again.

Every answer is bounded: by telegram.answer_timeout, and with --max-seconds N by N plus
ANSWER_GRACE. A cut answer is delivered as far as it came, marked as too long, and counts
as answered; delivering it has DELIVERY_GRACE more, so a run holds its lock at most
N + ANSWER_GRACE + DELIVERY_GRACE seconds.
"""

from __future__ import annotations

import logging
import math
import random
import time
from typing import TYPE_CHECKING, Callable

from ..config import Config
from ..errors import PollError, TelegramError, Wakeup
from ..storage import Store
from .access import Access
from .botapi import BotAPI
from .handler import Handler
from .lanes import Lanes
from .ledger import Ledger
from .pacing import Budgets
from .runlock import EX_TEMPFAIL
from .signals import Signals
from .updates import Incoming, Update, json_type, read_batch

if TYPE_CHECKING:
    from ..agent import Agent

log = logging.getLogger(__name__)

LONG_POLL = 50  # seconds: Telegram's own maximum for getUpdates' timeout
RETRY_SPACING = 60.0  # a long poll tries a failed update again after this, like cron would
BUSY_POLL = 1.0  # seconds between fetches while answers are in flight (see _wait_for_work)
FETCH_MARGIN = 5.0  # seconds a fetch may run past --max-seconds (a trickling gateway)


class Poller:
    """Fetches updates and hands them to the chats' lanes; records each as it is done."""

    BACKOFF = 1.0  #: seconds of the first wait after a failed fetch; it doubles each time

    def __init__(
        self,
        config: Config,
        api: BotAPI,
        store: Store,
        make_agent: Callable[[], Agent],
        signals: Signals,
        *,
        bot: dict,
        budgets: Budgets | None = None,
    ) -> None:
        self.config, self.api, self.store, self.signals = config, api, store, signals
        self._make_agent = make_agent
        self.budgets = budgets or Budgets(config.streaming.edit_interval)
        self.access = Access(config, bot)
        self.ledger = Ledger(store, self.access.bot_id)
        self.offset_key = self.ledger.offset_key
        self.started = 0  # updates handed out (for --max-updates)
        self._deadline: float | None = None  # --max-seconds, on time.monotonic()

    # ---------------------------------------------------------------- the loop

    def run(self, *, once: bool, max_seconds: float | None, max_updates: int | None) -> int:
        """Poll until done (once), a limit, or a signal; return the exit code."""
        self._deadline = time.monotonic() + max_seconds if max_seconds is not None else None
        handler = Handler(
            self.config,
            self.api,
            self.store,
            self.ledger,
            self.access,
            self._make_agent,
            self.budgets,
            deadline=self._deadline,
        )
        spacing = None if once else RETRY_SPACING  # --once: a failed chat waits for next run
        lanes: Lanes[Update] = Lanes(
            self._workers(),
            handler.handle,
            retry_after=spacing,
            may_start=lambda: not self._must_stop(lanes),
        )
        self.signals.on_cut = handler.cut_all  # a second signal cuts every answer
        try:
            with lanes:
                self._loop(lanes, once, max_updates)
                self._finish(lanes)
        finally:
            self.signals.on_cut = None
        if lanes.failure is not None:
            raise self._settled(handler, lanes.failure)
        if self.signals.signum is None and lanes.retried and once:
            raise PollError("will retry the next run: " + handler.reason, EX_TEMPFAIL)
        return self._exit_code(once)

    def _settled(self, handler: Handler, failure: BaseException) -> BaseException:
        """The run's failure, once answers that reached a chat unrecorded are confirmed to
        Telegram (with every update done before them), so no later run sends them again."""
        if not (isinstance(failure, PollError) and self.ledger.unconfirmed_sent):
            return failure
        offset = self.ledger.confirmable()
        if offset is not None and handler.confirm_directly(offset):
            said = "the answers it sent were confirmed to Telegram, so no later run sends them"
        else:
            said = "an answer it sent could not be confirmed: the next run may send it again"
        return PollError(f"{failure}; {said} (their turns are not saved)", failure.exit_code)

    def _workers(self) -> int:
        return max(1, self.config.telegram.concurrency)

    def _loop(self, lanes: Lanes[Update], once: bool, max_updates: int | None) -> None:
        """Fetch and hand out updates until done (once), a limit, a signal or a failure."""
        failures = 0
        while not self._should_stop(lanes, max_updates):
            lanes.tick()
            busy = lanes.pending
            try:
                updates = self._fetch(0 if once or busy else self._poll_timeout())
            except Wakeup:
                return
            except PollError as error:
                if once or error.exit_code != EX_TEMPFAIL or error.final:
                    raise
                failures = self._back_off(failures, str(error), retry_after=error.retry_after)
                continue
            failures = 0
            fresh = self._hand_out(lanes, updates, max_updates)
            if once:
                # A cron run answers what it found, then looks once more for what came
                # meanwhile; it stops when a look finds nothing new.
                if not fresh or not self._wait_for_lanes(lanes):
                    return
            elif not fresh and (busy or updates):
                # Telegram returns what is in flight until it is done (it must not be
                # confirmed before): wait for an answer to end rather than spin.
                if not self._wait_for_work(lanes):
                    return

    def _hand_out(
        self, lanes: Lanes[Update], updates: list[Update], max_updates: int | None
    ) -> list[Update]:
        """Give each new update to its chat's lane (updates with no chat are done here)."""
        for update in updates:
            if update.offset is None and update.problem:  # never confirmed by us: said once
                log.info("skipped %s: %s", update.label, update.problem)
        fresh = self.ledger.take(updates)
        for update in fresh:
            if max_updates is not None and self.started >= max_updates:
                break
            self.started += 1
            message = update.message
            if message is None or update.problem:
                lanes.put(("update", update.update_id), update)  # no chat: a lane of its own
            else:
                lanes.put(message.chat_id, update)
        return fresh

    def _wait_for_work(self, lanes: Lanes[Update]) -> bool:
        """Wait for an answer to end, a retry to fall due, or BUSY_POLL; False if a signal
        says stop."""
        wait = BUSY_POLL
        due = lanes.next_retry()
        if due is not None:
            wait = min(wait, max(due - time.monotonic(), 0.0))
        try:
            self.signals.idle = True
            lanes.wait(wait)
        except Wakeup:
            return False
        finally:
            self.signals.idle = False
        return True

    def _wait_for_lanes(self, lanes: Lanes[Update]) -> bool:
        """Wait until every lane is idle (or holds a retry); False if it is time to stop."""
        while lanes.pending:
            if self._must_stop(lanes) or not self._wait_for_work(lanes):
                return False
        return True

    def _finish(self, lanes: Lanes[Update]) -> None:
        """Let what was handed out run (unless a signal, --max-seconds or a failure says
        stop); then start nothing more and wait for the answers in progress (a second
        signal cuts them)."""
        while lanes.pending and not self._must_stop(lanes):
            lanes.tick()
            if not self._wait_for_work(lanes):
                break
        lanes.stop_starting()
        while lanes.running:
            try:
                lanes.wait(0.5)
            except Wakeup:
                continue  # the handler has done what the signal asks

    def _poll_timeout(self) -> int:
        """Long-poll no longer than --max-seconds has left."""
        if self._deadline is None:
            return LONG_POLL
        # Rounded up: with under a second left, a timeout of 0 would poll in a tight loop.
        return max(0, min(LONG_POLL, math.ceil(self._deadline - time.monotonic())))

    def _should_stop(self, lanes: Lanes[Update], max_updates: int | None) -> bool:
        """Whether to stop fetching."""
        if self._must_stop(lanes):
            return True
        return max_updates is not None and self.started >= max_updates

    def _must_stop(self, lanes: Lanes[Update]) -> bool:
        """Whether to start no more work: a signal, --max-seconds, or a failure."""
        if self.signals.stop.is_set() or lanes.failure is not None:
            return True
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _exit_code(self, once: bool) -> int:
        if self.signals.signum is None or not (once or self.signals.cut):
            return 0  # a long poll stopped by one signal has done its job
        return 128 + self.signals.signum

    def _fetch(self, timeout: int) -> list[Update]:
        offset = self.ledger.offset()
        try:
            self.signals.idle = True
            result = self.api.get_updates(
                offset=offset, timeout=timeout, allowed_updates=["message"], within=self._within()
            )
        except TelegramError as error:
            raise poll_error(error) from None
        finally:
            self.signals.idle = False
        return read_batch(_checked_list(result), offset)

    def _within(self) -> float | None:
        """How long a fetch may take in all: with --max-seconds, not much past the run's end."""
        if self._deadline is None:
            return None
        return max(self._deadline - time.monotonic(), 0.0) + FETCH_MARGIN

    def _back_off(
        self,
        failures: int,
        reason: str,
        *,
        retry_after: float | None = None,
        level: int = logging.WARNING,
    ) -> int:
        """Wait longer after each failure in a row (never spin); a signal ends the wait,
        and so does --max-seconds."""
        delay = min(self.BACKOFF * 2.0**failures, 60.0) * random.uniform(0.8, 1.2)
        delay = max(delay, retry_after or 0.0)
        if self._deadline is not None:
            delay = max(0.0, min(delay, self._deadline - time.monotonic()))
        log.log(level, "%s; trying again in %.0f s", reason, delay)
        try:
            self.signals.idle = True
            self.signals.stop.wait(delay)
        except Wakeup:
            pass
        finally:
            self.signals.idle = False
        return failures + 1


def get_me(api: BotAPI) -> dict:
    """The bot's user (id, username); a bad token or an outage is a PollError."""
    try:
        bot = api.get_me()
    except TelegramError as error:
        raise poll_error(error) from None
    if not (isinstance(bot, dict) and _is_int(bot.get("id"))):
        raise poll_error(_not_api("getMe", "its result is not the bot's user"))
    if not isinstance(bot.get("username"), str):
        bot = {**bot, "username": ""}
    return bot


def whoami(api: BotAPI, config: Config) -> list[str]:
    """One line per sender of the pending messages, and whether the bot would answer them
    and why (nothing is confirmed or answered)."""
    try:
        result = api.get_updates(timeout=0)  # no offset: confirms nothing
    except TelegramError as error:
        raise poll_error(error) from None
    seen, lines = set(), []
    for update in read_batch(_checked_list(result), None, kinds=("message", "edited_message")):
        message = update.message
        if message is None or (message.sender_id, message.chat_id) in seen:
            continue
        seen.add((message.sender_id, message.chat_id))
        where = f"in {message.chat_type or 'a'} chat {message.chat_id}"
        if message.sender_id is not None:
            who = f"user {message.sender_id}{message.sender_name}"
        elif message.sender_chat_id is not None:
            who = f"chat {message.sender_chat_id} (on behalf of a chat)"
        else:
            continue
        lines.append(f"{who} {where}: {explain(config, message)}")
    return lines


def explain(config: Config, message: Incoming) -> str:
    """Whether the bot answers this sender in this chat, and which setting says so."""
    t = config.telegram
    if message.sender_id is not None and message.sender_id in t.allowed_users:
        allowed = f"answered (user {message.sender_id} is in telegram.allowed_users)"
    elif message.chat_id in t.allowed_chats:
        allowed = f"answered (chat {message.chat_id} is in telegram.allowed_chats)"
    elif message.sender_id is None:  # sent on behalf of a chat: only the chat can allow it
        return f"not answered (add {message.chat_id} to telegram.allowed_chats)"
    else:
        return (
            f"not answered (add {message.sender_id} to telegram.allowed_users, or "
            f"{message.chat_id} to telegram.allowed_chats)"
        )
    if message.chat_type in ("group", "supergroup") and t.group_mode == "mention":
        allowed += "; in this group only when mentioned, replied to, or given a command"
    return allowed


def poll_error(error: TelegramError) -> PollError:
    """A getUpdates/getMe failure: 409s, set-up failures and bad tokens need a human, the
    rest a later retry."""
    if error.kind == "webhook":
        return PollError(
            "a webhook is set for this bot, so it cannot poll; remove it with "
            "`hermes telegram poll --delete-webhook`"
        )
    if error.kind == "conflict":
        return PollError(
            "another program is polling this bot (Telegram said: "
            f"{error.description}); only one may",
            EX_TEMPFAIL,
            final=True,
        )
    if error.kind == "setup":
        return PollError(
            f"cannot reach Telegram: {error.description} (check telegram.proxy, "
            "HTTPS_PROXY and the CA settings)"
        )
    if error.kind == "unauthorized":
        return PollError(
            "Telegram does not accept the bot token (check TELEGRAM_BOT_TOKEN "
            "or telegram.token_file)"
        )
    return PollError(
        f"Telegram is unavailable: {error}", EX_TEMPFAIL, retry_after=error.retry_after
    )


def _checked_list(result: object) -> list:
    """getUpdates' result, which must be a list; anything else is not the Bot API talking."""
    if isinstance(result, list):
        return result
    what = json_type(result)
    raise poll_error(_not_api("getUpdates", f"its result is {what}, not a list of updates"))


def _not_api(method: str, what: str) -> TelegramError:
    # error_code 200: the HTTP reply was a success, its content was not the Bot API's.
    return TelegramError(
        method, f"{what} (a proxy or gateway in between?)", kind="not_api", error_code=200
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
