"""Streams one answer into a Telegram chat: a live preview (draft or edits), then the final."""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..config import Config
from ..errors import StreamError, TelegramError
from ..events import Answer, Done, Failed, SegmentBreak, TextDelta, ToolProgress
from ..message import Message
from .botapi import BotAPI
from .markdown import render, render_plain
from .pacing import Budgets
from .parts import interim, split, visible

log = logging.getLogger(__name__)

TYPING_EVERY = 4.5  # "The status is set for 5 seconds or less" (sendChatAction)
TYPING_AFTER = 1.0  # seconds of silence before the first typing action (text may come first)
CLOSE_MARGIN = 120.0  # past the final's deadline, close() stops waiting for the sender
DRAFT_KEEPALIVE = 20.0  # a draft is "an ephemeral 30-second preview" (sendMessageDraft, 10.0)
FINAL_ATTEMPTS = 6
MAX_FINAL_WAIT = 120.0  # a longer flood wait fails the delivery instead of blocking a cron run
TOO_LONG = "the answer took too long"  # the chat's reason for an answer cut by its bound
LENGTH_CUT = "[cut: the model's length limit]"  # finish_reason "length": max_tokens and the like
# What a chat sees instead of a secret: not "***", which Markdown reads as a rule or emphasis.
HIDDEN = "[secret]"


@dataclass
class Delivery:
    """What reached the chat; `already_sent` is the original design's contract."""

    parts_total: int = 0
    parts_sent: int = 0
    message_ids: list = field(default_factory=list)
    answer_complete: bool = False
    error: TelegramError | None = None
    notes: list = field(default_factory=list)
    model_error: str | None = None  # why the answer was cut (kept out of the chat)

    @property
    def already_sent(self) -> bool:
        """Every part of the final message is in the chat: never send it again."""
        return self.parts_total > 0 and self.parts_sent == self.parts_total

    @property
    def complete(self) -> bool:
        """The whole answer, uncut, is in the chat."""
        return self.already_sent and self.answer_complete

    def describe(self) -> str:
        """One line: what was and was not delivered."""
        if self.complete:
            return f"delivered the whole answer in {self.parts_sent} message(s)"
        said = [f"delivered {self.parts_sent} of {self.parts_total} part(s)"]
        if not self.answer_complete:
            cut = "the answer itself was cut off"
            said.append(f"{cut}: {self.model_error}" if self.model_error else cut)
        if self.error is not None:
            said.append(str(self.error))
            if self.error.uncertain:
                said.append("its reply was lost, so that part may or may not be in the chat")
        return "; ".join(said + self.notes)


class _Stop(Exception):
    """The chat refuses us (blocked, not found, forbidden): stop without retrying."""


