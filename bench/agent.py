"""Per-chunk cost of the agent: an `Agent` turn with no tools against the bare stream it wraps.

    .venv/bin/python bench/agent.py [--runs 7] [--chunks 10000] [--profile]

The 10,000-chunk answer of bench/per_chunk.py (the same separate-process
bench/_sse_source.py, chunked framing, one event per HTTP chunk) is read three ways,
interleaved in a rotating order within each round: the bare stream
(`ChatClient(url, None, "m").stream(messages)` iterated to the end), an agent turn
(`Agent(client).turn(messages)` iterated, think-tag stripping on, as by default) and the
same with `strip_think_tags=False`. Every run's folded content (the final `Done` message)
is checked against the expected text. Median of `--runs` rounds after 1 warm-up, in
us/chunk; agent/bare as a ratio of medians and as the median of per-round ratios.

Also measured, without any network (21 rounds, it is cheap): the agent layer alone,
replaying the events of one real stream (collected once) through `Agent.turn()` from a
stand-in client, against iterating the same list. That isolates the agent's own cost per
chunk from socket noise, and the verdict uses it: the larger of the two added us/chunk as a
share of the bare stream's us/chunk. Over ~5 % (`THRESHOLD`), or with --profile, it prints
a cProfile of one agent turn's consuming thread and ranks the agent.py/think.py functions
by own time. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from typing import Any, Callable

import _common
import _sse_source

from hermes_min import ChatClient, Done, TextDelta
from hermes_min.agent import Agent  # not (yet) exported from hermes_min itself

MESSAGES = [{"role": "user", "content": "Say a lot."}]
THRESHOLD = 1.05  # "no measurable cost": within ~5 % of the bare stream
LAYER_ROUNDS = 21  # the no-network measurement is cheap (~20 ms a round)


def _consume(event: object) -> None:
    """The no-op consumer every event is handed to."""


def _drain(events: Any) -> str:
    last = None
    for event in events:
        _consume(event)
        last = event
    assert isinstance(last, Done), last
    return last.message.content


def bare(url: str) -> str:
    with ChatClient(url, None, "m") as client:
        return _drain(client.stream(MESSAGES))


def agent_strip(url: str) -> str:
    with ChatClient(url, None, "m") as client:
        return _drain(Agent(client).turn(MESSAGES))


def agent_plain(url: str) -> str:
    with ChatClient(url, None, "m") as client:
        return _drain(Agent(client, strip_think_tags=False).turn(MESSAGES))


BARE = "bare: ChatClient.stream() iterated"
STRIP = "Agent.turn(), strip_think_tags=True (default)"
PLAIN = "Agent.turn(), strip_think_tags=False"
CLIENTS: list[tuple[str, Callable[[str], str]]] = [
    (BARE, bare),
    (STRIP, agent_strip),
    (PLAIN, agent_plain),
]


def measure(url: str, runs: int, expected: str) -> dict[str, list[tuple[float, float]]]:
    """(wall s, CPU s) per client and round; 1 warm-up round, order rotated every round."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in CLIENTS}
    for round_ in range(runs + 1):
        shift = round_ % len(CLIENTS)
        for name, fn in CLIENTS[shift:] + CLIENTS[:shift]:
            wall0, cpu0 = time.perf_counter(), time.process_time()
            out = fn(url)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            if out != expected:
                raise SystemExit(f"{name}: wrong content ({len(out)} chars, not {len(expected)})")
            if round_:
                times[name].append((wall, cpu))
    return times


def report(times: dict[str, list[tuple[float, float]]], chunks: int) -> dict[str, Any]:
    base = times[BARE]
    base_wall = _common.median([w for w, _ in base])
    rows, summary = [], {}
    for name, t in times.items():
        wall = _common.median([w for w, _ in t])
        cpu = _common.median([c for _, c in t])
        paired = _common.median([w / b for (w, _), (b, _) in zip(t, base)])
        rows.append(
            [
                name,
                f"{wall * 1e3:.1f}",
                f"{min(w for w, _ in t) * 1e3:.1f}-{max(w for w, _ in t) * 1e3:.1f}",
                f"{cpu * 1e3:.1f}",
                f"{wall * 1e6 / chunks:.2f}",
                f"{wall / base_wall:.3f}x",
                f"{paired:.3f}x",
            ]
        )
        summary[name] = {
            "us_per_chunk": round(wall * 1e6 / chunks, 2),
            "ratio": round(wall / base_wall, 3),
            "paired": round(paired, 3),
        }
    print(
        _common.table(["client", "wall ms", "range", "CPU ms", "us/chunk", "/bare", "paired"], rows)
    )
    return summary


# ---------------------------------------------------------------- the agent layer alone


class _Replay:
    """A finished stream's events, handed out again: what Turn needs of a Stream."""

    def __init__(self, events: list) -> None:
        self._events = events

    def __iter__(self) -> Any:
        return iter(self._events)

    def interrupt(self) -> None:
        pass

    def join(self, timeout: float | None = None) -> bool:
        return True

    def close(self) -> None:
        pass


