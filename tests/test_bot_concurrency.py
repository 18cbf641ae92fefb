"""Issue 11: many chats at once, each chat in order; the ledger's offset covers only what is
recorded; the store takes concurrent turns; one budget for the whole bot."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import defaultdict

import pytest

from hermes_min.storage import Store
from hermes_min.telegram.ledger import Ledger
from hermes_min.telegram.pacing import Budgets
from hermes_min.telegram.updates import Update
from tests.fake_botapi import FakeClock
from tests.sse_server import Reply, SSEServer, answer
from tests.test_bot_updates import Bot, fake_fixture  # noqa: F401 - fixtures
from tests.test_poll import FakeTTY, answers


class Gathering(SSEServer):
    """A model that holds every answer until `size` requests are in at once (bounded), and
    records how many ran together, overall and per chat."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.active: dict[str, int] = defaultdict(int)
        self.most, self.most_per_chat = 0, 0
        self.order: list[str] = []
        self.all_in = threading.Event()
        self._count = threading.Condition()

    def _send(self, conn, reply) -> bool:
        prompt = self.requests[-1]["json"]["messages"][-1]["content"] if self.requests else ""
        chat = prompt[:1]  # "a1" is chat a's first message
        with self._count:
            self.order.append(prompt)
            self.active[chat] += 1
            total = sum(self.active.values())
            self.most = max(self.most, total)
            self.most_per_chat = max(self.most_per_chat, self.active[chat])
            if total >= self.size:
                self.all_in.set()
        self.all_in.wait(20)  # bounded: a bot that answers one chat at a time fails, not hangs
        try:
            return super()._send(conn, Reply(parts=answer(f"answer to {prompt}")))
        finally:
            with self._count:
                self.active[chat] -= 1


@pytest.fixture(name="gathering")
def gathering_fixture():
    with Gathering(size=4) as server:
        yield server


@pytest.fixture(name="bot")
def concurrent_bot(fake, gathering, tmp_path, monkeypatch) -> Bot:
    import sys

    monkeypatch.setattr(sys, "stdin", FakeTTY())
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", fake.token)
    bot = Bot(fake, gathering, tmp_path)
    bot.configure("  allowed_users: [1, 2, 3, 4, 5, 6, 7, 8]\n  concurrency: 4\n")
    return bot


def test_four_chats_are_answered_at_the_same_time(bot: Bot, fake, gathering):
    for chat, letter in zip((1, 2, 3, 4), "abcd"):
        fake.queue_text(chat, f"{letter}1")
    assert bot() == 0
    assert gathering.most == 4 and gathering.all_in.is_set()  # they ran together
    assert [answers(fake, chat) for chat in (1, 2, 3, 4)] == [
        [f"answer to {letter}1"] for letter in "abcd"
    ]


def test_each_chat_is_answered_in_order_one_answer_at_a_time(bot: Bot, fake, gathering):
    gathering.size = 2  # two chats, three messages each
    for number in (1, 2, 3):
        fake.queue_text(1, f"a{number}")
        fake.queue_text(2, f"b{number}")
    assert bot() == 0
    assert gathering.most_per_chat == 1 and gathering.most == 2
    for chat, letter in ((1, "a"), (2, "b")):
        asked = [p for p in gathering.order if p.startswith(letter)]
        assert asked == [f"{letter}1", f"{letter}2", f"{letter}3"]
        assert answers(fake, chat) == [f"answer to {letter}{n}" for n in (1, 2, 3)]
    assert fake.pending_updates == []


# ---------------------------------------------------------------- the ledger


def update(update_id: int) -> Update:
    return Update(update_id, update_id + 1)