class TelegramStreamer:
    """Feed it stream events with handle(); close() delivers the final and returns a Delivery."""

    RETRY_BACKOFF = 1.0  #: seconds before the first retry of a final part after a 5xx
    TYPING_EVERY = TYPING_EVERY  #: seconds between typing actions while nothing is visible
    TYPING_AFTER = TYPING_AFTER  #: seconds of silence before the first typing action
    DRAFT_KEEPALIVE = DRAFT_KEEPALIVE  #: seconds before an unchanged draft is sent again

    def __init__(
        self,
        api: BotAPI,
        chat_id: int | str,
        *,
        thread_id: int | None = None,
        reply_to: int | None = None,
        enabled: bool = True,
        transport: str = "auto",
        edit_interval: float = 1.5,
        buffer_threshold: int = 40,
        cursor: str = " \u2589",
        parse_mode: str = "MarkdownV2",
        tool_progress: bool = False,
        announce_failures: bool = True,
        budgets: Budgets | None = None,
        secrets: tuple[str, ...] = (),
        deliver_by: float | None = None,
    ) -> None:
        self._api, self._chat, self._thread, self._reply_to = api, chat_id, thread_id, reply_to
        # Never sent to a chat, not even in part: a model may repeat a key it was shown.
        self._secrets = tuple(sorted({s for s in secrets if s and len(s) >= 4}, key=len))[::-1]
        self._deliver_by = deliver_by  # time.monotonic() by which the final must be out
        self._enabled, self._threshold, self._cursor = enabled, buffer_threshold, cursor
        self._parse_mode, self._tool_progress = parse_mode, tool_progress
        # False for the cron bot: a model failure before any text sends nothing, so the
        # next run's answer is the only thing the user ever sees.
        self._announce_failures = announce_failures
        self._budgets = budgets or Budgets(edit_interval)
        self._budget = self._budgets.for_chat(chat_id)
        self._clock: Callable[[], float] = self._budgets.clock
        private = isinstance(chat_id, int) and chat_id > 0
        # Drafts exist only in private chats ("unique identifier for the target private chat").
        self._mode = (
            "draft" if transport == "draft" or (transport == "auto" and private) else "edit"
        )
        self._draft_id = _new_draft_id()
        self._cond = threading.Condition()
        self._text = ""
        self._segments: list[str] = []  # texts that ended at a tool call, not yet delivered
        self._broke = False  # a segment ended at a tool call: earlier text has its own message
        self._notes: list[ToolProgress] = []  # tool progress not yet shown
        self._progress: dict[str, str] = {}  # call id -> its line in the progress message
        self._progress_id: int | None = None  # one progress message per segment, edited
        self._end: object = None
        self._preview_id: int | None = None
        self._shown, self._shown_len, self._shown_at = "", 0, float("-inf")
        self._typing_at = self._clock() - self.TYPING_EVERY + self.TYPING_AFTER
        self._deadline = float("inf")
        self._plain_only = False
        self._cut_reason: str | None = None
        self._migrated = self._thread_dropped = False
        self.delivery = Delivery()
        self._thread_obj = threading.Thread(target=self._run, name="hermes-telegram", daemon=True)
        self._thread_obj.start()

    def handle(self, event: object) -> None:
        """Take one event; never blocks on the network."""
        with self._cond:
            if isinstance(event, TextDelta):
                self._text += event.text
            elif isinstance(event, (Done, Failed)):
                self._end = event
            elif isinstance(event, SegmentBreak):
                self._segments.append(self._text)  # delivered as its own message
                self._text = ""
                self._broke = True
            elif isinstance(event, ToolProgress) and self._tool_progress:
                self._notes.append(event)
            else:
                return
            self._cond.notify()

    def close(self) -> Delivery:
        """Wait for the final delivery (ending the answer if no final event came)."""
        with self._cond:
            if self._end is None:
                self._end = "closed"
            self._cond.notify()
        # Every call the sender makes has its own timeout and the final its deadline; this
        # bound only guards against a bug: the delivery is then taken as maybe sent.
        self._thread_obj.join(self._final_wait() + CLOSE_MARGIN)
        if self._thread_obj.is_alive() and self.delivery.error is None:
            self.delivery.error = TelegramError(
                "stream", "the delivery did not finish in time", kind="internal", uncertain=True
            )
        return self.delivery

    def cut(self, reason: str) -> None:
        """The answer is being ended early for `reason` (from any thread): the final says so,
        even when nothing of it was shown."""
        with self._cond:
            self._cut_reason = reason

    def discard_preview(self) -> None:
        """Delete the preview message, if any (best effort): the answer will come again."""
        if self._preview_id is None:
            return
        try:
            self._api.delete_message(self._chat, self._preview_id)
        except TelegramError as error:
            log.debug("preview not deleted: %s", error)  # "message can't be deleted": leave it
        self._preview_id = None

    @property
    def stopped(self) -> bool:
        """The chat refused us (blocked, gone, bad token): feeding more events is pointless."""
        return not self._thread_obj.is_alive() and self.delivery.error is not None

    def __enter__(self) -> TelegramStreamer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- the sender thread

    def _run(self) -> None:
        try:
            end = self._preview_loop()
            self._finish(end)
        except _Stop as stop:
            self.delivery.error = stop.args[0]
        except TelegramError as error:
            self.delivery.error = error
        except Exception as exc:  # noqa: BLE001 - the caller must always get a Delivery
            log.debug("telegram streamer failed", exc_info=True)
            self.delivery.error = TelegramError(
                "stream", f"unexpected {type(exc).__name__}", kind="internal"
            )

    def _preview_loop(self) -> object:
        while True:
            with self._cond:
                if self._end is None and not self._segments and not self._notes:
                    self._cond.wait(self._sleep_for())
                text, end = self._text, self._end
                segments, self._segments = self._segments, []
                notes, self._notes = self._notes, []
            for segment in segments:
                self._deliver_text(segment)
                self._new_segment()
            if notes:
                self._show_progress(notes)
            if end is not None:
                return end
            self._safe_step(text)

    def _safe_step(self, text: str) -> None:
        try:
            self._step(text)
        except (_Stop, TelegramError):
            raise
        except Exception:  # noqa: BLE001 - a preview bug must never cost the final answer
            log.warning("previews stopped after an unexpected error", exc_info=True)
            self._enabled = False

    def _show_progress(self, notes: list[ToolProgress]) -> None:
        """One message lists this segment's tool calls, edited as they start and end."""
        for note in notes:
            mark = "\u2026" if note.started else ("\u2713" if note.ok else "\u2717")
            self._progress[note.call_id] = f"\u2699 {note.name} {mark}"
        text = self._scrub("\n".join(self._progress.values()))
        # Progress waits its turn, but never past the final's own deadline: a note that
        # would come later is dropped (the final is what must get through).
        if not self._budget.take_turn(self._budget.now() + self._final_wait()):
            return
        if self._progress_id is None:
            sent = self._interim_call(
                self._api.send_message,
                self._chat,
                text,
                message_thread_id=self._thread,
                claimed=True,
            )
            self._progress_id = sent.get("message_id") if isinstance(sent, dict) else None
        else:
            self._interim_call(
                self._api.edit_message_text, self._chat, self._progress_id, text, claimed=True
            )

    def _new_segment(self) -> None:
        """After a tool call the text continues in a new message, with a new draft."""
        self._progress, self._progress_id = {}, None
        self._preview_id, self._draft_id = None, _new_draft_id()
        self._shown, self._shown_len, self._shown_at = "", 0, float("-inf")
        self._typing_at = self._clock() - self.TYPING_EVERY + self.TYPING_AFTER

    def _sleep_for(self) -> float:
        due = []
        if self._frame_wanted(self._text):
            due.append(self._budget.ready_at())
        if not self._shown:
            due.append(max(self._typing_at + self.TYPING_EVERY, self._budget.ready_at()))
        elif self._mode == "draft":
            due.append(self._shown_at + self.DRAFT_KEEPALIVE)
        wait = min(due) - self._clock() if due else 1.0
        return min(max(wait, 0.005), 1.0)

    def _frame_wanted(self, text: str) -> bool:
        # The first frame as soon as there is text: that is when the user sees the bot
        # answer; after it, frames wait for buffer_threshold new characters.
        threshold = max(self._threshold, 1) if self._shown else 1
        size = len(text) if text.strip() else 0
        return self._enabled and size - self._shown_len >= threshold

    def _step(self, text: str) -> None:
        if not self._budget.ready():
            return
        if self._frame_wanted(text):
            self._frame(text)
        elif self._shown and self._mode == "draft":
            if self._clock() - self._shown_at >= self.DRAFT_KEEPALIVE:
                self._frame(text, keepalive=True)  # same text, same draft_id: nothing animates
        elif not self._shown and self._clock() - self._typing_at >= self.TYPING_EVERY:
            self._typing()

    def _typing(self) -> None:
        self._typing_at = self._clock()
        self._interim_call(
            self._api.send_chat_action,
            self._chat,
            "typing",
            message_thread_id=self._thread,
            share=0.5,
        )

    def _frame(self, text: str, keepalive: bool = False) -> None:
        body = interim(render_plain(self._scrub(text, partial=True)), self._cursor)
        if body == self._shown and not keepalive:
            self._shown_len = len(text)  # identical frames are not sent
            return
        if self._send_frame(body):
            self._shown, self._shown_len, self._shown_at = body, len(text), self._clock()

    def _send_frame(self, body: str) -> bool:
        if self._mode == "draft":
            return self._interim_call(
                self._api.send_message_draft,
                self._chat,
                self._draft_id,
                body,
                message_thread_id=self._thread,
            )
        if self._preview_id is not None:
            return self._interim_call(
                self._api.edit_message_text,
                self._chat,
                self._preview_id,
                body,
                disable_link_preview=True,
            )
        sent = self._interim_call(
            self._api.send_message,
            self._chat,
            body,
            message_thread_id=self._thread,
            reply_to_message_id=self._reply_to,
            disable_link_preview=True,
        )
        if isinstance(sent, dict):
            self._preview_id = sent.get("message_id")
        return bool(sent)

    def _interim_call(
        self,
        method: Callable,
        *args: Any,
        share: float = 1.0,
        claimed: bool = False,
        **kwargs: Any,
    ) -> Any:
        """One preview call; failures drop the frame (the next one supersedes it), and so
        does a budget another chat took first (the next step tries again)."""
        if not claimed and not self._budget.claim(share):
            return False
        try:
            return method(*args, **kwargs)
        except TelegramError as error:
            return self._interim_failed(error)

    def _interim_failed(self, error: TelegramError) -> bool:
        if error.kind == "not_modified":
            return True
        if error.rate_limited:
            self._budget.pause(error.retry_after or 1.0)  # never a reason to leave drafts
        elif error.fatal_for_chat:
            raise _Stop(error)
        elif error.uncertain and error.method == "sendMessage":
            # The preview may exist without our knowing its id: more previews could only
            # add strays. The final still comes.
            self._enabled = False
        elif not self._recover(error) and _draft_refused(error) and self._mode == "draft":
            self._mode = "edit"  # once per answer: drafts refused here, edits work everywhere
            log.info(
                "drafts refused in chat %s (%s); streaming by edits", self._chat, error.description
            )
        return False

    def _recover(self, error: TelegramError) -> bool:
        """Fix what a changed target can fix (moved group, closed topic, lost preview)."""
        if error.migrate_to_chat_id and not self._migrated:
            self._migrated = True
            self._note(f"the group moved to chat {error.migrate_to_chat_id}; sent there")
            self._chat = error.migrate_to_chat_id
            self._budget = self._budgets.for_chat(self._chat)
            return True
        if error.kind == "thread_gone" and self._thread is not None and not self._thread_dropped:
            self._thread_dropped = True
            self._note(f"topic {self._thread} is gone; sent to the chat itself")
            self._thread = None
            return True
        if error.kind == "message_gone" and self._preview_id is not None:
            self._preview_id = None  # "message to edit not found": continue in a new message
            return True
        return False

    def _note(self, text: str) -> None:
        log.warning("%s", text)
        self.delivery.notes.append(text)

    # ---------------------------------------------------------------- the final message

    def _finish(self, end: object) -> None:
        with self._cond:
            cut = self._cut_reason if isinstance(end, Failed) else None
            broke = self._broke
        content, complete = _final_text(end, self._text, cut, after_break=broke)
        self.delivery.answer_complete = complete
        if isinstance(end, Failed):
            self.delivery.model_error = cut or end.error.message
            # A cut answer counts as answered, so the chat must hear of it even then.
            if not self._announce_failures and not self._seen_text() and cut is None:
                return
        self._deliver_text(content)

    def _seen_text(self) -> bool:
        """Whether any of this answer reached the chat (a preview, or an earlier segment)."""
        return bool(self._shown) or self.delivery.parts_sent > 0

    def _deliver_text(self, content: str) -> None:
        """One segment's final message(s); a segment with no text needs none."""
        if not content.strip():
            return
        self._deadline = self._clock() + self._final_wait()  # one deadline for the delivery
        parts = self._parts(self._scrub(content))
        self.delivery.parts_total += len(parts)
        for index, (formatted, plain) in enumerate(parts):
            self._deliver(index, formatted, plain)

    def _final_wait(self) -> float:
        """Seconds the final may take: MAX_FINAL_WAIT, or less if it must be out sooner."""
        if self._deliver_by is None:
            return MAX_FINAL_WAIT
        return max(0.0, min(MAX_FINAL_WAIT, self._deliver_by - time.monotonic()))

    def _within(self) -> float | None:
        """How long one final call may wait for its reply, when the final has a deadline."""
        if self._deliver_by is None:
            return None
        return max(1.0, self._deliver_by - time.monotonic())

    def _scrub(self, text: str, *, partial: bool = False) -> str:
        """`text` without the known secrets; for a preview (`partial`) also without a tail
        that may be the start of one, so no frame shows even part of a key."""
        for secret in self._secrets:
            text = text.replace(secret, HIDDEN)
        if partial:
            text = text[: len(text) - _secret_start(text, self._secrets)]
        return text

    def _parts(self, content: str) -> list[tuple[str, str]]:
        """(formatted, plain) for each message the answer needs, measured after rendering."""
        try:
            rendered = render(content, self._parse_mode)
            mode = self._parse_mode
            return [(p, visible(p, mode, urls=True)) for p in split(rendered, mode)]
        except ValueError:  # e.g. one link longer than a message: formatting cannot fit
            self._plain_only = True
            return [(p, p) for p in split(render_plain(content), None)]

    def _deliver(self, index: int, formatted: str, plain: str) -> None:
        if not self._plain_only:
            try:
                return self._record(self._final_call(index, formatted, self._parse_mode))
            except TelegramError as error:
                if not error.kind == "parse":
                    raise
                self._plain_only = True  # once: the rest of the answer goes out plain too
                self._note(
                    f"Telegram rejected the formatting ({error.description}); sent as plain text"
                )
        pieces = split(plain, None)  # with link targets written out, it may need two
        self.delivery.parts_total += len(pieces) - 1
        for number, piece in enumerate(pieces):
            self._record(self._final_call(index + number, piece, None))

    def _record(self, message_id: int | None) -> None:
        self.delivery.parts_sent += 1
        if message_id is not None:
            self.delivery.message_ids.append(message_id)

    def _final_call(self, index: int, text: str, mode: str | None) -> int | None:
        error = None
        for attempt in range(FINAL_ATTEMPTS):
            self._claim(self._deadline)
            try:
                return self._send_part(index, text, mode)
            except TelegramError as failure:
                error = failure
                if not self._final_retryable(failure, index, attempt):
                    raise
        raise error  # type: ignore[misc]

    def _send_part(self, index: int, text: str, mode: str | None) -> int | None:
        if index == 0 and self._preview_id is not None:
            # The edit transport always ends with this formatting edit, even for equal text.
            try:
                self._api.edit_message_text(
                    self._chat, self._preview_id, text, parse_mode=mode, timeout=self._within()
                )
            except TelegramError as error:
                if not error.kind == "not_modified":
                    raise
            return self._preview_id
        if index > 0:
            reply = (self.delivery.message_ids or [None])[-1]  # the answer's parts as a chain
        else:
            reply = None if self.delivery.message_ids else self._reply_to
        sent = self._api.send_message(
            self._chat,
            text,
            parse_mode=mode,
            message_thread_id=self._thread,
            reply_to_message_id=reply,
            timeout=self._within(),
        )
        return sent.get("message_id") if isinstance(sent, dict) else None

    def _final_retryable(self, error: TelegramError, index: int, attempt: int) -> bool:
        if error.fatal_for_chat or error.kind == "parse":
            return False
        if error.uncertain and error.method == "sendMessage":
            return False  # Telegram may have posted it: sending again could show it twice
        if error.rate_limited:
            self._budget.pause(error.retry_after or 1.0)  # the final waits; it is never dropped
            return True
        if self._recover(error):
            return True
        if error.transient:
            backoff = min(self.RETRY_BACKOFF * 2.0**attempt, 16.0)
            self._budget.pause(backoff * random.uniform(0.8, 1.2))
            return True
        return False

    def _claim(self, deadline: float | None = None) -> None:
        """Wait for this chat's turn (and the bot's), and take it."""
        while True:
            self._wait_for_budget(deadline)
            if self._budget.claim():
                return

    def _wait_for_budget(self, deadline: float | None = None) -> None:
        """Sleep until the chat's budget allows a call; give up at once if past `deadline`."""
        ready = self._budget.ready_at()
        if deadline is not None and max(ready, self._clock()) > deadline:
            wait = max(ready - self._clock(), 0.0)
            raise TelegramError(
                "sendMessage",
                f"the final could not be sent in time (Telegram asked to wait {wait:.0f} s more)",
                kind="rate_limited",
                retry_after=wait,
            )
        while True:
            wait = self._budget.ready_at() - self._clock()
            if wait <= 0:
                return
            time.sleep(min(wait, 1.0))


