"""A hostile review of the bot (issue 11): each test sends the smallest input that broke one
of the promises in README's "The bot, from cron" and "When things break" (each failed before
its fix)."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hermes_min.cli import main
from hermes_min.errors import StreamError
from hermes_min.events import Failed, ToolProgress
from hermes_min.telegram import handler
from hermes_min.telegram.botapi import BotAPI
from hermes_min.telegram.lanes import Lanes
from hermes_min.telegram.pacing import Budgets
from hermes_min.telegram.streamer import TelegramStreamer
from tests.fake_botapi import FakeBotAPI
from tests.helpers import until
from tests.processes import wait_until_asleep
from tests.sse_server import Hold, Pause, SSEServer, answer, chunk, free_port, sse
from tests.sse_server import Reply as ModelReply
from tests.test_bot_failures import FullStore, json_error
from tests.test_bot_updates import Bot, bot_fixture, fake_fixture  # noqa: F401 - fixtures
from tests.test_poll import ALICE, BOB, GROUP, answers, prompts
from tests.test_poll_crash import HERMES, EchoModel, finish, signal_delivered
from tests.test_poll_crash import Bot as CrashBot

needs_proc = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="needs Linux /proc to watch the child"
)


class PromptModel(SSEServer):
    """Answers by the prompt: `slow` ones after `delay` seconds, the rest at once."""

    delay = 1.0

    def _choose(self, request: dict) -> ModelReply:
        prompt = request["json"]["messages"][-1]["content"]
        pause = [Pause(self.delay)] if "slow" in prompt else []
        return ModelReply(parts=[*pause, *answer(f"answer to {prompt}")])


def long_poll(bot: Bot, seconds: float, *argv: str) -> int:
    """A long poll bounded by --max-seconds (so the test cannot hang)."""
    return main(
        ["telegram", "poll", "--max-seconds", str(seconds), "--config", str(bot.config), *argv]
    )


# ---------------------------------------------------------------------------- the ledger


def test_an_answer_that_ends_during_a_getupdates_round_trip_is_not_answered_again(
    bot: Bot, fake, server, monkeypatch
):
    """Nothing answered twice: a long poll repeats an answer that ended mid-fetch."""
    real = BotAPI.get_updates
    fetches = []

    def slow_network(self, *args, **kwargs):
        result = real(self, *args, **kwargs)
        fetches.append(result)
        if len(fetches) == 2 and result:
            # This reply is still on its way back when the answer in flight is recorded
            # (a round trip to Telegram takes 100-300 ms; an answer ends at any instant).
            until(lambda: bot.state("offset") is not None, 10, "the answer recorded")
        return result

    monkeypatch.setattr(BotAPI, "get_updates", slow_network)
    server.reply(ModelReply(parts=answer("the answer")))
    fake.queue_text(ALICE, "question")
    assert long_poll(bot, 2) == 0
    assert prompts(server) == ["question"]
    assert answers(fake, ALICE) == ["the answer"]


# ---------------------------------------------------------------------------- pacing


def test_command_replies_keep_to_the_chats_budget_and_none_is_lost(bot: Bot, tmp_path):
    """0 x 429 under load: the bot's short replies (commands, refusals, apologies) skip pacing."""
    # Telegram's own limits (about 1 message a second in a chat, a burst of 3) and the
    # bot's default pacing (streaming.edit_interval 1.5 s): no test shortcuts.
    with FakeBotAPI() as telegram:
        bot.fake = telegram
        bot.configure()
        bot.config.write_text(bot.config.read_text().replace("  edit_interval: 0.02\n", ""))
        for _ in range(4):  # one more than Telegram's burst: unpaced, the fourth is refused
            telegram.queue_text(ALICE, "/help")
        assert bot() == 0
        refused = [c for c in telegram.calls if c.status == 429]
        assert refused == [] and len(answers(telegram, ALICE)) == 4


# ---------------------------------------------------------------------------- the store


