"""The conversation store: real SQLite files, other processes, and processes killed mid-write."""

from __future__ import annotations

import inspect
import json
import os
import random
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from hermes_min.errors import UsageError
from hermes_min.storage import INTERRUPTED, StorageError, Store, default_path

ROOT = Path(__file__).resolve().parents[1]


def call(call_id, name, arguments="{}"):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def turn_messages(number):
    """The turn a writer process appends as turn `number`: every shape, sizes that vary."""
    text = f"turn {number} " + "x" * (number * 997 % 5000)
    user = {"role": "user", "content": f"question {number}"}
    shape = number % 4
    if shape == 0:
        return [user, {"role": "assistant", "content": text}]
    if shape == 1:  # parallel calls
        calls = [call(f"a{number}", "now"), call(f"b{number}", "read", '{"path": "x"}')]
        return [
            user,
            {"role": "assistant", "content": None, "tool_calls": calls},
            {"role": "tool", "tool_call_id": f"b{number}", "content": text},
            {"role": "tool", "tool_call_id": f"a{number}", "content": "12:00"},
            {"role": "assistant", "content": "done"},
        ]
    if shape == 2:  # two rounds of one call each
        return [
            user,
            {"role": "assistant", "content": "", "tool_calls": [call("c1", "now")]},
            {"role": "tool", "tool_call_id": "c1", "content": "12:00"},
            {"role": "assistant", "content": "again", "tool_calls": [call("c2", "now")]},
            {"role": "tool", "tool_call_id": "c2", "content": text},
            {"role": "assistant", "content": text},
        ]
    # shape 3: interrupted while its tool ran
    return [user, {"role": "assistant", "content": "let me look", "tool_calls": [call("d", "x")]}]


def assert_valid(messages):
    """What a chat-completions server insists on: calls answered, a user after an answer."""
    if messages and messages[0]["role"] == "system":
        messages = messages[1:]
    pending: set = set()
    answered = True  # the last assistant message was text (or there is none yet)
    for message in messages:
        if message["role"] == "tool":
            assert message["tool_call_id"] in pending, message
            assert isinstance(message["content"], str)
            pending.remove(message["tool_call_id"])
            continue
        assert not pending, f"tool calls without results before {message}"
        if message["role"] == "user":
            assert answered, f"a user message after an unfinished turn: {message}"
            answered = False
            continue
        assert message["role"] == "assistant", message
        calls = message.get("tool_calls")
        assert calls != [], "tool_calls is left out when there are none"
        assert calls or message["content"], f"an empty assistant message: {message}"
        pending = {c["id"] for c in calls or []}
        answered = not calls
    assert not pending and answered, messages


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "hermes.db") as opened:
        yield opened


