"""What the bot does with one update, on a chat's lane: answer it, reply to a command, or
skip it; then record it, or leave it for a later try when the model or Telegram is down."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable

from ..config import Config
from ..conversation import Conversation
from ..errors import PollError, StorageError, StreamError, TelegramError
from ..redact import redact
from ..storage import Store
from .access import Access
from .botapi import BotAPI
from .chats import ChatSettings, user_text
from .commands import Commands
from .ledger import Ledger
from .pacing import Budgets
from .runlock import EX_TEMPFAIL
from .updates import Incoming, Update

if TYPE_CHECKING:  # loaded only when a message is answered: a quiet cron run needs neither
    from ..agent import Agent, Turn
    from .streamer import Delivery, TelegramStreamer

log = logging.getLogger(__name__)

ANSWER_GRACE = 10.0  # seconds an answer still running at --max-seconds may go on
DELIVERY_GRACE = 20.0  # seconds to deliver an answer once it was cut
MAX_TRIES = 3  # runs an update may fail as an outage before it gets an apology instead
SAY_WAIT = 60.0  # seconds a short reply may wait for its turn in the chat (429s included)
STOPPED = "the bot was stopped"  # the chat's reason for an answer cut by a second signal
_TEXT_ONLY = "I can only read text messages."
_REFUSED = (
    "I could not answer that (the model stopped with an error; if this conversation has "
    "grown long, /new starts over)."
)
_SORRY = f"Sorry, I could not answer this in {MAX_TRIES} tries; please send it again later."


class Handler:
    """Handles updates (from any number of lanes at once); `handle` says "done" or "retry"."""

    def __init__(
        self,
        config: Config,
        api: BotAPI,
        store: Store,
        ledger: Ledger,
        access: Access,
        make_agent: Callable[[], Agent],
        budgets: Budgets,
        *,
        deadline: float | None,
    ) -> None:
        self.config, self.api, self.store, self.ledger = config, api, store, ledger
        self.access, self.budgets = access, budgets
        self._make_agent = make_agent
        self._agent: Agent | None = None
        self._agent_lock = threading.Lock()
        self._deadline = deadline  # --max-seconds, on time.monotonic()
        self._cuts: dict[int, Callable[[], None]] = {}  # answers in progress: how to cut each
        self._cuts_lock = threading.Lock()
        self._cutting = False  # a second signal came: every answer is cut as it starts
        self.reason = ""  # why the last update was left for later
        self.settings = ChatSettings(config, store, access.bot_id)
        self.commands = Commands(config, store, self.settings)

    def handle(self, update: Update) -> str:
        """Handle one update; "retry" leaves it (and its chat's later ones) for a later try."""
        message = update.message
        if update.problem:
            # Never the update itself: it may hold a message's text.
            log.info("skipped %s: %s", update.label, update.problem)
            return self._commit(update)
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
        if self.access.for_another_bot(message.text):
            return self._commit(update)  # /start@other_bot: not ours, whatever group_mode says
        command = self.access.command(message.text)
        if command:
            if command == "/model" and self._default_model() is None:
                self._agent_or_retry()  # learns the server's model, to name it (or stays None)
            model = self.settings.model(message, self._default_model())
            argument = self.access.argument(message.text)
            reply = self.commands.reply(command, argument, message, model)
            if reply is not None and reply.write is None:  # only words: said, then recorded
                self._say(message, reply.text)
                return self._commit(update)
            if reply is not None:  # a change in the store: recorded, then said
                self._commit(update, reply.write, confirm=reply.confirm)
                self._say(message, reply.text)
                return "done"
        return self._answer(update, message, self.access.strip_mention(message.text))

    def _default_model(self) -> str | None:
        """The model the agent's client uses (known once the agent is built)."""
        agent = self._agent
        return agent.client.model if agent is not None else self.config.provider.model

    def cut_all(self) -> None:
        """Cut every answer in progress (a second signal): each is delivered as far as it
        came, marked, and recorded."""
        with self._cuts_lock:
            self._cutting = True  # an answer still starting (its agent, its model) is cut too
            cuts = list(self._cuts.values())
        for cut in cuts:
            cut()

    # ---------------------------------------------------------------- an answer

    def _answer(self, update: Update, message: Incoming, text: str) -> str:
        from .streamer import stream_into, streamer_for  # here: quiet runs never load it

        agent = self._agent_or_retry()
        if agent is None:  # the model cannot be reached to learn its name: an outage too
            return self._outage(update, message, None, self.reason)
        cut_in, deliver_by = self._bounds()
        model = self.settings.model(message, agent.client.model)
        conversation = Conversation.for_key(
            self.store, message.key, model=model, default_system=self.settings.persona(message)
        )
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
        started = time.monotonic()
        asked = user_text(message, text)
        with conversation.ask(agent, asked, model=model) as turn, self._cuttable(streamer, turn):
            delivery = stream_into(turn, streamer, limit=cut_in)
            outcome = self._settle(update, message, conversation, turn, delivery, streamer)
            _log_answer(message, turn, delivery, outcome, time.monotonic() - started)
            return outcome

    @contextmanager
    def _cuttable(self, streamer: TelegramStreamer, turn: Turn) -> Iterator[None]:
        """While the answer runs, a second signal may cut it from the main thread."""

        def cut() -> None:
            streamer.cut(STOPPED)  # first: the interrupt ends the answer at once
            turn.interrupt()

        with self._cuts_lock:
            self._cuts[id(turn)] = cut
            cutting = self._cutting
        if cutting:
            cut()
        try:
            yield
        finally:
            with self._cuts_lock:
                self._cuts.pop(id(turn), None)

    def _bounds(self) -> tuple[float, float]:
        """Seconds the answer may take, and the time.monotonic() its delivery must end by."""
        now = time.monotonic()
        cut_at = now + self.config.telegram.answer_timeout
        if self._deadline is not None:
            cut_at = min(cut_at, self._deadline + ANSWER_GRACE)
        return max(cut_at - now, 0.0), cut_at + DELIVERY_GRACE

    def _agent_or_retry(self) -> Agent | None:
        """The agent (built at the first message); None if the model cannot be reached now."""
        with self._agent_lock:  # lanes start together: build it once
            if self._agent is not None:
                return self._agent
            try:
                self._agent = self._make_agent()
            except StreamError as error:
                if not error.outage:
                    raise PollError(f"the model cannot be used: {error}") from None
                self.reason = str(error)
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
        # let the next messages through (the answer's log line says which kind it was).
        self._say(message, _REFUSED)
        return self._record(update, conversation, turn, delivery)

    def _outage(
        self, update: Update, message: Incoming, streamer: TelegramStreamer | None, reason: str
    ) -> str:
        """Leave the update for a later try; after MAX_TRIES, apologise and move on."""
        if streamer is not None:
            streamer.discard_preview()  # the next try starts clean
        tries = self._failed(update)
        if tries < MAX_TRIES:
            self.reason = reason
            return "retry"
        # Not the reason's text: a 5xx body can quote the prompt. The answer's line has its kind.
        log.warning("update %s: gave up after %d tries, apologising", update.update_id, tries)
        if not self._say(message, _SORRY):
            self.reason = f"{reason}; the apology did not get through either"
            return "retry"  # the user must hear something: the next run says it again
        return self._commit(update)

    def _failed(self, update: Update) -> int:
        try:
            return self.ledger.failed(update)
        except StorageError as error:
            raise PollError(str(error), EX_TEMPFAIL if error.busy else 1) from None

    def _record(
        self, update: Update, conversation: Conversation, turn: Turn, delivery: Delivery
    ) -> str:
        def save() -> None:
            try:
                conversation.save(turn)
            except ValueError as error:  # a turn the store refuses: the answer still counts
                log.warning("update %s: the turn is not saved: %s", update.update_id, error)

        self._commit(update, save)  # how it went: the answer's one log line (_log_answer)
        return "done"

    # ---------------------------------------------------------------- recording

    def _commit(
        self, update: Update, write: Callable[[], None] | None = None, *, confirm: bool = True
    ) -> str:
        """Mark the update done (with `write`'s changes) in one transaction.

        If the store fails, the update is confirmed to Telegram directly (unless `confirm`
        is False: an update whose effect is only in the store), so that no later run sends
        what was sent for it again; then the run stops with what a human must fix.
        """
        try:
            self.ledger.finish(update, write)
        except StorageError as error:
            raise self._unsaved(update, error, confirm) from None
        return "done"

    def _unsaved(self, update: Update, error: StorageError, confirm: bool) -> PollError:
        """The run's one line for a store that failed. An update whose answer reached the
        chat is marked sent: the poller confirms it to Telegram when the lanes have ended
        (with what is done before it), so no later run answers it again."""
        if confirm:
            self.ledger.sent(update)
        return PollError(str(error), EX_TEMPFAIL if error.busy else 1)

    def confirm_directly(self, offset: int) -> bool:
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

    # ---------------------------------------------------------------- short replies

    def _deny(self, message: Incoming) -> None:
        """Tell a stranger once (only if deny_message is set); never more than that."""
        if not self.config.telegram.deny_message:
            return
        told = f"{self.ledger.offset_key}.denied.{message.sender_key}"
        with self.store.transaction():  # checked and marked at once: two lanes tell once
            first = self.store.get_state(told) is None
            if first:
                self.store.set_state(told, 1)
        if first:
            self._say(message, self.config.telegram.deny_message)

    def _say(self, message: Incoming, text: str) -> bool:
        """A short reply, paced like every call to the chat (a 429 is waited out, within
        SAY_WAIT) and with no secret in it; False if it did not get through."""
        budget = self.budgets.for_chat(message.chat_id)
        deadline = budget.now() + SAY_WAIT
        text = redact(text, self.config.secrets)  # a model's name may be what a server said
        for _ in range(3):
            if not budget.take_turn(deadline):
                break
            try:
                self.api.send_message(
                    message.chat_id,
                    text,
                    message_thread_id=message.thread_id,
                    reply_to_message_id=message.message_id,
                )
                return True
            except TelegramError as error:
                if not error.rate_limited:
                    log.warning("could not reply in chat %s: %s", message.chat_id, error)
                    return False
                budget.pause(error.retry_after or 1.0)
        log.warning("could not reply in chat %s: Telegram kept asking to wait", message.chat_id)
        return False


def _log_answer(
    message: Incoming, turn: Turn, delivery: Delivery, outcome: str, seconds: float
) -> None:
    """The operator's one line per answer (-v): chat, tokens, seconds, outcome. Never text:
    error messages can quote the prompt or the answer (a server echoing it, a broken chunk),
    so only their kinds are named."""
    usage = turn.usage or {}
    why = _kinds(_turn_error(turn), delivery.error)
    if outcome == "retry":
        how = f"left for a later try ({why})"
    elif delivery.complete:
        how = "answered"
    elif delivery.parts_sent:
        how = f"delivered {delivery.parts_sent} of {delivery.parts_total} part(s), cut ({why})"
    else:
        how = f"not answered ({why})"
    log.info(  # -v only: a cron run's stderr is one line, the run's (what a human must do)
        "chat %s: %s tokens in, %s out, %.1f s, %s",
        message.chat_id,
        usage.get("prompt_tokens", "?"),
        usage.get("completion_tokens", "?"),
        seconds,
        how,
    )


def _kinds(model: StreamError | None, telegram: TelegramError | None) -> str:
    """What went wrong, by kind only: "http_error 400", "telegram rate_limited"."""
    said = []
    if model is not None:
        said.append(f"{model.kind} {model.status}" if model.status else model.kind)
    if telegram is not None:
        said.append(f"telegram {telegram.kind}")
    return ", ".join(said) or "not delivered"


def _turn_error(turn: Turn) -> StreamError | None:
    try:
        turn.result()
    except StreamError as error:
        return error
    return None
