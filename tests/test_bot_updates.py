"""Issue 10: whatever getUpdates returns, `telegram poll` skips what it cannot use, confirms
it, and answers the updates behind it in the same run; `whoami` lists what it can read."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Callable

import pytest

from hermes_min.cli import main
from hermes_min.storage import Store
from tests.fake_botapi import FakeBotAPI, Reply, text_update
from tests.helpers import short_group_window
from tests.sse_server import Reply as ModelReply
from tests.sse_server import SSEServer, answer
from tests.test_poll import ALICE, BOB, GROUP, STRANGER, FakeTTY, answers, prompts

SECRET_WORDS = "the launch code is swordfish"  # a message text no log line may hold


class Bot:
    """`hermes telegram poll --once` with a config for the fake Bot API and the model."""

    def __init__(self, fake: FakeBotAPI, model: SSEServer, tmp: Path) -> None:
        self.fake, self.model, self.tmp = fake, model, tmp
        self.config = tmp / "config.yaml"
        self.db = tmp / "state" / "hermes.db"
        self.configure()

    def configure(self, telegram: str = "", top: str = "") -> None:
        """Write the config; `telegram` adds lines under telegram:, `top` whole sections."""
        self.config.write_text(
            f"provider:\n  base_url: {self.model.url}\n  model: m\n  max_retries: 0\n"
            f"telegram:\n  api_base: {self.fake.api_base}\n  allowed_users: [{ALICE}, {BOB}]\n"
            "  concurrency: 1\n"  # scripted replies: one chat at a time, in order
            f"{telegram}storage:\n  path: {self.db}\n"
            "streaming:\n  edit_interval: 0.02\n  buffer_threshold: 5\n" + top,
            encoding="utf-8",
        )

    def __call__(self, *argv: str) -> int:
        return main(["telegram", "poll", "--once", "--config", str(self.config), *argv])

    def state(self, name: str) -> object:
        """A value of the bot's state table (offset, failure count, ...)."""
        with Store(self.db) as store:
            return store.get_state(f"telegram.{self.fake.token.split(':')[0]}.{name}")


# Named *_fixture so the other test_bot_* modules can import them without shadowing.
@pytest.fixture(name="fake")
def fake_fixture():
    with FakeBotAPI(per_chat_interval=0.01, group_window=1.0) as server:
        yield server
        server.assert_clean()


@pytest.fixture(name="bot")
def bot_fixture(fake, server, tmp_path, monkeypatch) -> Bot:
    monkeypatch.setattr(sys, "stdin", FakeTTY())
    short_group_window(monkeypatch, fake.group_window)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", fake.token)
    return Bot(fake, server, tmp_path)


def message(**fields: object) -> dict:
    """A well-formed private text message from Alice, with `fields` replaced."""
    base = text_update(ALICE, SECRET_WORDS)["message"]
    base.update(fields)
    return {key: value for key, value in base.items() if value is not None}


MALFORMED: dict[str, Callable[[], object]] = {
    "not an object": lambda: ["update", 1],
    "a number": lambda: 42,
    "null": lambda: None,
    "no update_id": lambda: {"message": message()},
    "update_id a string": lambda: {"update_id": "1000", "message": message()},
    "update_id 2**63": lambda: {"update_id": 2**63, "message": message()},
    "update_id negative": lambda: {"update_id": -5, "message": message()},
    "update_id a bool": lambda: {"update_id": True, "message": message()},
    "message a string": lambda: {"message": SECRET_WORDS},
    "no chat": lambda: {"message": message(chat=None)},
    "chat a list": lambda: {"message": message(chat=[ALICE])},
    "chat id a string": lambda: {"message": message(chat={"id": "111", "type": "private"})},
    "from a string": lambda: {"message": message(**{"from": "alice"})},
    "from without id": lambda: {"message": message(**{"from": {"first_name": "A"}})},
    "reply_to_message a number": lambda: {"message": message(reply_to_message=7)},
    "reply_to_message.from a list": lambda: {
        "message": message(reply_to_message={"message_id": 1, "from": []})
    },
    "text a number": lambda: {"message": message(text=12345)},
    "message_id a string": lambda: {"message": message(message_id="7")},
    "entities not a list": lambda: {"message": message(entities={"type": "mention"})},
    "entity offset a string": lambda: {
        "message": message(entities=[{"type": "mention", "offset": "0", "length": 5}])
    },
    "entity offset a float": lambda: {
        "message": message(entities=[{"type": "mention", "offset": 0.5, "length": 5}])
    },
    "entity not an object": lambda: {"message": message(entities=["mention"])},
    "thread id a string": lambda: {
        "message": message(message_thread_id="5", is_topic_message=True)
    },
}


