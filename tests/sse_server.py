"""A threaded raw-socket HTTP server on 127.0.0.1 that plays scripted SSE replies.

Raw sockets (not http.server) so a test controls the framing exactly: chunked,
Content-Length or close-delimited bodies, stalls, resets, and slow trickles.
"""

from __future__ import annotations

import json
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Hold:
    """Stop sending until `release` is set, the client hangs up, or `limit` seconds pass."""

    release: threading.Event = field(default_factory=threading.Event)
    limit: float = 10.0


@dataclass
class Pause:
    """Stop sending for a fixed time (a slow trickle, not synchronisation)."""

    seconds: float


class Reset:
    """Abort the connection with a TCP reset."""


@dataclass
class Reply:
    """One scripted HTTP response."""

    parts: list = field(default_factory=list)
    status: int = 200
    content_type: str = "text/event-stream"
    framing: str = "chunked"  # chunked | length | close
    headers: dict = field(default_factory=dict)
    before: Hold | None = None  # silence before the status line (a model still reading the prompt)


def sse(*payloads: Any, done: bool = True) -> bytes:
    """An SSE body: one `data:` event per payload (dicts become JSON), then [DONE]."""
    out = []
    for payload in payloads:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        out.append(f"data: {data}\n\n")
    if done:
        out.append("data: [DONE]\n\n")
    return "".join(out).encode()


def chunk(content: str | None = None, *, finish: str | None = None, **delta: Any) -> dict:
    """A chat.completion.chunk with choice 0."""
    if content is not None:
        delta["content"] = content
    return {
        "id": "chatcmpl-t",
        "object": "chat.completion.chunk",
        "model": "test-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def answer(*pieces: str, finish: str = "stop", usage: dict | None = None) -> list[bytes]:
    """An answer as one SSE event per HTTP chunk: the pieces, a finish chunk, usage."""
    events = [sse(chunk(p), done=False) for p in pieces]
    events.append(sse(chunk(finish=finish), done=False))
    if usage:
        events.append(sse({"choices": [], "usage": usage}, done=False))
    events.append(b"data: [DONE]\n\n")
    return events


class SSEServer:
    """Serves queued Replies in order (the last one served repeats); records every request."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self._tls = tls
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/v1"
        self.requests: list[dict] = []
        self.replies: list[Reply] = []
        self._last = Reply(parts=answer("ok"))
        self.client_gone = threading.Event()  # a client hung up while a Hold was active
        self.holding = threading.Event()  # a Hold has started
        self._lock = threading.Lock()
        self._closed = False
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def reply(self, *replies: Reply) -> SSEServer:
        """Queue replies for the next requests."""
        with self._lock:
            self.replies.extend(replies)
        return self

    def close(self) -> None:
        """Stop serving and drop every connection; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        self._sock.close()
        for conn in list(self._conns):
            try:
                conn.close()
            except OSError:
                pass

    def __enter__(self) -> SSEServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            thread = threading.Thread(target=self._connection, args=(conn,), daemon=True)
            thread.start()

    def _connection(self, conn: socket.socket) -> None:
        try:
            if self._tls is not None:
                conn = self._tls.wrap_socket(conn, server_side=True)
            with conn:
                while self._answer(conn):
                    pass
        except OSError:
            pass

    def _answer(self, conn: socket.socket) -> bool:
        request = _read_request(conn)
        if request is None:
            return False
        with self._lock:
            self.requests.append(request)
            reply = self._choose(request)
        return self._send(conn, reply)

    def _choose(self, request: dict) -> Reply:
        """The reply to `request` (under the lock): the next queued one, else the last again."""
        if self.replies:
            self._last = self.replies.pop(0)
        return self._last

    def _send(self, conn: socket.socket, reply: Reply) -> bool:
        if reply.before is not None and not self._hold(conn, reply.before):
            return False
        head = [f"HTTP/1.1 {reply.status} X", f"Content-Type: {reply.content_type}"]
        head += [f"{k}: {v}" for k, v in reply.headers.items()]
        if reply.framing == "chunked":
            head.append("Transfer-Encoding: chunked")
        elif reply.framing == "length":
            size = sum(len(p) for p in reply.parts if isinstance(p, bytes))
            head.append(f"Content-Length: {size}")
        else:
            head.append("Connection: close")
        conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        for part in reply.parts:
            if not self._part(conn, part, reply.framing):
                return False
        if reply.framing == "chunked":
            conn.sendall(b"0\r\n\r\n")
        return reply.framing != "close"

    def _part(self, conn: socket.socket, part: Any, framing: str) -> bool:
        if isinstance(part, Hold):
            return self._hold(conn, part)
        if isinstance(part, Pause):
            time.sleep(part.seconds)
            return True
        if isinstance(part, Reset):
            conn.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            conn.close()
            return False
        if framing == "chunked":
            part = b"%x\r\n%s\r\n" % (len(part), part)
        conn.sendall(part)
        return True

    def _hold(self, conn: socket.socket, hold: Hold) -> bool:
        self.holding.set()
        deadline = time.monotonic() + hold.limit
        while not hold.release.is_set() and time.monotonic() < deadline:
            ready, _, _ = select.select([conn], [], [], 0.01)
            if ready and not conn.recv(1, socket.MSG_PEEK):
                self.client_gone.set()
                return False
        return True


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _read_request(conn: socket.socket) -> dict | None:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            return None
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    length = int(headers.get("content-length", 0))
    while len(body) < length:
        body += conn.recv(65536)
    parsed = json.loads(body) if body else None
    return {"method": method, "path": path, "headers": headers, "json": parsed}
