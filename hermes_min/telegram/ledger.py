"""Which updates are done, and the offset that confirms only those.

With several chats answered at once, updates finish out of order. Telegram is told an
offset ("an update is considered confirmed as soon as getUpdates is called with an offset
higher than its update_id") that covers only the longest run of done updates, in fetch
order; the ids of updates done beyond it are kept in the store beside the offset, written
in the same transaction as the turn. A run killed at any instant therefore loses nothing,
and the next run repeats only the answers that were in flight: what it fetches again and
finds in the done set it confirms without answering.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from typing import Callable

from ..storage import Store
from .updates import Update


class _Entry:
    """One fetched update on its way: the offset that confirms it, and whether it is done."""

    __slots__ = ("update_id", "offset", "done")

    def __init__(self, update_id: int | None, offset: int, done: bool) -> None:
        self.update_id, self.offset, self.done = update_id, offset, done


class Ledger:
    """Fetched updates in order; thread-safe; the store holds its offset and done set."""

    def __init__(self, store: Store, bot_id: object) -> None:
        self.store = store
        self.offset_key = f"telegram.{bot_id}.offset"
        self._done_key = f"telegram.{bot_id}.done"  # ids done beyond the offset, as JSON
        self._failures_key = f"telegram.{bot_id}.failures"  # {id: failed tries}, as JSON
        self._lock = threading.Lock()
        self._entries: deque[_Entry] = deque()  # fetched, in order, not yet under the offset
        self._by_id: dict[int, _Entry] = {}  # the entries above that have an id
        self._busy: set[int] = set()  # ids handed out as work and not yet finished

    def offset(self) -> int | None:
        """The offset to fetch from (and to tell Telegram)."""
        value = self.store.get_state(self.offset_key)
        return value if isinstance(value, int) else None

    def take(self, updates: list[Update]) -> list[Update]:
        """Note a fetched batch; the updates that are new work (not done, not in flight)."""
        done = self._done_ids()
        fresh = []
        with self._lock:
            for update in updates:
                if update.offset is None:
                    continue  # never confirmed by us (an id handled before)
                entry = self._by_id.get(update.update_id) if update.update_id is not None else None
                if entry is None:
                    entry = _Entry(update.update_id, update.offset, update.update_id in done)
                    self._entries.append(entry)
                    if update.update_id is not None:
                        self._by_id[update.update_id] = entry
                if entry.done or update.update_id in self._busy:
                    continue
                if update.update_id is not None:
                    self._busy.add(update.update_id)
                fresh.append(update)
        return fresh

    def finish(self, update: Update, write: Callable[[], None] | None = None) -> None:
        """Mark `update` done, with `write`'s changes, in one transaction (StorageError if the
        store fails: then nothing is marked)."""
        with self._lock, self.store.transaction():
            if write is not None:
                write()
            entry = self._entry(update)
            entry.done = True
            try:
                self._persist()
            except BaseException:
                entry.done = False  # the transaction rolls back: so does the mark
                raise
            self._busy.discard(update.update_id)  # type: ignore[arg-type]
            while self._entries and self._entries[0].done:
                gone = self._entries.popleft()
                if gone.update_id is not None:
                    self._by_id.pop(gone.update_id, None)

    def release(self, update: Update) -> None:
        """`update` will be fetched and tried again (an outage): no longer in flight, and
        still not done, so the offset stays below it."""
        with self._lock:
            self._busy.discard(update.update_id)  # type: ignore[arg-type]

    def confirmable(self, update: Update) -> int | None:
        """The offset that confirms `update` and only updates already done before it; None if
        an earlier one is still open (confirming it would drop it)."""
        with self._lock:
            for entry in self._entries:
                if entry.update_id == update.update_id and entry.offset == update.offset:
                    return entry.offset
                if not entry.done:
                    return None
        return update.offset  # every earlier one is done and under the stored offset

    def _entry(self, update: Update) -> _Entry:
        if update.update_id is not None:
            return self._by_id[update.update_id]
        return next(e for e in self._entries if e.update_id is None and not e.done)

    def failed(self, update: Update) -> int:
        """One more failed try of `update`, kept in the store; how many there were."""
        with self._lock, self.store.transaction():
            counts = _json_map(self.store.get_state(self._failures_key))
            key = str(update.update_id)
            counts[key] = counts.get(key, 0) + 1
            self.store.set_state(self._failures_key, json.dumps(counts))
            return counts[key]

    @property
    def in_flight(self) -> int:
        """How many updates were handed out as work and are not finished."""
        with self._lock:
            return len(self._busy)

    def _persist(self) -> None:
        """Write the offset of the done prefix and the done ids beyond it (in a transaction)."""
        offset, beyond = None, []
        prefix = True
        for entry in self._entries:
            if prefix and entry.done:
                offset = entry.offset
            elif entry.done and entry.update_id is not None:
                beyond.append(entry.update_id)
            else:
                prefix = False
        if offset is not None:
            self.store.set_state(self.offset_key, offset)
        stored = self.offset() or 0
        kept = sorted(i for i in self._done_ids() | set(beyond) if i >= stored)
        self.store.set_state(self._done_key, json.dumps(kept))
        counts = _json_map(self.store.get_state(self._failures_key))
        if counts:
            live = {k: v for k, v in counts.items() if k.isdigit() and int(k) >= stored}
            self.store.set_state(self._failures_key, json.dumps(live))

    def _done_ids(self) -> set[int]:
        raw = self.store.get_state(self._done_key)
        try:
            ids = json.loads(raw) if isinstance(raw, str) else []
        except ValueError:
            return set()
        return {i for i in ids if isinstance(i, int)} if isinstance(ids, list) else set()


def _json_map(raw: object) -> dict[str, int]:
    """A stored {id: count} map ({} when absent or not one)."""
    try:
        value = json.loads(raw) if isinstance(raw, str) else {}
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(v, int) and not isinstance(v, bool)}
