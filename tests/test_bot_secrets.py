"""Issue 10: the bot token and the API keys never reach stderr, a log or a chat, whatever a
gateway echoes back or a model repeats."""

from __future__ import annotations

import logging
import sys

import pytest

from hermes_min.cli import main
from hermes_min.connection import HttpSession
from hermes_min.errors import NetworkError
from hermes_min.events import Done, TextDelta
from hermes_min.message import Message
from hermes_min.telegram.botapi import BotAPI, telegram_settings
from hermes_min.telegram.pacing import Budgets
from hermes_min.telegram.streamer import TelegramStreamer
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


def test_a_model_repeating_secrets_never_puts_them_in_a_chat(fake, server, config):
    token_secret = secret_part(fake.token)
    pieces = ["Your key is ", API_KEY[:9], API_KEY[9:20], API_KEY[20:], " and the token "]
    pieces += [fake.token[:15], fake.token[15:], " is also here. Done."]
    server.reply(ModelReply(parts=model_answer(*pieces)))
    fake.queue_text(ALICE, "what are your secrets?")
    assert main(["telegram", "poll", "--once", "--config", str(config)]) == 0
    said = everything_said(fake)
    assert fake.texts(ALICE) == ["Your key is [secret] and the token [secret] is also here. Done."]
    # Not even the start of one in a preview: a frame never ends in part of a secret.
    for secret in (API_KEY, token_secret):
        assert secret[:8] not in said


def test_previews_hold_back_what_may_be_the_start_of_a_secret(fake):
    secret = "hunter2-very-secret-value"
    budgets = Budgets(0.02, group_interval=0.02, group_window=1.0)
    with BotAPI(fake.token, fake.api_base) as api:
        out = TelegramStreamer(api, -100900, buffer_threshold=1, secrets=(secret,), budgets=budgets)
        out.handle(TextDelta("The password is hunt"))
        fake.wait_for_calls(1, "sendMessage")  # the first preview
        out.handle(TextDelta("er2-very"))  # still maybe the secret: held back
        out.handle(TextDelta("-secret-value, keep it"))
        fake.wait_for_calls(1, "editMessageText")
        out.handle(Done(Message(content="The password is " + secret + ", keep it")))
        out.close()
    previews = [c.payload["text"] for c in fake.calls if "text" in c.payload]
    assert previews[0].startswith("The password is ") and "hunt" not in previews[0]
    assert all(secret[:4] not in text for text in previews)
    assert fake.texts(-100900) == ["The password is [secret], keep it"]


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