def test_a_full_disk_never_makes_a_later_run_repeat_an_answer_of_another_chat(
    bot: Bot, fake, tmp_path, monkeypatch
):
    """Never a repeat with a store that fails mid-run: an answer finished behind another
    chat's answer in flight is neither recorded nor confirmed, and is sent again."""
    import hermes_min.cli.telegram as cli_telegram

    with PromptModel() as model:
        bot.model = model
        bot.configure("  concurrency: 2\n")
        FullStore(bot.db).close()  # the schema exists; then the disk fills up

        disk = {"full": True}

        def full(config, *, required):
            store = FullStore(config.storage.path)
            store.full = disk["full"]
            return store

        monkeypatch.setattr(cli_telegram, "open_store", full)
        fake.queue_text(ALICE, "slow question")  # first in Telegram's order, answered last
        fake.queue_text(BOB, "quick question")
        assert bot() == 1
        assert answers(fake, BOB) == ["answer to quick question"]
        disk["full"] = False  # space was freed: the next run can write
        assert bot() == 0
        assert answers(fake, BOB) == ["answer to quick question"]  # not sent a second time


# ---------------------------------------------------------------------------- commands


def test_a_command_for_another_bot_is_ignored_in_a_group_that_answers_everything(
    bot: Bot, fake, server
):
    """A group command addressed to another bot is ignored: group_mode all sends it on."""
    bot.configure(f"  allowed_chats: [{GROUP}]\n  group_mode: all\n")
    fake.queue_text(ALICE, "/start@other_bot", chat_id=GROUP)
    fake.queue_text(ALICE, "/new@other_bot please", chat_id=GROUP)
    assert bot() == 0
    assert prompts(server) == [] and answers(fake, GROUP) == []


def test_a_system_prompt_set_for_the_chat_survives_new(bot: Bot, fake, server):
    """/system choices persist per chat: /new silently drops the chat's /system prompt
    (while its /model choice survives)."""
    bot.configure('  system: "Default persona."\n')
    fake.queue_text(ALICE, "/system Answer in French.")
    fake.queue_text(ALICE, "/new")
    fake.queue_text(ALICE, "bonjour")
    assert bot() == 0
    [request] = server.requests
    assert request["json"]["messages"][0] == {"role": "system", "content": "Answer in French."}


# ---------------------------------------------------------------------------- secrets

API_KEY = "sk-review-0123456789abcdefghijklmn"


def test_model_never_shows_the_api_key_a_server_lists_as_its_model(
    bot: Bot, fake, server, monkeypatch
):
    """Secrets never reach a chat: /model repeats the model id a key-echoing server listed."""
    monkeypatch.setenv("HERMES_API_KEY", API_KEY)
    bot.config.write_text(bot.config.read_text().replace("  model: m\n", ""))
    listing = f'{{"data": [{{"id": "{API_KEY}"}}]}}'.encode()
    server.reply(
        ModelReply(parts=[listing], content_type="application/json", framing="length"),
        ModelReply(parts=answer("hello")),
    )
    fake.queue_text(ALICE, "hi")
    fake.queue_text(ALICE, "/model")
    assert bot() == 0
    said = "\n".join(str(call.payload.get("text", "")) for call in fake.calls)
    assert len(answers(fake, ALICE)) == 2 and API_KEY not in said


# ---------------------------------------------------------------------------- outages


def test_a_model_unreachable_while_its_name_is_resolved_still_gets_an_apology(
    bot: Bot, fake, server
):
    """After 3 outage tries an apology: with no provider.model set, an outage while listing
    the models is retried forever and never counted."""
    down = f"http://127.0.0.1:{free_port()}/v1"
    text = bot.config.read_text().replace("  model: m\n", "")
    bot.config.write_text(text.replace(server.url, down))
    fake.queue_text(ALICE, "are you there?")
    codes = [bot() for _ in range(4)]
    assert codes[:2] == [75, 75] and 0 in codes[2:]
    assert answers(fake, ALICE) == [handler._SORRY]


# ---------------------------------------------------------------------------- malformed


def test_a_malformed_update_behind_an_answer_in_flight_is_skipped_once_without_a_spin(
    bot: Bot, fake, caplog
):
    """Malformed updates are skipped with one -v line, and a long poll never spins: an update
    without an id behind an answer in flight is handed out again at every fetch."""
    with PromptModel() as model:
        model.delay = 1.0  # a spin fetches hundreds of times in that second
        bot.model = model
        bot.configure()
        fake.queue_text(ALICE, "slow question")
        fake.queue_raw({"message": {"text": "no update_id"}})
        with caplog.at_level(logging.INFO, logger="hermes_min"):
            assert long_poll(bot, 2) == 0
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    polls = len(fake.calls_to("getUpdates"))
    said = answers(fake, ALICE)
    assert (len(skipped), polls < 10, said) == (1, True, ["answer to slow question"]), polls


# ---------------------------------------------------------------------------- bounds


