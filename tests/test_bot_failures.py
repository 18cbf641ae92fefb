"""Issue 10: a model that refuses or talks nonsense gets a short reply and the queue moves
on; only outages leave a message for later, and never more than three runs; a store that
cannot be written never makes a later run send an answer again."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from hermes_min.errors import StorageError
from hermes_min.storage import Store
from hermes_min.telegram import handler, poller
from tests.sse_server import Reply as ModelReply
from tests.sse_server import answer as model_answer
from tests.sse_server import chunk, free_port, sse
from tests.test_bot_updates import Bot, bot_fixture, fake_fixture  # noqa: F401 - fixtures
from tests.test_poll import ALICE, BOB, answers, prompts

REFUSED = handler._REFUSED
SORRY = handler._SORRY


def json_error(status: int, message: str = "no") -> ModelReply:
    body = f'{{"error":{{"message":"{message}"}}}}'.encode()
    kind = "application/json"
    return ModelReply(parts=[body], status=status, content_type=kind, framing="length")


DETERMINISTIC = {
    "an HTML page with 200": lambda: ModelReply(
        parts=[b"<html><body>Welcome to the portal</body></html>"],
        content_type="text/html",
        framing="length",
    ),
    "SSE data that is not JSON": lambda: ModelReply(parts=[b"data: {not json\n\n"]),
    "SSE chunks of the wrong shape": lambda: ModelReply(
        parts=[sse({"choices": "many"}, [1, 2, 3])]
    ),
    "400": lambda: json_error(400, "temperature must be at most 2"),
    "413": lambda: json_error(413),
    "422": lambda: json_error(422),
}


@pytest.mark.parametrize("case", sorted(DETERMINISTIC))
def test_a_deterministic_failure_gets_a_short_reply_and_the_queue_moves_on(
    bot: Bot, fake, server, capsys, case
):
    server.reply(DETERMINISTIC[case](), ModelReply(parts=model_answer("hi Bob")))
    fake.queue_text(ALICE, "question")
    fake.queue_text(BOB, "hello")
    assert bot() == 0
    assert "Traceback" not in capsys.readouterr().err
    assert answers(fake, ALICE) == [REFUSED] and answers(fake, BOB) == ["hi Bob"]
    assert bot() == 0 and len(server.requests) == 2  # neither is asked again


def test_a_wrong_key_or_model_is_for_a_human_and_keeps_the_message(bot: Bot, fake, server, capsys):
    server.reply(json_error(401, "invalid api key"), ModelReply(parts=model_answer("yes")))
    fake.queue_text(ALICE, "are you there?")
    assert bot() == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refused" in err
    assert answers(fake, ALICE) == [] and fake.pending_updates
    assert bot() == 0 and answers(fake, ALICE) == ["yes"]  # fixed: answered


OUTAGES = {
    "503": lambda url: (url, json_error(503)),
    "500": lambda url: (url, json_error(500)),
    "429": lambda url: (url, json_error(429, "slow down")),
    "408": lambda url: (url, json_error(408)),
    "connection refused": lambda url: (f"http://127.0.0.1:{free_port()}/v1", None),
    "a stream that ends before any text": lambda url: (
        url,
        ModelReply(parts=[sse(chunk(role="assistant"), done=False)], framing="close"),
    ),
}


def failures(bot: Bot) -> list[int]:
    """The failed tries of each update still failing, in update order."""
    counts = json.loads(bot.state("failures") or "{}")
    return [counts[key] for key in sorted(counts, key=int)]


@pytest.mark.parametrize("case", sorted(OUTAGES))
def test_an_outage_leaves_the_message_for_three_runs_then_apologises(
    bot: Bot, fake, server, capsys, case
):
    url, reply = OUTAGES[case](server.url)
    if reply is not None:
        server.reply(reply)
    bot.config.write_text(bot.config.read_text().replace(server.url, url))
    fake.queue_text(ALICE, "are you there?")
    fake.queue_text(BOB, "and now?")
    for tries in (1, 2):
        assert bot() == 75
        assert capsys.readouterr().err.count("\n") == 1
        assert answers(fake, ALICE) == [] and answers(fake, BOB) == []
        assert failures(bot) == [tries, tries] and len(fake.pending_updates) == 2
    assert bot() == 0  # the third try: each chat gets an apology, and the queue moves on
    assert answers(fake, ALICE) == [SORRY] and answers(fake, BOB) == [SORRY]
    last = fake.calls_to("getUpdates")[0].response["result"][-1]["update_id"]
    assert failures(bot) == [] and bot.state("offset") == last + 1
    bot.config.write_text(bot.config.read_text().replace(url, server.url))
    fake.queue_text(BOB, "back?")
    server.reply(ModelReply(parts=model_answer("here")))
    assert bot() == 0 and answers(fake, BOB) == [SORRY, "here"]
    assert fake.pending_updates == []


def test_a_failing_chat_holds_only_its_own_messages(bot: Bot, fake, server):
    """One message can never hold the queue: other chats are answered meanwhile, and the
    failing chat's later messages wait behind it (a chat's messages stay in order)."""
    server.reply(json_error(503), ModelReply(parts=model_answer("hi Bob")))
    fake.queue_text(ALICE, "first")
    fake.queue_text(BOB, "hello")
    fake.queue_text(ALICE, "second")
    assert bot() == 75
    assert answers(fake, BOB) == ["hi Bob"] and answers(fake, ALICE) == []
    assert prompts(server) == ["first", "hello"]  # Alice's second waits behind her first
    server.reply(ModelReply(parts=model_answer("one")), ModelReply(parts=model_answer("two")))
    assert bot() == 0 and answers(fake, ALICE) == ["one", "two"]
    assert prompts(server)[-2:] == ["first", "second"] and answers(fake, BOB) == ["hi Bob"]


def test_the_failure_count_follows_the_update_not_the_run(bot: Bot, fake, server):
    server.reply(json_error(503), json_error(503), ModelReply(parts=model_answer("fine")))
    fake.queue_text(ALICE, "one")
    assert bot() == 75 and bot() == 75 and failures(bot) == [2]
    assert bot() == 0 and answers(fake, ALICE) == ["fine"]  # answered on the third try
    assert failures(bot) == []
    server.reply(json_error(503))
    fake.queue_text(ALICE, "two")
    assert bot() == 75 and failures(bot) == [1]  # a new update starts from one


def test_a_long_poll_spaces_its_tries_of_a_failing_message(bot: Bot, fake, server, monkeypatch):
    from hermes_min.cli import main
    from hermes_min.telegram import lanes

    spacings = []
    real = lanes.Lanes.__init__

    def spy(self, workers, work, *, retry_after, **kwargs):
        spacings.append(retry_after)
        real(self, workers, work, retry_after=retry_after, **kwargs)

    monkeypatch.setattr(lanes.Lanes, "__init__", spy)
    monkeypatch.setattr(poller, "RETRY_SPACING", 0.01)  # the real one is a minute
    server.reply(json_error(503))
    fake.queue_text(ALICE, "anyone?")
    argv = ["--max-updates", "1", "--max-seconds", "60", "--config", str(bot.config)]
    assert main(["telegram", "poll", *argv]) == 0
    assert answers(fake, ALICE) == [SORRY] and spacings == [0.01]
    assert len(server.requests) == handler.MAX_TRIES


# ---------------------------------------------------------------------------- 4. the store


class FullStore(Store):
    """A store on a full disk: it reads, but every write fails."""

    full = False

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        if self.full:
            message = f"the conversation store {self.path} cannot be written: the disk is full"
            raise StorageError(message, "full")
        with super().transaction() as store:
            yield store


class FullFile(Store):
    """A real SQLite file that cannot grow: a write that needs a new page fails with
    SQLITE_FULL, exactly as on a full disk."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        (pages,) = self._one("PRAGMA page_count")
        self._one(f"PRAGMA max_page_count = {pages}")


