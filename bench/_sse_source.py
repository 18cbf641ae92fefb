"""A separate-process SSE source on 127.0.0.1 for the benches: a pre-built answer, sent flat out.

Run by the bench scripts (see _common.Source); prints `port N`, serves until stdin closes.
The request path picks the framing: /chunked/..., /length/... or /close/...; with chunked
framing each event is one HTTP chunk. The whole body is built once and written with one
sendall(), so the client reads as fast as the socket takes it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading

_WORDS = (
    "the quick brown fox jumps over a lazy dog while seven bold wizards quietly pack "
    "twelve boxes of fresh liquor jugs and every river runs down to the sea"
).split()
_HEAD = {
    "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
    "object": "chat.completion.chunk",
    "created": 1741570283,
    "model": "gpt-4o-mini-2024-07-18",
    "service_tier": "default",
    "system_fingerprint": "fp_06737a9306",
}


def pieces(chunks: int, piece_chars: int = 0) -> list[str]:
    """The answer's content pieces: ~5 words each, or `piece_chars` characters each."""
    if piece_chars:
        filler = "abcdefghijklmnopqrstuvwxyz " * (piece_chars // 27 + 1)
        return [(f"{i:07d} " + filler)[:piece_chars] for i in range(chunks)]
    n = len(_WORDS)
    return ["".join(" " + _WORDS[(i * 5 + k) % n] for k in range(5)) for i in range(chunks)]


def _event(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _chunk(delta: dict, finish: str | None = None) -> dict:
    # The shape of a real gpt-4o-mini chunk (about 340 B with 5 words, as in providers.md §8.2).
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return {**_HEAD, "choices": [choice], "usage": None, "obfuscation": "x7Qk"}


def events(chunks: int, piece_chars: int = 0) -> list[bytes]:
    """Role chunk, the content chunks, finish, usage-only chunk, [DONE]: one bytes per event."""
    out = [_event(_chunk({"role": "assistant", "content": "", "refusal": None}))]
    out += [_event(_chunk({"content": p})) for p in pieces(chunks, piece_chars)]
    out.append(_event(_chunk({}, "stop")))
    usage = {"prompt_tokens": 12, "completion_tokens": chunks * 5, "total_tokens": chunks * 5 + 12}
    out.append(_event({**_HEAD, "choices": [], "usage": usage, "obfuscation": "q1"}))
    out.append(b"data: [DONE]\n\n")
    return out


def bodies(chunks: int, piece_chars: int) -> dict[str, bytes]:
    """Each framing's whole response, head included."""
    evs = events(chunks, piece_chars)
    flat = b"".join(evs)
    head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
    framed = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in evs) + b"0\r\n\r\n"
    return {
        "chunked": (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + framed,
        "length": (head + f"Content-Length: {len(flat)}\r\n\r\n").encode() + flat,
        "close": (head + "Connection: close\r\n\r\n").encode() + flat,
    }


def _read_request(conn: socket.socket) -> str | None:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            return None
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    while len(body) < length:
        piece = conn.recv(65536)
        if not piece:
            return None
        body += piece
    return lines[0].split(" ")[1]


def _serve_one(conn: socket.socket, replies: dict[str, bytes]) -> None:
    with conn:
        try:
            while True:
                path = _read_request(conn)
                if path is None:
                    return
                framing = path.strip("/").split("/")[0]
                conn.sendall(replies.get(framing, replies["chunked"]))
                if framing == "close":
                    conn.shutdown(socket.SHUT_WR)
                    return
        except OSError:
            return  # the client hung up early (it stops reading at [DONE])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--piece-chars", type=int, default=0, help="0: ~5 words per chunk")
    args = parser.parse_args()
    replies = bodies(args.chunks, args.piece_chars)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)

    def accept() -> None:
        while True:
            conn, _ = sock.accept()
            threading.Thread(target=_serve_one, args=(conn, replies), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    print("port", sock.getsockname()[1], flush=True)
    sys.stdin.read()  # the parent closes our stdin (or dies) when it is done
    os._exit(0)


if __name__ == "__main__":
    main()