def test_lanes_forget_chats_that_have_nothing_left():
    """Memory bounded: a long poll keeps one lane per chat (and per skipped update) forever."""
    with Lanes(4, lambda item: "done", retry_after=60.0) as lanes:
        for number in range(2000):
            lanes.put(("update", number), number)  # each skipped update gets a lane of its own
        deadline = time.monotonic() + 20
        while lanes.pending and time.monotonic() < deadline:
            lanes.wait(0.1)
        assert not lanes.pending
        assert len(lanes._lanes) < 100  # noqa: SLF001 - what a long poll keeps in memory


class DrippingBotAPI:
    """A Bot API behind a gateway that answers getUpdates a byte at a time: every read
    returns within the read timeout, the reply never ends. getMe is answered at once."""

    def __init__(self, token: str) -> None:
        self.token = token
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self.api_base = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.dripping = threading.Event()
        self._closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        with conn:
            try:
                while not self._closed.is_set():
                    data = b""
                    while b"\r\n\r\n" not in data:
                        piece = conn.recv(65536)
                        if not piece:
                            return
                        data += piece
                    head, _, body = data.partition(b"\r\n\r\n")
                    length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])
                    while len(body) < length:
                        body += conn.recv(65536)
                    if b"/getUpdates" not in head.split(b"\r\n")[0]:
                        me = {"id": 123456789, "is_bot": True, "username": "hermes_test_bot"}
                        reply = json.dumps({"ok": True, "result": me}).encode()
                        conn.sendall(
                            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                            b"Content-Length: %d\r\n\r\n%s" % (len(reply), reply)
                        )
                        continue
                    reply = b'{"ok": true, "result": []}' + b" " * 500
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n" % len(reply)
                    )
                    self.dripping.set()
                    for byte in reply:
                        if self._closed.wait(2.0):
                            return
                        conn.sendall(bytes([byte]))
            except OSError:
                return

    def close(self) -> None:
        self._closed.set()
        self._sock.close()


