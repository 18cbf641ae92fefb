"""Time from Stream.interrupt() to the worker thread ending, with the server silent.

    .venv/bin/python bench/interrupt.py [--runs 30]

Two cases: silent mid-body (tests/sse_server.py plays one event, then a Hold) and silent
before the response headers (a raw socket server here that reads the request and says
nothing). Also whether, and how soon, the server saw the client close the connection.
"""

from __future__ import annotations

import argparse
import select
import socket
import threading
import time
from typing import Callable

import _common

from hermes_min import ChatClient, Failed, TextDelta
from tests.sse_server import Hold, Reply, SSEServer, answer, chunk, sse

MESSAGES = [{"role": "user", "content": "hi"}]
TARGET_MS = 20.0
SETTLE = 0.01  # after the server goes quiet, so the worker is surely blocked in recv()


class SilentServer:
    """Accepts, reads the request, sends nothing; notes when the client's EOF arrives."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"
        self.requested = threading.Event()
        self.gone = threading.Event()
        self.gone_at = 0.0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._silent, args=(conn,), daemon=True).start()

    def _silent(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                piece = conn.recv(65536)
                if not piece:
                    return
                data += piece
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.decode("latin-1").split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            while len(body) < length:
                body += conn.recv(65536)
            self.requested.set()
            ready, _, _ = select.select([conn], [], [], 10.0)
            try:
                eof = bool(ready) and not conn.recv(1)
            except OSError:
                eof = True  # a reset is the client closing too
            if eof:
                self.gone_at = time.perf_counter()
                self.gone.set()

    def close(self) -> None:
        self._sock.close()


def _finish(stream: object, events: object) -> str:
    """Drain the stream after the interrupt; the kind of its final event."""
    last = None
    for event in events:  # type: ignore[attr-defined]
        last = event
    if isinstance(last, Failed):
        return last.error.kind
    return type(last).__name__


def mid_body(server: SSEServer) -> tuple[float, float | None, str]:
    hold = Hold(limit=5.0)
    server.client_gone.clear()
    server.holding.clear()
    server.reply(Reply(parts=[sse(chunk("Hello"), done=False), hold, *answer(" world")]))
    with ChatClient(server.url, None, "m") as client:
        stream = client.stream(MESSAGES)
        events = iter(stream)
        first = next(events)
        assert isinstance(first, TextDelta) and first.text == "Hello", first
        server.holding.wait(2.0)
        time.sleep(SETTLE)
        t0 = time.perf_counter()
        stream.interrupt()
        ended = stream.join(5.0)
        t1 = time.perf_counter()
        seen = server.client_gone.wait(2.0)
        t2 = time.perf_counter()
        kind = _finish(stream, events)
    hold.release.set()
    if not ended:
        kind += " (worker still running!)"
    return (t1 - t0) * 1000, (t2 - t0) * 1000 if seen else None, kind


def before_headers(server: SilentServer) -> tuple[float, float | None, str]:
    server.requested.clear()
    server.gone.clear()
    with ChatClient(server.url, None, "m", max_retries=0) as client:
        stream = client.stream(MESSAGES)
        if not server.requested.wait(2.0):
            raise SystemExit("the silent server got no request")
        time.sleep(SETTLE)
        t0 = time.perf_counter()
        stream.interrupt()
        ended = stream.join(5.0)
        t1 = time.perf_counter()
        seen = server.gone.wait(2.0)
        kind = _finish(stream, iter(stream))
    if not ended:
        kind += " (worker still running!)"
    return (t1 - t0) * 1000, (server.gone_at - t0) * 1000 if seen else None, kind


def run(name: str, case: Callable[[], tuple[float, float | None, str]], runs: int) -> dict:
    case()  # warm-up
    joins, seen, kinds = [], [], set()
    for _ in range(runs):
        join_ms, seen_ms, kind = case()
        joins.append(join_ms)
        kinds.add(kind)
        if seen_ms is not None:
            seen.append(seen_ms)
    return {
        "case": name,
        "median_ms": _common.median(joins),
        "max_ms": max(joins),
        "seen": len(seen),
        "seen_median_ms": _common.median(seen) if seen else None,
        "seen_max_ms": max(seen) if seen else None,
        "kinds": sorted(kinds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", help="write the headline figures here (run_all.py)")
    args = parser.parse_args()
    results = []
    with SSEServer() as sse_server:
        results.append(run("silent mid-body (Hold)", lambda: mid_body(sse_server), args.runs))
    silent = SilentServer()
    try:
        results.append(run("silent before headers", lambda: before_headers(silent), args.runs))
    finally:
        silent.close()
    rows = []
    for r in results:
        seen = (
            f"{r['seen']}/{args.runs}, {r['seen_median_ms']:.2f} / {r['seen_max_ms']:.2f} ms"
            if r["seen"]
            else f"0/{args.runs}"
        )
        rows.append(
            [
                r["case"],
                f"{r['median_ms']:.2f}",
                f"{r['max_ms']:.2f}",
                seen,
                ", ".join(r["kinds"]),
            ]
        )
    print(f"interrupt() -> join() returns, {args.runs} runs after 1 warm-up")
    print(
        _common.table(
            ["case", "median ms", "max ms", "server saw close (median / max)", "final event"],
            rows,
        )
    )
    worst = max(r["max_ms"] for r in results)
    verdict = "met" if worst < TARGET_MS else "MISSED"
    print(f"target: under {TARGET_MS:g} ms: {verdict} (worst {worst:.2f} ms)")
    print(
        "server saw close: before headers, the time the server's select() woke on EOF; "
        "mid-body, read after join() returned (an upper bound)"
    )
    _common.write_summary(args.json, {"cases": results, "target_met": worst < TARGET_MS})


if __name__ == "__main__":
    main()
