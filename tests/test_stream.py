"""The client and its worker thread over real sockets: framing, stalls, interrupts, retries."""

from __future__ import annotations

import io
import json
import threading

import pytest

from hermes_min import ChatClient, StreamError
from hermes_min.events import Done, Failed, ReasoningDelta, TextDelta, ToolCallStarted
from tests.sse_server import Hold, Pause, Reply, Reset, answer, chunk, free_port, sse

USER = [{"role": "user", "content": "hi"}]


# Bounds, not measurements: a stream that should end "at once" is given PROMPTLY seconds,
# far more than load can take, and the server that would otherwise end it stays silent for
# SILENT seconds (or until the client hangs up), longer still.
PROMPTLY, SILENT = 30, 60


def make_client(server, **kwargs):
    kwargs.setdefault("max_retries", 2)
    client = ChatClient(server.url, kwargs.pop("api_key", "sk-test-key-123456"), "m", **kwargs)
    client.BACKOFF = 0.01
    return client


@pytest.mark.parametrize("framing", ["chunked", "length", "close"])
def test_answer_streams_in_every_framing(server, framing):
    server.reply(
        Reply(parts=answer("Hello", ", ", "wörld", usage={"total_tokens": 3}), framing=framing)
    )
    with make_client(server) as client:
        stream = client.stream(USER)
        events = list(stream)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hello", ", ", "wörld"]
    assert isinstance(events[-1], Done)
    assert events[-1].message.usage == {"total_tokens": 3}


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_an_event_is_handed_over_as_soon_as_its_blank_line_arrives(server, framing):
    hold = Hold()
    server.reply(
        Reply(parts=[sse(chunk("first"), done=False), hold, *answer("rest")], framing=framing)
    )
    with make_client(server) as client:
        stream = client.stream(USER)
        events = iter(stream)
        # Nothing after the first event is sent until the test releases the hold, so
        # receiving it now proves it was handed over without waiting for more bytes.
        assert next(events) == TextDelta("first")
        assert not hold.release.is_set() and server.holding.wait(5)
        hold.release.set()
        assert stream.result().content == "firstrest"


def test_request_body_and_headers(server):
    server.reply(Reply(parts=answer("ok")))
    with make_client(server, extra_body={"temperature": 0.2}) as client:
        client.stream(USER, tools=[{"type": "function"}], max_tokens=5).result()
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["json"] == {
        "model": "m",
        "messages": USER,
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [{"type": "function"}],
        "temperature": 0.2,
        "max_tokens": 5,
    }
    headers = request["headers"]
    assert headers["accept"] == "text/event-stream"
    assert headers["accept-encoding"] == "identity"
    assert headers["authorization"] == "Bearer sk-test-key-123456"


def test_base_url_without_v1_is_accepted(server):
    server.reply(Reply(parts=answer("ok")))
    with ChatClient(server.url[: -len("/v1")] + "/", None, "m") as client:
        assert client.complete(USER).content == "ok"
    assert server.requests[0]["path"] == "/v1/chat/completions"
    assert "authorization" not in server.requests[0]["headers"]


def test_interrupt_while_the_server_is_silent_returns_at_once_and_keeps_the_text(server):
    server.reply(Reply(parts=[sse(chunk("partial"), done=False), Hold(limit=SILENT)]))
    with make_client(server) as client:
        stream = client.stream(USER)
        assert next(iter(stream)) == TextDelta("partial")
        assert server.holding.wait(10)
        stream.interrupt()
        assert stream.join(PROMPTLY)  # the server stays silent longer: the interrupt ended it
        with pytest.raises(StreamError) as caught:
            stream.result()
    assert caught.value.kind == "interrupted"
    assert caught.value.partial.content == "partial"
    assert server.client_gone.wait(5)  # the server saw the close, so it stops generating


def test_interrupt_before_the_response_headers(server):
    server.reply(Reply(parts=answer("late"), before=Hold(limit=SILENT)))
    with make_client(server) as client:
        stream = client.stream(USER)
        assert server.holding.wait(10)
        stream.interrupt()
        assert stream.join(PROMPTLY)
        with pytest.raises(StreamError) as caught:
            stream.result()
    assert caught.value.kind == "interrupted"
    assert server.client_gone.wait(5)


def test_close_interrupts_a_running_stream_and_is_idempotent(server):
    server.reply(Reply(parts=[Hold()]))
    client = make_client(server)
    stream = client.stream(USER)
    assert server.holding.wait(5)
    stream.close()
    stream.close()
    client.close()
    client.close()
    assert stream.interrupted and stream.join(0)


def test_reset_mid_stream_keeps_the_partial_and_is_not_retried(server):
    server.reply(Reply(parts=[sse(chunk("half"), done=False), Reset()]))
    with make_client(server) as client, pytest.raises(StreamError) as caught:
        client.complete(USER)
    assert caught.value.kind == "connection"
    assert caught.value.partial.content == "half"
    assert len(server.requests) == 1


