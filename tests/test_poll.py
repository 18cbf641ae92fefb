"""`hermes telegram poll` and `whoami`, in-process against the fake Bot API and SSE server."""

from __future__ import annotations

import sys

import pytest

from hermes_min.cli import main
from tests.fake_botapi import FakeBotAPI
from tests.helpers import FakeTTY, short_group_window
from tests.sse_server import Reply, answer

ALICE, BOB, STRANGER = 111, 222, 999
GROUP = -100123


@pytest.fixture
def fake():
    with FakeBotAPI(per_chat_interval=0.01, group_window=1.0) as server:
        yield server
        server.assert_clean()


@pytest.fixture
def bot(fake, server, tmp_path, monkeypatch):
    """Run `hermes telegram poll ...` with a config for the two local servers."""
    monkeypatch.setattr(sys, "stdin", FakeTTY())
    short_group_window(monkeypatch, fake.group_window)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", fake.token)
    config = tmp_path / "config.yaml"

    def configure(extra: str = "") -> None:
        config.write_text(
            f"provider:\n  base_url: {server.url}\n  model: m\n  max_retries: 0\n"
            f"telegram:\n  api_base: {fake.api_base}\n  allowed_users: [{ALICE}, {BOB}]\n"
            "  concurrency: 1\n"  # scripted replies: one chat at a time, in order
            f"{extra}storage:\n  path: {tmp_path / 'state' / 'hermes.db'}\n"
            "streaming:\n  edit_interval: 0.02\n  buffer_threshold: 5\n",
            encoding="utf-8",
        )

    def run(*argv: str) -> int:
        return main(["telegram", "poll", "--once", "--config", str(config), *argv])

    configure()
    run.configure = configure
    run.config = config
    return run


def answers(fake, chat):
    return [m.text for m in fake.messages(chat) if m.from_bot]


def prompts(server):
    return [r["json"]["messages"][-1]["content"] for r in server.requests]


def test_every_allowed_message_is_answered_once_across_runs(bot, fake, server, capsys):
    server.reply(*[Reply(parts=answer(f"answer {i}")) for i in range(3)])
    for text in ("one", "two", "three"):
        fake.queue_text(ALICE, text)
    assert bot() == 0
    assert answers(fake, ALICE) == ["answer 0", "answer 1", "answer 2"]
    for _ in range(3):
        assert bot() == 0  # later runs find nothing new
    assert len(server.requests) == 3 and not fake.pending_updates
    assert capsys.readouterr() == ("", "")  # quiet on success


def test_strangers_never_reach_the_model(bot, fake, server):
    bot.configure("  deny_message: This is a private bot.\n")
    fake.queue_text(STRANGER, "let me in")
    fake.queue_text(STRANGER, "please", chat_id=GROUP)
    assert bot() == 0
    assert not server.requests
    assert answers(fake, STRANGER) == ["This is a private bot."]
    assert bot() == 0 and answers(fake, STRANGER) == ["This is a private bot."]  # confirmed


def test_strangers_get_no_reply_without_a_deny_message(bot, fake, server):
    fake.queue_text(STRANGER, "hello?")
    assert bot() == 0 and not server.requests and answers(fake, STRANGER) == []


def test_allowed_chats_let_everyone_in_that_chat_in(bot, fake, server):
    bot.configure(f"  allowed_chats: [{GROUP}]\n  group_mode: all\n")
    server.reply(Reply(parts=answer("hi group")))
    fake.queue_text(STRANGER, "question", chat_id=GROUP)
    assert bot() == 0 and answers(fake, GROUP) == ["hi group"]


def test_groups_answer_only_mentions_and_replies(bot, fake, server):
    server.reply(Reply(parts=answer("yes?")))
    fake.queue_text(ALICE, "chatting among ourselves", chat_id=GROUP)
    fake.queue_text(ALICE, "@hermes_test_bot what is 2+2?", chat_id=GROUP)
    assert bot() == 0
    assert prompts(server) == ["Test: what is 2+2?"]  # who asks, and not the mention
    assert answers(fake, GROUP) == ["yes?"]