def run_python(code, *args):
    """Run `code` in a fresh interpreter; its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# -- where it lives and what the file looks like ---------------------------------------------


def test_default_path_follows_xdg_state_home(tmp_path):
    assert default_path({"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "hermes" / "hermes.db"
    home = Path.home() / ".local" / "state" / "hermes" / "hermes.db"
    assert default_path({}) == home
    assert default_path({"XDG_STATE_HOME": "relative/dir"}) == home  # the spec says ignore it


def test_file_is_private_and_in_wal_mode_with_full_sync(tmp_path):
    path = tmp_path / "new" / "deeper" / "hermes.db"
    old = os.umask(0o022)
    try:
        store = Store(path)
    finally:
        os.umask(old)
    with store:
        store.set_state("x", 1)  # the WAL file exists while a connection is open
        for file in (path, Path(f"{path}-wal")):
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
        for directory in (tmp_path / "new", tmp_path / "new" / "deeper"):
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("PRAGMA user_version").fetchone()[0] >= 1
    raw.close()


# -- conversations and turns -----------------------------------------------------------------


def test_every_message_shape_round_trips(store):
    cid = store.new_conversation(model="m1", system="Be terse.")
    first = turn_messages(1)  # parallel calls, results out of order, content None
    second = turn_messages(2)  # content "" with calls, then text with calls
    third = turn_messages(4)  # plain answer
    usages = [{"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}, None, {}]
    models = ["m1", None, "m2"]
    for number, turn in enumerate((first, second, third), 1):
        got = store.append_turn(cid, turn, model=models[number - 1], usage=usages[number - 1])
        assert got == number
    expected = [{"role": "system", "content": "Be terse."}, *first, *second, *third]
    assert store.messages(cid) == expected
    assert_valid(store.messages(cid))
    info = store.conversation(cid)
    assert [turn["messages"] for turn in info["turns"]] == [first, second, third]
    assert [turn["number"] for turn in info["turns"]] == [1, 2, 3]
    assert [turn["model"] for turn in info["turns"]] == models
    assert info["turns"][0]["usage"] == usages[0] and info["turns"][1]["usage"] is None
    assert info["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    assert (info["model"], info["system"], info["title"]) == ("m2", "Be terse.", "question 1")


def test_a_conversation_without_system_prompt_starts_with_the_user(store):
    cid = store.new_conversation(model=None)
    assert store.messages(cid) == []
    store.append_turn(cid, turn_messages(4), model=None)
    assert store.messages(cid) == turn_messages(4)
    store.set_system(cid, "Now be loud.")
    assert store.messages(cid)[0] == {"role": "system", "content": "Now be loud."}


@pytest.mark.parametrize(
    "stored, sent_tail",
    [
        ([], [{"role": "assistant", "content": INTERRUPTED}]),
        (
            [{"role": "assistant", "content": "The sky is bl"}],
            [{"role": "assistant", "content": f"The sky is bl\n\n{INTERRUPTED}"}],
        ),
        (
            [
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [call("a", "f"), call("b", "g")],
                },
                {"role": "tool", "tool_call_id": "a", "content": "A"},
            ],
            [
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [call("a", "f"), call("b", "g")],
                },
                {"role": "tool", "tool_call_id": "a", "content": "A"},
                {"role": "tool", "tool_call_id": "b", "content": "*interrupted*"},
                {"role": "assistant", "content": INTERRUPTED},
            ],
        ),
        (
            [
                {"role": "assistant", "content": "", "tool_calls": [call("a", "f")]},
                {"role": "tool", "tool_call_id": "a", "content": "A"},
            ],
            [
                {"role": "assistant", "content": "", "tool_calls": [call("a", "f")]},
                {"role": "tool", "tool_call_id": "a", "content": "A"},
                {"role": "assistant", "content": INTERRUPTED},
            ],
        ),
    ],
    ids=["before-any-text", "mid-text", "during-a-tool", "after-the-tools"],
)
def test_an_interrupted_turn_is_kept_and_sent_back_as_a_valid_sequence(store, stored, sent_tail):
    cid = store.new_conversation(model="m")
    user = {"role": "user", "content": "Why is the sky blue?"}
    store.append_turn(cid, [user, *stored], model="m", interrupted=True)
    store.append_turn(
        cid,
        [{"role": "user", "content": "go on"}, {"role": "assistant", "content": "ok"}],
        model="m",
    )
    sent = store.messages(cid)
    assert_valid(sent)
    head = sent[: len(sent_tail) + 1]
    assert head[0] == user and len(head) == len(sent_tail) + 1
    for got, want in zip(head[1:], sent_tail):
        if want["content"] == "*interrupted*":
            assert want["tool_call_id"] == got["tool_call_id"] and "interrupted" in got["content"]
        else:
            assert got == want
    turns = store.conversation(cid)["turns"]
    assert turns[0]["interrupted"] and not turns[1]["interrupted"]
    # Stored as it was: the marker and the missing results are added on the way out.
    assert turns[0]["messages"] == [user, *stored]


def test_an_unanswered_call_in_a_complete_turn_gets_a_result_that_says_so(store):
    cid = store.new_conversation(model="m")  # e.g. agent.max_turns reached
    turn = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "", "tool_calls": [call("a", "f")]},
    ]
    store.append_turn(cid, turn, model="m")
    sent = store.messages(cid)
    assert sent[:2] == turn and sent[2]["tool_call_id"] == "a" and "not run" in sent[2]["content"]


def test_an_empty_answer_is_sent_back_as_empty_text(store):
    cid = store.new_conversation(model="m")
    turn = [{"role": "user", "content": "q"}, {"role": "assistant", "content": None}]
    store.append_turn(cid, turn, model="m")
    assert store.messages(cid)[1] == {"role": "assistant", "content": ""}


@pytest.mark.parametrize(
    "turn",
    [
        [],
        [{"role": "assistant", "content": "hi"}],
        [{"role": "user", "content": None}],
        [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
        [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}],
        [{"role": "user", "content": "a"}, {"role": "tool", "tool_call_id": "x", "content": "r"}],
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": ["parts"]}],
        [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "x"}]},
        ],
        [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "", "tool_calls": [call("x", "f")]},
            {"role": "tool", "tool_call_id": "x", "content": None},
        ],
    ],
)
def test_a_malformed_turn_is_refused_and_nothing_is_written(store, turn):
    cid = store.new_conversation(model="m")
    with pytest.raises(ValueError):
        store.append_turn(cid, turn, model="m")
    assert store.conversation(cid)["turns"] == [] and store.messages(cid) == []


def test_secrets_are_scrubbed_before_they_reach_the_file(tmp_path):
    path = tmp_path / "hermes.db"
    key, token, own = (
        "sk-proj-Abc123Def456Ghi789",
        "bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
        "hunter2!x",
    )
    with Store(path, secrets=[own]) as store:
        cid = store.new_conversation(model="m", system=f"the key is {key}")
        calls = [call("a", "fetch", json.dumps({"url": f"https://api.telegram.org/{token}/getMe"}))]
        store.append_turn(
            cid,
            [
                {"role": "user", "content": f"my key is {key}, my password {own}"},
                {"role": "assistant", "content": None, "tool_calls": calls},
                {"role": "tool", "tool_call_id": "a", "content": f"echo {key}"},
                {"role": "assistant", "content": f"You said {key}"},
            ],
            model="m",
        )
        sent = store.messages(cid)
        assert sent[1]["content"] == "my key is ***, my password ***"
        assert json.loads(sent[2]["tool_calls"][0]["function"]["arguments"]) == {
            "url": "https://api.telegram.org/***/getMe"
        }
        assert "***" in sent[0]["content"] and "***" in sent[3]["content"]
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("hermes.db"))
    for secret in (key, token, own, "Abc123Def456"):
        assert secret.encode() not in data


# -- ids, keys, last ---------------------------------------------------------------------------


def test_ids_are_short_unique_and_resolve_by_prefix(store):
    ids = [store.new_conversation(model="m") for _ in range(33)]  # two share a first letter
    assert len(set(ids)) == 33
    assert all(re.fullmatch(r"[0-9a-hjkmnp-tv-z]{10}", cid) for cid in ids), ids
    for cid in ids[:5]:
        assert store.resolve(cid) == cid
        assert store.resolve(f" {cid.upper()} ") == cid
        assert store.resolve(cid.replace("0", "o").replace("1", "l")) == cid  # read aloud, typed
    unique = next(cid for cid in ids if sum(other.startswith(cid[:4]) for other in ids) == 1)
    assert store.resolve(unique[:4]) == unique
    shared = next(cid[0] for cid in ids if sum(other[0] == cid[0] for other in ids) > 1)
    with pytest.raises(UsageError, match="ambiguous") as ambiguous:
        store.resolve(shared)
    for bad in ("zzzzzzzzzzzz", "ab*", "[a]", "   "):
        with pytest.raises(UsageError) as unknown:
            store.resolve(bad)
        assert "\n" not in str(unknown.value)
    assert "\n" not in str(ambiguous.value) and shared in str(ambiguous.value)


def test_unknown_conversation_is_a_usage_error(store):
    for use in (store.messages, store.conversation):
        with pytest.raises(UsageError, match="no conversation 'nope'"):
            use("nope")
    with pytest.raises(UsageError):
        store.append_turn("nope", turn_messages(4), model="m")


def test_last_conversation_is_the_newest_without_a_key(store):
    assert store.last_conversation() is None
    older, newer = store.new_conversation(model="m"), store.new_conversation(model="m")
    assert store.last_conversation() == newer
    store.append_turn(older, turn_messages(4), model="m")
    assert store.last_conversation() == older  # updated, not created
    telegram = store.new_conversation(model="m", key="telegram:42:0")
    store.append_turn(telegram, turn_messages(4), model="m")
    assert store.last_conversation() == older
    assert store.last_conversation(include_keyed=True) == telegram
    store.reset_key("telegram:42:0")
    assert store.last_conversation() == older  # detached, still a Telegram conversation


def test_a_key_maps_to_its_current_conversation_until_reset(store):
    key = "telegram:-100123:7"
    assert store.conversation_for_key(key) is None
    first = store.new_conversation(model="m", key=key)
    store.append_turn(first, turn_messages(4), model="m")
    assert store.conversation_for_key(key) == first
    assert store.conversation_for_key("telegram:-100123:8") is None
    store.reset_key(key)
    store.reset_key(key)  # twice is fine
    assert store.conversation_for_key(key) is None
    second = store.new_conversation(model="m", key=key)
    assert store.conversation_for_key(key) == second
    third = store.new_conversation(model="m", key=key)  # replaces the mapping too
    assert store.conversation_for_key(key) == third
    assert store.conversation(first)["turns"][0]["messages"] == turn_messages(4)  # kept
    listed = {c["id"]: c for c in store.list_conversations()}
    assert listed[first]["key"] == key and listed[first]["turns"] == 1


def test_list_conversations_newest_first_with_titles(store):
    plain = store.new_conversation(model="a")
    long_text = "  word " * 40
    store.append_turn(plain, [{"role": "user", "content": long_text}], model="b")
    keyed = store.new_conversation(model="c", key="k")
    empty = store.new_conversation(model=None)
    listed = store.list_conversations()
    assert [c["id"] for c in listed] == [empty, keyed, plain]
    assert listed[2]["title"] == ("word " * 12)[:59] + "\u2026"
    assert len(listed[2]["title"]) == 60
    assert (listed[2]["model"], listed[2]["turns"], listed[2]["key"]) == ("b", 1, None)
    assert (listed[0]["title"], listed[0]["turns"]) == ("", 0)
    for item in listed:
        for field in ("created", "updated"):
            when = datetime.fromisoformat(item[field].replace("Z", "+00:00"))  # 3.9 wants +00:00
            assert when.utcoffset() == timedelta(0) and item[field].endswith("Z")
    assert [c["id"] for c in store.list_conversations(include_keyed=False)] == [empty, plain]
    assert [c["id"] for c in store.list_conversations(limit=1)] == [empty]


# -- transactions and state ------------------------------------------------------------------


def test_state_keeps_ints_and_strings(store):
    assert store.get_state("telegram.offset") is None
    assert store.get_state("telegram.offset", 0) == 0
    store.set_state("telegram.offset", 2**40)
    store.set_state("name", "bot")
    assert store.get_state("telegram.offset") == 2**40 and store.get_state("name") == "bot"
    with pytest.raises(TypeError):
        store.set_state("flag", True)


def test_an_exception_in_a_transaction_undoes_the_turn_and_the_state(tmp_path, store):
    cid = store.new_conversation(model="m", key="telegram:1:0")
    with pytest.raises(KeyError):
        with store.transaction():
            store.append_turn(cid, turn_messages(4), model="m")
            store.set_state("telegram.offset", 101)
            raise KeyError("the send failed")
    assert store.messages(cid) == [] and store.get_state("telegram.offset") is None
    with store.transaction():
        store.append_turn(cid, turn_messages(4), model="m")
        store.set_state("telegram.offset", 101)
    with Store(tmp_path / "hermes.db") as other:
        assert other.messages(cid) == turn_messages(4)
        assert other.get_state("telegram.offset") == 101


def test_a_nested_transaction_joins_the_outer_one(tmp_path, store):
    cid = store.new_conversation(model="m")
    with Store(tmp_path / "hermes.db") as other:
        with store.transaction():
            store.append_turn(cid, turn_messages(4), model="m")  # its own transaction, nested
            with store.transaction():
                store.set_state("offset", 5)
            assert other.messages(cid) == [] and other.get_state("offset") is None  # no commit yet
            try:
                with store.transaction():
                    store.set_state("offset", 6)
                    store.set_state("other", 1)
                    raise RuntimeError
            except RuntimeError:
                pass  # the outer block goes on without the inner block's writes
        assert other.messages(cid) == turn_messages(4)
        assert other.get_state("offset") == 5 and other.get_state("other") is None


def test_two_stores_on_one_file_and_a_held_lock(tmp_path):
    path = tmp_path / "hermes.db"
    with Store(path) as bot, Store(path, timeout=0.05) as user:
        cid = bot.new_conversation(model="m", key="telegram:1:0")
        assert user.conversation_for_key("telegram:1:0") == cid
        with bot.transaction():
            bot.set_state("telegram.offset", 1)
            assert user.get_state("telegram.offset") is None  # readers never wait in WAL mode
            with pytest.raises(StorageError) as locked:
                user.set_state("x", 1)
            # A writer waits `timeout` for the lock (SQLite's busy timeout), not the default
            # 5 s: the setting, not a stopwatch, so load cannot fail it.
            assert user._db.execute("PRAGMA busy_timeout").fetchone()[0] == 50
        assert str(locked.value) == (
            f"the conversation store {path} is locked by another process; try again when it is done"
        )
        assert user.get_state("telegram.offset") == 1
        user.set_state("x", 1)  # free again
        assert bot.get_state("x") == 1


def test_two_writers_at_once_wait_for_each_other(tmp_path):
    path = tmp_path / "hermes.db"
    Store(path).close()
    errors = []

    def write(name):
        try:
            with Store(path) as store:
                cid = store.new_conversation(model=name)
                for number in range(1, 13):
                    store.append_turn(cid, turn_messages(number), model=name)
        except Exception as exc:  # reported below, on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(name,)) for name in ("bot", "user")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not errors
    with Store(path) as store:
        assert sorted(c["turns"] for c in store.list_conversations()) == [12, 12]


def test_stores_creating_a_new_file_at_once(tmp_path):
    path = tmp_path / "fresh" / "hermes.db"
    barrier = threading.Barrier(3)
    errors = []

    def open_it():
        barrier.wait()
        try:
            with Store(path) as store:
                store.new_conversation(model="m")
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not errors, errors
    with Store(path) as store:
        assert len(store.list_conversations()) == 3


# -- errors ----------------------------------------------------------------------------------


def test_files_that_are_not_ours_are_refused_in_one_line(tmp_path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database at all\n" * 200)
    other_app = tmp_path / "other.db"
    raw = sqlite3.connect(other_app)
    raw.execute("CREATE TABLE t (x)")
    raw.commit()
    raw.close()
    for path in (garbage, other_app):
        with pytest.raises(StorageError) as refused:
            Store(path)
        assert str(refused.value) == f"the conversation store {path} is not a hermes database"
    raw = sqlite3.connect(other_app)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # left as it was
    raw.close()


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "hermes.db"
    Store(path).close()
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    with pytest.raises(StorageError, match="newer") as refused:
        Store(path)
    assert "\n" not in str(refused.value)


def test_a_closed_store_says_so_and_closes_twice(tmp_path):
    store = Store(tmp_path / "hermes.db")
    store.close()
    store.close()
    with pytest.raises(StorageError, match="is closed"):
        store.get_state("x")


def test_a_directory_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(StorageError) as failed:
        Store(tmp_path / "file" / "hermes.db")
    assert str(failed.value).startswith("cannot create the conversation store")
    assert "\n" not in str(failed.value)


# -- other processes ---------------------------------------------------------------------------

_WRITER = """
import sys
from hermes_min.storage import Store
path, key = sys.argv[1], sys.argv[2]
with Store(path) as store:
    cid = store.new_conversation(model="m1", system="sys", key=key)
    hello = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    store.append_turn(cid, hello, model="m1")
    with store.transaction():
        store.append_turn(cid, [{"role": "user", "content": "more"}], model="m2", interrupted=True)
        store.set_state("telegram.offset", 7)