class _ReplayClient:
    def __init__(self, events: list) -> None:
        self.events = events

    def stream(self, messages: list[dict], **kwargs: Any) -> _Replay:
        return _Replay(self.events)


def layer_alone(url: str, runs: int, expected: str, chunks: int) -> dict[str, float]:
    """The agent's own cost per chunk: a turn over a recorded event list vs iterating it."""
    with ChatClient(url, None, "m") as client:
        events = list(client.stream(MESSAGES))
    texts = sum(1 for e in events if type(e) is TextDelta)
    replay = _ReplayClient(events)
    cases: list[tuple[str, Callable[[], str]]] = [
        ("iterate the recorded events", lambda: _drain(iter(events))),
        ("Agent.turn(), strip on", lambda: _drain(Agent(replay).turn(MESSAGES))),
        (
            "Agent.turn(), strip off",
            lambda: _drain(Agent(replay, strip_think_tags=False).turn(MESSAGES)),
        ),
    ]
    times: dict[str, list[float]] = {name: [] for name, _ in cases}
    for round_ in range(runs + 1):
        for name, fn in cases:
            start = time.perf_counter()
            out = fn()
            elapsed = time.perf_counter() - start
            if out != expected:
                raise SystemExit(f"{name}: wrong content")
            if round_:
                times[name].append(elapsed)
    base = _common.median(times[cases[0][0]])
    rows, out = [], {}
    for name, t in times.items():
        m = _common.median(t)
        rows.append(
            [name, f"{m * 1e3:.2f}", f"{m * 1e6 / chunks:.3f}", f"{(m - base) * 1e6 / chunks:.3f}"]
        )
        out[name] = round((m - base) * 1e6 / chunks, 3)
    print(
        f"\nthe agent layer alone, no network: {len(events)} recorded events "
        f"({texts} TextDelta), median of {runs} rounds after 1 warm-up"
    )
    print(_common.table(["case", "ms", "us/chunk", "added us/chunk"], rows))
    return out


# ---------------------------------------------------------------- profile


def profile(url: str, top: int = 14) -> None:
    """cProfile of one agent turn (strip on) on the consuming thread; the agent's costliest."""
    prof = cProfile.Profile()
    prof.runcall(agent_strip, url)
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    print(f"\ncProfile, one agent turn, consuming thread, top {top} by own time:")
    print(_common.trim_profile(out.getvalue()))
    ours = [
        (tt, ct, n, f"{file.rsplit('/', 1)[-1]}:{line} {func}")
        for (file, line, func), (_, n, tt, ct, _) in stats.stats.items()  # type: ignore[attr-defined]
        if file.endswith(("hermes_min/agent.py", "hermes_min/think.py"))
    ]
    ours.sort(reverse=True)
    print("\nagent.py / think.py functions by own time:")
    print(
        _common.table(
            ["function", "calls", "own ms", "cumulative ms"],
            [[name, str(n), f"{tt * 1e3:.1f}", f"{ct * 1e3:.1f}"] for tt, ct, n, name in ours[:8]],
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--profile", action="store_true", help="always print the cProfile")
    parser.add_argument("--json", help="write the headline figures here (run_all.py)")
    args = parser.parse_args()
    expected = "".join(_sse_source.pieces(args.chunks))
    print(
        f"{args.chunks} content chunks, chunked framing, from bench/_sse_source.py; median of "
        f"{args.runs} interleaved rounds after 1 warm-up; every run's content checked"
    )
    with _common.Source("--chunks", str(args.chunks)) as source:
        url = source.url("chunked")
        stream = report(measure(url, args.runs, expected), args.chunks)
        worst = max(max(stream[n]["ratio"], stream[n]["paired"]) for n in (STRIP, PLAIN))
        print(f"agent/bare over the socket, worst of ratio of medians and paired: {worst:.3f}x")
        added = layer_alone(url, LAYER_ROUNDS, expected, args.chunks)
        # The socket figures carry the machine's noise; the agent's own cost, measured with
        # no network, set against the bare stream's cost per chunk, is the steadier verdict.
        bare_us = stream[BARE]["us_per_chunk"]
        share = max(added.values()) / bare_us
        verdict = "within" if 1 + share <= THRESHOLD else "OVER"
        print(
            f"agent layer alone: +{max(added.values()):.2f} us/chunk at most = "
            f"{share * 100:.1f} % of the bare stream's {bare_us:.2f} us/chunk "
            f"({verdict} the ~{(THRESHOLD - 1) * 100:.0f} % threshold)"
        )
        summary = {
            "stream": stream,
            "layer_alone_added_us_per_chunk": added,
            "estimated_share": round(share, 3),
            "within_threshold": verdict == "within",
        }
        if args.profile or verdict != "within":
            profile(url)
    _common.write_summary(args.json, summary)


if __name__ == "__main__":
    main()
