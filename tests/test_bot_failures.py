"""Issue 10: a model that refuses or talks nonsense gets a short reply and the queue moves
on; only outages leave a message for later, and never more than three runs."""

from __future__ import annotations

import pytest

from hermes_min.telegram import poller
from tests.sse_server import Reply as ModelReply
from tests.sse_server import answer as model_answer
from tests.sse_server import chunk, free_port, sse
from tests.test_bot_updates import Bot, bot_fixture, fake_fixture  # noqa: F401 - fixtures
from tests.test_poll import ALICE, BOB, answers

REFUSED = poller._REFUSED
SORRY = poller._SORRY


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
    "400": lambda: json_error(400, "maximum context length exceeded"),
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
        assert answers(fake, ALICE) == []
        assert bot.state("failures") == tries and len(fake.pending_updates) == 2
    assert bot() == 75  # the third try: Alice gets an apology; Bob's turn starts its count
    assert answers(fake, ALICE)[-1] == SORRY and answers(fake, BOB) == []
    first = fake.calls_to("getUpdates")[0].response["result"][0]["update_id"]
    assert bot.state("failures") == 1 and bot.state("offset") == first + 1  # Alice's is done
    bot.config.write_text(bot.config.read_text().replace(url, server.url))
    server.reply(ModelReply(parts=model_answer("here")))
    assert bot() == 0 and answers(fake, BOB) == ["here"]
    assert answers(fake, ALICE)[-1] == SORRY and fake.pending_updates == []


def test_the_failure_count_follows_the_update_not_the_run(bot: Bot, fake, server):
    server.reply(json_error(503), json_error(503), ModelReply(parts=model_answer("fine")))
    fake.queue_text(ALICE, "one")
    assert bot() == 75 and bot() == 75 and bot.state("failures") == 2
    assert bot() == 0 and answers(fake, ALICE) == ["fine"]  # answered on the third try
    server.reply(json_error(503))
    fake.queue_text(ALICE, "two")
    assert bot() == 75 and bot.state("failures") == 1  # a new update starts from one


def test_a_long_poll_spaces_its_tries_of_a_failing_message(bot: Bot, fake, server, monkeypatch):
    from hermes_min.cli import main

    waits = []
    monkeypatch.setattr(poller, "RETRY_SPACING", 0.01)  # the real one is a minute
    real = poller.Poller._back_off

    def back_off(self, failures, reason, **kwargs):
        waits.append(kwargs.get("at_least", 0.0))
        return real(self, failures, reason, **kwargs)

    monkeypatch.setattr(poller.Poller, "_back_off", back_off)
    server.reply(json_error(503))
    fake.queue_text(ALICE, "anyone?")
    argv = ["--max-updates", "1", "--max-seconds", "60", "--config", str(bot.config)]
    assert main(["telegram", "poll", *argv]) == 0
    assert answers(fake, ALICE) == [SORRY] and waits == [0.01, 0.01]
