"""Conversations and bot state in one SQLite file; each turn is written whole or not at all.

A `Store` may be shared by threads: it runs one statement, or one transaction, at a time.
Two Stores, in two processes (a cron bot and a terminal user), may share one file: the
file is in WAL mode, so readers never wait, and a writer waits up to `timeout` seconds for
another writer.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .config import Config
from .errors import HermesError, StorageError, UsageError
from .redact import redact

log = logging.getLogger(__name__)

APPLICATION_ID = 0x48524D53  # "HRMS" in the file header: we never adopt another program's file
INTERRUPTED = "[interrupted by the user]"
# How a turn that has no complete answer ended (turns.ended), and what the model is told.
ENDINGS = {
    "interrupted": INTERRUPTED,
    "connection": "[cut off: the connection to the server broke]",
    "error": "[cut off: the server reported an error]",
    "max_turns": "[stopped: too many rounds of tool calls]",
}
_NO_RESULT = "[no result: the tool was not run]"
_NO_RESULT_INTERRUPTED = "[no result: the turn was interrupted by the user]"
_NO_RESULT_CUT = "[no result: the turn was cut off]"
_INDEXED = "search.indexed"  # state: the search index holds every message up to this id
_REINDEX = "search.rebuild"  # state: a delete could not reach the index; rebuild it first
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32: no i, l, o, u to misread
_TYPOS = str.maketrans("ilo", "110")  # what Crockford says a reader means by them
_ID_LENGTH = 10  # 50 random bits: a few typed characters are almost always a unique prefix
_TITLE_LENGTH = 60
_USAGE = ("prompt_tokens", "completion_tokens", "total_tokens")
# Lone surrogates: what undecodable bytes become in Python text (argv, a JSON "\udcff").
# SQLite stores UTF-8, which cannot hold them: they would make the whole turn fail.
_SURROGATES = re.compile("[\ud800-\udfff]")

# Each entry moves the schema up one version (PRAGMA user_version); never edit a shipped one.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        # `key` is the external key the conversation was started under (kept after /new, so
        # Telegram conversations stay out of `hermes -c`); `keys` maps a key to its current one.
        """CREATE TABLE conversations (
            id TEXT PRIMARY KEY,
            key TEXT,
            model TEXT,
            system TEXT,
            created TEXT NOT NULL,
            updated TEXT NOT NULL,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            total_tokens INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX conversations_by_updated ON conversations (updated)",
        """CREATE TABLE keys (
            key TEXT PRIMARY KEY,
            conversation_id TEXT NOT NULL REFERENCES conversations (id)
        )""",
        """CREATE TABLE turns (
            conversation_id TEXT NOT NULL REFERENCES conversations (id),
            number INTEGER NOT NULL,
            started TEXT NOT NULL,
            model TEXT,
            interrupted INTEGER NOT NULL DEFAULT 0,
            usage TEXT,
            PRIMARY KEY (conversation_id, number)
        )""",
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            conversation_id TEXT NOT NULL,
            turn INTEGER NOT NULL,
            position INTEGER NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'tool')),
            content TEXT,
            tool_call_id TEXT,
            UNIQUE (conversation_id, turn, position),
            FOREIGN KEY (conversation_id, turn) REFERENCES turns (conversation_id, number)
        )""",
        """CREATE TABLE tool_calls (
            message_id INTEGER NOT NULL REFERENCES messages (id),
            position INTEGER NOT NULL,
            call_id TEXT NOT NULL,
            name TEXT NOT NULL,
            arguments TEXT NOT NULL,
            PRIMARY KEY (message_id, position)
        )""",
        "CREATE TABLE state (name TEXT PRIMARY KEY, value)",
    ),
    (
        # Where a conversation continues (-c): the endpoint and model it asked for, and the
        # named provider, if any; conversations.model stays the model the server named.
        "ALTER TABLE conversations ADD COLUMN base_url TEXT",
        "ALTER TABLE conversations ADD COLUMN provider TEXT",
        "ALTER TABLE conversations ADD COLUMN requested_model TEXT",
        # How a turn without a complete answer ended (a key of ENDINGS); NULL when it has
        # one, or when it was written before this column (then `interrupted` says).
        "ALTER TABLE turns ADD COLUMN ended TEXT",
    ),
)

# sqlite's primary result codes -> (StorageError kind, what it means for the person who has to
# fix it). https://www.sqlite.org/rescode.html
_CODES = {
    5: ("busy", "is locked by another process; try again when it is done"),  # SQLITE_BUSY
    6: ("busy", "is locked by another process; try again when it is done"),  # SQLITE_LOCKED
    8: ("readonly", "is read-only"),  # SQLITE_READONLY
    11: ("corrupt", "is damaged (sqlite: database disk image is malformed)"),  # SQLITE_CORRUPT
    13: ("full", "cannot be written: the disk is full"),  # SQLITE_FULL
    14: ("other", "cannot be opened"),  # SQLITE_CANTOPEN
    26: ("foreign", "is not a hermes database"),  # SQLITE_NOTADB
}
# Python before 3.11 gives no error code (sqlite_errorcode), only sqlite's message: there,
# and only there, the message's words stand in for the code.
_WORDS = (
    ("database is locked", 5),
    ("database table is locked", 6),
    ("readonly", 8),
    ("malformed", 11),
    ("disk is full", 13),
    ("unable to open", 14),
    ("not a database", 26),
)

_SUMMARY = """SELECT c.*,
    (SELECT count(*) FROM turns t WHERE t.conversation_id = c.id) AS turns,
    (SELECT m.content FROM messages m
        WHERE m.conversation_id = c.id AND m.turn = 1 AND m.position = 0) AS first
    FROM conversations c"""


def default_path(env: Mapping[str, str] | None = None) -> Path:
    """$XDG_STATE_HOME/hermes/hermes.db, XDG_STATE_HOME defaulting to ~/.local/state."""
    env = os.environ if env is None else env
    base = env.get("XDG_STATE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: a relative path is invalid and ignored
        base = os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "hermes" / "hermes.db"


def open_store(config: Config, *, required: bool) -> Store | None:
    """The store the settings name; when not `required`, a failure is a warning and None."""
    path = config.storage.path or default_path()
    try:
        return Store(path, secrets=config.secrets)
    except HermesError as error:
        if required:
            raise
        log.warning("conversations are not being saved: %s", error)
        return None


class Store:
    """Conversations (turns, messages, tool calls, usage) and key-value state in SQLite."""

    def __init__(
        self, path: str | os.PathLike, *, timeout: float = 5.0, secrets: Iterable[str] = ()
    ) -> None:
        self.path = Path(path).expanduser()
        self._secrets = tuple(secret for secret in secrets if secret)
        self._db: sqlite3.Connection | None = None
        self._fts5: bool | None = None  # whether SQLite has FTS5, once asked
        self._depth = 0  # how many transaction() blocks are open
        # One thread at a time (the bot answers several chats at once): a transaction holds
        # it from BEGIN to COMMIT, so no other thread's statement lands inside it.
        self._lock = threading.RLock()
        _create_private(self.path)
        try:
            self._open(timeout)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file; an open transaction is rolled back. Safe to call twice."""
        db, self._db = self._db, None
        if db is not None:
            db.close()

    # -- conversations ---------------------------------------------------------------------

    def new_conversation(
        self, *, model: str | None, system: str | None = None, key: str | None = None
    ) -> str:
        """Start a conversation and return its id; with `key`, it becomes that key's current one."""
        now = _now()
        with self.transaction():
            cid = self._unused_id()
            self._sql(
                "INSERT INTO conversations (id, key, model, system, created, updated)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (cid, _valid(key), self._scrub(model), self._scrub(system), now, now),
            )
            if key is not None:
                self._sql(
                    "INSERT OR REPLACE INTO keys (key, conversation_id) VALUES (?, ?)", (key, cid)
                )
        return cid

    def conversation_for_key(self, key: str) -> str | None:
        """The current conversation of an external key such as telegram:<chat>:<thread>."""
        rows = self._rows("SELECT conversation_id FROM keys WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def reset_key(self, key: str) -> None:
        """Detach `key` from its conversation (kept), so its next message starts a new one."""
        with self.transaction():
            self._sql("DELETE FROM keys WHERE key = ?", (key,))

    def last_conversation(self, *, include_keyed: bool = False) -> str | None:
        """The most recently updated conversation (`hermes -c`); keyed ones only if asked."""
        rows = self._rows(
            "SELECT id FROM conversations WHERE ? OR key IS NULL"
            " ORDER BY updated DESC, rowid DESC LIMIT 1",
            (include_keyed,),
        )
        return rows[0][0] if rows else None

    def resolve(self, cid_or_prefix: str) -> str:
        """The one conversation id that starts with `cid_or_prefix` (as a person typed it)."""
        prefix = cid_or_prefix.strip().lower().translate(_TYPOS)
        if not prefix:
            raise UsageError("the conversation id is empty")
        rows = []
        if all(char in _ALPHABET for char in prefix):  # also keeps GLOB's * ? [ out
            rows = self._rows(
                "SELECT id FROM conversations WHERE id GLOB ? ORDER BY id LIMIT 4", (prefix + "*",)
            )
        if not rows:
            raise UsageError(f"no conversation {cid_or_prefix!r} (hermes history lists them)")
        if len(rows) > 1:
            some = ", ".join(row[0] for row in rows[:3]) + (", ..." if len(rows) > 3 else "")
            raise UsageError(f"conversation id {cid_or_prefix!r} is ambiguous: {some}")
        return rows[0][0]

    def set_system(self, cid: str, system: str | None) -> None:
        """Replace the conversation's system prompt (`/system TEXT`)."""
        with self.transaction():
            self._require(cid)
            self._sql(
                "UPDATE conversations SET system = ? WHERE id = ?", (self._scrub(system), cid)
            )

    # -- turns -----------------------------------------------------------------------------

    def append_turn(
        self,
        cid: str,
        messages: list[dict],
        *,
        model: str | None,
        usage: dict | None = None,
        interrupted: bool = False,
        ended: str | None = None,
    ) -> int:
        """Record one whole turn (the user message and all that answered it); its number.

        `ended` says how a turn without a complete answer ended (a key of ENDINGS);
        `interrupted` alone means the user interrupted it.
        """
        _check_turn(messages)
        if ended is not None and ended not in ENDINGS:
            raise ValueError(f"a turn ends in one of {', '.join(ENDINGS)}, not {ended!r}")
        if interrupted and ended is None:
            ended = "interrupted"
        # A server may echo the key anywhere it likes, the model's name included.
        model = self._scrub(model)
        usage_text = self._scrub(json.dumps(usage)) if usage else None
        with self.transaction():
            self._require(cid)
            (number,) = self._one(
                "SELECT coalesce(max(number), 0) + 1 FROM turns WHERE conversation_id = ?", (cid,)
            )
            now = _now()
            self._sql(
                "INSERT INTO turns"
                " (conversation_id, number, started, model, interrupted, usage, ended)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (cid, number, now, model, int(ended is not None), usage_text, ended),
            )
            for position, message in enumerate(messages):
                self._insert_message(cid, number, position, message)
            tokens = [_tokens(usage, name) for name in _USAGE]
            self._sql(
                "UPDATE conversations SET updated = ?, model = coalesce(?, model),"
                " prompt_tokens = prompt_tokens + ?, completion_tokens = completion_tokens + ?,"
                " total_tokens = total_tokens + ? WHERE id = ?",
                (now, model, *tokens, cid),
            )
        return number

    def messages(self, cid: str) -> list[dict]:
        """The conversation as chat-completions messages, ready to send back to the model."""
        with self._snapshot():
            system = self._require(cid)["system"]
            flags = self._rows(
                "SELECT number, interrupted, ended FROM turns WHERE conversation_id = ?", (cid,)
            )
            endings = {row["number"]: _ending(row) for row in flags}
            stored = self._stored_messages(cid)
        sendable = [{"role": "system", "content": system}] if system else []
        for number, turn in stored.items():
            sendable.extend(_sendable(turn, endings[number]))
        return sendable

    def set_endpoint(
        self, cid: str, *, model: str | None, base_url: str | None, provider: str | None
    ) -> None:
        """Where the conversation continues: the model asked for, the endpoint, the provider."""
        with self.transaction():
            self._require(cid)
            self._sql(
                "UPDATE conversations SET requested_model = ?, base_url = ?, provider = ?"
                " WHERE id = ?",
                (self._scrub(model), _valid(_public(base_url)), _valid(provider), cid),
            )

    def endpoint(self, cid: str) -> dict:
        """{model, base_url, provider} the conversation continues on (None: not recorded)."""
        row = self._require(cid)
        return {
            "model": row["requested_model"] or row["model"],
            "base_url": row["base_url"],
            "provider": row["provider"],
        }

    def delete_conversation(self, cid: str) -> None:
        """Delete the conversation with every turn, message and tool call, in one transaction.

        The freed pages are overwritten (secure_delete) and the write-ahead log emptied where
        no reader holds it: a conversation is deleted because of what it says.
        """
        self._sql("PRAGMA secure_delete = ON")
        with self.transaction():
            self._require(cid)
            self._unindex(cid)
            self._sql(
                "DELETE FROM tool_calls WHERE message_id IN"
                " (SELECT id FROM messages WHERE conversation_id = ?)",
                (cid,),
            )
            for table, column in (
                ("messages", "conversation_id"),
                ("turns", "conversation_id"),
                ("keys", "conversation_id"),
                ("conversations", "id"),
            ):
                self._sql(f"DELETE FROM {table} WHERE {column} = ?", (cid,))
            # New messages may now reuse the freed ids: the index must not think them indexed.
            (top,) = self._one("SELECT coalesce(max(id), 0) FROM messages")
            if self.get_state(_INDEXED, 0) > top:
                self.set_state(_INDEXED, top)
        with self._lock:
            if self._db is not None:
                try:
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                except sqlite3.Error as exc:  # another reader holds it: the next one empties it
                    log.debug("wal_checkpoint failed: %s", exc)

    # -- history ---------------------------------------------------------------------------

    def list_conversations(
        self,
        limit: int = 20,
        include_keyed: bool = True,
        *,
        query: str | None = None,
        model: str | None = None,
    ) -> list[dict]:
        """The most recently updated conversations first, for `hermes history`: only those
        whose messages hold every word of `query`, and that used `model`, when given."""
        where, params = ["(? OR c.key IS NULL)"], [include_keyed]
        if model is not None:
            where.append(
                "(c.model = ? OR c.requested_model = ? OR EXISTS (SELECT 1 FROM turns t"
                " WHERE t.conversation_id = c.id AND t.model = ?))"
            )
            params += [model, model, model]
        if query is not None:
            clauses, words = self._search(query)
            where += clauses
            params += words
        rows = self._rows(
            f"{_SUMMARY} WHERE {' AND '.join(where)} ORDER BY c.updated DESC, c.rowid DESC LIMIT ?",
            (*params, limit),
        )
        return [_summary(row) for row in rows]

    def _search(self, query: str) -> tuple[list[str], list[str]]:
        """SQL conditions (and their parameters) for conversations holding every word:
        through the FTS5 index where this SQLite has FTS5, else by scanning the messages."""
        words = [_valid(word) or "" for word in query.split()]
        if not words:
            return ["0"], []  # nothing to look for finds nothing
        terms = [word for word in words if any(char.isalnum() for char in word)]
        if terms and len(terms) == len(words) and self._fts_ready():
            match = (
                "c.id IN (SELECT m.conversation_id FROM search_index s"
                " JOIN messages m ON m.id = s.rowid WHERE search_index MATCH ?)"
            )
            # Each word a quoted phrase (no FTS5 syntax from the user), matched as a prefix.
            return [match] * len(terms), ['"' + t.replace('"', '""') + '"*' for t in terms]
        scan = (
            "EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id"
            " AND m.content LIKE ? ESCAPE '\\')"
        )
        like = [
            "%" + w.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            for w in words
        ]
        return [scan] * len(words), like

    def _fts_ready(self) -> bool:
        """Bring the search index up to date; False when it cannot be used (no FTS5)."""
        if not self._has_fts5():
            return False
        try:
            with self.transaction():
                self._sql(
                    "CREATE VIRTUAL TABLE IF NOT EXISTS search_index"
                    " USING fts5(content, content='messages', content_rowid='id')"
                )
                (top,) = self._one("SELECT coalesce(max(id), 0) FROM messages")
                if self.get_state(_REINDEX):
                    self._sql("INSERT INTO search_index (search_index) VALUES ('rebuild')")
                    self._sql("DELETE FROM state WHERE name = ?", (_REINDEX,))
                else:
                    self._sql(
                        "INSERT INTO search_index (rowid, content)"
                        " SELECT id, content FROM messages WHERE id > ?",
                        (self.get_state(_INDEXED, 0),),
                    )
                self.set_state(_INDEXED, top)
        except StorageError as error:  # read-only, or busy: the plain scan still answers
            log.info("searching without the index: %s", error)
            return False
        return True

    def _has_fts5(self) -> bool:
        """Whether this interpreter's SQLite has FTS5 (asked of a scratch in-memory database)."""
        if self._fts5 is None:
            probe = sqlite3.connect(":memory:")
            try:
                probe.execute("CREATE VIRTUAL TABLE probe USING fts5(text)")
                self._fts5 = True
            except sqlite3.Error:
                self._fts5 = False
            finally:
                probe.close()
        return self._fts5

    def _unindex(self, cid: str) -> None:
        """Take the conversation's messages out of the search index (inside a transaction).

        The index lists every message up to the state's id; an SQLite without FTS5 cannot
        touch it, so it is marked for rebuilding by the next search that can.
        """
        indexed = self._rows(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'search_index'"
        )
        if not indexed:
            return
        if not self._has_fts5():
            self.set_state(_REINDEX, 1)
            return
        self._sql(
            "INSERT INTO search_index (search_index, rowid, content)"
            " SELECT 'delete', id, content FROM messages WHERE conversation_id = ? AND id <= ?",
            (cid, self.get_state(_INDEXED, 0)),
        )

    def conversation(self, cid: str) -> dict:
        """One conversation with every turn as stored, for `hermes history ID`."""
        with self._snapshot():
            self._require(cid)
            (row,) = self._rows(_SUMMARY + " WHERE c.id = ?", (cid,))
            turns = self._rows(
                "SELECT * FROM turns WHERE conversation_id = ? ORDER BY number", (cid,)
            )
            stored = self._stored_messages(cid)
        info = _summary(row)
        del info["turns"]
        info["system"] = row["system"]
        info["usage"] = {name: row[name] for name in _USAGE}
        info["turns"] = [_turn(turn, stored.get(turn["number"], [])) for turn in turns]
        return info

    # -- state -----------------------------------------------------------------------------

    def get_state(self, name: str, default: Any = None) -> Any:
        """A value set_state() stored (as the str or int it was), else `default`."""
        rows = self._rows("SELECT value FROM state WHERE name = ?", (name,))
        return rows[0][0] if rows else default

    def set_state(self, name: str, value: str | int) -> None:
        """Store a small value such as telegram.offset; joins an open transaction()."""
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise TypeError(f"state {name!r} must be a str or an int, not {type(value).__name__}")
        with self.transaction():
            self._sql("INSERT OR REPLACE INTO state (name, value) VALUES (?, ?)", (name, value))

    # -- transactions ----------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """One atomic write: all of it commits at the end, or none of it on an exception.

        Inside another transaction() it is a savepoint of the outer one: nothing commits
        until the outer block ends, and an exception undoes only the inner block's writes.
        Other threads wait for the whole transaction.
        """
        with self._lock:
            if self._depth:
                with self._savepoint():
                    yield self
                return
            # IMMEDIATE takes the write lock now, while the busy timeout can still wait for
            # it; a read that later turns into a write would fail at once if another
            # process wrote.
            self._sql("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self
            except BaseException:
                self._quietly("ROLLBACK")
                raise
            else:
                self._commit()
            finally:
                self._depth = 0

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        name = f"nested{self._depth}"
        self._sql(f"SAVEPOINT {name}")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._quietly(f"ROLLBACK TO {name}")
            self._quietly(f"RELEASE {name}")
            raise
        else:
            self._sql(f"RELEASE {name}")
        finally:
            self._depth -= 1

    def _commit(self) -> None:
        try:
            self._sql("COMMIT")
        except StorageError:
            self._quietly("ROLLBACK")  # a COMMIT that failed leaves the transaction open
            raise

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """Several SELECTs that see one state of the file while another process writes."""
        with self._lock:
            if self._connection().in_transaction:
                yield
                return
            self._sql("BEGIN")
            try:
                yield
            finally:
                self._quietly("COMMIT")

    # -- inside ----------------------------------------------------------------------------

    def _open(self, timeout: float) -> None:
        with self._errors():
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, the same on 3.9 and 3.12.
            self._db = sqlite3.connect(
                str(self.path), timeout=timeout, isolation_level=None, check_same_thread=False
            )
        self._db.row_factory = sqlite3.Row
        # FULL: WAL with NORMAL already survives a killed process, but can lose the last
        # commits on power loss, and for the bot that means answering a message twice. An
        # fsync per turn costs a few ms against the seconds a model takes to answer.
        self._sql("PRAGMA synchronous = FULL")
        self._sql("PRAGMA foreign_keys = ON")
        if self._version() < len(_MIGRATIONS):
            self._one("PRAGMA journal_mode = WAL")  # persistent; cannot change in a transaction
            self._migrate()

    def _version(self) -> int:
        """The schema version of the file (0: new); refuses files that are not ours."""
        with self._snapshot():  # one view: another process may be creating the schema
            (application,) = self._one("PRAGMA application_id")
            (version,) = self._one("PRAGMA user_version")
            (tables,) = self._one("SELECT count(*) FROM sqlite_master")
        if application != APPLICATION_ID and (application or tables):
            raise StorageError(
                f"the conversation store {self.path} is not a hermes database", "foreign"
            )
        if version > len(_MIGRATIONS):
            raise StorageError(
                f"the conversation store {self.path} has schema {version}, newer than this"
                f" hermes knows ({len(_MIGRATIONS)}); upgrade hermes",
                "newer",
            )
        return version

    def _migrate(self) -> None:
        with self.transaction():
            # Check again under the write lock: another process may have just migrated.
            for number in range(self._version(), len(_MIGRATIONS)):
                for statement in _MIGRATIONS[number]:
                    self._sql(statement)
            self._sql(f"PRAGMA user_version = {len(_MIGRATIONS)}")
            self._sql(f"PRAGMA application_id = {APPLICATION_ID}")

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise StorageError(f"the conversation store {self.path} is closed", "closed")
        return self._db

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """sqlite3 errors become one StorageError line naming the file (the cause is kept)."""
        try:
            yield
        except sqlite3.Error as exc:
            raise _storage_error(exc, self.path) from exc

    def _sql(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        with self._lock, self._errors():
            return self._connection().execute(sql, tuple(params))

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock, self._errors():
            return self._connection().execute(sql, tuple(params)).fetchall()

    def _one(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row:
        return self._rows(sql, params)[0]

    def _quietly(self, sql: str) -> None:
        """ROLLBACK/RELEASE while another error is on its way; sqlite may have ended it already."""
        if self._db is not None and self._db.in_transaction:
            try:
                self._db.execute(sql)
            except sqlite3.Error as exc:
                log.debug("%s failed: %s", sql, exc)

    def _require(self, cid: str) -> sqlite3.Row:
        rows = self._rows("SELECT * FROM conversations WHERE id = ?", (cid,))
        if not rows:
            raise UsageError(f"no conversation {cid!r} (hermes history lists them)")
        return rows[0]

    def _unused_id(self) -> str:
        """A random id not in use; called under the write lock, so no one can take it first."""
        while True:
            bits = int.from_bytes(os.urandom(7), "big")  # os, not secrets: cheaper to import
            cid = "".join(_ALPHABET[bits >> (5 * i) & 31] for i in range(_ID_LENGTH))
            if not self._rows("SELECT 1 FROM conversations WHERE id = ?", (cid,)):
                return cid

    def _scrub(self, text: str | None) -> str | None:
        """`text` without secrets (sk-... keys, bot tokens, URL passwords, our own secrets),
        and storable (lone surrogates replaced)."""
        return redact(_valid(text), self._secrets) if text else text

    def _insert_message(self, cid: str, number: int, position: int, message: dict) -> None:
        content = self._scrub(message.get("content"))
        if content is None and message["role"] == "assistant" and not message.get("tool_calls"):
            content = ""  # servers refuse an assistant message with neither text nor calls
        cursor = self._sql(
            "INSERT INTO messages (conversation_id, turn, position, role, content, tool_call_id)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (cid, number, position, message["role"], content, _valid(message.get("tool_call_id"))),
        )
        for index, call in enumerate(message.get("tool_calls") or ()):
            function = call["function"]
            arguments = self._scrub(function["arguments"])
            name = self._scrub(function["name"])
            self._sql(
                "INSERT INTO tool_calls (message_id, position, call_id, name, arguments)"
                " VALUES (?, ?, ?, ?, ?)",
                (cursor.lastrowid, index, _valid(call["id"]), name, arguments),
            )

    def _stored_messages(self, cid: str) -> dict[int, list[dict]]:
        """Each turn's messages as they were written, by turn number, in order."""
        rows = self._rows(
            "SELECT m.id, m.turn, m.role, m.content, m.tool_call_id, c.call_id, c.name,"
            " c.arguments FROM messages m LEFT JOIN tool_calls c ON c.message_id = m.id"
            " WHERE m.conversation_id = ? ORDER BY m.turn, m.position, c.position",
            (cid,),
        )
        turns: dict[int, list[dict]] = {}
        last_id = None
        for row in rows:  # one row per tool call, or one for a message without any
            if row["id"] != last_id:
                last_id, message = row["id"], _message(row)
                turns.setdefault(row["turn"], []).append(message)
            if row["call_id"] is not None:
                message.setdefault("tool_calls", []).append(_tool_call(row))
        return turns


def _valid(text: str | None) -> str | None:
    """`text` with each lone surrogate replaced by U+FFFD, so SQLite can encode it."""
    if text is None or not _SURROGATES.search(text):
        return text
    return _SURROGATES.sub("\ufffd", text)


def _public(url: str | None) -> str | None:
    """A base URL without what may hold a secret (user:password@, a query, a fragment).

    A conversation continues at the same scheme, host, port and path; the configured URL,
    credentials and all, is used when it names that endpoint (config.load_config).
    """
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _create_private(path: Path) -> None:
    """Missing parent directories (0700) and the file (0600): it holds people's conversations."""
    try:
        for parent in reversed(path.parents):
            if not parent.is_dir():
                try:
                    parent.mkdir(mode=0o700)
                except FileExistsError:
                    pass  # another process made it between the check and here
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass  # an existing store keeps the mode its owner gave it
    except OSError as exc:
        kind = "readonly" if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM) else "other"
        kind = "full" if exc.errno == errno.ENOSPC else kind
        raise StorageError(
            f"cannot create the conversation store {path}: {exc.strerror}", kind
        ) from exc


