"""One streamed response: a worker thread reads and folds it while the caller takes events."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Callable, Protocol

from .connection import SocketSlot
from .errors import HermesError, NetworkError, StreamError
from .events import Done, Failed, ReasoningDelta, TextDelta, ToolCallStarted
from .message import Message
from .redact import redact, redact_message
from .response import BodyFolder

log = logging.getLogger(__name__)


class OpenedResponse(Protocol):
    """What a Stream reads: a status, a content type, the body's reads, and close()."""

    status: int
    content_type: str

    def reads(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


class Sink(Protocol):
    """Where `--record` copies the raw body: anything with write(bytes)."""

    def write(self, data: bytes, /) -> object: ...


Opener = Callable[[SocketSlot, threading.Event], OpenedResponse]
_FIRST_DELTAS = (TextDelta, ReasoningDelta, ToolCallStarted)
_FINAL = (Done, Failed)
_WAKE = ()  # put by interrupt(): the consumer looks again, now with a deadline
ABANDON_AFTER = 2.0  # seconds a connected worker may take to end after interrupt(); then it is left
MAX_PENDING = 8192  # events put and not yet taken: past this the worker waits (memory)


class Stream:
    """Iterate it for events as they arrive; `result()` for the final Message."""

    def __init__(
        self,
        opener: Opener,
        *,
        stream_delta_callback: Callable[[str], None] | None = None,
        on_first_delta: Callable[[], None] | None = None,
        record: Sink | None = None,
        secrets: tuple[str, ...] = (),
        total_timeout: float | None = None,
    ) -> None:
        self._secrets = secrets  # never in an error message (keys echoed back by a server)
        self.stream_delta_callback = stream_delta_callback
        self.on_first_delta = on_first_delta
        self._opener = opener
        self._record = record
        self._queue: queue.Queue[list] = queue.Queue()  # batches of events, in order
        self._batch_lock = threading.Lock()
        self._open_batch: list | None = None  # put on the queue, not yet taken: still growing
        self._taken: deque = deque()
        self._slot = SocketSlot()
        self._cancel = threading.Event()
        self._final: Done | Failed | None = None
        self._first_seen = False
        self._tool_seen = False
        self._ended = False  # the worker has put the final event
        self._abandon_at: float | None = None  # set by interrupt(): how long to wait then
        self._pending = 0  # events put and not yet taken (under _batch_lock)
        self._worker_waits = False  # the worker waits for room: a take wakes it
        self._room = threading.Condition(self._batch_lock)
        self._total = total_timeout
        self._expired = threading.Event()
        self._opened = threading.Event()  # the response is open (a socket or not: a file)
        self._timer: threading.Timer | None = None
        if total_timeout is not None:
            # read_timeout cannot end a server that sends keep-alives forever; this can.
            self._timer = threading.Timer(total_timeout, self._expire)
            self._timer.daemon = True
            self._timer.start()
        self._thread = threading.Thread(target=self._work, name="hermes-stream", daemon=True)
        self._thread.start()

    def __iter__(self) -> Iterator:
        # Events taken from the queue wait in self._taken until yielded, so an iteration
        # cut short (Ctrl-C mid-batch) loses none: the next one starts where it stopped.
        while self._final is None:
            yield self._next()

    def result(self) -> Message:
        """Drain the stream; return the message, or raise its StreamError (with `.partial`)."""
        while self._final is None:
            self._next()
        if isinstance(self._final, Failed):
            raise self._final.error
        return self._final.message  # type: ignore[union-attr]

    def _next(self) -> object:
        """The next event (waiting for one), after the callbacks have seen it."""
        if not self._taken:
            self._take()
        event = self._taken.popleft()
        if type(event) in _FINAL:
            self._final = event
        if self._watching:
            self._notify(event)
        return event

    def _take(self) -> None:
        """Move the next batch from the queue to self._taken (waiting for one if need be).

        After interrupt() the wait is bounded: a worker stuck where no socket can be shut
        (a connect that never completes) is left behind, and the stream ends interrupted.
        """
        while True:
            timeout = None
            if self._abandon_at is not None:
                timeout = max(self._abandon_at - time.monotonic(), 0.0)
            try:
                batch = self._queue.get(timeout=timeout)
            except queue.Empty:  # the worker was left behind: a deadline says so, not "interrupted"
                batch = [Failed(self._as_interrupted(StreamError("interrupted", "interrupted")))]
            if batch is not _WAKE:
                break
        with self._batch_lock:
            if batch is self._open_batch:
                self._open_batch = None  # taken: the worker starts a new batch
            self._pending -= len(batch)
            if self._worker_waits:
                self._room.notify_all()
        self._taken.extend(batch)

    @property
    def _watching(self) -> bool:
        # Callbacks need every event; without any, the events need no bookkeeping.
        return self.stream_delta_callback is not None or self.on_first_delta is not None

    def interrupt(self) -> None:
        """Stop now, from any thread: the socket is shut, so a blocked read returns at once."""
        self._cancel.set()
        connected = self._slot.abort()
        if self._abandon_at is None:
            # A worker with a socket ends soon once it is shut; one still in connect() (no
            # socket to shut) has read no byte of the answer, so it is left at once: nothing
            # shown is lost by not waiting for it.
            started = connected or self._opened.is_set()
            self._abandon_at = time.monotonic() + (ABANDON_AFTER if started else 0.0)
        with self._batch_lock:
            self._room.notify_all()  # a worker waiting for room stops waiting
        self._queue.put(_WAKE)  # a consumer waiting without a deadline takes one

    @property
    def interrupted(self) -> bool:
        """Whether interrupt() was called."""
        return self._cancel.is_set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker thread to end; True if it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self) -> None:
        """Interrupt if still running and wait (bounded) for the worker; safe to call twice."""
        if self._thread.is_alive():
            self.interrupt()
            left = (self._abandon_at or 0.0) - time.monotonic()
            self._thread.join(max(left, 0.0))  # a daemon stuck in connect() is left behind
        if self._timer is not None:
            self._timer.cancel()

    def _expire(self) -> None:
        """The whole response took longer than total_timeout: end it like an interrupt."""
        if not self._ended:
            self._expired.set()
            self.interrupt()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _notify(self, event: object) -> None:
        # Callbacks run on the thread that takes the events, never on the worker: a slow
        # callback must not hold up reading the socket.
        kind = type(event)
        if kind is ToolCallStarted:
            self._tool_seen = True
        if not self._first_seen and kind in _FIRST_DELTAS:
            self._first_seen = True
            if self.on_first_delta is not None:
                self.on_first_delta()
        if kind is TextDelta and not self._tool_seen and self.stream_delta_callback is not None:
            self.stream_delta_callback(event.text)  # type: ignore[attr-defined]

    def _work(self) -> None:
        folder: BodyFolder | None = None
        try:
            folder = self._read()
        finally:
            if not self._ended:  # whatever happened above, the consumer gets a final event
                self._end(StreamError("internal", "the reply could not be read"), folder)
            if self._timer is not None:
                self._timer.cancel()

    def _read(self) -> BodyFolder | None:
        """Open and fold the response; every failure becomes the final Failed event."""
        folder: BodyFolder | None = None
        response: OpenedResponse | None = None
        try:
            response = self._opener(self._slot, self._cancel)
            self._opened.set()
            folder = BodyFolder(response.status, response.content_type, self._secrets)
            self._pump(response, folder)
        except StreamError as error:
            self._end(error, folder)
        except NetworkError as error:
            self._end(StreamError.from_network(error), folder)
        except HermesError as error:  # e.g. no model: the opener asked the server which one
            self._end(StreamError(error.kind, str(error)), folder)
        except Exception as exc:  # noqa: BLE001 - a bug of ours must still end the stream
            log.debug("stream worker failed", exc_info=True)
            message = f"the reply could not be read (an internal error: {type(exc).__name__})"
            self._end(StreamError("internal", message), folder)
        finally:
            if response is not None:
                try:
                    response.close()
                except Exception:  # noqa: BLE001 - closing must not cost the final event
                    log.debug("closing the response failed", exc_info=True)
        return folder

    def _end(self, error: StreamError, folder: BodyFolder | None) -> None:
        """Put the final Failed event, with what had arrived."""
        if error.partial is None and folder is not None:
            try:
                error.partial = folder.partial()
            except Exception:  # noqa: BLE001 - no partial rather than no final event
                log.debug("the partial message could not be built", exc_info=True)
        self._put([Failed(self._as_interrupted(error))])

    def _pump(self, response: OpenedResponse, folder: BodyFolder) -> None:
        for read in response.reads():
            if self._record is not None:
                self._write_record(read)
            events = folder.feed(read)
            if events:
                self._put(events)
            if folder.done or self._cancel.is_set():
                break
        if self._cancel.is_set() and not folder.done:
            raise StreamError("interrupted", "interrupted")
        final = folder.finish()
        if final:
            self._put(final)

    def _write_record(self, read: bytes) -> None:
        """Copy a read to --record; a failing copy stops recording, never the answer."""
        try:
            self._record.write(read)  # type: ignore[union-attr]
        except (OSError, ValueError) as exc:
            log.warning("the raw body is no longer recorded: %s", exc)
            self._record = None

    def _put(self, events: list) -> None:
        last = type(events[-1])
        if self._secrets:
            events = [self._redacted(event) for event in events]
        if last in _FINAL:
            self._ended = True
        # While the consumer has not taken the last batch, new events join it: one queue
        # hand-off (and thread wake-up) per batch the consumer takes, not per read, and no
        # delay when the consumer is already waiting.
        with self._batch_lock:
            if self._pending >= MAX_PENDING and last not in _FINAL:
                self._wait_for_room()  # a consumer far behind (never for a final event)
            self._pending += len(events)
            if self._open_batch is not None:
                self._open_batch.extend(events)
                return
            self._open_batch = batch = list(events)
        self._queue.put(batch)

    def _wait_for_room(self) -> None:
        """Hold the worker (and so the socket) until the consumer takes events (under the
        batch lock)."""
        self._worker_waits = True
        while self._pending >= MAX_PENDING and not self._cancel.is_set():
            self._room.wait(0.5)
        self._worker_waits = False

    def _redacted(self, event: object) -> object:
        """The event without the known secrets: a server may echo the key anywhere."""
        kind = type(event)
        if kind is TextDelta or kind is ReasoningDelta:
            text = event.text  # type: ignore[attr-defined]
            if any(secret in text for secret in self._secrets):
                return kind(redact(text, self._secrets))
            return event
        if kind is Done:
            return Done(redact_message(event.message, self._secrets))  # type: ignore[attr-defined]
        if kind is Failed:
            error = event.error  # type: ignore[attr-defined]
            error.message = redact(error.message, self._secrets)
            error.args = (error.message,)
            if error.partial is not None:
                error.partial = redact_message(error.partial, self._secrets)
        return event

    def _as_interrupted(self, error: StreamError) -> StreamError:
        """The error to report: a deadline or an interrupt overrides what it caused."""
        if self._expired.is_set() and error.kind != "timeout":
            return StreamError(
                "timeout",
                f"the answer took longer than {self._total:g} s (provider.total_timeout)",
                partial=error.partial,
            )
        if self._cancel.is_set() and error.kind != "interrupted":
            return StreamError("interrupted", "interrupted", partial=error.partial)
        return error
