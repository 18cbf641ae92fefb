"""Issue 5's hard guarantees for `hermes telegram poll`, with real processes.

Each run is `python bin/hermes telegram poll ...` as a child process; the fake Bot API and
the model (an SSE server) live in this process on 127.0.0.1. The children are killed with
SIGKILL at random and at chosen moments, overlapped, signalled while streaming, and fed
Telegram and model outages; the chats must end with every message answered, and answered
twice only where a kill fell between Telegram accepting the final and the local write.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from hermes_min.storage import Store
from tests.fake_botapi import FakeBotAPI
from tests.helpers import bounded_wait, until
from tests.processes import wait_until_asleep
from tests.sse_server import (
    Hold,
    Pause,
    Reply,
    SSEServer,
    answer,
    chunk,
    free_port,
    sse,
)

ROOT = Path(__file__).resolve().parents[1]
HERMES = ROOT / "bin" / "hermes"
USERS = (111, 112, 113, 114, 115)
EX_TEMPFAIL = 75

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="needs Linux /proc to watch the children"
)


SPEAKER = "Test: "  # the fake's users are all named Test


def expected(prompt: str) -> str:
    """What the echo model answers to `prompt` (and the chat shows)."""
    return f"Answer to {prompt}"


class EchoModel(SSEServer):
    """Serves queued Replies first; after them it answers each request from its prompt
    ("Answer to <last user message>"), so every answer in a chat names its message."""

    def _choose(self, request: dict) -> Reply:
        if self.replies:
            return self.replies.pop(0)
        pieces = answer("Answer ", "to ", self.prompt(request))
        # A short trickle, as a model streams: gives kills something to land in.
        return Reply(parts=[pieces[0], Pause(0.01), pieces[1], Pause(0.01), *pieces[2:]])

    @staticmethod
    def prompt(request: dict) -> str:
        """The last user message, without the speaker's name a group message carries."""
        users = [m for m in request["json"]["messages"] if m["role"] == "user"]
        content = users[-1]["content"] if users else ""
        return content[len(SPEAKER) :] if content.startswith(SPEAKER) else content

    def prompts(self) -> list[str]:
        with self._lock:
            return [self.prompt(r) for r in self.requests]


@dataclass
class Result:
    rc: int
    out: str
    err: str
    seconds: float


class Bot:
    """One bot's world: config, state directory, and the commands that run it."""

    def __init__(self, tmp: Path, fake: FakeBotAPI, model: EchoModel, pycache: Path) -> None:
        self.tmp, self.fake, self.model = tmp, fake, model
        self.kills = 0  # children killed with SIGKILL (their requests may arrive cut off)
        self.db = tmp / "state" / "hermes.db"
        self.config = tmp / "hermes.yaml"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp),
            "LANG": "C.UTF-8",
            "TELEGRAM_BOT_TOKEN": fake.token,
            "XDG_CONFIG_HOME": str(tmp / "xdg-config"),
            "XDG_STATE_HOME": str(tmp / "xdg-state"),
            "XDG_DATA_HOME": str(tmp / "xdg-data"),
            "XDG_CACHE_HOME": str(tmp / "xdg-cache"),
            "PYTHONPYCACHEPREFIX": str(pycache),  # byte-compile once per session, not per run
        }
        self.write_config()

    def write_config(self, base_url: str | None = None) -> None:
        self.config.write_text(
            "provider:\n"
            f"  base_url: {base_url or self.model.url}\n"
            "  model: m\n"
            "  max_retries: 0\n"
            "  connect_timeout: 2\n"
            "telegram:\n"
            f"  api_base: {self.fake.api_base}\n"
            f"  allowed_users: [{', '.join(map(str, USERS))}]\n"
            "  group_mode: all\n"
            "storage:\n"
            f"  path: {self.db}\n"
            "streaming:\n"
            "  edit_interval: 0.02\n"
            "  buffer_threshold: 8\n"
        )

    def argv(self, *args: str) -> list[str]:
        return [
            sys.executable,
            str(HERMES),
            "telegram",
            "poll",
            *args,
            "--config",
            str(self.config),
        ]

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            self.argv(*args),
            cwd=self.tmp,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str, timeout: float = 20) -> Result:
        started = time.monotonic()
        proc = self.start(*args)
        return finish(proc, started, timeout)

    def offset(self) -> int | None:
        """The offset the bot recorded (None: nothing handled yet)."""
        if not self.db.exists():
            return None
        with Store(self.db) as store:
            return store.get_state(f"telegram.{self.fake.token.split(':')[0]}.offset")

    def finals(self, chat: int, prompt: str) -> int:
        """How many of the bot's messages in `chat` are the whole answer to `prompt`."""
        return self.fake.texts(chat).count(expected(prompt))