def test_the_offset_covers_only_a_run_of_recorded_updates(tmp_path):
    with Store(tmp_path / "db") as store:
        ledger = Ledger(store, "bot")
        assert [u.update_id for u in ledger.take([update(5), update(6), update(7)])] == [5, 6, 7]
        ledger.finish(update(7))  # finished first: out of order
        ledger.finish(update(6))
        assert ledger.offset() is None  # 5 is still in flight: nothing is confirmed
        assert json.loads(store.get_state("telegram.bot.done")) == [6, 7]
        ledger.finish(update(5))
        assert ledger.offset() == 8 and json.loads(store.get_state("telegram.bot.done")) == []


def test_after_a_kill_only_what_was_in_flight_is_worked_on_again(tmp_path):
    with Store(tmp_path / "db") as store:
        first = Ledger(store, "bot")
        first.take([update(5), update(6), update(7)])
        first.finish(update(6))  # then the run is killed: 5 and 7 were in flight
        again = Ledger(store, "bot")  # the next run fetches from the stored offset
        fresh = again.take([update(5), update(6), update(7)])
        assert [u.update_id for u in fresh] == [5, 7]
        again.finish(update(5))
        assert again.offset() == 7  # 6 was done before: the offset passes it
        assert again.take([update(7)]) == []  # in flight: not handed out twice


def test_an_update_left_for_a_retry_keeps_the_offset_below_it(tmp_path):
    with Store(tmp_path / "db") as store:
        ledger = Ledger(store, "bot")
        ledger.take([update(5), update(6)])
        ledger.finish(update(6))  # 5 met an outage: it is not finished
        assert ledger.offset() is None  # 5 is not confirmed: it comes again
        again = Ledger(store, "bot")
        assert [u.update_id for u in again.take([update(5), update(6)])] == [5]


def test_a_batch_fetched_before_an_answer_was_recorded_is_not_worked_on_again(tmp_path):
    with Store(tmp_path / "db") as store:
        ledger = Ledger(store, "bot")
        ledger.take([update(5)])
        late = [update(5)]  # a getUpdates reply still on its way back...
        ledger.finish(update(5))  # ...when the answer is recorded
        assert ledger.take(late) == [] and ledger.offset() == 6


def test_an_answer_sent_but_not_recorded_is_confirmed_with_what_is_done_before_it(tmp_path):
    with Store(tmp_path / "db") as store:
        ledger = Ledger(store, "bot")
        ledger.take([update(5), update(6), update(7)])
        ledger.finish(update(5))
        ledger.sent(update(6))  # the store failed after Telegram accepted the answer
        assert ledger.confirmable() == 7 and ledger.unconfirmed_sent
        ledger.sent(update(7))
        assert ledger.confirmable() == 8


# ---------------------------------------------------------------- the store, shared


def test_one_store_takes_turns_from_many_threads(tmp_path):
    path = tmp_path / "db"
    errors = []
    with Store(path) as store:
        keys = [f"telegram:{n}:0" for n in range(8)]

        def chat(key: str) -> None:
            try:
                for number in range(15):
                    with store.transaction():
                        cid = store.conversation_for_key(key) or store.new_conversation(
                            model="m", key=key
                        )
                        messages = [
                            {"role": "user", "content": f"{key} {number}"},
                            {"role": "assistant", "content": "ok"},
                        ]
                        store.append_turn(cid, messages, model="m")
                        store.set_state(f"offset.{key}", number)
                    store.messages(cid)  # reads in between, as lanes do
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=chat, args=(key,)) for key in keys]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        assert sorted(c["turns"] for c in store.list_conversations(limit=50)) == [15] * 8
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


# ---------------------------------------------------------------- one budget for the bot


def test_every_chat_draws_on_one_budget_for_the_whole_bot():
    clock = FakeClock(start=100.0)
    budgets = Budgets(0.0, bot_limit=3, bot_window=1.0, clock=clock)
    chats = [budgets.for_chat(chat) for chat in (1, 2, 3, 4)]
    for budget in chats[:3]:
        assert budget.ready()
        budget.spend()
    assert not chats[3].ready() and chats[3].ready_at() == 101.0  # the bot's 3 a second
    clock.advance(1.0)
    assert chats[3].ready()
