"""Per-chunk cost of a 10,000-chunk stream: hermes_min against bare requests, same server.

    .venv/bin/python bench/per_chunk.py [--runs 7] [--framings chunked,length,close] [--profile]

The stream (role chunk, 10,000 content chunks of 5 words in OpenAI shape, finish, usage-only
chunk, [DONE]; about 345 B per event, one HTTP chunk each) comes from bench/_sse_source.py in
a separate process on 127.0.0.1. Every run's folded content is checked against the expected text.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import time
from typing import Any, Callable

import _common
import _sse_source
import requests

from hermes_min import ChatClient, Done
from hermes_min.connection import HttpSession
from hermes_min.response import BodyFolder
from hermes_min.stream import Stream

MESSAGES = [{"role": "user", "content": "Say a lot."}]
BODY = {"model": "m", "messages": MESSAGES, "stream": True}
HEADERS = {"Accept": "text/event-stream", "Accept-Encoding": "identity"}
TARGET = 1.5


def _consume(event: object) -> None:
    """The no-op consumer every hermes event is handed to."""


def hermes_iter(url: str) -> str:
    with ChatClient(url, None, "m") as client:
        last = None
        for event in client.stream(MESSAGES):
            _consume(event)
            last = event
    assert isinstance(last, Done), last
    return last.message.content


def hermes_result(url: str) -> str:
    with ChatClient(url, None, "m") as client:
        return client.stream(MESSAGES).result().content


def hermes_inline(url: str) -> str:
    """hermes' transport and parser in this thread, with no worker thread or queue."""
    with HttpSession() as http:
        response = http.request("POST", url + "/chat/completions", json=BODY, headers=HEADERS)
        folder = BodyFolder(response.status_code, response.headers.get("Content-Type", ""))
        for read in http.reads(response):
            for event in folder.feed(read):
                _consume(event)
            if folder.done:
                break
        response.close()
        final = folder.finish()[-1]
    assert isinstance(final, Done), final
    return final.message.content


def hermes_reads(url: str) -> int:
    """hermes' transport alone: HttpSession.reads(), bytes counted, nothing parsed."""
    size = 0
    with HttpSession() as http:
        response = http.request("POST", url + "/chat/completions", json=BODY, headers=HEADERS)
        for read in http.reads(response):
            size += len(read)
        response.close()
    return size


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # as hermes does: no proxy lookups for 127.0.0.1
    return session


def baseline(url: str) -> str:
    """The bare baseline: requests iter_lines() + json.loads of each data line."""
    parts = []
    with _session() as session:
        resp = session.post(url + "/chat/completions", json=BODY, headers=HEADERS, stream=True)
        for line in resp.iter_lines():
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            choices = json.loads(data).get("choices")
            if choices:
                text = choices[0]["delta"].get("content")
                if text:
                    parts.append(text)
        resp.close()
    return "".join(parts)


def floor(url: str) -> int:
    """Raw bytes only: requests iter_content(None)."""
    size = 0
    with _session() as session:
        resp = session.post(url + "/chat/completions", json=BODY, headers=HEADERS, stream=True)
        for data in resp.iter_content(None):
            size += len(data)
        resp.close()
    return size


CLIENTS: list[tuple[str, Callable[[str], Any]]] = [
    ("floor: requests iter_content(None), bytes only", floor),
    ("hermes transport: HttpSession.reads(), bytes only", hermes_reads),
    ("baseline: requests iter_lines() + json.loads", baseline),
    ("hermes reads + BodyFolder inline (no thread)", hermes_inline),
    ("hermes: ChatClient.stream() iterated", hermes_iter),
    ("hermes: ChatClient.stream().result()", hermes_result),
]