def finish(proc: subprocess.Popen, started: float, timeout: float = 20) -> Result:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the poll run did not end within {timeout}s: {err}") from None
    return Result(proc.returncode, out, err, time.monotonic() - started)


def one_line(result: Result) -> str:
    """An error run's output: nothing on stdout, exactly one line on stderr."""
    assert result.out == "", result.out
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"want one line on stderr, got {result.err!r}"
    return lines[0]


def quiet(result: Result) -> None:
    assert (result.rc, result.out, result.err) == (0, "", ""), result


def signal_delivered(pid: int, signum: int) -> bool:
    """Whether the kernel has delivered `signum` to `pid` (no longer pending). Python runs
    its handler a moment later, in the main thread, once that thread holds the GIL."""
    bit = 1 << (signum - 1)
    with open(f"/proc/{pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status if ":" in line)
    return not (int(fields["ShdPnd"], 16) & bit or int(fields["SigPnd"], 16) & bit)


def waiting_for_lock(pid: int) -> bool:
    """Whether `pid` is blocked in flock (a "->" entry of /proc/locks)."""
    with open("/proc/locks") as locks:
        return any("->" in line and f" {pid} " in line for line in locks)


@pytest.fixture(scope="module")
def pycache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pycache")


@pytest.fixture
def bot(tmp_path: Path, pycache: Path):
    # Flood control stays on, loosened to the client's own pacing (edit_interval 0.02 s);
    # the group cap is off so a burst into one group is not stretched over minutes.
    with FakeBotAPI(per_chat_interval=0.01, per_chat_burst=5, group_limit=0) as fake:
        with EchoModel() as model:
            bot = Bot(tmp_path, fake, model, pycache)
            yield bot
            # A request cut off by SIGKILL reaches the fake without its body, as `{}`.
            cut = [v for v in fake.violations if bot.kills and v["payload"] == {}]
            assert [v for v in fake.violations if v not in cut] == []


# ---------------------------------------------------------------------------- 1. SIGKILL


BURST = 50
CONCURRENCY = 4  # telegram.concurrency's default: the chats answered at once
KILL_ROUNDS = 12
GROUPS = {  # chat id -> topic (None: the group itself)
    -1001000000005: 5,
    -1001000000006: 6,
    -4200: None,
}


def queue_burst(bot: Bot) -> list[tuple[int, str]]:
    """50 messages from allowed users: five private chats, two forum topics, one group
    (eight chats, more than telegram.concurrency: kills land with several in flight)."""
    for chat, topic in GROUPS.items():
        if topic is not None:
            bot.fake.add_topic(chat, topic)
    group_slots = {
        n: chat
        for chat, slots in zip(GROUPS, ((3, 12, 22), (7, 27, 33), (17, 41, 45)))
        for n in slots
    }
    sent = []
    for n in range(BURST):
        prompt = f"m{n:02d}"
        if n in group_slots:
            chat = group_slots[n]
            bot.fake.queue_text(USERS[0], prompt, chat_id=chat, message_thread_id=GROUPS[chat])
        else:
            user = USERS[n % len(USERS)]
            bot.fake.queue_text(user, prompt)
            chat = user
        sent.append((chat, prompt))
    return sent


def _kill_when(
    bot: Bot, proc: subprocess.Popen, condition: Callable[[], bool], kill: bool = True
) -> bool:
    """SIGKILL `proc` once `condition` holds; False if it exited by itself first."""
    until(lambda: proc.poll() is not None or condition(), 10, "the kill moment")
    if proc.poll() is not None or not kill:
        return False
    proc.kill()
    bot.kills += 1
    return True


def test_sigkill_during_a_burst_loses_nothing_and_repeats_at_most_one_per_kill(bot):
    rng = random.Random(5)
    sent = queue_burst(bot)
    fake, model = bot.fake, bot.model
    kills, finished = 0, False

    def count(method: str) -> Callable[[], int]:
        return lambda: len(fake.calls_to(method))

    polls, finals, asks = count("getUpdates"), count("sendMessage"), lambda: len(model.requests)
    for round_ in range(KILL_ROUNDS):
        proc = bot.start("--once")
        moment = round_ % 3
        if moment == 0:  # a random instant after it started polling (the random delay
            # is what is being tested, not a synchronisation)
            after = polls() + 1
            _kill_when(bot, proc, lambda n=after: polls() >= n, kill=False)
            at = time.monotonic() + rng.uniform(0.0, 0.3)
            killed = _kill_when(bot, proc, lambda t=at: time.monotonic() >= t)
        elif moment == 1:  # right after Telegram accepted a final: the repeat window
            target = finals() + rng.randint(1, 4)
            killed = _kill_when(bot, proc, lambda n=target: finals() >= n)
        else:  # while the model is answering
            target = asks() + rng.randint(1, 4)
            killed = _kill_when(bot, proc, lambda n=target: asks() >= n)
        kills += killed
        proc.communicate()
        if not killed:
            assert proc.returncode == 0, proc.returncode
            finished = True
            break
        assert proc.returncode == -signal.SIGKILL, proc.returncode
    if not finished:
        quiet(bot.run("--once"))
    assert kills >= 8, f"only {kills} kills landed; the burst finished too early to test"

    missing = [(c, p) for c, p in sent if bot.finals(c, p) == 0]
    assert not missing, f"lost after {kills} kills: {missing}"
    for chat, topic in GROUPS.items():  # and each answer went to its topic
        threads = {m.message_thread_id for m in fake.messages(chat) if m.text.startswith("Answer")}
        assert threads == {topic}, (chat, threads)
    # Each kill repeats at most the answers in flight: one per chat being answered, at most
    # telegram.concurrency of them; nothing done is asked of the model again.
    repeats = {p: bot.finals(c, p) for c, p in sent if bot.finals(c, p) > 1}
    assert sum(n - 1 for n in repeats.values()) <= kills * CONCURRENCY, (kills, repeats)
    asked = bot.model.prompts()
    assert sorted(set(asked)) == sorted(p for _, p in sent)
    assert len(asked) - BURST <= kills * CONCURRENCY, (kills, len(asked))
    assert bot.fake.pending_updates == []  # and Telegram was told all of it

    # Everything is recorded: one more run asks nothing and sends nothing.
    before = (finals(), asks())
    quiet(bot.run("--once"))
    assert (finals(), asks()) == before
    with sqlite3.connect(bot.db) as db:  # and the file survived every kill whole
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


# ---------------------------------------------------------------------------- 2. overlap


def test_overlapping_runs_exit_75_or_wait_for_the_lock(bot):
    hold = Hold(limit=15)
    bot.model.reply(Reply(before=hold, parts=answer("Answer to ", "first")))
    bot.fake.queue_text(111, "first")
    bot.fake.queue_text(111, "second")
    first = bot.start("--once", "--max-updates", "1")
    try:
        until(bot.model.holding.is_set, 10, "the first run to be mid-answer")

        second = bot.run("--once")
        assert second.rc == EX_TEMPFAIL
        assert "--wait-lock" in one_line(second)
        # It did not wait for the lock: the first run still holds it, mid-answer.
        assert first.poll() is None
        assert len(bot.fake.calls_to("getUpdates")) == 1  # the second never polled

        waiter_started = time.monotonic()
        waiter = bot.start("--once", "--wait-lock")
        until(lambda: waiting_for_lock(waiter.pid) or waiter.poll() is not None, 10, "flock")
        assert waiter.poll() is None
        assert len(bot.fake.calls_to("getUpdates")) == 1
        assert len(bot.model.requests) == 1
    finally:
        hold.release.set()
    quiet(finish(first, waiter_started))
    quiet(finish(waiter, waiter_started))
    assert bot.fake.texts(111) == ["Answer to first", expected("second")]
    assert bot.model.prompts() == ["first", "second"]


# ---------------------------------------------------------------------------- 3. 409


def test_409_conflict_exits_75_and_a_webhook_says_how_to_remove_it(bot):
    bot.fake.queue_text(111, "hello")
    bot.fake.poll_conflict = True
    conflict = bot.run("--once")
    assert conflict.rc == EX_TEMPFAIL
    assert "polling" in one_line(conflict)

    bot.fake.poll_conflict = False
    bot.fake.webhook_url = "https://example.com/hook"
    webhook = bot.run("--once")
    assert webhook.rc == 1
    line = one_line(webhook)
    assert "webhook" in line and "--delete-webhook" in line
    assert bot.model.requests == [] and bot.fake.texts(111) == []

    quiet(bot.run("--once", "--delete-webhook"))
    assert bot.fake.webhook_url == ""
    deletes = bot.fake.calls_to("deleteWebhook")
    assert len(deletes) == 1 and not deletes[0].payload.get("drop_pending_updates")
    assert bot.fake.texts(111) == [expected("hello")]


# ---------------------------------------------------------------------------- 4. storms


def test_telegram_and_model_outages_exit_75_and_nothing_is_lost_or_repeated(bot):
    fake = bot.fake
    fake.queue_text(111, "a")
    for code, retry_after in ((500, None), (502, None), (429, 7)):
        fake.fail("getUpdates", code, retry_after=retry_after)
        failed = bot.run("--once")
        assert failed.rc == EX_TEMPFAIL, (code, failed)
        one_line(failed)
        assert bot.offset() is None and bot.model.requests == []
        assert fake.calls_to("sendMessage") == []
    quiet(bot.run("--once"))
    assert bot.finals(111, "a") == 1

    # The final fails twice with a 5xx, then goes through: one message.
    fake.queue_text(111, "b")
    fake.fail("sendMessage", 500)
    fake.fail("sendMessage", 502)
    quiet(bot.run("--once"))
    assert bot.finals(111, "b") == 1
    assert [c.status for c in fake.calls_to("sendMessage")][-3:] == [500, 502, 200]

    # A flood wait longer than a run may block: 75, and the next run answers.
    fake.queue_text(111, "c")
    fake.fail("sendMessage", 429, "Too Many Requests: retry after 600", retry_after=600)
    offset = bot.offset()
    waited = bot.run("--once")
    assert waited.rc == EX_TEMPFAIL, waited
    one_line(waited)
    assert bot.finals(111, "c") == 0 and bot.offset() == offset
    quiet(bot.run("--once"))
    assert bot.finals(111, "c") == 1

    # The model is down (connection refused): 75, nothing in the chat; back up: answered.
    fake.queue_text(111, "d")
    bot.write_config(f"http://127.0.0.1:{free_port()}/v1")
    texts, asks = fake.texts(111), len(bot.model.requests)
    down = bot.run("--once")
    assert down.rc == EX_TEMPFAIL, down
    one_line(down)
    assert fake.texts(111) == texts and bot.offset() == offset + 1
    bot.write_config()
    quiet(bot.run("--once"))
    assert len(bot.model.requests) == asks + 1

    for prompt in "abcd":
        assert bot.finals(111, prompt) == 1, prompt
    assert fake.texts(111) == [expected(p) for p in "abcd"]
    assert bot.model.prompts().count("a") == 1 and bot.model.prompts().count("b") == 1
    assert fake.pending_updates == []


# ---------------------------------------------------------------------------- 5. long poll


def test_sigterm_while_long_polling_idle_exits_0_at_once(bot):
    proc = bot.start()
    bot.fake.wait_for_pollers(1, timeout=10)
    # Blocked on the poll's socket, not in the instant before: a signal landing there is
    # only acted on when the 50 s poll ends (see tests/processes.py).
    wait_until_asleep(proc.pid)
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    # "At once": well before the long poll (LONG_POLL, 50 s) would have ended by itself.
    quiet(finish(proc, signalled, timeout=20))
    assert bot.model.requests == []


def _stream_with_hold(bot: Bot, hold: Hold) -> None:
    first = "Here is the first half of it,"
    bot.model.reply(
        Reply(
            parts=[
                sse(chunk(first), done=False),
                hold,
                sse(chunk(" and the second half."), done=False),
                sse(chunk(finish="stop"), done=False),
                b"data: [DONE]\n\n",
            ]
        )
    )


def _signal(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    until(lambda: signal_delivered(proc.pid, signal.SIGTERM), 5, "SIGTERM delivered")


def test_sigterm_mid_answer_finishes_it_saves_and_exits_0(bot):
    hold = Hold(limit=15)
    _stream_with_hold(bot, hold)
    bot.fake.queue_text(111, "tell me")
    proc = bot.start()
    try:
        bot.fake.wait_for_calls(1, "sendMessageDraft", timeout=10)  # the answer is streaming
        _signal(proc)
        signalled = time.monotonic()
        assert proc.poll() is None
    finally:
        hold.release.set()
    result = finish(proc, time.monotonic(), timeout=10)
    quiet(result)
    assert bot.fake.texts(111) == ["Here is the first half of it, and the second half."]
    polls = bot.fake.calls_to("getUpdates")  # (a long poll looks for other chats meanwhile)
    assert all(call.time < signalled for call in polls)  # it stopped instead of polling again

    quiet(bot.run("--once"))  # the state was saved: nothing is answered again
    assert len(bot.model.requests) == 1 and len(bot.fake.texts(111)) == 1
    assert bot.fake.pending_updates == []


def test_second_sigterm_mid_answer_exits_143_and_keeps_the_partial(bot):
    def cut() -> bool:  # the cut answer reached the chat, or the run ended
        return bool(bot.fake.calls_to("sendMessage")) or proc.poll() is not None

    hold = Hold(limit=15)
    _stream_with_hold(bot, hold)
    bot.fake.queue_text(111, "tell me")
    proc = bot.start()
    try:
        bot.fake.wait_for_calls(1, "sendMessageDraft", timeout=10)
        _signal(proc)
        assert proc.poll() is None  # the first one lets the answer go on
        cut_at = time.monotonic()
        # CPython keeps a flag per signal, not a count: a second SIGTERM that arrives before
        # the interpreter ran the handler for the first merges with it. So the second is
        # repeated while nothing shows the cut. Not after the cut answer reached the chat:
        # hermes then restores the default SIGTERM action on its way out, and a late one
        # would kill it (-15) instead of letting it exit 143.
        for _ in range(10):
            proc.send_signal(signal.SIGTERM)
            if bounded_wait(cut, 2):
                break
        result = finish(proc, cut_at, timeout=20)
    finally:
        hold.release.set()
    assert result.rc == 128 + signal.SIGTERM, result
    assert result.out == ""
    [partial] = bot.fake.texts(111)
    assert partial.startswith("Here is the first half of it") and "second" not in partial

    quiet(bot.run("--once"))  # recorded: the cut answer is not answered again
    assert len(bot.model.requests) == 1 and len(bot.fake.texts(111)) == 1
    assert bot.fake.pending_updates == []


def _two_held_answers(bot, hold: Hold) -> None:
    for _ in range(2):
        _stream_with_hold(bot, hold)  # one for each chat: the same Hold keeps both open
    bot.fake.queue_text(111, "tell me")
    bot.fake.queue_text(112, "and me")


def test_a_first_sigterm_lets_every_answer_in_progress_finish(bot):
    hold = Hold(limit=15)
    _two_held_answers(bot, hold)
    proc = bot.start()
    try:
        until(
            lambda: (
                len(bot.fake.calls_to("sendMessageDraft")) >= 2
                and {c.chat_id for c in bot.fake.calls_to("sendMessageDraft")} == {111, 112}
            ),
            10,
            "both answers streaming",
        )
        _signal(proc)
        assert proc.poll() is None
    finally:
        hold.release.set()
    quiet(finish(proc, time.monotonic(), timeout=20))
    whole = "Here is the first half of it, and the second half."
    assert bot.fake.texts(111) == [whole] and bot.fake.texts(112) == [whole]
    quiet(bot.run("--once"))  # both recorded: nothing is answered again
    assert len(bot.model.requests) == 2 and bot.fake.pending_updates == []


def test_a_second_sigterm_cuts_every_answer_in_progress_and_keeps_them(bot):
    def cut() -> bool:  # both cut answers reached their chats, or the run ended
        return len(bot.fake.calls_to("sendMessage")) >= 2 or proc.poll() is not None

    hold = Hold(limit=15)
    _two_held_answers(bot, hold)
    proc = bot.start()
    try:
        until(
            lambda: {c.chat_id for c in bot.fake.calls_to("sendMessageDraft")} == {111, 112},
            10,
            "both answers streaming",
        )
        _signal(proc)
        assert proc.poll() is None
        cut_at = time.monotonic()
        for _ in range(10):  # repeated while nothing shows the cut (signals can merge)
            proc.send_signal(signal.SIGTERM)
            if bounded_wait(cut, 2):
                break
        result = finish(proc, cut_at, timeout=20)
    finally:
        hold.release.set()
    assert result.rc == 128 + signal.SIGTERM, result
    for chat in (111, 112):
        [partial] = bot.fake.texts(chat)
        assert partial.startswith("Here is the first half of it") and "second" not in partial
    quiet(bot.run("--once"))  # recorded: the cut answers are not answered again
    assert len(bot.model.requests) == 2 and bot.fake.pending_updates == []


# ---------------------------------------------------------------------------- 6. quiet


def test_a_successful_run_prints_nothing(bot):
    quiet(bot.run("--once"))  # nothing to do
    bot.fake.queue_text(111, "one")
    bot.fake.queue_text(112, "two")
    bot.fake.queue_text(999, "a stranger")
    quiet(bot.run("--once"))
    assert bot.fake.texts(111) == [expected("one")]
    assert bot.fake.texts(112) == [expected("two")]
    assert bot.fake.texts(999) == [] and sorted(bot.model.prompts()) == ["one", "two"]