print(cid)
"""

_READER = """
import json, sys
from hermes_min.storage import Store
with Store(sys.argv[1]) as store:
    cid = store.conversation_for_key(sys.argv[2])
    offset, model = store.get_state("telegram.offset"), store.conversation(cid)["model"]
    print(json.dumps([cid, store.messages(cid), offset, model]))
"""


def test_conversations_persist_across_processes(tmp_path):
    path = tmp_path / "state" / "hermes.db"
    cid = run_python(_WRITER, path, "telegram:5:0").strip()
    got = json.loads(run_python(_READER, path, "telegram:5:0"))
    assert got == [
        cid,
        [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "more"},
            {"role": "assistant", "content": INTERRUPTED},
        ],
        7,
        "m2",
    ]


_APPENDER = """
import sys
from hermes_min.storage import Store
print("opening", flush=True)
with Store(sys.argv[1]) as store:
    cid = store.new_conversation(model="m")
    number = 0
    while True:
        number += 1
        stopped = number % 4 == 3
        if number % 2:  # a turn and the bot's state, together
            with store.transaction():
                got = store.append_turn(cid, turn_messages(number), model="m", interrupted=stopped)
                store.set_state(f"odd.{cid}", number)
        else:  # a turn alone
            got = store.append_turn(cid, turn_messages(number), model="m", interrupted=stopped)
        assert got == number
        print(cid, number, flush=True)