def queue(fake: FakeBotAPI, case: str) -> None:
    """Queue the malformed update: as it is where the id is what is wrong, else with an id."""
    raw = MALFORMED[case]()
    if case.startswith(("not an", "a number", "null", "no update_id", "update_id")):
        fake.queue_raw(raw)
    else:
        fake.queue_update(raw)


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_update_is_skipped_confirmed_and_the_next_is_answered(
    bot, fake, server, caplog, capsys, case
):
    queue(fake, case)
    fake.queue_text(ALICE, "hello")
    server.reply(ModelReply(parts=answer("hi Alice")))
    with caplog.at_level(logging.INFO, logger="hermes_min"):
        assert bot("-v") == 0
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert answers(fake, ALICE) == ["hi Alice"] and prompts(server) == ["hello"]
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 1, [r.getMessage() for r in caplog.records]
    assert "swordfish" not in "\n".join(r.getMessage() for r in caplog.records) + err
    assert fake.pending_updates == []  # Telegram was told of both
    assert bot() == 0 and len(server.requests) == 1  # and nothing comes back


@pytest.mark.parametrize("case", ["no update_id", "update_id a string", "not an object"])
def test_a_malformed_update_alone_is_confirmed_by_its_position(bot, fake, server, case):
    fake.queue_text(ALICE, "first")
    assert bot() == 0  # the bot now knows where the queue stands
    queue(fake, case)
    assert bot() == 0 and bot() == 0
    assert fake.pending_updates == [] and prompts(server) == ["first"]
    assert len(fake.calls_to("getUpdates")) <= 5  # never a loop on the same update


def test_a_malformed_update_with_nothing_known_does_not_loop(bot, fake, server):
    fake.queue_raw({"message": message()})  # the very first update, without an id
    assert bot() == 0
    assert len(fake.calls_to("getUpdates")) <= 2 and not server.requests
    fake.queue_text(ALICE, "hello")
    assert bot() == 0 and prompts(server) == ["hello"]
    assert fake.pending_updates == []  # the update behind it confirmed both


def test_a_result_that_is_not_a_list_is_a_retry_later_not_a_traceback(bot, fake, capsys):
    fake.queue_text(ALICE, "hello")
    body = {"ok": True, "result": {"update_id": 1, "message": {"text": SECRET_WORDS}}}
    fake.script("getUpdates", Reply(200, body))
    assert bot() == 75
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hermes: ") and "swordfish" not in err
    assert bot() == 0 and answers(fake, ALICE) == ["ok"]


def test_a_long_poll_backs_off_from_a_result_that_is_not_a_list(bot, fake, server, monkeypatch):
    from hermes_min.telegram.poller import Poller

    monkeypatch.setattr(Poller, "BACKOFF", 0.05)  # the real one is a second, doubling
    fake.script("getUpdates", Reply(200, {"ok": True, "result": "not a list"}), times=2)
    fake.queue_text(ALICE, "hello")
    argv = ["--max-updates", "1", "--max-seconds", "60"]  # the bound only guards the test
    assert main(["telegram", "poll", "--config", str(bot.config), *argv]) == 0
    assert answers(fake, ALICE) == ["ok"] and len(fake.calls_to("getUpdates")) == 3


def test_an_update_below_the_stored_offset_is_never_answered_again(bot, fake, server):
    fake.queue_text(ALICE, "once")
    assert bot() == 0
    [old] = [c for c in fake.calls_to("getUpdates") if c.response["result"]]
    replayed = old.response["result"]  # a gateway that ignores the offset replays them
    fake.script("getUpdates", Reply(200, {"ok": True, "result": replayed}))
    assert bot() == 0
    assert prompts(server) == ["once"] and len(answers(fake, ALICE)) == 1


def test_a_repeated_update_id_in_one_batch_is_answered_once(bot, fake, server):
    update = fake.queue_text(ALICE, "twice?")
    fake.queue_raw(dict(update))  # the same update_id again (a position of its own here)
    server.reply(ModelReply(parts=answer("once")))
    assert bot() == 0
    assert prompts(server) == ["twice?"] and answers(fake, ALICE) == ["once"]


