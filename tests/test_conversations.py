"""Conversations from the command line: -c, --cid, history, across processes and kills."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import FakeTTY, run
from tests.sse_server import Hold, Reply, answer, chunk, sse

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def setup(monkeypatch, server):
    monkeypatch.setattr(sys, "stdin", FakeTTY())
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("HERMES_MODEL", "m")


def sent(server, index=-1):
    return server.requests[index]["json"]["messages"]


def test_continue_sends_the_earlier_turns(server, capsys):
    server.reply(Reply(parts=answer("Paris.")), Reply(parts=answer("About 2.1 million.")))
    assert run(capsys, "-s", "Be brief", "Capital of France?")[0] == 0
    assert run(capsys, "-c", "And its population?")[0] == 0
    assert sent(server) == [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And its population?"},
    ]


def test_a_new_prompt_starts_a_new_conversation(server, capsys):
    server.reply(Reply(parts=answer("one")), Reply(parts=answer("two")))
    run(capsys, "first")
    run(capsys, "second")
    assert sent(server) == [{"role": "user", "content": "second"}]


def test_cid_continues_a_given_conversation_by_prefix(server, capsys):
    server.reply(Reply(parts=answer("A")), Reply(parts=answer("B")), Reply(parts=answer("C")))
    run(capsys, "first topic")
    code, out, _ = run(capsys, "history", "--json")
    first_id = json.loads(out)[0]["id"]
    run(capsys, "second topic")
    assert run(capsys, "--cid", first_id[:6], "more on the first")[0] == 0
    assert [m["content"] for m in sent(server)] == ["first topic", "A", "more on the first"]


def test_history_lists_and_shows(server, capsys):
    server.reply(Reply(parts=answer("Blue, because of Rayleigh scattering.")))
    run(capsys, "Why is the sky blue?")
    code, out, _ = run(capsys, "history")
    assert code == 0 and "Why is the sky blue?" in out and "1 turn" in out
    cid = out.split()[0]
    code, out, _ = run(capsys, "history", cid)
    assert "user: Why is the sky blue?" in out and "assistant: Blue" in out
    code, out, _ = run(capsys, "history", cid, "--json")
    assert json.loads(out)["turns"][0]["messages"][1]["content"].startswith("Blue")


def test_continue_without_any_conversation_is_a_usage_error(capsys):
    code, _, err = run(capsys, "-c", "hello")
    assert code == 2 and "no conversation to continue" in err


def test_unknown_cid_is_one_line(capsys, server):
    server.reply(Reply(parts=answer("x")))
    run(capsys, "something")
    code, _, err = run(capsys, "--cid", "zzzzzz", "hi")
    assert code == 2 and err.startswith("hermes: ") and err.count("\n") == 1


def test_a_cut_off_answer_is_kept_and_marked_for_the_next_turn(server, capsys):
    server.reply(Reply(parts=[sse(chunk("partial thou"), done=False)]), Reply(parts=answer("ok")))
    assert run(capsys, "tell me")[0] == 1  # the stream broke: the turn is kept, marked
    run(capsys, "-c", "go on")
    history = sent(server)
    assert history[0] == {"role": "user", "content": "tell me"}
    assert history[1]["role"] == "assistant" and history[1]["content"].startswith("partial thou")
    assert "[cut off: the connection to the server broke]" in history[1]["content"]  # #12


def test_a_tool_turn_is_stored_with_its_calls(server, capsys):
    call = {
        "index": 0,
        "id": "c1",
        "type": "function",
        "function": {"name": "now", "arguments": "{}"},
    }
    server.reply(
        Reply(parts=[sse(chunk(tool_calls=[call]), chunk(finish="tool_calls"))]),
        Reply(parts=answer("It is late.")),
        Reply(parts=answer("ok")),
    )
    assert run(capsys, "--tool", "hermes:now", "What time is it?")[0] == 0
    tool_result = sent(server)[-1]
    assert tool_result["role"] == "tool" and tool_result["tool_call_id"] == "c1"
    run(capsys, "-c", "thanks")
    assert [m["role"] for m in sent(server)] == ["user", "assistant", "tool", "assistant", "user"]


def _hermes(server, tmp_path, *argv, **kwargs):
    env = {
        **os.environ,
        "OPENAI_BASE_URL": server.url,
        "HERMES_MODEL": "m",
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
    }
    env = {k: v for k, v in env.items() if not k.upper().endswith("_PROXY")}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "bin" / "hermes"), *argv],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def test_conversations_persist_across_processes_and_survive_a_kill(server, tmp_path):
    server.reply(Reply(parts=answer("first answer")))
    first = _hermes(server, tmp_path, "first question")
    assert first.communicate(timeout=20)[0] == b"first answer\n"
    server.reply(Reply(parts=[sse(chunk("doomed partial"), done=False), Hold()]))
    doomed = _hermes(server, tmp_path, "-c", "second question")
    try:
        assert server.holding.wait(10)  # the answer is streaming when the kill comes
        doomed.send_signal(signal.SIGKILL)  # mid-turn: nothing of this turn may be half-written
        doomed.communicate(timeout=10)
    finally:
        doomed.kill()
    db = tmp_path / "state" / "hermes" / "hermes.db"
    with sqlite3.connect(db) as check:
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    server.reply(Reply(parts=answer("third answer")))
    third = _hermes(server, tmp_path, "-c", "third question")
    assert third.communicate(timeout=20)[0] == b"third answer\n"
    assert [m["content"] for m in sent(server)] == [
        "first question",
        "first answer",
        "third question",
    ]
