"""One streamed response: a worker thread reads and folds it while the caller takes events."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from typing import IO, Callable, Protocol

from .connection import SocketSlot
from .errors import StreamError
from .events import Done, Failed, ReasoningDelta, TextDelta, ToolCallStarted
from .message import Message
from .response import BodyFolder

log = logging.getLogger(__name__)


class OpenedResponse(Protocol):
    """What a Stream reads: a status, a content type, the body's reads, and close()."""

    status: int
    content_type: str

    def reads(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


Opener = Callable[[SocketSlot, threading.Event], OpenedResponse]


class Stream:
    """Iterate it for events as they arrive; `result()` for the final Message."""

    def __init__(
        self,
        opener: Opener,
        *,
        stream_delta_callback: Callable[[str], None] | None = None,
        on_first_delta: Callable[[], None] | None = None,
        record: IO[bytes] | None = None,
    ) -> None:
        self.stream_delta_callback = stream_delta_callback
        self.on_first_delta = on_first_delta
        self._opener = opener
        self._record = record
        self._queue: queue.Queue[list] = queue.Queue()  # one batch of events per body read
        self._slot = SocketSlot()
        self._cancel = threading.Event()
        self._final: Done | Failed | None = None
        self._first_seen = False
        self._tool_seen = False
        self._thread = threading.Thread(target=self._work, name="hermes-stream", daemon=True)
        self._thread.start()

    def __iter__(self) -> Iterator:
        while self._final is None:
            for event in self._queue.get():
                self._notify(event)
                yield event
                if isinstance(event, (Done, Failed)):
                    self._final = event
                    return

    def result(self) -> Message:
        """Drain the stream; return the message, or raise its StreamError (with `.partial`)."""
        for _ in self:
            pass
        if isinstance(self._final, Failed):
            raise self._final.error
        return self._final.message  # type: ignore[union-attr]

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
        if isinstance(event, ToolCallStarted):
            self._tool_seen = True
        if not self._first_seen and isinstance(event, (TextDelta, ReasoningDelta, ToolCallStarted)):
            self._first_seen = True
            if self.on_first_delta is not None:
                self.on_first_delta()
        if isinstance(event, TextDelta) and not self._tool_seen and self.stream_delta_callback:
            self.stream_delta_callback(event.text)

    def _work(self) -> None:
        folder: BodyFolder | None = None
        response: OpenedResponse | None = None
        try:
            response = self._opener(self._slot, self._cancel)
            folder = BodyFolder(response.status, response.content_type)
            self._pump(response, folder)
        except StreamError as error:
            self._queue.put([Failed(self._as_interrupted(error, folder))])
        except Exception as exc:  # noqa: BLE001 - the consumer must always get a final event
            log.debug("stream worker failed", exc_info=True)
            error = StreamError("connection", f"unexpected failure: {type(exc).__name__}")
            self._queue.put([Failed(self._as_interrupted(error, folder))])
        finally:
            if response is not None:
                response.close()

    def _pump(self, response: OpenedResponse, folder: BodyFolder) -> None:
        for read in response.reads():
            if self._record is not None:
                self._record.write(read)
            events = folder.feed(read)
            if events:
                self._queue.put(events)
            if folder.done or self._cancel.is_set():
                break
        if self._cancel.is_set() and not folder.done:
            raise StreamError("interrupted", "interrupted")
        final = folder.finish()
        if final:
            self._queue.put(final)

    def _as_interrupted(self, error: StreamError, folder: BodyFolder | None) -> StreamError:
        if error.partial is None and folder is not None:
            error.partial = folder.partial()
        if self._cancel.is_set() and error.kind != "interrupted":
            return StreamError("interrupted", "interrupted", partial=error.partial)
        return error
