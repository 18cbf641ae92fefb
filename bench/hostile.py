"""Hostile servers: peak RSS and seconds to a clean exit of `hermes`, beside a good answer.

    .venv/bin/python bench/hostile.py [--runs 3] [--total-timeout 10]

Each case is a raw-socket server in this process that never stops sending (or sends almost
nothing), and `python bin/hermes -m m hi` in a child process against it, with a config
that sets provider.total_timeout (off by default: a terminal user may wait as long as they
like; the bot bounds every answer itself). The baseline, in the same run, is a
well-behaved server streaming a 1 MB answer. Per case: the exit code, the one stderr line,
the median wall seconds from start to exit, and the child's peak RSS (wait4's ru_maxrss).
Target: every case ends with one line and a non-zero exit, under 150 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Callable

import _common

ROOT = _common.ROOT
TARGET_MB = 150


def _chunks(pieces: Iterator[bytes]) -> Iterator[bytes]:
    for piece in pieces:
        yield b"%x\r\n%s\r\n" % (len(piece), piece)


def endless_line() -> Iterator[bytes]:
    yield b"data: "
    while True:
        yield b"x" * 65536


def endless_event() -> Iterator[bytes]:
    while True:
        yield b"data: " + b"y" * 65536 + b"\n"


def endless_json() -> Iterator[bytes]:
    yield b'{"choices": ['
    while True:
        yield b" " * 65536


def keep_alive() -> Iterator[bytes]:
    while True:
        yield b": keep-alive\n\n"
        time.sleep(1.0)


def byte_a_second() -> Iterator[bytes]:
    yield b'data: {"choices":[{"index":0,"delta":{"content":"'
    while True:
        yield b"a"
        time.sleep(1.0)


def good_answer() -> Iterator[bytes]:
    """1 MB of answer: 4,000 chunks of 256 characters, then a finish and [DONE]."""
    text = "word " * 51 + "w"
    event = json.dumps({"model": "m", "choices": [{"index": 0, "delta": {"content": text}}]})
    for _ in range(4000):
        yield f"data: {event}\n\n".encode()
    finish = {"model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    yield f"data: {json.dumps(finish)}\n\ndata: [DONE]\n\n".encode()


CASES: list[tuple[str, str, Callable[[], Iterator[bytes]]]] = [
    ("a well-behaved 1 MB answer (baseline)", "text/event-stream", good_answer),
    ("endless SSE line", "text/event-stream", endless_line),
    ("endless event (short lines, no blank line)", "text/event-stream", endless_event),
    ("endless 200 application/json body", "application/json", endless_json),
    ("keep-alive comments only, every second", "text/event-stream", keep_alive),
    ("one byte per second", "text/event-stream", byte_a_second),
]


class Server:
    """Serves one generator per connection, chunked, until the client goes away."""

    def __init__(self, content_type: str, body: Callable[[], Iterator[bytes]]) -> None:
        self.content_type, self.body = content_type, body
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._reply, args=(conn,), daemon=True).start()

    def _reply(self, conn: socket.socket) -> None:
        with conn:
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head = f"HTTP/1.1 200 OK\r\nContent-Type: {self.content_type}\r\n"
                conn.sendall(head.encode() + b"Transfer-Encoding: chunked\r\n\r\n")
                for piece in _chunks(self.body()):
                    conn.sendall(piece)
                conn.sendall(b"0\r\n\r\n")
            except OSError:
                return  # the client went away: what every hostile case ends with

    def close(self) -> None:
        self.closed = True
        self.sock.close()


def run_once(port: int, config: str) -> tuple[int, str, float, float]:
    """(exit code, stderr, seconds, peak MB) of one `hermes` run against the port."""
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env.update(XDG_STATE_HOME=tempfile.mkdtemp(), HERMES_CONFIG=config)
    command = [sys.executable, os.path.join(ROOT, "bin", "hermes")]
    command += ["--base-url", f"http://127.0.0.1:{port}/v1", "-m", "m", "hi"]
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
    return proc.returncode, text, seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--total-timeout", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as config:
        config.write(f"provider:\n  total_timeout: {args.total_timeout:g}\n  max_retries: 0\n")
    print(
        f"{sys.executable} ({sys.version.split()[0]}), {args.runs} runs per case, "
        f"provider.total_timeout: {args.total_timeout:g} s"
    )
    rows, worst = [], 0.0
    for name, content_type, body in CASES:
        server = Server(content_type, body)
        try:
            results = [run_once(server.port, config.name) for _ in range(args.runs)]
        finally:
            server.close()
        codes = sorted({r[0] for r in results})
        line = results[-1][1].strip().splitlines()
        said = (line[-1][:70] + ("..." if len(line[-1]) > 70 else "")) if line else ""
        seconds = statistics.median(r[2] for r in results)
        peak = statistics.median(r[3] for r in results)
        worst = max(worst, max(r[3] for r in results))
        rows.append([name, ",".join(map(str, codes)), f"{seconds:.2f}", f"{peak:.1f}", said])
    os.unlink(config.name)
    print(_common.table(["server", "exit", "seconds", "peak MB", "what hermes said"], rows))
    verdict = "met" if worst < TARGET_MB else "MISSED"
    print(f"target (every case under {TARGET_MB} MB peak RSS): {verdict} (worst {worst:.1f} MB)")


if __name__ == "__main__":
    main()