def test_eof_without_finish_is_incomplete(server):
    server.reply(Reply(parts=[sse(chunk("cut"), done=False)]))
    with make_client(server) as client, pytest.raises(StreamError) as caught:
        client.complete(USER)
    assert caught.value.kind == "incomplete" and caught.value.partial.content == "cut"


def test_slow_trickle_one_byte_at_a_time(server):
    body = b"".join(answer("slow", " but", " whole"))
    parts = []
    for i in range(len(body)):
        parts.append(body[i : i + 1])
        if i % 40 == 0:
            parts.append(Pause(0.001))
    server.reply(Reply(parts=parts, framing="close"))
    with make_client(server) as client:
        assert client.complete(USER).content == "slow but whole"


def test_idle_read_timeout_is_reported_with_the_setting(server):
    # The hold ends when the client hangs up; its limit only has to outlast 0.2 s under load.
    server.reply(Reply(parts=[sse(chunk("a"), done=False), Hold(limit=SILENT)]))
    with make_client(server, read_timeout=0.2) as client, pytest.raises(StreamError) as caught:
        client.complete(USER)
    assert caught.value.kind == "timeout" and "read_timeout" in caught.value.message
    assert caught.value.partial.content == "a"


@pytest.mark.parametrize("status", [429, 503])
def test_429_and_5xx_before_the_answer_are_retried(server, status):
    refusal = Reply(
        parts=[b'{"error":{"message":"busy"}}'],
        status=status,
        content_type="application/json",
        framing="length",
        headers={"Retry-After": "0"},
    )
    server.reply(refusal, Reply(parts=answer("ok")))
    with make_client(server) as client:
        assert client.complete(USER).content == "ok"
    assert len(server.requests) == 2


def test_retries_give_up_after_max_retries(server):
    server.reply(
        Reply(
            parts=[b'{"error":{"message":"slow down"}}'],
            status=429,
            content_type="application/json",
            framing="length",
        )
    )
    with make_client(server, max_retries=1) as client, pytest.raises(StreamError) as caught:
        client.complete(USER)
    assert (caught.value.status, len(server.requests)) == (429, 2)
    assert "slow down" in caught.value.message


def test_a_long_retry_after_is_reported_not_slept_through(server):
    server.reply(
        Reply(
            parts=[b"{}"],
            status=429,
            content_type="application/json",
            framing="length",
            headers={"Retry-After": "3600"},
        )
    )
    errors = []

    def ask() -> None:
        with make_client(server) as client:
            try:
                client.complete(USER)
            except StreamError as error:
                errors.append(error)

    asking = threading.Thread(target=ask, daemon=True)
    asking.start()
    asking.join(PROMPTLY)  # bounded; a client that slept through it would take an hour
    assert not asking.is_alive() and errors and len(server.requests) == 1


@pytest.mark.parametrize("status", [401, 403, 404])
def test_auth_and_not_found_are_not_retried_and_never_show_the_key(server, status):
    echo = {"error": {"message": "Incorrect API key provided: sk-test-key-123456"}}
    server.reply(
        Reply(
            parts=[json.dumps(echo).encode()],
            status=status,
            content_type="application/json",
            framing="length",
        )
    )
    with make_client(server) as client, pytest.raises(StreamError) as caught:
        client.complete(USER)
    assert len(server.requests) == 1
    assert f"HTTP {status}" in str(caught.value)
    assert "sk-test-key-123456" not in str(caught.value)


def test_stream_options_refusal_is_retried_without_them_and_remembered(server):
    refusal = Reply(
        parts=[b'{"detail":[{"type":"extra_forbidden","loc":["body","stream_options"]}]}'],
        status=422,
        content_type="application/json",
        framing="length",
    )
    server.reply(refusal, Reply(parts=answer("ok")))
    with make_client(server) as client:  # the agent shares one client for a whole run
        assert client.complete(USER).content == "ok"
        assert client.complete(USER).content == "ok"
    sent = [r["json"] for r in server.requests]
    assert "stream_options" in sent[0]
    assert all("stream_options" not in body and body["stream"] for body in sent[1:])
    assert len(sent) == 3


def test_streaming_refusal_falls_back_to_one_json_response(server):
    refusal = Reply(
        parts=[
            json.dumps(
                {
                    "error": {
                        "message": "Your organization must be verified to stream this model",
                        "param": "stream",
                    }
                }
            ).encode()
        ],
        status=400,
        content_type="application/json",
        framing="length",
    )
    whole = {
        "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"content": "whole answer"}}],
    }
    server.reply(
        refusal,
        Reply(
            parts=[json.dumps(whole).encode()], content_type="application/json", framing="length"
        ),
    )
    with make_client(server) as client:
        events = list(client.stream(USER))
        assert client.complete(USER).content == "whole answer"
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["whole answer"]
    assert [r["json"]["stream"] for r in server.requests] == [True, False, False]


