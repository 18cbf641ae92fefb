"""Issue 12, "conversations that resume": -c and --cid on the conversation's own model and
endpoint, no turn for a request that got no answer, cut answers marked with what happened,
history -q / --model / rm, and -n/--no-log."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hermes_min.storage import Store
from tests.helpers import FakeTTY, one_line, run
from tests.processes import wait_until_asleep
from tests.sse_server import Hold, Reply, SSEServer, answer, chunk, free_port, sse

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def terminal(monkeypatch):
    monkeypatch.setattr(sys, "stdin", FakeTTY())


@pytest.fixture
def other():
    with SSEServer() as srv:
        yield srv


def sent(server, index=-1):
    return server.requests[index]["json"]["messages"]


def listed(capsys, *argv):
    code, out, err = run(capsys, "history", "--json", *argv)
    assert code == 0, err
    return json.loads(out)


# ------------------------------------------------------------------ own model and endpoint


def test_continue_uses_the_conversation_s_model_on_a_multi_model_server(server, capsys):
    # Served in order, whatever the path: a GET /models would take "second" and fail.
    server.reply(Reply(parts=answer("first")), Reply(parts=answer("second")))
    assert run(capsys, "--base-url", server.url, "-m", "a", "hi")[0] == 0
    code, out, err = run(capsys, "--base-url", server.url, "-c", "more")
    assert (code, out) == (0, "second\n"), err
    assert [r["path"] for r in server.requests] == ["/v1/chat/completions"] * 2  # no /models
    assert server.requests[-1]["json"]["model"] == "a"


def test_continue_goes_to_the_conversation_s_endpoint(server, other, capsys, monkeypatch):
    server.reply(Reply(parts=answer("first")), Reply(parts=answer("second")))
    assert run(capsys, "--base-url", server.url, "-m", "a", "hi")[0] == 0
    monkeypatch.setenv("HERMES_BASE_URL", other.url)  # configured now: another endpoint
    monkeypatch.setenv("HERMES_MODEL", "z")
    monkeypatch.setenv("HERMES_API_KEY", "sk-meant-for-the-other-one")
    assert run(capsys, "-c", "more")[0] == 0
    assert other.requests == []
    assert server.requests[-1]["json"]["model"] == "a"
    assert [m["content"] for m in sent(server)] == ["hi", "first", "more"]
    # The key is the configured endpoint's: it does not follow the conversation elsewhere.
    assert "authorization" not in server.requests[-1]["headers"]


def test_cid_too(server, capsys, monkeypatch):
    server.reply(Reply(parts=answer("A")), Reply(parts=answer("B")), Reply(parts=answer("C")))
    run(capsys, "--base-url", server.url, "-m", "a", "first")
    cid = listed(capsys)[0]["id"]
    run(capsys, "--base-url", server.url, "-m", "b", "second")
    assert run(capsys, "--cid", cid[:5], "again")[0] == 0
    assert server.requests[-1]["json"]["model"] == "a"


def test_a_switch_of_model_is_stored(server, capsys):
    server.reply(*(Reply(parts=answer(word)) for word in ("one", "two", "three")))
    run(capsys, "--base-url", server.url, "-m", "a", "hi")
    assert run(capsys, "-c", "-m", "b", "more")[0] == 0
    assert run(capsys, "-c", "again")[0] == 0
    assert [r["json"]["model"] for r in server.requests] == ["a", "b", "b"]


def test_a_switch_of_endpoint_is_stored(server, other, capsys):
    server.reply(Reply(parts=answer("one")))
    other.reply(Reply(parts=answer("two")), Reply(parts=answer("three")))
    run(capsys, "--base-url", server.url, "-m", "a", "hi")
    assert run(capsys, "-c", "--base-url", other.url, "more")[0] == 0
    assert run(capsys, "-c", "again")[0] == 0
    assert len(server.requests) == 1 and len(other.requests) == 2
    assert [r["json"]["model"] for r in other.requests] == ["a", "a"]  # the model stays
    assert [m["content"] for m in sent(other)] == ["hi", "one", "more", "two", "again"]


# ------------------------------------------------------------------ what is a turn


def _refusal(status):
    body = json.dumps({"error": {"message": f"refused with {status}"}}).encode()
    return Reply(parts=[body], status=status, content_type="application/json", framing="length")


@pytest.mark.parametrize("status", [401, 404])
def test_a_refused_request_is_not_a_turn(server, capsys, status):
    server.reply(_refusal(status))
    code, _, _ = run(capsys, "--base-url", server.url, "-m", "m", "hi")
    assert code == 1 and listed(capsys) == []


@pytest.mark.parametrize("status", [401, 404, None])
def test_a_continuation_that_got_no_answer_leaves_no_trace(server, capsys, tmp_path, status):
    config = tmp_path / "config.yaml"
    config.write_text("provider:\n  max_retries: 0\n")
    server.reply(Reply(parts=answer("first")))
    run(capsys, "--config", str(config), "--base-url", server.url, "-m", "m", "hi")
    if status is None:  # connection refused
        argv = ["--base-url", f"http://127.0.0.1:{free_port()}"]
    else:
        server.reply(_refusal(status))
        argv = []
    assert run(capsys, "--config", str(config), *argv, "-c", "lost")[0] == 1
    server.reply(Reply(parts=answer("ok")))
    assert run(capsys, "--config", str(config), "-c", "again")[0] == 0
    assert [m["content"] for m in sent(server)] == ["hi", "first", "again"]
    assert listed(capsys)[0]["turns"] == 2


@pytest.mark.parametrize(
    "reply, note",
    [
        (Reply(parts=[sse(chunk("partial"), done=False)]), "the connection to the server broke"),
        (
            Reply(parts=[sse(chunk("partial"), {"error": {"message": "overloaded"}}, done=False)]),
            "the server reported an error",
        ),
    ],
)
def test_a_cut_answer_is_kept_and_says_what_happened(server, capsys, reply, note):
    server.reply(reply, Reply(parts=answer("ok")))
    assert run(capsys, "--base-url", server.url, "-m", "m", "tell me")[0] == 1
    run(capsys, "-c", "go on")
    assistant = sent(server)[1]
    assert assistant["role"] == "assistant"
    assert assistant["content"] == f"partial\n\n[cut off: {note}]"
    cid = listed(capsys)[0]["id"]
    code, out, _ = run(capsys, "history", cid)
    assert f"[cut off: {note}]" in out and "interrupted" not in out


def test_an_answer_the_user_interrupted_says_so(server, capsys, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    server.reply(Reply(parts=[sse(chunk("partial\n"), done=False), Hold()]))
    child = subprocess.Popen(
        [sys.executable, str(ROOT / "bin" / "hermes"), "--base-url", server.url, "-m", "m", "q"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert child.stdout.readline() == b"partial\n"
        assert server.holding.wait(10)
        wait_until_asleep(child.pid)  # on its next event, which never comes
        child.send_signal(signal.SIGINT)
        child.communicate(timeout=30)
    finally:
        child.kill()
    assert child.returncode == 130
    server.reply(Reply(parts=answer("ok")))
    assert run(capsys, "-c", "go on")[0] == 0
    assert sent(server)[1]["content"] == "partial\n\n\n[interrupted by the user]"


# ------------------------------------------------------------------ history


@pytest.fixture
def three(server, capsys):
    server.reply(
        Reply(parts=answer("Rayleigh scattering.")),
        Reply(parts=answer("About 2.1 million.")),
        Reply(parts=answer("Mostly nitrogen.")),
    )
    run(capsys, "--base-url", server.url, "-m", "small", "Why is the sky blue?")
    run(capsys, "--base-url", server.url, "-m", "large", "Population of Paris?")
    run(capsys, "--base-url", server.url, "-m", "small", "What is air made of?")
    return {c["title"]: c["id"] for c in listed(capsys)}


@pytest.fixture(params=["fts5", "scan"])
def search(request, monkeypatch):
    """Both ways of searching: the FTS5 index, and the plain scan of an SQLite without it."""
    if request.param == "scan":
        monkeypatch.setattr(Store, "_has_fts5", lambda self: False)
    return request.param


@pytest.mark.parametrize(
    "query, titles",
    [
        ("sky", {"Why is the sky blue?"}),
        ("RAYLEIGH", {"Why is the sky blue?"}),  # the answers count, in any case
        ("paris million", {"Population of Paris?"}),  # every word, anywhere in it
        ("paris nitrogen", set()),
        ('"sky AND (', set()),  # FTS5 syntax is text to find, never an error
        ("%", set()),
        ("What", {"What is air made of?"}),
    ],
)
def test_history_finds_conversations_by_their_text(three, capsys, search, query, titles):
    assert {c["title"] for c in listed(capsys, "-q", query)} == titles


def test_history_filters_by_model(three, capsys):
    assert {c["title"] for c in listed(capsys, "--model", "small")} == {
        "Why is the sky blue?",
        "What is air made of?",
    }
    assert [c["title"] for c in listed(capsys, "--model", "large", "-q", "paris")] == [
        "Population of Paris?"
    ]


def test_history_rm_deletes_one(server, three, capsys, search):
    cid = three["Population of Paris?"]
    assert listed(capsys, "-q", "paris") != []  # the index (if any) now holds it
    code, out, err = run(capsys, "history", "rm", cid[:6])
    assert code == 0 and out == "" and cid in one_line(err)
    assert {c["id"] for c in listed(capsys)} == set(three.values()) - {cid}
    assert listed(capsys, "-q", "paris") == []
    code, _, err = run(capsys, "history", cid)
    assert code == 2 and "no conversation" in err
    # Ids freed by the delete are used again: the new text is found, the old is not.
    server.reply(Reply(parts=answer("Lyon is smaller.")))
    run(capsys, "--base-url", server.url, "-m", "m", "And Lyon?")
    assert [c["title"] for c in listed(capsys, "-q", "lyon")] == ["And Lyon?"]
    assert listed(capsys, "-q", "million") == []


def test_a_delete_without_fts5_is_made_good_by_the_next_search_with_it(
    server, three, capsys, monkeypatch
):
    assert listed(capsys, "-q", "paris") != []  # the FTS5 index is built
    with monkeypatch.context() as without:
        without.setattr(Store, "_has_fts5", lambda self: False)
        assert run(capsys, "history", "rm", three["Population of Paris?"])[0] == 0
    server.reply(Reply(parts=answer("Lyon is smaller.")))
    run(capsys, "--base-url", server.url, "-m", "m", "And Lyon?")
    assert [c["title"] for c in listed(capsys, "-q", "lyon")] == ["And Lyon?"]
    assert listed(capsys, "-q", "million") == []


@pytest.mark.parametrize("argv", [["rm"], ["rm", "a", "b"], ["a", "b"]])
def test_history_usage_errors(capsys, argv):
    code, _, err = run(capsys, "history", *argv)
    assert code == 2 and one_line(err)


@pytest.mark.parametrize("flag", ["-n", "--no-log"])
def test_no_log_stores_nothing(server, capsys, flag):
    server.reply(Reply(parts=answer("ok")))
    assert run(capsys, "--base-url", server.url, "-m", "m", flag, "secret plans")[0] == 0
    assert listed(capsys) == []


def test_no_log_in_chat(server, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n"))
    server.reply(Reply(parts=answer("ok")))
    assert run(capsys, "chat", "--base-url", server.url, "-m", "m", "-n")[0] == 0
    assert listed(capsys) == []


def test_no_log_may_continue_without_storing(server, capsys):
    server.reply(Reply(parts=answer("one")), Reply(parts=answer("two")))
    run(capsys, "--base-url", server.url, "-m", "m", "hi")
    assert run(capsys, "-c", "-n", "more")[0] == 0
    assert [m["content"] for m in sent(server)] == ["hi", "one", "more"]
    assert listed(capsys)[0]["turns"] == 1


def test_history_keeps_its_own_n(server, capsys):
    server.reply(Reply(parts=answer("a")), Reply(parts=answer("b")))
    run(capsys, "--base-url", server.url, "-m", "m", "one")
    run(capsys, "--base-url", server.url, "-m", "m", "two")
    assert [c["title"] for c in listed(capsys, "-n", "1")] == ["two"]


def test_a_password_in_the_base_url_is_not_stored(server, capsys, tmp_path, monkeypatch):
    secret = "pw-not-for-the-database"
    with_password = server.url.replace("http://", f"http://user:{secret}@")
    server.reply(Reply(parts=answer("one")), Reply(parts=answer("two")), Reply(parts=answer("3")))
    assert run(capsys, "--base-url", with_password, "-m", "m", "hi")[0] == 0
    database = tmp_path / "xdg-state" / "hermes" / "hermes.db"
    assert all(secret.encode() not in path.read_bytes() for path in database.parent.iterdir())
    assert run(capsys, "-c", "more")[0] == 0  # continued where it was, without the password
    assert "authorization" not in server.requests[-1]["headers"]
    monkeypatch.setenv("HERMES_BASE_URL", with_password)  # configured again: used as it is
    assert run(capsys, "-c", "again")[0] == 0
    assert server.requests[-1]["headers"]["authorization"].startswith("Basic ")
