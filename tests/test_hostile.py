"""What a hostile or broken server sends: every response ends, memory stays bounded, and the
terminal says how it ended. Each input here was reproduced on main before it was fixed."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hermes_min import ChatClient, StreamError, replay
from hermes_min.accumulate import Accumulator
from hermes_min.cli import main
from hermes_min.response import MAX_BODY
from hermes_min.sse import MAX_LINE
from hermes_min.stream import Stream
from tests.helpers import FakeTTY, within
from tests.sse_server import Pause, Reply, Reset, answer, chunk, free_port, sse

ROOT = Path(__file__).resolve().parents[1]
USER = [{"role": "user", "content": "hi"}]
NUMBER_ARGUMENTS = {"index": 0, "id": "c1", "function": {"name": "now", "arguments": 5}}


@pytest.fixture(autouse=True)
def terminal_stdin(monkeypatch):
    monkeypatch.setattr(sys, "stdin", FakeTTY())


def folded(*payloads):
    """replay() of an SSE body made of these chunks: the Message, or the StreamError."""
    try:
        return replay([sse(*payloads)])
    except StreamError as error:
        return error


# ------------------------------------------------------------------ wrong types are data


def tool_delta(fragment):
    return {"model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [fragment]}}]}


def test_arguments_that_are_a_number_or_an_object_are_serialised():
    message = folded(tool_delta(NUMBER_ARGUMENTS), chunk(finish="tool_calls"))
    assert message.tool_calls[0].arguments == "5"
    fragment = {"index": 0, "id": "c1", "function": {"name": "f", "arguments": {"a": [1]}}}
    assert folded(tool_delta(fragment)).tool_calls[0].arguments == '{"a":[1]}'


def test_a_tool_call_id_that_is_a_number_becomes_a_string():
    fragment = {"index": 0, "id": 7, "function": {"name": "now", "arguments": "{}"}}
    call = folded(tool_delta(fragment), chunk(finish="tool_calls")).tool_calls[0]
    assert call.id == "7" and isinstance(call.id, str)


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"choices": [{"index": 0, "delta": "hello"}]}, "choices[0].delta is a string"),
        (tool_delta({"index": 0, "function": "now"}), "function is a string"),
        (tool_delta({"index": 0, "function": {"name": 5}}), "function.name is a number"),
        ({"choices": {"0": {"delta": {"content": "x"}}}}, "choices is an object"),
        ({"choices": [{"index": 0, "delta": {"tool_calls": 3}}]}, "tool_calls is a number"),
    ],
)
def test_an_unusable_shape_is_a_protocol_error_naming_the_field(payload, field):
    error = folded(chunk("before"), payload)
    assert isinstance(error, StreamError) and error.kind == "protocol", error
    assert field in error.message and "AttributeError" not in error.message
    assert error.partial.content == "before"


def test_json_nested_100000_deep_is_an_error_not_a_crash():
    error = folded("[" * 100_000 + "]" * 100_000)
    assert isinstance(error, StreamError) and error.kind == "invalid_json"
    assert "nested too deeply" in error.message


def test_replay_of_a_tool_call_with_number_arguments_ends(tmp_path, capsys):
    """Today the worker died building the partial message and the consumer waited forever."""
    body = tmp_path / "body.sse"
    body.write_bytes(sse(tool_delta(NUMBER_ARGUMENTS), chunk(finish="tool_calls")))
    code = within(30, main, ["replay", str(body), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["tool_calls"][0]["arguments"] == "5"


# ------------------------------------------------------------------ a final event by construction


def test_the_worker_puts_a_final_event_even_when_building_the_partial_raises(monkeypatch):
    def broken(self):
        raise RuntimeError("a bug in message()")

    monkeypatch.setattr(Accumulator, "message", broken)

    class Opened:
        status, content_type = 200, "text/event-stream"

        def reads(self):
            yield sse(chunk("some text"), done=False)
            raise StreamError("connection", "the connection broke")

        def close(self):
            pass

    stream = Stream(lambda slot, cancel: Opened())
    with pytest.raises(StreamError) as caught:
        within(30, stream.result)
    assert caught.value.kind == "connection" and caught.value.partial is None


def test_a_bug_in_the_worker_is_a_failed_event_not_a_hang():
    def opener(slot, cancel):
        raise AttributeError("'str' object has no attribute 'get'")

    with pytest.raises(StreamError) as caught:
        within(30, Stream(opener).result)
    assert caught.value.kind == "internal"  # ours, not the server's


# ------------------------------------------------------------------ caps


def test_an_endless_sse_line_stops_at_the_cap(server):
    server.reply(Reply(parts=[b"data: " + b"x" * (MAX_LINE + 4096)], framing="close"))
    with ChatClient(server.url, None, "m", max_retries=0) as client:
        with pytest.raises(StreamError) as caught:
            within(60, client.complete, USER)
    assert caught.value.kind == "too_large" and "16 MiB in one line" in caught.value.message


def test_an_endless_event_of_short_lines_stops_at_the_cap(server):
    line = b"data: " + b"y" * 65_000 + b"\n"
    server.reply(Reply(parts=[line] * (MAX_LINE // 65_000 + 2)))
    with ChatClient(server.url, None, "m", max_retries=0) as client:
        with pytest.raises(StreamError) as caught:
            within(60, client.complete, USER)
    assert caught.value.kind == "too_large" and "one event" in caught.value.message


@pytest.mark.parametrize("content_type", ["application/json", "text/html"])
def test_an_endless_non_sse_body_stops_at_the_cap(server, content_type):
    piece = b"[" + b" " * (1024 * 1024)
    server.reply(Reply(parts=[piece] * (MAX_BODY // len(piece) + 2), content_type=content_type))
    with ChatClient(server.url, None, "m", max_retries=0) as client:
        with pytest.raises(StreamError) as caught:
            within(60, client.complete, USER)
    assert caught.value.kind == "too_large"


def test_a_huge_http_chunk_is_read_in_bounded_pieces(server):
    """One chunk announcing more than the cap: urllib3 must not be asked for all of it."""
    server.reply(Reply(parts=[b"data: " + b"z" * (MAX_LINE + 1)]))  # one HTTP chunk
    with ChatClient(server.url, None, "m", max_retries=0) as client:
        with pytest.raises(StreamError) as caught:
            within(60, client.complete, USER)
    assert caught.value.kind == "too_large"


def test_the_whole_answer_has_a_cap():
    accumulator = Accumulator(max_answer=100)
    accumulator.feed(chunk("x" * 60))
    with pytest.raises(StreamError) as caught:
        accumulator.feed(chunk("y" * 60))
    assert caught.value.kind == "too_large"


def test_replay_of_dev_zero_ends_with_one_line():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "hermes"), "replay", "/dev/zero"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done
    assert done.stderr.startswith("hermes: ") and done.stderr.count("\n") == 1
    assert "16 MiB" in done.stderr and "Traceback" not in done.stderr


# ------------------------------------------------------------------ deadlines


def test_keep_alive_forever_ends_at_total_timeout(server):
    server.reply(Reply(parts=[b": keep-alive\n\n", Pause(0.05)] * 2000))
    with ChatClient(server.url, None, "m", total_timeout=1.0) as client:
        with pytest.raises(StreamError) as caught:
            within(60, client.complete, USER)
    assert caught.value.kind == "timeout" and "provider.total_timeout" in caught.value.message


def test_total_timeout_is_off_by_default(server):
    server.reply(Reply(parts=[b": queued\n\n", Pause(0.05), *answer("fine")]))
    with ChatClient(server.url, None, "m") as client:
        assert client.total_timeout is None and client.complete(USER).content == "fine"


def test_total_timeout_comes_from_the_config(server, tmp_path, capsys):
    server.reply(Reply(parts=[b": keep-alive\n\n", Pause(0.05)] * 2000))
    config = tmp_path / "config.yaml"
    config.write_text(f"provider:\n  base_url: {server.url}\n  model: m\n  total_timeout: 1\n")
    code = within(60, main, ["--config", str(config), "hi"])
    err = capsys.readouterr().err
    assert code == 1 and "provider.total_timeout" in err and err.count("\n") == 1


# ------------------------------------------------------------------ say how it ended


@pytest.mark.parametrize(
    "body, kind, words",
    [
        (b'{"detail": "boom"}', "api_error", "boom"),
        (b'{"object": "chat.completion"}', "protocol", "no choices"),
    ],
)
def test_a_json_reply_without_choices_is_an_error(server, capsys, body, kind, words):
    server.reply(Reply(parts=[body], content_type="application/json", framing="length"))
    code = main(["--base-url", server.url, "-m", "m", "--json", "hi"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["error"]["kind"] == kind and words in out["error"]["message"]


def test_replay_of_a_recorded_error_body_is_an_error(tmp_path, capsys):
    body = tmp_path / "error.json"
    body.write_text('{"detail": "Model not found"}')
    assert main(["replay", str(body)]) == 1
    assert "Model not found" in capsys.readouterr().err


def test_an_answer_cut_at_the_length_limit_says_so(server, capsys):
    server.reply(Reply(parts=answer("Once upon a", finish="length")))
    code = main(["--base-url", server.url, "-m", "m", "tell me"])
    out, err = capsys.readouterr()
    assert code == 0 and out == "Once upon a\n"
    assert err.startswith("hermes: ") and "length limit" in err and err.count("\n") == 1


def test_a_length_cut_is_in_json_without_a_stderr_line(server, capsys):
    server.reply(Reply(parts=answer("Once", finish="length")))
    assert main(["--base-url", server.url, "-m", "m", "--json", "x"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["finish_reason"] == "length" and err == ""


# ------------------------------------------------------------------ --json on every path

KEYS = {"content", "reasoning", "tool_calls", "finish_reason", "usage", "model", "error"}
KEYS |= {"conversation_id"}  # #12: --json names the conversation (null: none stored)


def test_json_when_model_discovery_cannot_connect(capsys):
    url = f"http://127.0.0.1:{free_port()}/v1"
    code = main(["--base-url", url, "--json", "hi"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and set(out) == KEYS and out["error"]["kind"] == "connection"


def test_json_when_the_connection_fails_before_any_byte(capsys, monkeypatch):
    monkeypatch.setattr(ChatClient, "BACKOFF", 0.01)  # it retries first: quickly, here
    url = f"http://127.0.0.1:{free_port()}/v1"
    code = main(["--base-url", url, "-m", "m", "--json", "hi"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and set(out) == KEYS and out["content"] == ""


def test_json_after_a_broken_stream_names_the_model(server, capsys):
    server.reply(Reply(parts=[sse(chunk("half an"), done=False), Reset()]))
    code = main(["--base-url", server.url, "-m", "m", "--json", "hi"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["model"] == "test-model" and out["content"] == "half an"


def test_json_for_a_configuration_error(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("provider:\n  colour: blue\n")
    code = main(["--config", str(config), "--json", "hi"])
    out = json.loads(capsys.readouterr().out)
    assert code == 2 and set(out) == KEYS and out["error"]["kind"] == "config"


# ------------------------------------------------------------------ --record and stdout


def test_record_files_are_private(server, tmp_path, capsys):
    server.reply(Reply(parts=answer("kept")))
    record = tmp_path / "body.sse"
    assert main(["--base-url", server.url, "-m", "m", "--record", str(record), "hi"]) == 0
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert b"kept" in record.read_bytes()


def run_hermes(tmp_path, server, *argv, stdout=subprocess.PIPE):
    env = {
        **{k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")},
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    command = [sys.executable, str(ROOT / "bin" / "hermes"), "--base-url", server.url, "-m", "m"]
    return subprocess.run(
        [*command, *argv], stdout=stdout, stderr=subprocess.PIPE, env=env, timeout=60
    )


def stored(tmp_path):
    from hermes_min.storage import Store

    with Store(tmp_path / "state" / "hermes" / "hermes.db") as store:
        cid = store.last_conversation()
        return store.messages(cid) if cid else []


def test_record_to_a_full_disk_never_cuts_the_answer(server, tmp_path):
    server.reply(Reply(parts=answer("the whole", " answer")))
    done = run_hermes(tmp_path, server, "--record", "/dev/full", "hi")
    err = done.stderr.decode()
    assert done.returncode == 1 and done.stdout == b"the whole answer\n"
    assert err.startswith("hermes: ") and err.count("\n") == 1 and "--record" in err
    assert stored(tmp_path)[-1] == {"role": "assistant", "content": "the whole answer"}


def test_stdout_on_a_full_disk_is_one_line_and_the_turn_is_kept(server, tmp_path):
    server.reply(Reply(parts=answer("an answer nobody can read")))
    with open("/dev/full", "w") as full:
        done = run_hermes(tmp_path, server, "hi", stdout=full)
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert err.startswith("hermes: ") and err.count("\n") == 1 and "Traceback" not in err
    assert stored(tmp_path)[-1]["content"] == "an answer nobody can read"


def test_argv_that_is_not_utf8_is_stored_with_replacements(server, tmp_path):
    server.reply(Reply(parts=answer("ok")))
    env_argv = [b"caf\xe9 ol\xe9"]
    done = run_hermes(tmp_path, server, *[a.decode("utf-8", "surrogateescape") for a in env_argv])
    assert done.returncode == 0, done.stderr
    assert stored(tmp_path)[0] == {"role": "user", "content": "caf\ufffd ol\ufffd"}