"""


def test_a_writer_killed_at_random_points_leaves_only_whole_turns(tmp_path):
    path = tmp_path / "hermes.db"
    source = inspect.getsource(call) + inspect.getsource(turn_messages)
    code = source + _APPENDER
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    committed = {}  # conversation id -> the last turn its writer reported committed
    # Kill once while it opens a new file, then at random instants after some committed turns.
    plan = [(0, rng.uniform(0, 0.02))] + [
        (rng.randint(1, 12), rng.uniform(0, 0.01)) for _ in range(5)
    ]
    for lines, delay in plan:
        writer = subprocess.Popen(
            [sys.executable, "-c", code, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        watchdog = threading.Timer(15, writer.kill)  # a hung writer fails the test, not CI
        watchdog.start()
        try:
            assert read_line(writer) == "opening\n"
            for _ in range(lines):
                cid, number = read_line(writer).split()
                committed[cid] = int(number)
            time.sleep(delay)  # not to wait for anything: it moves the kill to a random instant
            writer.send_signal(signal.SIGKILL)
            assert writer.wait() == -signal.SIGKILL, writer.stderr.read()
        finally:
            watchdog.cancel()
            writer.stdout.close()
            writer.stderr.close()
        assert_only_whole_turns(path, committed, seed)


def read_line(writer):
    line = writer.stdout.readline()
    assert line, f"the writer died by itself: {writer.stderr.read()}"
    return line


def assert_only_whole_turns(path, committed, seed):
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
    raw.close()
    with Store(path) as store:
        for summary in store.list_conversations(limit=100):
            turns = store.conversation(summary["id"])["turns"]
            last_odd = max([turn["number"] for turn in turns if turn["number"] % 2], default=None)
            assert store.get_state(f"odd.{summary['id']}") == last_odd, seed  # one transaction
            assert [turn["number"] for turn in turns] == list(range(1, len(turns) + 1))
            for turn in turns:
                assert turn["messages"] == turn_messages(turn["number"]), seed
                assert turn["interrupted"] == (turn["number"] % 4 == 3)
            assert len(turns) >= committed.get(summary["id"], 0), (
                f"a committed turn was lost ({seed})"
            )
            assert_valid(store.messages(summary["id"]))