def test_server_ignoring_stream_true_returns_json(server):
    whole = {"choices": [{"index": 0, "finish_reason": "stop", "message": {"content": "json"}}]}
    server.reply(
        Reply(parts=[json.dumps(whole).encode()], content_type="application/json", framing="length")
    )
    with make_client(server) as client:
        assert client.complete(USER).content == "json"


def test_non_streaming_mode_asks_for_json(server):
    whole = {"choices": [{"index": 0, "finish_reason": "stop", "message": {"content": "one"}}]}
    server.reply(
        Reply(parts=[json.dumps(whole).encode()], content_type="text/plain", framing="length")
    )
    with make_client(server, stream=False) as client:
        assert client.complete(USER).content == "one"
    assert server.requests[0]["json"]["stream"] is False
    assert "stream_options" not in server.requests[0]["json"]


def test_connection_refused_is_retried_then_reported():
    with ChatClient(f"http://127.0.0.1:{free_port()}/v1", None, "m", max_retries=1) as client:
        client.BACKOFF = 0.01
        with pytest.raises(StreamError) as caught:
            client.complete(USER)
    assert caught.value.kind == "connection"
    assert "refused" in str(caught.value).lower()


def test_callbacks_text_only_until_a_tool_call_and_first_delta_once(server):
    tool = {"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{}"}}
    body = sse(
        chunk(reasoning_content="think"),
        chunk("before"),
        chunk(tool_calls=[tool]),
        chunk("after"),
        chunk(finish="tool_calls"),
    )
    server.reply(Reply(parts=[body]))
    texts, firsts = [], []
    with make_client(server) as client:
        stream = client.stream(
            USER, stream_delta_callback=texts.append, on_first_delta=lambda: firsts.append(1)
        )
        events = list(stream)
    assert texts == ["before"]
    assert firsts == [1]
    assert [type(e) for e in events] == [
        ReasoningDelta,
        TextDelta,
        ToolCallStarted,
        TextDelta,
        Done,
    ]
    assert events[-1].message.tool_calls[0].name == "f"


def test_record_writes_the_raw_body(server):
    parts = answer("rec", "orded")
    server.reply(Reply(parts=parts))
    sink = io.BytesIO()
    with make_client(server) as client:
        client.stream(USER, record=sink).result()
    assert sink.getvalue() == b"".join(parts)


def test_failed_is_the_last_event(server):
    server.reply(Reply(parts=[sse(chunk("x"), {"error": {"message": "upstream died"}})]))
    with make_client(server) as client:
        events = list(client.stream(USER))
    assert isinstance(events[-1], Failed) and "upstream died" in events[-1].error.message
    assert events[-1].error.partial.content == "x"


def test_models_lists_ids(server):
    server.reply(
        Reply(
            parts=[b'{"data":[{"id":"qwen"}]}'], content_type="application/json", framing="length"
        )
    )
    with ChatClient(server.url) as client:
        assert client.models() == [{"id": "qwen"}]
        assert client.resolve_model() == "qwen"
    assert server.requests[0]["method"] == "GET" and server.requests[0]["path"] == "/v1/models"


def test_no_model_and_several_served_says_how_to_set_it(server):
    server.reply(
        Reply(
            parts=[b'{"data":[{"id":"a"},{"id":"b"}]}'],
            content_type="application/json",
            framing="length",
        )
    )
    from hermes_min import ConfigError

    with ChatClient(server.url) as client, pytest.raises(ConfigError) as caught:
        client.resolve_model()
    assert "-m" in str(caught.value) and "2 models" in str(caught.value)


def test_an_iteration_cut_mid_batch_loses_no_event(server):
    server.reply(Reply(parts=[sse(chunk("a"), chunk("b"), chunk("c"), chunk(finish="stop"))]))
    with make_client(server) as client:
        stream = client.stream(USER)
        assert stream.join(5)  # everything is in one batch before we look
        first = iter(stream)
        assert next(first) == TextDelta("a")
        first.close()  # what a KeyboardInterrupt between two events does to the loop
        rest = list(stream)
    assert [e.text for e in rest if isinstance(e, TextDelta)] == ["b", "c"]
    assert isinstance(rest[-1], Done) and stream.result().content == "abc"


def test_interrupt_reaches_the_model_list_request_too(server):
    server.reply(
        Reply(
            parts=[b'{"data":[{"id":"m"}]}'],
            content_type="application/json",
            framing="length",
            before=Hold(limit=SILENT),
        )
    )
    with ChatClient(server.url) as client:  # no model: the worker asks the server first
        stream = client.stream(USER)
        assert server.holding.wait(10)
        stream.interrupt()
        assert stream.join(PROMPTLY)
    with pytest.raises(StreamError) as caught:
        stream.result()
    assert caught.value.kind == "interrupted"
