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
from typing import Callable, Union

from ..storage import Store
from .updates import Update

_Key = Union[int, tuple]  # an update's id, or ("at", offset) for an entry with no usable id


class _Entry:
    """One fetched update on its way: the offset that confirms it, and how far it got."""

    __slots__ = ("key", "update_id", "offset", "done", "sent")

    def __init__(self, update: Update, done: bool) -> None:
        self.key = _key(update)
        self.update_id, self.offset = update.update_id, update.offset
        self.done = done
        self.sent = False  # its answer reached the chat, but the store could not record it


class Ledger:
    """Fetched updates in order; thread-safe; the store holds its offset and done set."""

    def __init__(self, store: Store, bot_id: object) -> None:
        self.store = store
        self.offset_key = f"telegram.{bot_id}.offset"
        self._done_key = f"telegram.{bot_id}.done"  # ids done beyond the offset, as JSON
        self._failures_key = f"telegram.{bot_id}.failures"  # {id: failed tries}, as JSON
        self._lock = threading.Lock()
        self._entries: deque[_Entry] = deque()  # fetched, in order, not yet under the offset
        self._by_key: dict[_Key, _Entry] = {}
        self._busy: set[_Key] = set()  # handed out as work and not yet finished
        self._floor = 0  # the highest offset passed in this run: what is below it is done

    def offset(self) -> int | None:
        """The offset to fetch from (and to tell Telegram)."""
        value = self.store.get_state(self.offset_key)
        return value if isinstance(value, int) else None

    def take(self, updates: list[Update]) -> list[Update]:
        """Note a fetched batch; the updates that are new work (not done, not in flight).

        A batch may have been fetched before an answer in it was recorded (a getUpdates
        reply still on its way): what is below the offset this run passed is done.
        """
        done = self._done_ids()
        fresh = []
        with self._lock:
            for update in updates:
                if update.offset is None or update.offset <= self._floor:
                    continue  # never ours to confirm, or done already
                key = _key(update)
                entry = self._by_key.get(key)
                if entry is None:
                    entry = _Entry(update, update.update_id in done)
                    self._entries.append(entry)
                    self._by_key[key] = entry
                if entry.done or entry.sent or key in self._busy:
                    continue
                self._busy.add(key)
                fresh.append(update)
        return fresh

    def finish(self, update: Update, write: Callable[[], None] | None = None) -> None:
        """Mark `update` done, with `write`'s changes, in one transaction (StorageError if the
        store fails: then nothing is marked)."""
        with self._lock, self.store.transaction():
            if write is not None:
                write()
            entry = self._by_key[_key(update)]
            entry.done = True
            try:
                self._persist()
            except BaseException:
                entry.done = False  # the transaction rolls back: so does the mark
                raise
            self._busy.discard(entry.key)
            while self._entries and self._entries[0].done:
                gone = self._entries.popleft()
                self._by_key.pop(gone.key, None)
                self._floor = max(self._floor, gone.offset or 0)

    def sent(self, update: Update) -> None:
        """Its answer reached the chat but the store could not record it: confirm it to
        Telegram at the end of the run (confirmable()), never answer it again."""
        with self._lock:
            entry = self._by_key.get(_key(update))
            if entry is not None:
                entry.sent = True
                self._busy.discard(entry.key)

    def confirmable(self) -> int | None:
        """The offset that confirms the longest run of updates done or sent (None: nothing
        was sent unrecorded, or the run is blocked by one never answered)."""
        with self._lock:
            offset, any_sent = None, False
            for entry in self._entries:
                if not (entry.done or entry.sent):
                    break
                offset, any_sent = entry.offset, any_sent or entry.sent
            return offset if any_sent else None

    @property
    def unconfirmed_sent(self) -> bool:
        """Whether an answer reached a chat that neither the store nor Telegram knows of."""
        with self._lock:
            return any(entry.sent for entry in self._entries)

    def failed(self, update: Update) -> int:
        """One more failed try of `update`, kept in the store; how many there were."""
        with self._lock, self.store.transaction():
            counts = _json_map(self.store.get_state(self._failures_key))
            key = str(update.update_id)
            counts[key] = counts.get(key, 0) + 1
            self.store.set_state(self._failures_key, json.dumps(counts))
            return counts[key]

    def _persist(self) -> None:
        """Write the offset of the done prefix and the done ids beyond it (in a transaction).
        The stored offset never moves back."""
        offset, beyond = None, []
        prefix = True
        for entry in self._entries:
            if prefix and entry.done:
                offset = entry.offset
            elif entry.done and entry.update_id is not None:
                beyond.append(entry.update_id)
            else:
                prefix = False
        stored = self.offset() or 0
        if offset is not None and offset > stored:
            self.store.set_state(self.offset_key, offset)
            stored = offset
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


def _key(update: Update) -> _Key:
    """How an update is known across fetches: its id, else its place (the offset that
    confirms it stays the same while nothing below it is confirmed)."""
    return update.update_id if update.update_id is not None else ("at", update.offset)


def _json_map(raw: object) -> dict[str, int]:
    """A stored {id: count} map ({} when absent or not one)."""
    try:
        value = json.loads(raw) if isinstance(raw, str) else {}
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(v, int) and not isinstance(v, bool)}
