"""Pure request/response units, with `responses` standing in for the server."""

from __future__ import annotations

import pytest
import responses

from hermes_min import ChatClient, StreamError, TelegramError
from hermes_min.telegram.botapi import BotAPI

BASE = "http://models.test/v1"
TOKEN = "123456:AAE_unit-test-token-abcdefghijk"


@responses.activate
@pytest.mark.parametrize(
    "body, ids",
    [
        ({"object": "list", "data": [{"id": "a"}, {"id": "b"}]}, ["a", "b"]),
        ({"models": [{"id": "ollama-style"}]}, ["ollama-style"]),
        ([{"id": "bare-list"}], ["bare-list"]),
        ({"data": ["just-a-name"]}, ["just-a-name"]),
    ],
)
def test_model_lists_in_every_shape(body, ids):
    responses.get(f"{BASE}/models", json=body)
    with ChatClient(BASE) as client:
        assert [m["id"] for m in client.models()] == ids


@responses.activate
def test_model_list_errors_are_stream_errors_without_the_key():
    responses.get(
        f"{BASE}/models",
        status=401,
        json={"error": {"message": "Incorrect API key provided: sk-unit-secret-9"}},
    )
    with ChatClient(BASE, "sk-unit-secret-9") as client, pytest.raises(StreamError) as caught:
        client.models()
    assert caught.value.status == 401 and "sk-unit-secret-9" not in str(caught.value)
    assert responses.calls[0].request.headers["Authorization"] == "Bearer sk-unit-secret-9"


@responses.activate
def test_model_list_that_is_not_json():
    responses.get(f"{BASE}/models", body="<html>hi</html>", content_type="text/html")
    with ChatClient(BASE) as client, pytest.raises(StreamError) as caught:
        client.models()
    assert caught.value.kind == "invalid_json"


@responses.activate
def test_bot_api_ok_false_carries_its_parameters():
    responses.post(
        f"https://api.telegram.org/bot{TOKEN}/sendMessage",
        status=429,
        json={
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 7",
            "parameters": {"retry_after": 7},
        },
    )
    with BotAPI(TOKEN) as api, pytest.raises(TelegramError) as caught:
        api.send_message(1, "hi")
    error = caught.value
    assert (error.method, error.error_code, error.retry_after) == ("sendMessage", 429, 7)
    assert TOKEN not in str(error) and TOKEN.split(":")[1] not in repr(error)


@responses.activate
def test_bot_api_result_is_returned():
    responses.post(
        f"https://api.telegram.org/bot{TOKEN}/getMe",
        json={"ok": True, "result": {"id": 123456, "username": "unit_bot"}},
    )
    with BotAPI(TOKEN) as api:
        assert api.get_me()["username"] == "unit_bot"
    assert responses.calls[0].request.headers["Content-Type"] == "application/json"