@pytest.fixture
def store_kind(monkeypatch, request):
    """Make `telegram poll` open its store as `request.param` (FullStore or FullFile)."""
    import hermes_min.cli.telegram as cli_telegram

    made: list[Store] = []

    def open_full(config, *, required):
        store = request.param(config.storage.path)
        if isinstance(store, FullStore):
            store.full = True
        made.append(store)
        return store

    monkeypatch.setattr(cli_telegram, "open_store", open_full)
    return made


LONG = ("A paragraph of the answer that goes on. " * 30 + "\n\n") * 4  # two messages


@pytest.mark.parametrize("store_kind", [FullStore, FullFile], indirect=True)
def test_a_store_that_cannot_be_written_never_makes_a_run_repeat_an_answer(
    bot: Bot, fake, server, capsys, store_kind
):
    Store(bot.db).close()  # the file exists, with its schema, before it fills up
    server.reply(ModelReply(parts=model_answer(LONG)), ModelReply(parts=model_answer(LONG)))
    fake.queue_text(ALICE, "one")
    fake.queue_text(ALICE, "two")
    for run in (1, 2):
        assert bot() == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "full" in err and "confirmed to Telegram" in err
        assert len(answers(fake, ALICE)) == 2 * run  # each answer once, in two messages
    assert bot() == 0  # nothing left: nothing is sent again
    assert len(answers(fake, ALICE)) == 4 and prompts(server) == ["one", "two"]
    assert fake.pending_updates == []


@pytest.mark.parametrize("store_kind", [FullStore], indirect=True)
def test_a_reply_is_not_repeated_when_the_store_cannot_record_it(
    bot: Bot, fake, server, capsys, store_kind
):
    fake.queue_text(ALICE, "/help")
    assert bot() == 1 and bot() == 0 and bot() == 0
    assert len(answers(fake, ALICE)) == 1 and not server.requests


@pytest.mark.parametrize("store_kind", [FullStore], indirect=True)
def test_new_is_not_confirmed_when_the_store_cannot_forget(bot: Bot, fake, server, store_kind):
    fake.queue_text(ALICE, "/new")
    assert bot() == 1
    assert answers(fake, ALICE) == [] and len(fake.pending_updates) == 1  # tried again later


def test_a_busy_store_after_an_answer_is_retried_later_and_not_repeated(
    bot: Bot, fake, server, capsys, monkeypatch
):
    import hermes_min.cli.telegram as cli_telegram

    # The store waits 5 s for another writer; 0.2 s here, the outcome is the same.
    monkeypatch.setattr(
        cli_telegram, "open_store", lambda c, **_: Store(c.storage.path, timeout=0.2)
    )
    server.reply(ModelReply(parts=model_answer("answered")))
    fake.queue_text(ALICE, "q")
    Store(bot.db).close()
    other = sqlite3.connect(str(bot.db), timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock throughout
        code = bot()
    finally:
        other.rollback()
        other.close()
    err = capsys.readouterr().err
    assert code == 75 and "confirmed to Telegram" in err and err.count("\n") == 1
    assert bot() == 0 and answers(fake, ALICE) == ["answered"] and len(server.requests) == 1
