"""The hermes command, as a user meets it: main(argv) in-process, signals in a subprocess."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hermes_min import __version__
from hermes_min.cli import main
from tests.helpers import FakeTTY, one_line, run
from tests.processes import wait_until_asleep
from tests.sse_server import Hold, Reply, answer, chunk, free_port, sse

ROOT = Path(__file__).resolve().parents[1]
HERMES = [sys.executable, str(ROOT / "bin" / "hermes")]


@pytest.fixture(autouse=True)
def terminal_stdin(monkeypatch):
    monkeypatch.setattr(sys, "stdin", FakeTTY())


def piped(monkeypatch, text):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))


def test_answer_goes_to_stdout_as_whole_lines(server, capsys):
    server.reply(Reply(parts=answer("\n\nHello", " there,\nwor", "ld")))
    code, out, err = run(capsys, "--base-url", server.url, "-m", "m", "Why", "is", "the", "sky")
    assert (code, out, err) == (0, "Hello there,\nworld\n", "")
    assert server.requests[0]["json"]["messages"] == [{"role": "user", "content": "Why is the sky"}]


def test_stdin_comes_first_then_a_blank_line_then_the_prompt(server, capsys, monkeypatch):
    piped(monkeypatch, "line one\nline two\n")
    server.reply(Reply(parts=answer("ok")))
    code, _, _ = run(
        capsys, "--base-url", server.url, "-m", "m", "-s", "You are terse", "Summarise"
    )
    assert code == 0
    assert server.requests[0]["json"]["messages"] == [
        {"role": "system", "content": "You are terse"},
        {"role": "user", "content": "line one\nline two\n\nSummarise"},
    ]


def test_stdin_alone_is_the_prompt(server, capsys, monkeypatch):
    piped(monkeypatch, "only stdin")
    server.reply(Reply(parts=answer("ok")))
    assert run(capsys, "--base-url", server.url, "-m", "m")[0] == 0
    assert server.requests[0]["json"]["messages"][0]["content"] == "only stdin"


def test_environment_settings(server, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-key-1234")
    monkeypatch.setenv("HERMES_MODEL", "env-model")
    server.reply(Reply(parts=answer("ok")))
    assert run(capsys, "hi")[0] == 0
    request = server.requests[0]
    assert request["json"]["model"] == "env-model"
    assert request["headers"]["authorization"] == "Bearer sk-env-key-1234"


def test_show_reasoning_goes_to_stderr_never_stdout(server, capsys):
    server.reply(
        Reply(parts=[sse(chunk(reasoning_content="pondering"), done=False), *answer("answer")])
    )
    code, out, err = run(capsys, "--base-url", server.url, "-m", "m", "--show-reasoning", "q")
    assert code == 0 and out == "answer\n" and "pondering" in err
    code, out, err = run(capsys, "--base-url", server.url, "-m", "m", "q")
    assert "pondering" not in out + err


def test_json_prints_only_the_final_message(server, capsys):
    tool = {"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{}"}}
    server.reply(
        Reply(
            parts=[
                sse(
                    chunk("hi"),
                    chunk(tool_calls=[tool]),
                    chunk(finish="tool_calls"),
                    {"choices": [], "usage": {"total_tokens": 2}},
                )
            ]
        )
    )
    code, out, err = run(capsys, "--base-url", server.url, "-m", "m", "--json", "q")
    assert code == 0 and err == ""
    body = json.loads(out)
    assert isinstance(body.pop("conversation_id"), str)  # #12: where the turn was stored
    assert body == {
        "content": "hi",
        "reasoning": "",
        "finish_reason": "tool_calls",
        "tool_calls": [{"id": "c1", "name": "f", "arguments": "{}"}],
        "usage": {"total_tokens": 2},
        "model": "test-model",
    }


def test_json_failure_keeps_what_arrived_and_adds_the_error(server, capsys):
    server.reply(Reply(parts=[sse(chunk("cut off"), done=False)]))
    code, out, err = run(capsys, "--base-url", server.url, "-m", "m", "--json", "q")
    body = json.loads(out)
    assert code == 1 and body["content"] == "cut off"
    assert body["error"]["kind"] == "incomplete" and body["error"]["status"] is None


def test_events_prints_one_json_object_per_event(server, capsys):
    server.reply(Reply(parts=answer("a", "b")))
    code, out, _ = run(capsys, "--base-url", server.url, "-m", "m", "--events", "q")
    kinds = [json.loads(line)["type"] for line in out.splitlines()]
    assert code == 0 and kinds == ["text", "text", "done"]


def test_record_then_replay_prints_the_same(server, capsys, tmp_path):
    server.reply(Reply(parts=answer("recorded\n", "answer")))
    record = tmp_path / "body.sse"
    live = run(capsys, "--base-url", server.url, "-m", "m", "--record", str(record), "q")
    again = run(capsys, "replay", str(record))
    assert live == again == (0, "recorded\nanswer\n", "")
    code, out, _ = run(capsys, "replay", str(record), "--json")
    assert code == 0 and json.loads(out)["content"] == "recorded\nanswer"


def test_replay_of_the_shipped_example(capsys):
    code, out, err = run(capsys, "replay", str(ROOT / "examples" / "sky.sse"))
    assert code == 0 and "blue" in out and err == ""


def test_interrupted_stream_is_incomplete_exit_1_and_text_kept(server, capsys):
    server.reply(Reply(parts=[sse(chunk("half an answer"), done=False)]))
    code, out, err = run(capsys, "--base-url", server.url, "-m", "m", "q")
    assert code == 1 and out == "half an answer\n"
    assert "ended before the answer was done" in one_line(err)


def test_models_one_per_line_and_json(server, capsys):
    server.reply(
        Reply(
            parts=[b'{"data":[{"id":"a"},{"id":"b"}]}'],
            content_type="application/json",
            framing="length",
        )
    )
    assert run(capsys, "models", "--base-url", server.url) == (0, "a\nb\n", "")
    code, out, _ = run(capsys, "models", "--base-url", server.url, "--json")
    assert [m["id"] for m in json.loads(out)] == ["a", "b"]


def test_single_served_model_is_used_when_none_is_set(server, capsys):
    server.reply(
        Reply(
            parts=[b'{"data":[{"id":"only-one"}]}'],
            content_type="application/json",
            framing="length",
        ),
        Reply(parts=answer("ok")),
    )
    assert run(capsys, "--base-url", server.url, "q")[0] == 0
    assert server.requests[1]["json"]["model"] == "only-one"


def test_no_model_with_several_served_says_how_to_set_it(server, capsys):
    server.reply(
        Reply(
            parts=[b'{"data":[{"id":"a"},{"id":"b"}]}'],
            content_type="application/json",
            framing="length",
        )
    )
    code, _, err = run(capsys, "--base-url", server.url, "q")
    assert code == 2 and "-m MODEL" in one_line(err)


def test_version(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0 and __version__ in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, code, words",
    [
        (["--bogus"], 2, "unrecognized arguments"),
        (["-m", "m", ""], 2, "prompt is empty"),
        (["--config", "/nonexistent/config.yaml", "q"], 2, "not found"),
        (["--base-url", "ftp://x", "-m", "m", "q"], 2, "http://"),
        (["replay", "/nonexistent.sse"], 2, "cannot read"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(capsys, argv, code, words):
    got, out, err = run(capsys, *argv)
    assert got == code and words in one_line(err) and out == ""


def test_invalid_config_exit_2(capsys, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("provider:\n  base_ur: x\n")
    code, _, err = run(capsys, "--config", str(config), "q")
    assert code == 2 and "provider.base_ur" in one_line(err) and str(config) in err


def test_server_down_is_one_line_exit_1(capsys, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("provider:\n  max_retries: 0\n")
    code, _, err = run(
        capsys,
        "--config",
        str(config),
        "--base-url",
        f"http://127.0.0.1:{free_port()}",
        "-m",
        "m",
        "q",
    )
    assert code == 1 and "cannot connect" in one_line(err)


def test_wrong_key_is_one_line_and_the_key_is_never_shown(server, capsys):
    body = {"error": {"message": "Incorrect API key provided: sk-wrong-key-999"}}
    server.reply(
        Reply(
            parts=[json.dumps(body).encode()],
            status=401,
            content_type="application/json",
            framing="length",
        )
    )
    code, out, err = run(
        capsys, "--base-url", server.url, "--api-key", "sk-wrong-key-999", "-m", "m", "q"
    )
    assert code == 1 and "HTTP 401" in one_line(err) and "sk-wrong-key-999" not in out + err


@pytest.mark.parametrize(
    "reply, words",
    [
        (
            Reply(
                parts=[b"<html><title>Proxy Authentication Required</title></html>"],
                status=407,
                content_type="text/html",
                framing="length",
            ),
            "Proxy Authentication Required",
        ),
        (
            Reply(parts=[bytes(range(256)) * 64], content_type="application/octet-stream"),
            "ended before",
        ),
        (Reply(parts=[b"data: " + b"x" * 5_000_000 + b"\n\n"]), "not JSON"),
        (
            Reply(parts=[b"<html><title>Sign in</title></html>"], content_type="text/html"),
            "HTML page",
        ),
    ],
)
def test_bad_responses_are_one_line_exit_1(server, capsys, reply, words):
    server.reply(reply)
    code, _, err = run(capsys, "--base-url", server.url, "-m", "m", "q")
    assert code == 1 and words in one_line(err) and len(err) < 400


def _spawn(server, *extra):
    env = {k: v for k, v in os.environ.items() if not k.endswith("_PROXY")}
    return subprocess.Popen(
        [*HERMES, "--base-url", server.url, "-m", "m", *extra, "q"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_stream_keeps_text_writes_newline_and_exits(server, signum, code):
    server.reply(Reply(parts=[sse(chunk("partial line\nsecond"), done=False), Hold()]))
    proc = _spawn(server)
    try:
        assert proc.stdout.readline() == b"partial line\n"
        assert server.holding.wait(10)
        wait_until_asleep(proc.pid)  # on its next event, which never comes (tests/processes.py)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == code
    assert out == b"second\n" and b"Traceback" not in err
    assert server.client_gone.wait(5)


def test_head_closing_the_pipe_exits_quietly(server):
    # More than any pipe holds, so the write after the reader left must fail.
    more = sse(chunk("more\n" * 1_000_000), done=False)
    server.reply(Reply(parts=[sse(chunk("one\n"), done=False), more, Hold()]))
    proc = _spawn(server)
    try:
        assert proc.stdout.readline() == b"one\n"
        proc.stdout.close()  # what `| head -1` does after its first line
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0 and err == b""