def measure(url: str, runs: int, expected: str, body_size: int) -> dict[str, dict]:
    """Median wall and CPU per client; one warm-up, then `runs` rounds, clients interleaved."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in CLIENTS}
    for round_ in range(runs + 1):
        for name, fn in CLIENTS:
            wall0, cpu0 = time.perf_counter(), time.process_time()
            out = fn(url)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            want = body_size if isinstance(out, int) else len(expected)
            got = out if isinstance(out, int) else len(out)
            if got != want or (isinstance(out, str) and out != expected):
                raise SystemExit(f"{name}: wrong output ({got} instead of {want})")
            if round_:
                times[name].append((wall, cpu))
    base = [w for w, _ in times[CLIENTS[2][0]]]
    return {
        name: {
            "wall_ms": _common.median([w for w, _ in t]) * 1000,
            "cpu_ms": _common.median([c for _, c in t]) * 1000,
            "min_ms": min(w for w, _ in t) * 1000,
            "max_ms": max(w for w, _ in t) * 1000,
            # this client's time over the baseline's in the same round: steadier on a noisy VM
            "paired": _common.median([w / b for (w, _), b in zip(t, base)]),
        }
        for name, t in times.items()
    }


def report(framing: str, chunks: int, results: dict[str, dict]) -> dict:
    base = results[CLIENTS[2][0]]["wall_ms"]
    rows = []
    for name, r in results.items():
        rows.append(
            [
                name,
                f"{r['wall_ms']:.1f}",
                f"{r['min_ms']:.1f}-{r['max_ms']:.1f}",
                f"{r['cpu_ms']:.1f}",
                f"{r['wall_ms'] * 1000 / chunks:.2f}",
                f"{r['wall_ms'] / base:.2f}x",
                f"{r['paired']:.2f}x",
            ]
        )
    print(f"\n{framing} framing")
    print(
        _common.table(
            ["client", "wall ms", "range", "CPU ms", "us/chunk", "/baseline", "paired"],
            rows,
        )
    )
    it = results[CLIENTS[4][0]]["wall_ms"] / base
    res = results[CLIENTS[5][0]]["wall_ms"] / base
    verdict = "met" if max(it, res) <= TARGET else "MISSED"
    print(
        f"hermes/baseline (ratio of medians): stream {it:.2f}x, result() {res:.2f}x; "
        f"paired per round: {results[CLIENTS[4][0]]['paired']:.2f}x, "
        f"{results[CLIENTS[5][0]]['paired']:.2f}x; best over best: "
        f"{results[CLIENTS[4][0]]['min_ms'] / results[CLIENTS[2][0]]['min_ms']:.2f}x, "
        f"{results[CLIENTS[5][0]]['min_ms'] / results[CLIENTS[2][0]]['min_ms']:.2f}x "
        f"(target within {TARGET}x: {verdict})"
    )
    return {
        "us_per_chunk": {n: round(r["wall_ms"] * 1000 / chunks, 2) for n, r in results.items()},
        "ratio_stream": round(it, 2),
        "ratio_result": round(res, 2),
        "target_met": verdict == "met",
    }


def profile(url: str, top: int = 12) -> None:
    """cProfile of one hermes stream: the worker thread and the consuming thread apart."""
    worker = cProfile.Profile()
    original = Stream._work

    def profiled_work(self: Stream) -> None:
        worker.runcall(original, self)

    Stream._work = profiled_work  # type: ignore[method-assign]  # this process only
    consumer = cProfile.Profile()
    try:
        consumer.runcall(hermes_iter, url)
    finally:
        Stream._work = original  # type: ignore[method-assign]
    for title, prof in (("worker thread", worker), ("consuming thread", consumer)):
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out)
        stats.sort_stats("tottime").print_stats(top)
        print(f"\ncProfile, {title}, top {top} by own time:")
        print(_common.trim_profile(out.getvalue()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--framings", default="chunked,length,close")
    parser.add_argument("--profile", action="store_true", help="always print the cProfile")
    parser.add_argument("--json", help="write the headline figures here (run_all.py)")
    args = parser.parse_args()
    expected = "".join(_sse_source.pieces(args.chunks))
    body_size = sum(len(e) for e in _sse_source.events(args.chunks))
    print(
        f"{args.chunks} content chunks, {body_size} body bytes "
        f"({body_size / (args.chunks + 4):.0f} B/event); median of {args.runs} runs "
        "after 1 warm-up; every output checked"
    )
    summary: dict[str, Any] = {}
    with _common.Source("--chunks", str(args.chunks)) as source:
        for framing in args.framings.split(","):
            results = measure(source.url(framing), args.runs, expected, body_size)
            summary[framing] = report(framing, args.chunks, results)
        if args.profile or not all(s["target_met"] for s in summary.values()):
            profile(source.url("chunked"))
    _common.write_summary(args.json, summary)


if __name__ == "__main__":
    main()