def test_whoami_lists_what_it_can_read_and_skips_the_rest(bot, fake, capsys):
    fake.queue_raw(None)
    fake.queue_raw({"update_id": "x", "message": message()})
    fake.queue_update({"message": message(chat="nope")})
    fake.queue_update({"message": message(**{"from": None})})
    fake.queue_text(STRANGER, "hi")
    code = main(["telegram", "whoami", "--config", str(bot.config)])
    out, err = capsys.readouterr()
    assert code == 0 and "Traceback" not in err
    assert f"user {STRANGER}" in out and out.count("\n") == 1
    assert len(fake.pending_updates) == 5  # whoami confirms nothing


def test_whoami_says_so_when_the_result_is_not_a_list(bot, fake, capsys):
    fake.script("getUpdates", Reply(200, {"ok": True, "result": {"a": 1}}))
    code = main(["telegram", "whoami", "--config", str(bot.config)])
    err = capsys.readouterr().err
    assert code == 75 and err.count("\n") == 1 and err.startswith("hermes: ")


# ---------------------------------------------------------------------------- 5. no `from`


def anonymous(chat_id: int, sender_chat: dict | None, text: str = "@hermes_test_bot hi") -> dict:
    """A group message sent on behalf of a chat: no `from`, a `sender_chat`."""
    fields = {"from": None, "chat": {"id": chat_id, "type": "supergroup", "title": "G"}}
    if sender_chat is not None:
        fields["sender_chat"] = sender_chat
    return {"message": message(text=text, **fields)}


def test_senders_without_from_each_get_their_own_denial(bot, fake, server):
    bot.configure("  deny_message: Private bot.\n")
    other = -1002000000002
    fake.queue_update(anonymous(GROUP, {"id": GROUP, "type": "supergroup", "title": "G"}))
    fake.queue_update(anonymous(other, {"id": -1003000000003, "type": "channel", "title": "C"}))
    fake.queue_update(anonymous(GROUP, {"id": GROUP, "type": "supergroup", "title": "G"}))
    fake.queue_update(anonymous(other, None))  # no sender at all: the chat stands for it
    fake.queue_update(anonymous(other, None))
    assert bot() == 0 and not server.requests
    assert answers(fake, GROUP) == ["Private bot."]
    assert answers(fake, other) == ["Private bot.", "Private bot."]  # the channel, the chat
    assert bot.state(f"offset.denied.chat{GROUP}") == 1 and bot.state("offset.denied.None") is None


def test_an_anonymous_admin_is_not_taken_for_the_fake_user_in_from(bot, fake, server):
    # Telegram puts a placeholder user (GroupAnonymousBot) in `from` for such messages.
    bot.configure("  deny_message: Private bot.\n")
    anon = {"id": 1087968824, "is_bot": True, "first_name": "Group"}
    for chat in (GROUP, -1002000000002):
        update = anonymous(chat, {"id": chat, "type": "supergroup", "title": "G"})
        update["message"]["from"] = anon
        fake.queue_update(update)
    assert bot() == 0
    assert answers(fake, GROUP) == ["Private bot."]
    assert answers(fake, -1002000000002) == ["Private bot."]


def test_an_allowed_chat_answers_anonymous_senders(bot, fake, server):
    bot.configure(f"  allowed_chats: [{GROUP}]\n")
    server.reply(ModelReply(parts=answer("hello, anonymous")))
    fake.queue_update(anonymous(GROUP, {"id": GROUP, "type": "supergroup", "title": "G"}))
    assert bot() == 0 and answers(fake, GROUP) == ["hello, anonymous"]


def test_whoami_shows_control_characters_in_names_visibly(bot, fake, capsys):
    update = text_update(STRANGER, "hi")
    update["message"]["from"].update(first_name="Eve\x1b[2J\x07", last_name=["not", "text"])
    fake.queue_update(update)
    assert main(["telegram", "whoami", "--config", str(bot.config)]) == 0
    out = capsys.readouterr().out
    assert f"user {STRANGER} (Eve" in out and "\x1b" not in out and "\x07" not in out


@pytest.mark.parametrize("result", [[], "bot", {"username": "no_id"}, {"id": "1"}])
def test_a_get_me_reply_that_is_no_bot_is_a_retry_later(bot, fake, capsys, result):
    fake.script("getMe", Reply(200, {"ok": True, "result": result}))
    assert bot() == 75
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "getMe" in err


def test_whoami_tells_how_to_allow_a_message_sent_on_behalf_of_a_chat(bot, fake, capsys):
    """Only telegram.allowed_chats can allow it: it has no user to put in allowed_users."""
    fake.queue_update(anonymous(GROUP, {"id": GROUP, "type": "supergroup", "title": "G"}))
    assert main(["telegram", "whoami", "--config", str(bot.config)]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert line.endswith(f"not answered (add {GROUP} to telegram.allowed_chats)"), line