def test_each_chat_and_topic_has_its_own_memory_across_runs(bot, fake, server):
    server.reply(*[Reply(parts=answer(f"reply {i}")) for i in range(4)])
    fake.add_topic(GROUP, 5)
    fake.queue_text(ALICE, "I am Alice")
    fake.queue_text(BOB, "I am Bob")
    fake.queue_text(ALICE, "@hermes_test_bot topic talk", chat_id=GROUP, message_thread_id=5)
    assert bot() == 0
    fake.queue_text(ALICE, "who am I?")
    assert bot() == 0
    last = server.requests[-1]["json"]["messages"]
    assert [m["content"] for m in last] == ["I am Alice", "reply 0", "who am I?"]
    topic = [m for m in fake.messages(GROUP) if m.from_bot]
    assert topic[0].message_thread_id == 5


def test_new_starts_over_and_help_says_what_the_bot_does(bot, fake, server):
    server.reply(Reply(parts=answer("noted")), Reply(parts=answer("fresh")))
    fake.queue_text(ALICE, "remember 42")
    fake.queue_text(ALICE, "/new")
    fake.queue_text(ALICE, "/help")
    fake.queue_text(ALICE, "what did I say?")
    assert bot() == 0
    assert server.requests[-1]["json"]["messages"] == [
        {"role": "user", "content": "what did I say?"}
    ]
    said = answers(fake, ALICE)
    assert said[1] == "Starting a new conversation." and "/new" in said[2]


def test_non_text_messages_get_a_text_only_reply(bot, fake, server):
    update = {
        "message": {
            "message_id": 7,
            "date": 0,
            "chat": {"id": ALICE, "type": "private"},
            "from": {"id": ALICE, "is_bot": False, "first_name": "A"},
            "photo": [{"file_id": "x", "width": 1, "height": 1}],
        }
    }
    fake.queue_update(update)
    assert bot() == 0 and not server.requests
    assert answers(fake, ALICE) == ["I can only read text messages."]


def test_an_edited_message_is_not_answered_again(bot, fake, server):
    edited = {
        "edited_message": {
            "message_id": 1,
            "date": 0,
            "edit_date": 1,
            "chat": {"id": ALICE, "type": "private"},
            "from": {"id": ALICE, "is_bot": False, "first_name": "A"},
            "text": "edited text",
        }
    }
    fake.queue_update(edited)
    assert bot() == 0 and not server.requests and not fake.pending_updates


def test_max_updates_and_max_seconds_bound_a_run(bot, fake, server):
    server.reply(*[Reply(parts=answer(f"a{i}")) for i in range(3)])
    for text in ("1", "2", "3"):
        fake.queue_text(ALICE, text)
    assert bot("--max-updates", "2") == 0 and prompts(server) == ["1", "2"]
    assert bot("--max-seconds", "0") == 0 and prompts(server) == ["1", "2"]
    assert bot() == 0 and prompts(server) == ["1", "2", "3"]


