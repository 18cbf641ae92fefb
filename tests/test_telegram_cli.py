"""`hermes telegram send` end to end: the local SSE server and the fake Bot API together."""

from __future__ import annotations

import sys

import pytest

from hermes_min.cli import main
from tests.fake_botapi import FakeBotAPI
from tests.helpers import FakeTTY
from tests.sse_server import Reply, answer, chunk, sse

CHAT = 5150


@pytest.fixture
def fake():
    with FakeBotAPI(per_chat_interval=0.02) as server:
        yield server
        server.assert_clean()


@pytest.fixture
def env(monkeypatch, tmp_path, fake, server):
    monkeypatch.setattr(sys, "stdin", FakeTTY())
    config = tmp_path / "config.yaml"
    config.write_text(
        f"provider:\n  base_url: {server.url}\n  model: m\n  max_retries: 0\n"
        f"telegram:\n  api_base: {fake.api_base}\n"
        "streaming:\n  edit_interval: 0.05\n  buffer_threshold: 5\n",
        encoding="utf-8",
    )
    token = tmp_path / "token"
    token.write_text(fake.token + "\n", encoding="utf-8")
    monkeypatch.setenv("HERMES_CONFIG", str(config))
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", fake.token)
    return config


def run(capsys, *argv):
    code = main(["telegram", "send", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_send_streams_the_answer_and_exits_0_quietly(env, fake, server, capsys):
    server.reply(Reply(parts=answer("The **alerts** ", "were quiet ", "today.")))
    code, out, err = run(capsys, "--chat-id", str(CHAT), "Summarise", "today's", "alerts")
    assert (code, out, err) == (0, "", "")
    [message] = fake.messages(CHAT)
    assert message.text == "The alerts were quiet today."
    assert server.requests[0]["json"]["messages"][-1]["content"] == "Summarise today's alerts"


def test_send_into_a_topic_as_a_reply(env, fake, server, capsys):
    fake.add_topic(-100500, 9)
    server.reply(Reply(parts=answer("in the topic")))
    code, _, _ = run(capsys, "--chat-id", "-100500", "--thread-id", "9", "--reply-to", "3", "q")
    assert code == 0
    send = fake.calls_to("sendMessage")[-1].payload
    assert send["message_thread_id"] == 9 and send["reply_parameters"]["message_id"] == 3


def test_model_failure_delivers_the_partial_and_exits_1(env, fake, server, capsys):
    server.reply(Reply(parts=[sse(chunk("half of it"), done=False)]))
    code, _, err = run(capsys, "--chat-id", str(CHAT), "q")
    assert code == 1 and "cut off" in err and err.count("\n") == 1
    assert fake.messages(CHAT)[-1].text.startswith("half of it")


def test_blocked_chat_says_what_was_not_delivered(env, fake, server, capsys):
    fake.block_chat(CHAT)
    server.reply(Reply(parts=answer("nobody reads this")))
    code, out, err = run(capsys, "--chat-id", str(CHAT), "q")
    assert code == 1 and "delivered 0 of" in err and "blocked" in err
    assert fake.token.split(":")[1] not in out + err


def test_token_file_for_cron(env, fake, server, capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN")
    token_line = f"telegram:\n  token_file: {tmp_path / 'token'}\n"
    env.write_text(env.read_text().replace("telegram:\n", token_line), encoding="utf-8")
    server.reply(Reply(parts=answer("from cron")))
    assert run(capsys, "--chat-id", str(CHAT), "q")[0] == 0
    assert fake.messages(CHAT)[-1].text == "from cron"


@pytest.mark.parametrize(
    "argv, words",
    [
        (["q"], "--chat-id"),
        (["--chat-id", "not-a-chat", "q"], "not a chat id"),
    ],
)
def test_usage_errors(env, capsys, argv, words):
    code, _, err = run(capsys, *argv)
    assert code == 2 and words in err and err.startswith("hermes: ")


def test_missing_token_is_a_config_error(env, capsys, monkeypatch):
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN")
    code, _, err = run(capsys, "--chat-id", "1", "q")
    assert code == 2 and "TELEGRAM_BOT_TOKEN" in err
