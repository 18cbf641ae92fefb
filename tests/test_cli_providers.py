"""Issue 12, "named endpoints": providers: in the config, -p NAME and HERMES_PROVIDER,
provider.fallback naming one, hermes models -p NAME; a plain provider: section as before."""

from __future__ import annotations

import json
import sys

import pytest

from tests.helpers import FakeTTY, one_line, run
from tests.sse_server import Reply, SSEServer, answer

KEY = "sk-other-0123456789abcdef"


@pytest.fixture
def other():
    with SSEServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def config(monkeypatch, tmp_path, server, other):
    monkeypatch.setattr(sys, "stdin", FakeTTY())
    path = tmp_path / "config.yaml"
    path.write_text(
        f"provider:\n  base_url: {server.url}\n  model: plain\n  max_retries: 0\n"
        "  extra_body: {top_p: 0.5}\n"
        "providers:\n"
        f"  local: {{base_url: '{server.url}'}}\n"
        "  other:\n"
        f"    base_url: {other.url}\n"
        "    api_key_env: OTHER_KEY\n"
        "    model: x\n"
        "    extra_body: {temperature: 0.1}\n"
    )
    monkeypatch.setenv("HERMES_CONFIG", str(path))
    monkeypatch.setenv("OTHER_KEY", KEY)
    return path


def test_the_plain_provider_section_works_as_before(server, other, capsys):
    server.reply(Reply(parts=answer("ok")))
    assert run(capsys, "hi")[0] == 0
    body = server.requests[0]["json"]
    assert (body["model"], body["top_p"]) == ("plain", 0.5) and other.requests == []


@pytest.mark.parametrize("how", ["-p", "--provider", "HERMES_PROVIDER"])
def test_a_named_provider_is_its_endpoint_key_model_and_body(
    server, other, capsys, monkeypatch, how
):
    other.reply(Reply(parts=answer("ok")))
    argv = ["hi"] if how == "HERMES_PROVIDER" else [how, "other", "hi"]
    if how == "HERMES_PROVIDER":
        monkeypatch.setenv("HERMES_PROVIDER", "other")
    assert run(capsys, *argv)[0] == 0
    [request] = other.requests
    assert request["headers"]["authorization"] == f"Bearer {KEY}"
    assert request["json"]["model"] == "x" and request["json"]["temperature"] == 0.1
    assert "top_p" not in request["json"] and server.requests == []


def test_flags_still_win_over_a_named_provider(other, capsys):
    other.reply(Reply(parts=answer("ok")))
    assert run(capsys, "-p", "other", "-m", "y", "-o", "temperature", "0.9", "hi")[0] == 0
    assert other.requests[0]["json"]["model"] == "y"
    assert other.requests[0]["json"]["temperature"] == 0.9


def test_a_provider_s_key_does_not_follow_a_base_url_elsewhere(server, other, capsys):
    server.reply(Reply(parts=answer("ok")))
    assert run(capsys, "-p", "other", "--base-url", server.url, "hi")[0] == 0
    assert "authorization" not in server.requests[0]["headers"]


def test_models_of_a_named_provider(other, capsys):
    body = {"data": [{"id": "x"}, {"id": "y"}]}
    other.reply(Reply(parts=[json.dumps(body).encode()], content_type="application/json"))
    code, out, _ = run(capsys, "models", "-p", "other")
    assert (code, out) == (0, "x\ny\n")
    assert other.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"


def test_an_unknown_provider_is_one_line(server, capsys):
    code, _, err = run(capsys, "-p", "nope", "hi")
    assert code == 2 and "nope" in one_line(err) and "local, other" in err
    assert server.requests == []


def test_the_fallback_may_name_a_provider(server, other, capsys, config):
    text = config.read_text().replace("  max_retries: 0\n", "  max_retries: 0\n  fallback: other\n")
    config.write_text(text)
    refused = json.dumps({"error": {"message": "no such model"}}).encode()
    server.reply(
        Reply(parts=[refused], status=404, content_type="application/json", framing="length")
    )
    other.reply(Reply(parts=answer("from the fallback")))
    code, out, _ = run(capsys, "hi")
    assert (code, out) == (0, "from the fallback\n")
    assert other.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"
    assert other.requests[0]["json"]["model"] == "x"


def test_a_continued_conversation_stays_on_its_provider(server, other, capsys):
    other.reply(Reply(parts=answer("one")), Reply(parts=answer("two")))
    assert run(capsys, "-p", "other", "hi")[0] == 0
    assert run(capsys, "-c", "more")[0] == 0
    assert len(other.requests) == 2 and server.requests == []
    assert other.requests[1]["headers"]["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize(
    "entry, words",
    [
        ("{api_key: sk-inline-0123456789}", "must not hold the key itself"),
        ("{model: x}", "needs a base_url"),
        ("{base_url: 'http://h', api_key_env: 'not a name'}", "environment variable"),
        ("{base_url: 'http://h', extra_body: {model: y}}", "must not set model"),
    ],
)
def test_a_bad_provider_entry_is_one_line(capsys, config, entry, words):
    config.write_text(f"providers:\n  bad: {entry}\n")
    code, _, err = run(capsys, "-p", "bad", "hi")
    assert code == 2 and words in one_line(err) and "providers.bad" in err
    assert "sk-inline" not in err
