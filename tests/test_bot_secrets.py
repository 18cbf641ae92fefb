"""Issue 10: the bot token and the API keys never reach stderr, a log or a chat, whatever a
gateway echoes back."""

from __future__ import annotations

import logging
import sys

import pytest

from hermes_min.cli import main
from hermes_min.connection import HttpSession
from hermes_min.errors import NetworkError
from hermes_min.telegram.botapi import BotAPI, telegram_settings
from tests.fake_botapi import FakeBotAPI
from tests.sse_server import Reply as ModelReply
from tests.sse_server import answer as model_answer
from tests.sse_server import free_port
from tests.test_poll import ALICE, FakeTTY

API_KEY = "sk-test-hermes-0123456789abcdefghij"


@pytest.fixture
def fake():
    with FakeBotAPI(per_chat_interval=0.01, group_window=1.0) as server:
        yield server
        server.assert_clean()


@pytest.fixture
def config(fake, server, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdin", FakeTTY())
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", fake.token)
    monkeypatch.setenv("HERMES_API_KEY", API_KEY)
    path = tmp_path / "config.yaml"
    path.write_text(
        f"provider:\n  base_url: {server.url}\n  model: m\n  max_retries: 0\n"
        f"telegram:\n  api_base: {fake.api_base}\n  allowed_users: [{ALICE}]\n"
        f"storage:\n  path: {tmp_path / 'hermes.db'}\n"
        "streaming:\n  edit_interval: 0.02\n  buffer_threshold: 3\n",
        encoding="utf-8",
    )
    return path


def secret_part(token: str) -> str:
    return token.split(":", 1)[1]  # the part before the colon is the bot's public id


def everything_said(fake: FakeBotAPI) -> str:
    """Every text the bot sent to Telegram: previews, drafts, finals, edits."""
    return "\n".join(str(call.payload.get("text", "")) for call in fake.calls)


COMMANDS = {
    "whoami": (["telegram", "whoami"], "getUpdates"),
    "send": (["telegram", "send", "--chat-id", str(ALICE), "hello"], "sendMessage"),
    "poll": (["telegram", "poll", "--once", "-v"], "getMe"),
}


def echoes(fake: FakeBotAPI, method: str, how: str) -> None:
    """A gateway that quotes the request path, token and all, in its error (a 400: a
    refusal, so nothing waits for retries)."""
    path = f"/bot{fake.token}/{method}"
    if how == "description":
        fake.fail(method, 400, f"Bad Request: upstream refused {path}", times=10)
    else:
        page = f"<html><body><h1>400 Bad Request</h1><p>POST {path}</p></body></html>"
        fake.reply(method, 400, page, times=10)


@pytest.mark.parametrize("how", ["description", "html"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_gateway_echoing_the_token_never_shows_it(
    fake, server, config, capsys, caplog, command, how
):
    argv, method = COMMANDS[command]
    echoes(fake, method, how)
    fake.queue_text(ALICE, "hi")
    server.reply(ModelReply(parts=model_answer("an answer")))
    with caplog.at_level(logging.DEBUG):
        code = main([*argv, "--config", str(config)])
    out, err = capsys.readouterr()
    assert code != 0 and "Traceback" not in err
    logs = "\n".join(record.getMessage() for record in caplog.records)
    for text in (out, err, logs, everything_said(fake)):
        assert secret_part(fake.token) not in text
        assert API_KEY not in text


# ---------------------------------------------------------------------------- 8. connection


def test_the_bot_api_connection_knows_the_token_is_a_secret(fake):
    with BotAPI("4242:short-token", fake.api_base) as api:
        assert set(api.secrets) <= set(api._http.settings.secrets)  # noqa: SLF001


def test_a_connection_error_never_names_the_token():
    token = "4242:not-shaped-like-a-token"  # no pattern would catch it: only the setting
    url = f"http://127.0.0.1:{free_port()}/bot{token}/getMe"
    with HttpSession(telegram_settings(connect_timeout=2, secrets=(token,))) as http:
        with pytest.raises(NetworkError) as caught:
            http.request("POST", url)
    error = caught.value
    assert token not in str(error) and token not in error.detail and "***" in str(error)