def _storage_error(exc: sqlite3.Error, path: Path) -> StorageError:
    """The StorageError for a sqlite3 error, its kind from sqlite's result code."""
    code = _code(exc)
    kind, meaning = _CODES.get(code, ("other", "")) if code is not None else ("other", "")
    if meaning:
        return StorageError(f"the conversation store {path} {meaning}", kind)
    return StorageError(f"the conversation store {path}: {exc}", kind)


def _code(exc: sqlite3.Error) -> int | None:
    """sqlite's primary result code for the error (extended codes carry it in the low byte)."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if isinstance(code, int):
        return code & 0xFF
    text = str(exc).lower()
    return next((number for words, number in _WORDS if words in text), None)


def _now() -> str:
    """ISO 8601 UTC with microseconds, so text order is time order."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _tokens(usage: dict | None, name: str) -> int:
    value = (usage or {}).get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _check_turn(messages: list[dict]) -> None:
    """Refuse (ValueError) a turn that could not be sent back to a model as it is."""
    if not messages or messages[0].get("role") != "user":
        raise ValueError("a turn starts with the user's message")
    if not isinstance(messages[0].get("content"), str):
        raise ValueError("the user's message needs text content")
    unanswered: list[str] = []
    for message in messages[1:]:
        role = message.get("role")
        if role == "assistant":
            unanswered = _checked_calls(message)
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in unanswered:
                raise ValueError(f"a tool result answers no open tool call: {call_id!r}")
            unanswered.remove(call_id)
            _check_text(message, required=True)
        else:
            raise ValueError(f"a turn is one user message, then assistant and tool ones: {role!r}")


