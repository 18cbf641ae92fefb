"""Issue 10: every answer of the bot is bounded (telegram.answer_timeout, --max-seconds plus
a grace); a cut answer is delivered as far as it came, marked as too long, and recorded."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from hermes_min.events import Failed
from hermes_min.message import Message
from hermes_min.telegram import handler
from hermes_min.telegram.botapi import BotAPI
from hermes_min.telegram.streamer import Cutoff, TelegramStreamer
from tests.sse_server import Hold, Pause, chunk, sse
from tests.sse_server import Reply as ModelReply
from tests.sse_server import answer as model_answer
from tests.test_bot_updates import Bot, bot_fixture, fake_fixture  # noqa: F401 - fixtures
from tests.test_poll import ALICE, BOB, answers, prompts

CUT = "[answer cut off: the answer took too long]"


def keep_alive(seconds: float) -> list:
    """A server that sends only SSE comments for `seconds` (a request waiting in its queue):
    read_timeout never counts that as silence."""
    return [part for _ in range(int(seconds / 0.05)) for part in (Pause(0.05), b": ping\n\n")]


def cutoff_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "hermes-cutoff"]


def test_an_answer_past_answer_timeout_is_cut_delivered_and_recorded(bot: Bot, fake, server):
    bot.configure("  answer_timeout: 2\n")
    endless = ModelReply(parts=[sse(chunk("The first part"), done=False), *keep_alive(60)])
    server.reply(endless, ModelReply(parts=model_answer("hi Bob")))
    fake.queue_text(ALICE, "tell me everything")
    fake.queue_text(BOB, "hello")
    started = time.monotonic()
    assert bot() == 0
    assert time.monotonic() - started < 30  # not the minute the server would have taken
    assert answers(fake, ALICE) == [f"The first part\n\n{CUT}"]
    assert answers(fake, BOB) == ["hi Bob"]  # and the queue moved on
    assert not cutoff_threads()
    assert bot() == 0 and prompts(server) == ["tell me everything", "hello"]  # recorded


def test_an_answer_with_nothing_shown_yet_is_cut_and_says_so(bot: Bot, fake, server):
    bot.configure("  answer_timeout: 1\n")
    hold = Hold(limit=60)
    server.reply(ModelReply(before=hold, parts=model_answer("too late")))
    fake.queue_text(ALICE, "think hard")
    try:
        assert bot() == 0
    finally:
        hold.release.set()
    assert answers(fake, ALICE) == ["[no answer: the answer took too long]"]
    assert server.client_gone.is_set()  # the request was abandoned, not left running
    assert bot() == 0 and len(server.requests) == 1
    assert bot.state("offset") is not None and fake.pending_updates == []


def test_max_seconds_cuts_the_answer_in_progress_after_the_grace(
    bot: Bot, fake, server, monkeypatch
):
    monkeypatch.setattr(handler, "ANSWER_GRACE", 1.5)  # the real one is 10 s
    hold = Hold(limit=60)
    server.reply(
        ModelReply(parts=[sse(chunk("So far, so good"), done=False), hold]),
        ModelReply(parts=model_answer("next")),
    )
    fake.queue_text(ALICE, "a long one")
    fake.queue_text(BOB, "after it")
    started = time.monotonic()
    try:
        code = bot("--max-seconds", "1")
    finally:
        hold.release.set()
    assert code == 0 and time.monotonic() - started < 30
    assert answers(fake, ALICE) == [f"So far, so good\n\n{CUT}"]
    assert answers(fake, BOB) == [] and prompts(server) == ["a long one"]  # not started
    assert len(fake.pending_updates) == 2  # Telegram learns the offset at the next poll
    assert bot() == 0 and prompts(server) == ["a long one", "after it"]
    assert fake.pending_updates == []


def test_a_long_poll_never_holds_its_lock_past_max_seconds(bot: Bot, fake, server, monkeypatch):
    from hermes_min.cli import main
    from hermes_min.telegram.runlock import lock_path, run_lock

    monkeypatch.setattr(handler, "ANSWER_GRACE", 1.5)
    server.reply(ModelReply(parts=[sse(chunk("Streaming"), done=False), *keep_alive(60)]))
    fake.queue_text(ALICE, "go on forever")
    started = time.monotonic()
    assert main(["telegram", "poll", "--max-seconds", "1", "--config", str(bot.config)]) == 0
    assert time.monotonic() - started < 30
    with run_lock(lock_path(bot.db, fake.token), wait=False):
        pass  # free: another run could start now
    assert answers(fake, ALICE) == [f"Streaming\n\n{CUT}"] and not cutoff_threads()


@pytest.mark.parametrize("before", ["", "Let me wait. "])
def test_a_tool_that_runs_past_the_bound_is_cut_too(bot: Bot, fake, server, tmp_path, before):
    tools = tmp_path / "slowtools.py"
    tools.write_text(
        "import threading\n\n"
        "def wait_forever() -> str:\n"
        '    """Never returns on its own."""\n'
        "    threading.Event().wait(60)\n"
        "    return 'done'\n",
        encoding="utf-8",
    )
    bot.configure("  answer_timeout: 1\n", top="tools: ['slowtools:wait_forever']\n")
    call = {"index": 0, "id": "c1", "type": "function"}
    call["function"] = {"name": "wait_forever", "arguments": "{}"}
    said = [chunk(before)] if before else []
    server.reply(
        ModelReply(parts=[sse(*said, chunk(tool_calls=[call]), chunk(finish="tool_calls"))])
    )
    fake.queue_text(ALICE, "use the tool")
    sys.path.insert(0, str(tmp_path))
    try:
        started = time.monotonic()
        assert bot() == 0
    finally:
        sys.path.remove(str(tmp_path))
    assert time.monotonic() - started < 30
    said = answers(fake, ALICE)
    assert said[-1].endswith("the answer took too long]")
    if before:  # what was said before the tool call reached the chat once, not again
        assert said[0] == before.strip() and said[-1] == CUT, said
        assert sum(before.strip() in text for text in said) == 1, said


# ---------------------------------------------------------------------------- the timer


def test_cutoff_fires_once_and_close_is_idempotent():
    fired = threading.Event()
    calls = []

    def cut() -> None:
        calls.append(1)
        fired.set()

    with Cutoff(0, cut) as cutoff:
        assert fired.wait(10)
    assert cutoff.fired and calls == [1]
    cutoff.close()
    assert not cutoff_threads()


def test_cutoff_closed_in_time_never_fires():
    cutoff = Cutoff(60, lambda: pytest.fail("fired"))
    cutoff.close()
    cutoff.close()
    assert not cutoff.fired and not cutoff_threads()
    assert Cutoff(None, lambda: None).fired is False  # no bound: no thread at all


def test_a_failed_answer_with_the_cut_reason_says_too_long(fake):
    from hermes_min.errors import StreamError

    with BotAPI(fake.token, fake.api_base) as api:
        out = TelegramStreamer(api, -100557, enabled=False, announce_failures=False)
        out.cut("the answer took too long")
        out.handle(Failed(StreamError("interrupted", "interrupted", partial=Message("So far"))))
        out.close()
    assert [m.text for m in fake.messages(-100557)] == [f"So far\n\n{CUT}"]
