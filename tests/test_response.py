"""A whole response: end of stream, errors inside a 200, HTTP errors and their retry hints."""

from __future__ import annotations

import json

import pytest

from hermes_min import StreamError, replay
from hermes_min.events import Done, Failed, TextDelta
from hermes_min.response import BodyFolder
from tests.sse_server import chunk, sse


def test_done_ends_the_stream_and_nothing_after_it_is_read():
    body = sse(chunk("a")) + sse(chunk("never"), done=False)
    assert replay([body]).content == "a"
    folder = BodyFolder()
    assert folder.feed(sse(chunk("a"))) == [TextDelta("a")]
    assert folder.done
    assert folder.feed(sse(chunk("later"))) == []


def test_done_with_spaces():
    assert replay([sse(chunk("a"), done=False) + b"data:  [DONE]  \n\n"]).content == "a"


def test_finish_reason_without_done_is_complete():
    assert replay([sse(chunk("a"), chunk(finish="stop"), done=False)]).finish_reason == "stop"


def test_neither_done_nor_finish_reason_is_incomplete_and_keeps_the_text():
    with pytest.raises(StreamError) as caught:
        replay([sse(chunk("partial"), done=False)])
    assert caught.value.kind == "incomplete"
    assert caught.value.partial.content == "partial"


def test_last_event_without_blank_line_still_counts():
    body = sse(chunk("a"), done=False) + b"data: " + json.dumps(chunk(finish="stop")).encode()
    assert replay([body]).finish_reason == "stop"


def test_truncated_last_event_is_incomplete_not_invalid():
    body = sse(chunk("a"), done=False) + b'data: {"choices": [{"del'
    with pytest.raises(StreamError) as caught:
        replay([body])
    assert caught.value.kind == "incomplete"


def test_non_json_data_is_invalid_json_with_a_short_message():
    with pytest.raises(StreamError) as caught:
        replay([sse(chunk("a"), done=False) + b"data: " + b"x" * 5_000_000 + b"\n\n"])
    assert caught.value.kind == "invalid_json"
    assert len(caught.value.message) < 200
    assert caught.value.partial.content == "a"


@pytest.mark.parametrize(
    "body",
    [
        sse(chunk("a"), {"error": {"message": "boom"}}),
        sse(chunk("a"), {**chunk(finish="error"), "error": {"message": "boom", "code": 502}}),
        sse(chunk("a"), done=False) + b'event: error\ndata: {"message": "boom"}\n\n',
        sse(chunk("a"), done=False) + b'event: error\ndata: {"error": {"message": "boom"}}\n\n',
    ],
)
def test_errors_inside_a_200_stream_are_api_errors_with_the_partial(body):
    with pytest.raises(StreamError) as caught:
        replay([body])
    assert caught.value.kind == "api_error"
    assert "boom" in caught.value.message
    assert caught.value.partial.content == "a"


def test_text_before_an_error_in_the_same_read_is_still_delivered():
    events = BodyFolder().feed(sse(chunk("seen"), {"error": {"message": "x"}}))
    assert isinstance(events[0], TextDelta) and isinstance(events[-1], Failed)


def test_plain_json_body_is_the_whole_answer():
    body = json.dumps(
        {
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {
                        "content": "hi",
                        "reasoning_content": "r",
                        "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}],
                    },
                }
            ],
            "usage": {"total_tokens": 3},
        }
    ).encode()
    message = replay([body[:10], body[10:]], content_type="application/json")
    assert (message.content, message.reasoning, message.usage) == ("hi", "r", {"total_tokens": 3})
    assert [(c.id, c.name) for c in message.tool_calls] == [("c1", "f")]


@pytest.mark.parametrize(
    "status, body, retry",
    [
        (
            400,
            {
                "error": {
                    "message": "Your organization must be verified to stream",
                    "param": "stream",
                }
            },
            "non_streaming",
        ),
        (400, {"error": {"message": "Streaming is not supported for this model"}}, "non_streaming"),
        (
            422,
            {"object": "error", "message": {"detail": [{"loc": ["body", "stream_options"]}]}},
            "drop_stream_options",
        ),
        (
            500,
            {"error": {"message": "extraneous key [include_usage] is not permitted"}},
            "drop_stream_options",
        ),
        (401, {"error": {"message": "Incorrect API key provided"}}, None),
        (404, {"error": {"message": "model not found"}}, None),
        (500, {"error": {"message": "overloaded"}}, None),
    ],
)
def test_http_errors_name_the_status_and_message_and_hint_the_retry(status, body, retry):
    with pytest.raises(StreamError) as caught:
        replay([json.dumps(body).encode()], status=status, content_type="application/json")
    error = caught.value
    assert (error.kind, error.status, error.retry) == ("http_error", status, retry)
    assert f"HTTP {status}" in error.message


def test_html_error_page_from_a_proxy_is_one_line():
    page = b"<html><head><title>502 Bad Gateway</title></head><body><h1>nginx</h1>\n</body></html>"
    with pytest.raises(StreamError) as caught:
        replay([page], status=502, content_type="text/html")
    assert "502 Bad Gateway" in caught.value.message and "\n" not in caught.value.message


def test_html_page_with_status_200_is_not_an_answer():
    with pytest.raises(StreamError) as caught:
        replay([b"<html><title>Login</title></html>"], content_type="text/html")
    assert caught.value.kind == "http_error" and "Login" in caught.value.message


def test_binary_garbage_is_an_error_not_a_success():
    with pytest.raises(StreamError) as caught:
        replay([bytes(range(256)) * 100])
    assert caught.value.kind in ("incomplete", "invalid_json")


def test_finish_after_failure_adds_nothing():
    folder = BodyFolder()
    folder.feed(b"data: nope\n\n")
    assert folder.finish() == []


def test_finish_gives_exactly_one_done():
    folder = BodyFolder()
    folder.feed(sse(chunk("a")))
    final = folder.finish()
    assert [type(e) for e in final] == [Done] and folder.finish() == []
