"""The SSE decoder: the same events wherever the body's reads split."""

from __future__ import annotations

import statistics
import time

import pytest

from hermes_min.sse import SSEDecoder


def decode(reads: list[bytes]) -> tuple[list[tuple[str, str]], tuple[str, str] | None]:
    decoder = SSEDecoder()
    events = [e for read in reads for e in decoder.feed(read)]
    return events, decoder.close()


def every_split(body: bytes):
    """The body as one read, one byte per read, and split in two at every position."""
    yield [body]
    yield [body[i : i + 1] for i in range(len(body))]
    for i in range(1, len(body)):
        yield [body[:i], body[i:]]


CASES = {
    "lf": (b"data: a\n\ndata: b\n\n", [("message", "a"), ("message", "b")]),
    "crlf": (b"data: a\r\n\r\ndata: b\r\n\r\n", [("message", "a"), ("message", "b")]),
    "cr": (b"data: a\r\rdata: b\r\r", [("message", "a"), ("message", "b")]),
    "mixed endings": (b"data: a\r\n\ndata: b\r\r\n", [("message", "a"), ("message", "b")]),
    "no space after colon": (b"data:a\n\n", [("message", "a")]),
    "only one space stripped": (b"data:  a\n\n", [("message", " a")]),
    "comments ignored": (b": OPENROUTER PROCESSING\n\n:ping\ndata: a\n\n", [("message", "a")]),
    "unknown fields ignored": (b"foo: bar\nid: 7\nretry: 10\ndata: a\n\n", [("message", "a")]),
    "event type": (b"event: error\ndata: {}\n\n", [("error", "{}")]),
    "type resets": (b"event: x\ndata: a\n\ndata: b\n\n", [("x", "a"), ("message", "b")]),
    "multi-line data": (b"data: a\ndata:\ndata: b\n\n", [("message", "a\n\nb")]),
    "empty data skipped": (b"data:\n\nevent: ping\n\nretry: 5\n\ndata: a\n\n", [("message", "a")]),
    "blank keep-alives": (b"\n\n\n\ndata: a\n\n\n\n", [("message", "a")]),
    "bom dropped": (b"\xef\xbb\xbfdata: a\n\n", [("message", "a")]),
    "only one bom dropped": (b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\ndata: b\n\n", [("message", "b")]),
    "utf-8 across reads": ("data: żółw 🐢\n\n".encode(), [("message", "żółw 🐢")]),
    "invalid utf-8 replaced": (b"data: a\xffb\n\n", [("message", "a\ufffdb")]),
    "u+2028 is not a line end": (
        'data: {"a":"x\u2028y"}\n\n'.encode(),
        [("message", '{"a":"x\u2028y"}')],
    ),
    "legacy llama.cpp error field": (b'error: {"message":"m"}\n\n', [("error", '{"message":"m"}')]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_events_do_not_depend_on_read_boundaries(name):
    body, expected = CASES[name]
    for reads in every_split(body):
        events, pending = decode(reads)
        assert events == expected, (name, reads)
        assert pending is None


def test_event_without_blank_line_is_returned_at_close():
    for reads in every_split(b'data: {"a":1}\n\ndata: {"b":2}'):
        events, pending = decode(reads)
        assert events == [("message", '{"a":1}')]
        assert pending == ("message", '{"b":2}')


def test_crlf_split_between_reads_is_one_line_end():
    events, _ = decode([b"data: a\r", b"\ndata: b\r\n\r\n"])
    assert events == [("message", "a\nb")]


def test_empty_reads_change_nothing():
    events, _ = decode([b"", b"data: a", b"", b"\n", b"", b"\n"])
    assert events == [("message", "a")]


def cost_growth(decoder, size: int = 8 * 2**20, read: int = 16 * 1024) -> float:
    """How much more CPU work a read costs near the end of one long line than near its start.

    Work is this thread's CPU time (time.thread_time: not the wall clock, so other processes
    do not count), per read, median of the last tenth over the first. A decoder that keeps
    rescanning or recopying what it holds does work that grows with the line: >> 1.
    """
    body = b"data: " + b"x" * size
    costs = []
    for start in range(0, len(body), read):
        piece = body[start : start + read]
        began = time.thread_time()
        decoder.feed(piece)
        costs.append(time.thread_time() - began)
    tenth = len(costs) // 10
    early = statistics.median(costs[:tenth])
    return statistics.median(costs[-tenth:]) / max(early, 1e-7)


class RescanningDecoder:
    """What the check must catch: each read searches everything held so far."""

    def __init__(self) -> None:
        self.held = bytearray()

    def feed(self, chunk: bytes) -> list:
        self.held += chunk
        return [bytes(self.held)] if b"\n" in self.held else []


def test_a_long_line_in_small_reads_costs_the_same_per_read():
    assert cost_growth(SSEDecoder()) < 5
    decoder = SSEDecoder()
    value = b"x" * 2_000_000
    body = b"data: " + value + b"\n\n"
    reads = [body[i : i + 4096] for i in range(0, len(body), 4096)]
    assert [e for read in reads for e in decoder.feed(read)] == [("message", value.decode())]


def test_the_cost_check_catches_a_decoder_that_rescans():
    assert cost_growth(RescanningDecoder()) > 5


def test_bom_prefix_shorter_than_a_bom_is_kept():
    events, pending = decode([b"\xef"])
    assert events == [] and pending is None
