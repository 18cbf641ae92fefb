"""Many chats answered at once: one lane per chat, its updates strictly in order, one at a time.

Threads, no asyncio. A lane whose update met an outage holds it at its head, and the
updates behind it, until a retry is due (or the run ends): a chat's messages are never
answered out of order.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Generic, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")


class _Lane(Generic[Item]):
    """One chat's queue."""

    __slots__ = ("queue", "running", "retry_at")

    def __init__(self) -> None:
        self.queue: deque[Item] = deque()
        self.running = False
        self.retry_at: float | None = None  # an outage: the head waits until then


class Lanes(Generic[Item]):
    """Runs `work(item)` on up to `workers` threads; `work` returns "done" or "retry".

    A context manager: close() stops starting work and waits for what runs; safe twice.
    """

    def __init__(
        self,
        workers: int,
        work: Callable[[Item], str],
        *,
        retry_after: float | None,
        may_start: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._work = work
        self._may_start = may_start  # asked at each start: a deadline or a signal says no
        self._retry_after = retry_after  # None: a lane that needs a retry stops (--once)
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hermes-chat")
        self._lanes: dict[Hashable, _Lane[Item]] = {}
        self._cond = threading.Condition()
        self._starting = True
        self._closed = False
        self.failure: BaseException | None = None  # the first error work raised: the run ends
        self.retried = False  # some lane holds an update for a later try

    def put(self, key: Hashable, item: Item) -> None:
        """Queue `item` behind the chat's earlier ones."""
        with self._cond:
            lane = self._lanes.setdefault(key, _Lane())
            lane.queue.append(item)
            self._start(key, lane)

    def tick(self) -> None:
        """Start the lanes whose retry is due."""
        with self._cond:
            now = self._clock()
            for key, lane in list(self._lanes.items()):
                if lane.retry_at is not None and lane.retry_at <= now:
                    lane.retry_at = None
                    self._start(key, lane)

    def stop_starting(self) -> list[Item]:
        """Start nothing more; the items that were waiting (never started), in order."""
        with self._cond:
            self._starting = False
            left = [item for lane in self._lanes.values() for item in lane.queue]
            for lane in self._lanes.values():
                if not lane.running:
                    lane.queue.clear()
            self._cond.notify_all()
            return left

    def next_retry(self) -> float | None:
        """The clock time of the earliest retry a lane waits for (None: none waits)."""
        with self._cond:
            due = [lane.retry_at for lane in self._lanes.values() if _waits(lane)]
            return min(due) if due else None  # type: ignore[type-var]

    @property
    def running(self) -> int:
        """How many lanes are running an item now."""
        with self._cond:
            return sum(lane.running for lane in self._lanes.values())

    @property
    def pending(self) -> bool:
        """Whether any lane runs, waits to run, or holds an item for a retry this run."""
        with self._cond:
            return any(
                lane.running or (lane.queue and lane.retry_at != math.inf)
                for lane in self._lanes.values()
            )

    def wait(self, timeout: float) -> None:
        """Wait until a lane finishes an item, or `timeout` seconds."""
        with self._cond:
            self._cond.wait(timeout)

    def close(self) -> None:
        """Start nothing more and wait for the running items to end."""
        if self._closed:
            return
        self._closed = True
        self.stop_starting()
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Lanes[Item]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self, key: Hashable, lane: _Lane[Item]) -> None:
        """Run the lane on a worker if it is idle, has work, and may start (under the lock)."""
        if lane.running or not lane.queue or lane.retry_at is not None or not self._starting:
            return
        lane.running = True
        self._pool.submit(self._drain, key, lane)

    def _drain(self, key: Hashable, lane: _Lane[Item]) -> None:
        """Run the lane's next item, then queue the lane again behind the others (one chat
        with many messages must not hold a worker while other chats wait)."""
        with self._cond:
            if not lane.queue or not self._starting or not self._may_start():
                lane.running = False
                self._forget(key, lane)
                self._cond.notify_all()
                return
            item = lane.queue[0]
        outcome = self._run(item)
        with self._cond:
            lane.running = False
            if outcome == "retry":
                self.retried = True
                # --once: this chat waits for the next run, its later messages too (they
                # may still come in this run: they wait behind it, never answered first).
                wait = math.inf if self._retry_after is None else self._retry_after
                lane.retry_at = self._clock() + wait
            else:
                lane.queue.popleft()
                self._start(key, lane)
                self._forget(key, lane)
            self._cond.notify_all()

    def _forget(self, key: Hashable, lane: _Lane[Item]) -> None:
        """Drop a lane with nothing left (under the lock): a long poll meets many chats."""
        idle = not lane.queue and not lane.running and lane.retry_at is None
        if idle and self._lanes.get(key) is lane:
            del self._lanes[key]

    def _run(self, item: Item) -> str:
        """One item; an error stops every lane from starting more (the run ends with it)."""
        try:
            return self._work(item)
        except BaseException as error:  # noqa: BLE001 - handed to the thread that ends the run
            log.debug("a chat's work failed", exc_info=True)
            with self._cond:
                self.failure = self.failure or error
                self._starting = False
            return "retry"


def _waits(lane: _Lane) -> bool:
    """Whether the lane waits for a retry in this run."""
    return lane.retry_at is not None and lane.retry_at != math.inf