def streamer_for(
    api: BotAPI,
    config: Config,
    chat_id: int | str,
    *,
    thread_id: int | None = None,
    reply_to: int | None = None,
    budgets: Budgets | None = None,
    announce_failures: bool = True,
    deliver_by: float | None = None,
) -> TelegramStreamer:
    """A streamer into one chat, set up from the streaming and telegram settings."""
    p, s = config.provider, config.streaming
    keys = (p.api_key, p.fallback.get("api_key"))
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
        secrets=(*api.secrets, *(k for k in keys if isinstance(k, str))),
        deliver_by=deliver_by,
    )


class Cutoff:
    """Calls `cut` once, from a thread of its own, if not closed within `seconds` (None:
    never); a context manager whose close() stops the timer and is safe to call twice."""

    def __init__(self, seconds: float | None, cut: Callable[[], None]) -> None:
        self.fired = False
        self._cut = cut
        self._closed = threading.Event()
        self._timer: threading.Thread | None = None
        if seconds is not None:
            self._timer = threading.Thread(
                target=self._wait, args=(seconds,), name="hermes-cutoff", daemon=True
            )
            self._timer.start()

    def _wait(self, seconds: float) -> None:
        if self._closed.wait(seconds):
            return
        self.fired = True
        try:
            self._cut()
        except Exception:  # noqa: BLE001 - a timer thread has no one to report to
            log.debug("cutting the answer failed", exc_info=True)

    def close(self) -> None:
        """Stop the timer (waiting for a cut in progress to finish)."""
        self._closed.set()
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.join()

    def __enter__(self) -> Cutoff:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stream_into(
    answer: Answer, streamer: TelegramStreamer, *, limit: float | None = None
) -> Delivery:
    """Feed a model stream (or agent turn) to a streamer; on Ctrl-C/SIGTERM the partial
    answer is delivered, marked as cut, and the signal re-raised. An answer still running
    after `limit` seconds is interrupted, and what came of it is delivered marked as too long.
    """

    def cut() -> None:
        streamer.cut(TOO_LONG)  # first: the interrupt ends the answer at once
        answer.interrupt()

    with Cutoff(limit, cut):
        try:
            for event in answer:
                streamer.handle(event)
                if streamer.stopped:  # the chat is gone: stop paying for the answer
                    answer.interrupt()
                    break
        except KeyboardInterrupt:
            answer.interrupt()
            streamer.handle(_ending(answer))
            streamer.close()
            raise
    return streamer.close()