def test_a_run_never_holds_its_lock_long_past_max_seconds_whatever_telegram_sends(
    bot: Bot, tmp_path
):
    """A run never holds its lock past --max-seconds + ~30 s: a Bot API reply that trickles
    in (a byte every 2 s) is read for as long as it lasts."""
    telegram = DrippingBotAPI(bot.fake.token)
    try:
        text = bot.config.read_text().replace(bot.fake.api_base, telegram.api_base)
        bot.config.write_text(text)
        env = {**os.environ, "TELEGRAM_BOT_TOKEN": bot.fake.token}
        argv = [sys.executable, str(HERMES), "telegram", "poll", "--once", "--max-seconds", "1"]
        started = time.monotonic()
        proc = subprocess.Popen(
            [*argv, "--config", str(bot.config)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            proc.communicate(timeout=45)  # 1 s + ~30 s, and then some
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        assert telegram.dripping.is_set()
        assert time.monotonic() - started < 45, "still polling 45 s into a 1 s run"
    finally:
        telegram.close()


# ---------------------------------------------------------------------------- signals


@needs_proc
def test_a_second_sigterm_cuts_an_answer_that_was_still_resolving_its_model(tmp_path):
    """A second SIGTERM cuts every answer: one whose agent was being built (GET /models)
    when it came is not cut, and streams to its end."""
    hold = Hold(limit=20)
    listing = ModelReply(
        before=hold,
        parts=[b'{"data": [{"id": "m"}]}'],
        content_type="application/json",
        framing="length",
    )
    slow = [sse(chunk(f"word{n} "), done=False) for n in range(8)]
    trickle = [part for piece in slow for part in (piece, Pause(1.0))]
    streamed = ModelReply(
        parts=[*trickle, sse(chunk(finish="stop"), done=False), b"data: [DONE]\n\n"]
    )
    with FakeBotAPI(per_chat_interval=0.01) as telegram, EchoModel() as model:
        model.reply(listing, streamed)
        crash_bot = CrashBot(tmp_path, telegram, model, tmp_path / "pycache")
        crash_bot.config.write_text(crash_bot.config.read_text().replace("  model: m\n", ""))
        telegram.queue_text(111, "tell me")
        proc = crash_bot.start()
        try:
            until(model.holding.is_set, 10, "the agent being built")
            for _ in range(2):  # the first lets answers finish, the second must cut them
                proc.send_signal(signal.SIGTERM)
                until(lambda: signal_delivered(proc.pid, signal.SIGTERM), 5, "delivered")
                wait_until_asleep(proc.pid)
        finally:
            hold.release.set()
        released = time.monotonic()
        result = finish(proc, released, timeout=30)
    assert result.rc == 128 + signal.SIGTERM, result
    [final] = telegram.texts(111)
    assert "the bot was stopped" in final and time.monotonic() - released < 4, final


@needs_proc
def test_a_cron_run_stopped_by_sigterm_exits_143_even_if_a_chat_met_an_outage(tmp_path):
    """A first SIGTERM in a --once run exits 143: it exits 75 when another chat met an outage."""
    hold = Hold(limit=20)
    held = ModelReply(before=hold, parts=answer("Answer to ", "b"))
    with FakeBotAPI(per_chat_interval=0.01) as telegram, EchoModel() as model:
        model.reply(json_error(503), held)
        crash_bot = CrashBot(tmp_path, telegram, model, tmp_path / "pycache")
        text = crash_bot.config.read_text()
        crash_bot.config.write_text(text.replace("telegram:\n", "telegram:\n  concurrency: 1\n"))
        telegram.queue_text(111, "a")  # the model is down for this one: left for later
        telegram.queue_text(112, "b")
        proc = crash_bot.start("--once")
        try:
            until(model.holding.is_set, 10, "the second answer under way")
            proc.send_signal(signal.SIGTERM)
            until(lambda: signal_delivered(proc.pid, signal.SIGTERM), 5, "delivered")
            wait_until_asleep(proc.pid)
        finally:
            hold.release.set()
        result = finish(proc, time.monotonic(), timeout=20)
    assert telegram.texts(112) == ["Answer to b"]  # the answer in progress finished
    assert result.rc == 128 + signal.SIGTERM, result


def test_a_tool_progress_note_never_waits_past_the_answers_delivery_deadline(fake, monkeypatch):
    """Every wait has a deadline: after a 429 with a long retry_after, a tool progress note
    waits out the whole flood wait, and close() with it, whatever deliver_by says."""
    monkeypatch.setattr(TelegramStreamer, "TYPING_AFTER", 0.0)
    fake.fail("sendChatAction", 429, "Too Many Requests: retry after 300", retry_after=300)
    with BotAPI(fake.token, fake.api_base) as api:
        out = TelegramStreamer(
            api,
            ALICE,
            tool_progress=True,
            edit_interval=0.02,
            budgets=Budgets(0.02),
            deliver_by=time.monotonic() + 3,
        )
        try:
            fake.wait_for_calls(1, "sendChatAction")  # refused: the chat waits 300 s
            out.handle(ToolProgress("search", "c1"))
            out.cut("the answer took too long")
            out.handle(Failed(StreamError("interrupted", "interrupted")))
            closing = threading.Thread(target=out.close, daemon=True)
            closing.start()
            closing.join(10)
            assert not closing.is_alive(), "close() still waiting 10 s after a 3 s deadline"
        finally:
            out._budget._paused_until = float("-inf")  # noqa: SLF001 - let the thread end
            out.close()


def test_a_message_arriving_during_a_cron_run_waits_behind_its_chats_failed_one(
    bot: Bot, fake, server, monkeypatch
):
    """Each chat's messages strictly in order: a --once run's second look answers a new
    message of a chat whose earlier messages it left for the next run."""
    real = BotAPI.get_updates
    looks = []

    def third_arrives(self, *args, **kwargs):
        result = real(self, *args, **kwargs)
        looks.append(len(result))
        if len(looks) == 1:  # sent while the run answers what it found
            fake.queue_text(ALICE, "third")
        return result

    monkeypatch.setattr(BotAPI, "get_updates", third_arrives)
    server.reply(json_error(503), ModelReply(parts=answer("an answer")))
    fake.queue_text(ALICE, "first")  # the model is down for it: left for the next run
    fake.queue_text(ALICE, "second")
    assert bot() == 75
    assert prompts(server) == ["first"] and answers(fake, ALICE) == []


def test_the_last_second_of_a_long_poll_does_not_spin_on_getupdates(bot: Bot, fake):
    """Bounded, never a spin: with under a second of --max-seconds left, the long poll asks
    getUpdates with timeout 0 again and again until the deadline."""
    assert long_poll(bot, 1.5) == 0
    assert len(fake.calls_to("getUpdates")) <= 5, len(fake.calls_to("getUpdates"))
