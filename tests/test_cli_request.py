"""Issue 12, "request options and usage": -o KEY VALUE on hermes, chat and telegram send,
-u after the answer, and --json naming the conversation."""

from __future__ import annotations

import io
import json
import os
import re
import sys

import pytest

from tests.fake_botapi import FakeBotAPI
from tests.helpers import FakeTTY, one_line, run
from tests.sse_server import Reply, answer, chunk, sse

USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": 30,
    "total_tokens": 42,
    "prompt_tokens_details": {"cached_tokens": 8},
    "completion_tokens_details": {"reasoning_tokens": 10},
}


@pytest.fixture(autouse=True)
def setup(monkeypatch, server, tmp_path):
    monkeypatch.setattr(sys, "stdin", FakeTTY())
    config = tmp_path / "config.yaml"
    config.write_text(
        f"provider:\n  base_url: {server.url}\n  model: m\n  max_retries: 0\n"
        "  extra_body: {temperature: 1.0, top_p: 0.5}\n"
    )
    monkeypatch.setenv("HERMES_CONFIG", str(config))
    return config


def test_options_are_request_body_keys_read_as_json_over_extra_body(server, capsys):
    server.reply(Reply(parts=answer("ok")))
    code, _, _ = run(
        capsys,
        *("-o", "temperature", "0.2"),
        *("-o", "max_tokens", "300"),
        *("-o", "reasoning_effort", "low"),
        *("-o", "logprobs", "true"),
        *("-o", "seed", "null"),
        *("-o", "response_format", '{"type": "json_object"}'),
        *("-o", "stop", '["\\n\\n"]'),
        *("-o", "user", '"42"'),
        *("-o", "note", "NaN"),
        "hi",
    )
    assert code == 0
    body = server.requests[0]["json"]
    assert body["temperature"] == 0.2 and body["top_p"] == 0.5  # over extra_body, key by key
    assert body["max_tokens"] == 300 and body["reasoning_effort"] == "low"
    assert body["logprobs"] is True and body["seed"] is None
    assert body["response_format"] == {"type": "json_object"} and body["stop"] == ["\n\n"]
    assert body["user"] == "42" and body["note"] == "NaN"  # NaN is no JSON a server reads
    assert body["model"] == "m" and body["stream"] is True


@pytest.mark.parametrize("key", ["model", "messages", "stream", "tools"])
def test_the_keys_hermes_sets_are_refused(server, capsys, key):
    code, out, err = run(capsys, "-o", key, "x", "hi")
    assert code == 2 and out == "" and f"-o {key}" in one_line(err)
    assert server.requests == []


def test_extra_body_may_not_replace_the_model(server, capsys, setup):
    setup.write_text(f"provider:\n  base_url: {server.url}\n  extra_body: {{model: foo}}\n")
    code, _, err = run(capsys, "-m", "m", "hi")
    assert code == 2 and "provider.extra_body" in one_line(err) and "model" in err
    assert server.requests == []


def test_an_infinite_number_is_refused(server, capsys):
    code, _, err = run(capsys, "-o", "temperature", "1e999", "hi")
    assert code == 2 and "finite" in one_line(err) and server.requests == []


def test_options_in_chat(server, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("one\ntwo\n"))
    server.reply(Reply(parts=answer("a")), Reply(parts=answer("b")))
    assert run(capsys, "chat", "-o", "temperature", "0")[0] == 0
    assert [r["json"]["temperature"] for r in server.requests] == [0, 0]


def test_options_in_telegram_send(server, capsys, monkeypatch):
    with FakeBotAPI(per_chat_interval=0.02) as bot:
        monkeypatch.setenv("TELEGRAM_BOT_TOKEN", bot.token)
        server.reply(Reply(parts=answer("sent")))
        code, _, _ = run(
            capsys,
            *("telegram", "send", "--chat-id", "7", "-o", "max_tokens", "64", "hi"),
            *("--config", str(_with_bot(bot, server, monkeypatch))),
        )
        assert code == 0 and server.requests[0]["json"]["max_tokens"] == 64
        bot.assert_clean()


def _with_bot(bot, server, monkeypatch):
    path = os.environ["HERMES_CONFIG"]
    with open(path, "a") as config:
        config.write(f"telegram:\n  api_base: {bot.api_base}\nstreaming:\n  edit_interval: 0.05\n")
    return path


_LINE = re.compile(
    r"^hermes: usage: 12 in \(8 cached\), 30 out \(10 reasoning\); \d+\.\d s "
    r"\(first token after \d+\.\d s\)(, \d+\.\d tokens/s)?$"
)


def test_usage_after_the_answer(server, capsys):
    server.reply(Reply(parts=answer("An", " answer", usage=USAGE)))
    code, out, err = run(capsys, "-u", "hi")
    assert (code, out) == (0, "An answer\n")
    assert _LINE.match(one_line(err).rstrip("\n")), err


def test_usage_when_the_server_reports_none(server, capsys):
    server.reply(Reply(parts=answer("ok")))
    code, _, err = run(capsys, "--usage", "hi")
    assert code == 0 and "usage: the server reported no token counts" in one_line(err)


@pytest.mark.parametrize(
    "reply",
    [
        Reply(
            parts=[b'{"error": {"message": "no such model"}}'],
            status=404,
            content_type="application/json",
            framing="length",
        ),
        Reply(parts=[sse(chunk("cut "), done=False)], framing="close"),  # the stream breaks
    ],
    ids=["404", "broken"],
)
def test_a_failed_answer_is_one_line_even_with_usage(server, capsys, reply):
    """-u reports an answer: a request that failed says only why (one line, as always)."""
    server.reply(reply)
    code, _, err = run(capsys, "-u", "hi")
    assert code == 1 and "usage:" not in one_line(err)


def test_usage_in_chat_only_after_an_answer(server, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("one\ntwo\n"))
    refused = Reply(
        parts=[b'{"error": {"message": "no"}}'], status=400, content_type="application/json"
    )
    server.reply(refused, Reply(parts=answer("b", usage=USAGE)))
    code, out, err = run(capsys, "chat", "-u")
    lines = err.splitlines()
    assert (code, out) == (0, "b\n") and len(lines) == 2, err
    assert "HTTP 400" in lines[0] and _LINE.match(lines[1]), err  # the failure, then b's usage


def test_usage_in_chat_after_each_answer(server, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("one\ntwo\n"))
    server.reply(Reply(parts=answer("a", usage=USAGE)), Reply(parts=answer("b", usage=USAGE)))
    code, out, err = run(capsys, "chat", "-u")
    assert (code, out) == (0, "a\nb\n")
    lines = err.splitlines()
    assert len(lines) == 2 and all(_LINE.match(line) for line in lines), err


def test_json_names_the_conversation(server, capsys):
    server.reply(Reply(parts=answer("ok")))
    code, out, _ = run(capsys, "--json", "hi")
    cid = json.loads(out)["conversation_id"]
    _, listed, _ = run(capsys, "history", "--json")
    assert code == 0 and [c["id"] for c in json.loads(listed)] == [cid]


def test_json_without_a_log_names_none(server, capsys):
    server.reply(Reply(parts=answer("ok")))
    code, out, _ = run(capsys, "--json", "--no-log", "hi")
    assert code == 0 and json.loads(out)["conversation_id"] is None