def _ending(answer: Answer) -> Failed:
    """The interrupted answer's last event, with what had arrived."""
    try:
        answer.result()
    except StreamError as error:
        return Failed(error)
    return Failed(StreamError("interrupted", "interrupted"))


def _final_text(
    end: object, streamed: str, cut: str | None = None, *, after_break: bool = False
) -> tuple[str, bool]:
    """The final message's Markdown, and whether it is the whole answer."""
    if isinstance(end, Done):
        return _done_text(end.message), True
    if isinstance(end, Failed):
        partial = end.error.partial
        # After a tool call the partial may be the message that called it, whose text the
        # chat already has: only this segment's own text belongs in the final.
        text = streamed if after_break or partial is None else partial.content
        # The chat gets a short reason; the details (URLs, provider messages) go to the
        # operator, through Delivery.model_error.
        reason = cut or _CHAT_REASONS.get(end.error.kind, "the model stopped with an error")
    else:
        text, reason = streamed, "stopped"
    if not text.strip():
        said = "answer cut off" if after_break else "no answer"  # or earlier text was shown
        return f"[{said}: {reason}]", False
    return f"{text.rstrip()}\n\n[answer cut off: {reason}]", False


def _done_text(message: Message) -> str:
    """The final of a whole answer; one the model's length limit cut says so at its end."""
    content = message.content
    if not content.strip():
        names = ", ".join(call.name for call in message.tool_calls)
        content = f"[the model asked for tools: {names}]" if names else ""
    if message.finish_reason == "length":
        return f"{content.rstrip()}\n\n{LENGTH_CUT}" if content.strip() else LENGTH_CUT
    return content or "[empty answer]"


def _secret_start(text: str, secrets: tuple[str, ...]) -> int:
    """The length of the longest end of `text` that begins one of `secrets` (0: none);
    ends shorter than 4 characters tell nothing ("sk-") and are left alone."""
    longest = 3
    for secret in secrets:
        for size in range(min(len(secret) - 1, len(text)), longest, -1):
            if text.endswith(secret[:size]):
                longest = size
                break
    return longest if longest > 3 else 0


_CHAT_REASONS = {
    "interrupted": "interrupted",
    "incomplete": "the connection to the model broke",
    "connection": "the model could not be reached",
    "timeout": "the model took too long",
    "tls": "the model could not be reached",
    "proxy": "the model could not be reached",
}


def _draft_refused(error: TelegramError) -> bool:
    """Telegram refused the draft itself (not a network blip, not a 5xx, not typing)."""
    return error.method == "sendMessageDraft" and error.error_code in (400, 404)


def _new_draft_id() -> int:
    # "draft_id: Unique identifier of the message draft; must be non-zero"; clients keep
    # it within 32 bits.
    return random.randint(1, 2**31 - 1)