def test_no_access_lists_refuses_to_start_and_says_how(fake, server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", fake.token)
    config = tmp_path / "c.yaml"
    config.write_text(
        f"telegram:\n  api_base: {fake.api_base}\nstorage:\n  path: {tmp_path / 'db'}\n"
    )
    code = main(["telegram", "poll", "--once", "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 1 and "allowed_users" in err and "whoami" in err and err.count("\n") == 1


def test_a_bad_token_is_a_human_problem(bot, fake, monkeypatch, capsys):
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:wrong-token-abcdefghijklmnopqrstu")
    assert bot() == 1
    err = capsys.readouterr().err
    assert "token" in err and "wrong-token" not in err


def test_model_down_exits_75_and_the_next_run_answers(bot, fake, server):
    from tests.sse_server import free_port

    fake.queue_text(ALICE, "are you there?")
    up, down = server.url, f"http://127.0.0.1:{free_port()}/v1"
    bot.config.write_text(bot.config.read_text().replace(up, down))
    assert bot() == 75
    assert answers(fake, ALICE) == [] and fake.pending_updates  # nothing sent, nothing confirmed
    bot.config.write_text(bot.config.read_text().replace(down, up))
    server.reply(Reply(parts=answer("yes")))
    assert bot() == 0 and answers(fake, ALICE) == ["yes"]


def test_whoami_lists_senders_and_confirms_nothing(fake, bot, tmp_path, capsys):
    fake.queue_text(STRANGER, "hi")
    fake.queue_text(ALICE, "hello", chat_id=GROUP)
    code = main(["telegram", "whoami", "--config", str(tmp_path / "config.yaml")])
    out = capsys.readouterr().out
    assert code == 0 and f"user {STRANGER}" in out and f"chat {GROUP}" in out
    assert len(fake.pending_updates) == 2


def test_a_message_the_model_refuses_does_not_block_the_others(bot, fake, server, capsys):
    refusal = Reply(
        parts=[b'{"error":{"message":"maximum context length exceeded"}}'],
        status=400,
        content_type="application/json",
        framing="length",
    )
    server.reply(refusal, refusal, Reply(parts=answer("hi Bob")))  # tried twice: trimmed once
    fake.queue_text(ALICE, "a very long conversation")
    fake.queue_text(BOB, "hello")
    assert bot() == 0
    assert answers(fake, BOB) == ["hi Bob"]
    assert "/new starts over" in answers(fake, ALICE)[0]
    assert bot() == 0 and len(server.requests) == 3  # neither is asked again


def test_endless_tool_calls_end_the_turn_not_the_bot(bot, fake, server):
    bot.configure("  allowed_chats: []\n")
    text = bot.config.read_text().replace(
        "storage:", "tools: ['hermes:now']\nagent:\n  max_turns: 2\nstorage:"
    )
    bot.config.write_text(text)
    from tests.sse_server import chunk, sse

    call = {
        "index": 0,
        "id": "c1",
        "type": "function",
        "function": {"name": "now", "arguments": "{}"},
    }
    server.reply(Reply(parts=[sse(chunk(tool_calls=[call]), chunk(finish="tool_calls"))]))
    fake.queue_text(ALICE, "loop forever")
    assert bot() == 0 and len(server.requests) == 2
    assert bot() == 0 and len(server.requests) == 2


def test_a_final_whose_reply_was_lost_is_not_answered_again(bot, fake, server):
    bot.configure("")
    text = bot.config.read_text().replace("streaming:\n", "streaming:\n  enabled: false\n")
    bot.config.write_text(text)
    server.reply(Reply(parts=answer("maybe delivered")))
    fake.queue_text(ALICE, "hi")
    fake.drop_connection("sendMessage")
    assert bot() == 0
    assert bot() == 0 and len(server.requests) == 1  # a repeat could post it twice
    assert len(fake.calls_to("sendMessage")) == 1


def test_a_second_poller_stops_a_long_poll_too(bot, fake, capsys):
    fake.poll_conflict = True
    code = main(["telegram", "poll", "--config", str(bot.config)])
    err = capsys.readouterr().err
    assert code == 75 and "only one may" in err and err.count("\n") == 1


def test_a_stranger_is_told_once_and_group_chatter_is_ignored(bot, fake, server):
    bot.configure("  deny_message: Private bot.\n")
    fake.queue_text(STRANGER, "hi")
    fake.queue_text(STRANGER, "hi again")
    fake.queue_text(STRANGER, "just chatting", chat_id=GROUP)
    assert bot() == 0 and not server.requests
    assert answers(fake, STRANGER) == ["Private bot."] and answers(fake, GROUP) == []


def test_only_our_own_mentions_and_commands_count(bot, fake, server):
    bot.configure("  group_mode: mention\n")
    server.reply(Reply(parts=answer("mine")))
    fake.queue_text(ALICE, "@hermes_test_bot2 not for us", chat_id=GROUP)
    fake.queue_text(ALICE, "/new@other_bot", chat_id=ALICE)
    fake.queue_text(ALICE, "@hermes_test_bot for us", chat_id=GROUP)
    assert bot() == 0
    assert prompts(server) == ["Test: for us"]  # another bot's command is not ours anywhere
    assert not fake.pending_updates


def test_service_messages_get_no_text_only_reply(bot, fake, server):
    join = {
        "message": {
            "message_id": 9,
            "date": 0,
            "chat": {"id": ALICE, "type": "private"},
            "from": {"id": ALICE, "is_bot": False, "first_name": "A"},
            "pinned_message": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": ALICE, "type": "private"},
            },
        }
    }
    fake.queue_update(join)
    assert bot() == 0 and answers(fake, ALICE) == [] and not fake.pending_updates


def test_a_network_setup_problem_is_for_a_human_not_a_retry(bot, fake, capsys):
    # SOCKS needs PySocks: never sent (and a proxy is never used for loopback, so the
    # bot's address here is not one)
    bot.configure("  proxy: socks5://127.0.0.1:9\n  api_base: http://api.telegram.invalid\n")
    fake.queue_text(ALICE, "hi")
    assert bot() == 1
    err = capsys.readouterr().err
    assert "cannot reach Telegram" in err and "telegram.proxy" in err and err.count("\n") == 1