def _checked_calls(message: dict) -> list[str]:
    """The ids of an assistant message's tool calls, once their shape is right."""
    _check_text(message, required=False)
    ids = []
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        fields = (call.get("id"), function.get("name"), function.get("arguments"))
        if not all(isinstance(value, str) for value in fields):
            raise ValueError(
                f"a tool call needs text id, function.name, function.arguments: {call}"
            )
        ids.append(call["id"])
    return ids


def _check_text(message: dict, *, required: bool) -> None:
    content = message.get("content")
    if not (isinstance(content, str) or (content is None and not required)):
        kind = type(content).__name__
        raise ValueError(f"{message.get('role')} message content must be text, not {kind}")


def _message(row: sqlite3.Row) -> dict:
    """A stored row in chat-completions shape (tool calls are added by the caller)."""
    if row["role"] == "tool":
        return {"role": "tool", "tool_call_id": row["tool_call_id"], "content": row["content"]}
    return {"role": row["role"], "content": row["content"]}


def _tool_call(row: sqlite3.Row) -> dict:
    function = {"name": row["name"], "arguments": row["arguments"]}
    return {"id": row["call_id"], "type": "function", "function": function}


def _ending(row: sqlite3.Row) -> str | None:
    """How a stored turn ended: a key of ENDINGS, or None for a complete answer."""
    if row["ended"] in ENDINGS:
        return row["ended"]
    return "interrupted" if row["interrupted"] else None  # written before `ended` existed


