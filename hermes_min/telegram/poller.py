"""`hermes telegram poll`: answer each allowed message once, from cron or as a long poll.

The update offset and the chat's conversation are written in one transaction after an
update is handled, and Telegram only learns the offset (which confirms updates) at the
next getUpdates: a run killed at any instant loses nothing, and the only update that can
be answered twice is one whose answer Telegram accepted just before the kill. When the
store cannot be written, the update is confirmed to Telegram directly instead, so no
later run sends its answer again.

Every answer is bounded: by telegram.answer_timeout, and with --max-seconds N by N plus
ANSWER_GRACE. A cut answer is delivered as far as it came, marked as too long, and counts
as answered; delivering it has DELIVERY_GRACE more, so a run holds its lock at most
N + ANSWER_GRACE + DELIVERY_GRACE seconds.
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING, Callable

from ..config import Config
from ..conversation import Conversation
from ..errors import PollError, StorageError, StreamError, TelegramError, Wakeup
from ..storage import Store
from .access import Access
from .botapi import BotAPI
from .pacing import Budgets
from .runlock import EX_TEMPFAIL
from .signals import Signals
from .updates import Incoming, Update, json_type, read_batch

if TYPE_CHECKING:  # loaded only when a message is answered: a quiet cron run needs neither
    from ..agent import Agent, Turn
    from .streamer import Delivery, TelegramStreamer

log = logging.getLogger(__name__)

LONG_POLL = 50  # seconds: Telegram's own maximum for getUpdates' timeout
ANSWER_GRACE = 10.0  # seconds an answer still running at --max-seconds may go on
DELIVERY_GRACE = 20.0  # seconds to deliver an answer once it was cut
MAX_TRIES = 3  # runs an update may fail as an outage before it gets an apology instead
RETRY_SPACING = 60.0  # a long poll tries a failed update again after this, like cron would
_TEXT_ONLY = "I can only read text messages."
_HELP = "Send me a message and I will answer it. /new starts a new conversation."
_NEW = "Starting a new conversation."
_REFUSED = (
    "I could not answer that (the model stopped with an error; if this conversation has "
    "grown long, /new starts over)."
)
_SORRY = f"Sorry, I could not answer this in {MAX_TRIES} tries; please send it again later."


class Poller:
    """Fetches updates and handles them one at a time, recording each as it is done."""

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
        self._agent: Agent | None = None
        self.budgets = budgets or Budgets(config.streaming.edit_interval)
        self.access = Access(config, bot)
        self.offset_key = f"telegram.{self.access.bot_id}.offset"
        self._failing_key = f"telegram.{self.access.bot_id}.failing"  # the update that failed
        self._failures_key = f"telegram.{self.access.bot_id}.failures"  # ... on this many runs
        self.handled = 0
        self._last_reason = ""
        self._deadline: float | None = None  # --max-seconds, on time.monotonic()

    # ---------------------------------------------------------------- the loop

    def run(self, *, once: bool, max_seconds: float | None, max_updates: int | None) -> int:
        """Poll until done (once), a limit, or a signal; return the exit code."""
        deadline = time.monotonic() + max_seconds if max_seconds is not None else None
        self._deadline = deadline
        failures = 0
        while not self._should_stop(deadline, max_updates):
            try:
                updates = self._fetch(0 if once else self._poll_timeout(deadline))
            except Wakeup:
                break
            except PollError as error:
                if once or error.exit_code != EX_TEMPFAIL or error.final:
                    raise
                failures = self._back_off(failures, str(error), retry_after=error.retry_after)
                continue
            if not updates and once:
                break
            outcome = self._handle_all(updates, deadline, max_updates)
            if outcome == "retry":
                if once:
                    raise PollError("will retry the next run: " + self._last_reason, EX_TEMPFAIL)
                # Each try counts towards MAX_TRIES: space them as cron runs would be.
                failures = self._back_off(failures, self._last_reason, at_least=RETRY_SPACING)
            elif outcome == "stalled":
                if once:
                    break  # only updates that cannot be confirmed yet: the next run will see
                failures = self._back_off(failures, self._last_reason, level=logging.INFO)
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

    def _fetch(self, timeout: int) -> list[Update]:
        offset = self.store.get_state(self.offset_key)
        try:
            self.signals.idle = True
            result = self.api.get_updates(
                offset=offset, timeout=timeout, allowed_updates=["message"]
            )
        except TelegramError as error:
            raise poll_error(error) from None
        finally:
            self.signals.idle = False
        return read_batch(_checked_list(result), offset)

    def _back_off(
        self,
        failures: int,
        reason: str,
        *,
        retry_after: float | None = None,
        at_least: float = 0.0,
        level: int = logging.WARNING,
    ) -> int:
        """Wait longer after each failure in a row (never spin); a signal ends the wait,
        and so does --max-seconds."""
        delay = min(2.0**failures, 60.0) * random.uniform(0.8, 1.2)
        delay = max(delay, retry_after or 0.0, at_least)
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

    def _handle_all(
        self, updates: list[Update], deadline: float | None, max_updates: int | None
    ) -> str:
        """ "done", "retry" (an outage: nothing after it is started), or "stalled" (nothing
        in the batch could be confirmed, so fetching again at once would return it again)."""
        progress = False
        for update in updates:
            if self._should_stop(deadline, max_updates):
                return "done"
            if self._handle(update) == "retry":
                return "retry"  # order matters: nothing after it is started
            self.handled += 1
            progress = progress or update.offset is not None
        if updates and not progress:
            self._last_reason = "Telegram sent only updates that cannot be confirmed yet"
            return "stalled"
        return "done"

    # ---------------------------------------------------------------- one update

    def _handle(self, update: Update) -> str:
        if update.problem:
            # Never the update itself: it may hold a message's text.
            log.info("skipped %s: %s", update.label, update.problem)
            return self._commit(update)
        message = update.message
        if message is None:
            return self._commit(update)  # nothing else is asked for; confirm and move on
        verdict = self.access.verdict(message)
        if verdict == "deny":
            self._deny(message)
        if verdict != "answer":
            return self._commit(update)
        if message.text is None:
            if message.has_content:  # not for joins, pins, topic events
                self._say(message, _TEXT_ONLY)
            return self._commit(update)
        command = self.access.command(message.text)
        if command in ("/start", "/help"):
            self._say(message, _HELP)
            return self._commit(update)
        if command == "/new":
            self._commit(update, lambda: self.store.reset_key(message.key), confirm=False)
            self._say(message, _NEW)
            return "done"
        return self._answer(update, message, self.access.strip_mention(message.text))

    def _answer(self, update: Update, message: Incoming, text: str) -> str:
        from .streamer import stream_into, streamer_for  # here: quiet runs never load it

        agent = self._agent_or_retry()
        if agent is None:
            return "retry"
        cut_in, deliver_by = self._bounds()
        conversation = Conversation.for_key(self.store, message.key, model=agent.client.model)
        streamer = streamer_for(
            self.api,
            self.config,
            message.chat_id,
            thread_id=message.thread_id,
            reply_to=message.message_id,
            budgets=self.budgets,
            announce_failures=False,
            deliver_by=deliver_by,
        )
        with conversation.ask(agent, text) as turn:
            try:
                delivery = stream_into(turn, streamer, limit=cut_in)
            except KeyboardInterrupt:  # a second signal: what reached the chat is kept
                delivery = streamer.close()  # (waits, if the cut was mid-delivery)
                if delivery.parts_sent or (delivery.error is not None and delivery.error.uncertain):
                    self._record(update, conversation, turn, delivery)
                raise
            return self._settle(update, message, conversation, turn, delivery, streamer)

    def _bounds(self) -> tuple[float, float]:
        """Seconds the answer may take, and the time.monotonic() its delivery must end by."""
        now = time.monotonic()
        cut_at = now + self.config.telegram.answer_timeout
        if self._deadline is not None:
            cut_at = min(cut_at, self._deadline + ANSWER_GRACE)
        return max(cut_at - now, 0.0), cut_at + DELIVERY_GRACE

    def _agent_or_retry(self) -> Agent | None:
        """The agent (built at the first message); None if the model cannot be reached now."""
        if self._agent is not None:
            return self._agent
        try:
            self._agent = self._make_agent()
        except StreamError as error:
            if not error.outage:
                raise PollError(f"the model cannot be used: {error}") from None
            self._last_reason = str(error)
            return None
        return self._agent

    def _settle(
        self,
        update: Update,
        message: Incoming,
        conversation: Conversation,
        turn: Turn,
        delivery: Delivery,
        streamer: TelegramStreamer,
    ) -> str:
        """Record the update as handled, or leave it for the next try; decided by kind."""
        error = delivery.error
        if delivery.parts_sent or (error is not None and (error.fatal_for_chat or error.uncertain)):
            return self._record(update, conversation, turn, delivery)  # never asked again
        if error is not None:  # Telegram refused or failed the answer: nothing reached the chat
            if error.transient or error.rate_limited:
                return self._outage(update, message, streamer, str(error))
            log.error("update %s skipped: %s", update.update_id, error)
            return self._record(update, conversation, turn, delivery)  # retrying cannot help
        model_error = _turn_error(turn)
        if model_error is None:
            return self._record(update, conversation, turn, delivery)
        if model_error.misconfigured:
            raise PollError(f"the model refused: {model_error}")
        if model_error.outage:
            return self._outage(update, message, streamer, str(model_error))
        # A refusal or a reply that makes no sense: asking again gets the same. Say so, and
        # let the next messages through.
        log.warning("update %s: %s", update.update_id, model_error)
        self._say(message, _REFUSED)
        return self._record(update, conversation, turn, delivery)

    def _outage(
        self, update: Update, message: Incoming, streamer: TelegramStreamer, reason: str
    ) -> str:
        """Leave the update for a later run; after MAX_TRIES, apologise and move on."""
        streamer.discard_preview()  # the next try starts clean
        tries = self._count_failure(update)
        if tries < MAX_TRIES:
            self._last_reason = reason
            return "retry"
        log.warning("update %s: gave up after %d tries: %s", update.update_id, tries, reason)
        self._say(message, _SORRY)
        return self._commit(update)

    def _count_failure(self, update: Update) -> int:
        """One more failed try of this update, kept in the store; how many there were."""
        with self.store.transaction():
            same = self.store.get_state(self._failing_key) == update.update_id
            before = self.store.get_state(self._failures_key, 0) if same else 0
            tries = (before if isinstance(before, int) else 0) + 1
            self.store.set_state(self._failing_key, update.update_id or 0)
            self.store.set_state(self._failures_key, tries)
        return tries

    def _record(
        self, update: Update, conversation: Conversation, turn: Turn, delivery: Delivery
    ) -> str:
        def save() -> None:
            try:
                conversation.save(turn)
            except ValueError as error:  # a turn the store refuses: the answer still counts
                log.warning("update %s: the turn is not saved: %s", update.update_id, error)

        self._commit(update, save)
        if delivery.complete:
            log.info("answered update %s in chat %s", update.update_id, conversation.key)
        else:
            log.warning("update %s: %s", update.update_id, delivery.describe())
        return "done"

    def _commit(
        self, update: Update, write: Callable[[], None] | None = None, *, confirm: bool = True
    ) -> str:
        """Write the update's offset (and `write`'s changes) in one transaction.

        If the store fails, the update is confirmed to Telegram directly (unless `confirm`
        is False: an update whose effect is only in the store), so that no later run sends
        what was sent for it again; then the run stops with what a human must fix.
        """
        try:
            with self.store.transaction():
                if write is not None:
                    write()
                if update.offset is not None:
                    self.store.set_state(self.offset_key, update.offset)
        except StorageError as error:
            raise self._unsaved(update, error, confirm) from None
        return "done"

    def _unsaved(self, update: Update, error: StorageError, confirm: bool) -> PollError:
        """The run's one line for a store that failed, after confirming the update if asked."""
        code = EX_TEMPFAIL if error.busy else 1
        if not confirm or update.offset is None:
            return PollError(str(error), code)
        if self._confirm_directly(update.offset):
            said = "confirmed to Telegram, so no later run answers it again (its turn is not saved)"
        else:
            said = "not confirmed to Telegram either, so the next run may answer it again"
        return PollError(f"{error}; {update.label} was {said}", code)

    def _confirm_directly(self, offset: int) -> bool:
        """Tell Telegram the offset now ("an update is confirmed as soon as getUpdates is
        called with an offset higher than its update_id"); False if that failed too."""
        for _ in range(2):
            try:
                self.api.get_updates(offset=offset, timeout=0, limit=1)
                return True
            except TelegramError as error:
                log.debug("confirming offset %s failed: %s", offset, error)
                if not error.transient:
                    break
        return False

    def _deny(self, message: Incoming) -> None:
        """Tell a stranger once (only if deny_message is set); never more than that."""
        if not self.config.telegram.deny_message:
            return
        told = f"{self.offset_key}.denied.{message.sender_key}"
        if self.store.get_state(told) is None:
            with self.store.transaction():
                self.store.set_state(told, 1)
            self._say(message, self.config.telegram.deny_message)

    def _say(self, message: Incoming, text: str) -> None:
        """A short reply; best effort (a failure is logged, the update still counts)."""
        try:
            self.api.send_message(
                message.chat_id,
                text,
                message_thread_id=message.thread_id,
                reply_to_message_id=message.message_id,
            )
        except TelegramError as error:
            log.warning("could not reply in chat %s: %s", message.chat_id, error)


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


def whoami(api: BotAPI) -> list[str]:
    """One line per sender of the pending messages (nothing is confirmed or answered)."""
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
            lines.append(f"user {message.sender_id}{message.sender_name} {where}")
        elif message.sender_chat_id is not None:
            lines.append(f"chat {message.sender_chat_id} (on behalf of a chat) {where}")
    return lines


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


def _turn_error(turn: Turn) -> StreamError | None:
    try:
        turn.result()
    except StreamError as error:
        return error
    return None
