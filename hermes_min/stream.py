"""One streamed response: a worker thread reads and folds it while the caller takes events."""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Iterator
from typing import IO, Callable, Protocol

from .connection import SocketSlot
from .errors import NetworkError, StreamError
from .events import Done, Failed, ReasoningDelta, TextDelta, ToolCallStarted
from .message import Message
from .redact import redact
from .response import BodyFolder

log = logging.getLogger(__name__)


class OpenedResponse(Protocol):
    """What a Stream reads: a status, a content type, the body's reads, and close()."""

    status: int
    content_type: str

    def reads(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


Opener = Callable[[SocketSlot, threading.Event], OpenedResponse]
_FIRST_DELTAS = (TextDelta, ReasoningDelta, ToolCallStarted)
_FINAL = (Done, Failed)


class Stream:
    """Iterate it for events as they arrive; `result()` for the final Message."""

    def __init__(
        self,
        opener: Opener,
        *,
        stream_delta_callback: Callable[[str], None] | None = None,
        on_first_delta: Callable[[], None] | None = None,
        record: IO[bytes] | None = None,
        secrets: tuple[str, ...] = (),
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
        """Move the next batch from the queue to self._taken (waiting for one if need be)."""
        batch = self._queue.get()
        with self._batch_lock:
            if batch is self._open_batch:
                self._open_batch = None  # taken: the worker starts a new batch
        self._taken.extend(batch)

    @property
    def _watching(self) -> bool:
        # Callbacks need every event; without any, the events need no bookkeeping.
        return self.stream_delta_callback is not None or self.on_first_delta is not None

    def interrupt(self) -> None:
        """Stop now, from any thread: the socket is shut, so a blocked read returns at once."""
        self._cancel.set()
        self._slot.abort()

    @property
    def interrupted(self) -> bool:
        """Whether interrupt() was called."""
        return self._cancel.is_set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker thread to end; True if it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self) -> None:
        """Interrupt if still running and wait for the worker; safe to call twice."""
        if self._thread.is_alive():
            self.interrupt()
            self._thread.join()

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
        response: OpenedResponse | None = None
        try:
            response = self._opener(self._slot, self._cancel)
            folder = BodyFolder(response.status, response.content_type)
            self._pump(response, folder)
        except StreamError as error:
            self._put([Failed(self._as_interrupted(error, folder))])
        except NetworkError as error:
            self._put([Failed(self._as_interrupted(StreamError.from_network(error), folder))])
        except Exception as exc:  # noqa: BLE001 - the consumer must always get a final event
            log.debug("stream worker failed", exc_info=True)
            error = StreamError("connection", f"unexpected failure: {type(exc).__name__}")
            self._put([Failed(self._as_interrupted(error, folder))])
        finally:
            if response is not None:
                response.close()

    def _pump(self, response: OpenedResponse, folder: BodyFolder) -> None:
        for read in response.reads():
            if self._record is not None:
                self._record.write(read)
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

    def _put(self, events: list) -> None:
        if type(events[-1]) is Failed and self._secrets:
            error = events[-1].error
            error.message = redact(error.message, self._secrets)
            error.args = (error.message,)
        # While the consumer has not taken the last batch, new events join it: one queue
        # hand-off (and thread wake-up) per batch the consumer takes, not per read, and no
        # delay when the consumer is already waiting.
        with self._batch_lock:
            if self._open_batch is not None:
                self._open_batch.extend(events)
                return
            self._open_batch = batch = list(events)
        self._queue.put(batch)

    def _as_interrupted(self, error: StreamError, folder: BodyFolder | None) -> StreamError:
        if error.partial is None and folder is not None:
            error.partial = folder.partial()
        if self._cancel.is_set() and error.kind != "interrupted":
            return StreamError("interrupted", "interrupted", partial=error.partial)
        return error