def _sendable(stored: list[dict], ended: str | None) -> list[dict]:
    """One turn as a valid sequence: every tool call answered, an incomplete end said so.

    A call with no result gets a result that says so, rather than being dropped: the model
    learns it asked and got nothing, and the assistant message keeps a reason to exist.
    """
    if ended is None:
        note = _NO_RESULT
    else:
        note = _NO_RESULT_INTERRUPTED if ended == "interrupted" else _NO_RESULT_CUT
    sendable: list[dict] = []
    unanswered: list[str] = []
    for message in stored:
        if message["role"] == "tool":
            if message["tool_call_id"] in unanswered:
                unanswered.remove(message["tool_call_id"])
        else:
            sendable.extend(_no_results(unanswered, note))
            unanswered = [call["id"] for call in message.get("tool_calls", ())]
        sendable.append(message)
    sendable.extend(_no_results(unanswered, note))
    if ended is not None:
        _say_ended(sendable, ENDINGS[ended])
    return sendable


def _no_results(call_ids: list[str], note: str) -> list[dict]:
    return [{"role": "tool", "tool_call_id": call_id, "content": note} for call_id in call_ids]


def _say_ended(sendable: list[dict], note: str) -> None:
    """End an incomplete turn with assistant text that says how (after the partial text)."""
    last = sendable[-1]
    if last["role"] == "assistant" and not last.get("tool_calls"):
        last["content"] = f"{last['content']}\n\n{note}" if last["content"] else note
    else:
        sendable.append({"role": "assistant", "content": note})


def _title(text: str | None) -> str:
    words = " ".join((text or "").split())
    return words if len(words) <= _TITLE_LENGTH else words[: _TITLE_LENGTH - 1] + "\u2026"


def _summary(row: sqlite3.Row) -> dict:
    return {
        "id": row["id"],
        "title": _title(row["first"]),
        "model": row["model"],
        "created": row["created"],
        "updated": row["updated"],
        "turns": row["turns"],
        "key": row["key"],
    }


def _turn(row: sqlite3.Row, messages: list[dict]) -> dict:
    return {
        "number": row["number"],
        "started": row["started"],
        "interrupted": bool(row["interrupted"]),
        "ended": _ending(row),
        "model": row["model"],
        "usage": json.loads(row["usage"]) if row["usage"] else None,
        "messages": messages,
    }
