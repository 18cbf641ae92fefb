"""A 3,000-character answer streamed at 50 tokens/s into Telegram, against the fake Bot API.

    .venv/bin/python bench/telegram.py [--intervals 1.5,1.0,0.5] [--tps 50] [--prefill 0]

The real parts end to end: tests/sse_server.py plays a Markdown answer (paragraphs, a list,
a code block) as ~4-character tokens with a Pause between events; ChatClient streams it;
bot.stream_into() feeds a TelegramStreamer built by bot.streamer_for() from the default
settings (only edit_interval varies); BotAPI talks to tests/fake_botapi.FakeBotAPI with its
default flood limits (a token bucket of 1 call/s per chat with a burst of 3, and 20
sends/edits a minute per group). One run into a private chat (drafts) and one into a group
(edits) per interval. Reported per run: Bot API calls by method, 429s, first token -> first
visible text, last token -> final message, wall time, and whether the final text shown
equals the answer's rendered visible text.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections import Counter
from dataclasses import replace
from typing import Any

import _common

from hermes_min import ChatClient, TextDelta
from hermes_min.config import Config
from hermes_min.telegram.botapi import BotAPI
from hermes_min.telegram.markdown import render
from hermes_min.telegram.parts import visible
from hermes_min.telegram.streamer import stream_into, streamer_for
from tests.fake_botapi import FakeBotAPI, parse_text
from tests.sse_server import Pause, Reply, SSEServer, answer

PRIVATE, GROUP = 424242, -1001234567
ANSWER_CHARS = 3000
TOKEN_CHARS = 4
_SHORT = {
    "sendMessageDraft": "draft",
    "sendMessage": "send",
    "editMessageText": "edit",
    "sendChatAction": "typing",
    "deleteMessage": "delete",
}


def build_answer(size: int = ANSWER_CHARS) -> str:
    """A Markdown answer of exactly `size` characters: heading, paragraphs, list, code."""
    head = (
        "## Why the sky is blue\n\n"
        "Sunlight looks white, but it is a mix of every visible wavelength. When it enters "
        "the atmosphere it meets nitrogen and oxygen molecules that are far smaller than the "
        "wavelength of the light, and they scatter it in every direction. This is **Rayleigh "
        "scattering**, and its strength goes as the inverse fourth power of the wavelength, "
        "so blue light (around 450 nm) is scattered about *five times* more than red light "
        "(around 700 nm).\n\n"
        "A few consequences follow directly from that one formula:\n\n"
        "- The sky away from the sun is blue, because that is the scattered light you see.\n"
        "- Sunsets are red and orange: near the horizon the light crosses much more air, so "
        "most of the blue has been scattered out of the direct beam before it reaches you.\n"
        "- The sky is not violet, even though violet scatters more still: sunlight has less "
        "violet in it, ozone absorbs some, and our eyes are less sensitive to it.\n"
        "- Clouds are white, because their droplets are large compared with the wavelength "
        "and scatter all colours about equally (Mie scattering).\n\n"
        "You can check the ratio with a few lines of Python, using `snake_case` names and "
        "the `**` operator:\n\n"
        "```python\n"
        "def rayleigh_ratio(short_nm: float, long_nm: float) -> float:\n"
        '    """How much more the shorter wavelength is scattered."""\n'
        "    return (long_nm / short_nm) ** 4\n"
        "\n"
        "for colour, nm in [('violet', 400), ('blue', 450), ('green', 530)]:\n"
        "    print(f'{colour:>6}: {rayleigh_ratio(nm, 700):.1f}x red')  # a < b & c\n"
        "```\n\n"
        "Running it prints roughly 9.4x for violet, 5.9x for blue and 3.0x for green. The "
        "same physics explains why distant mountains look bluish (aerial perspective) and why "
        "the sky on Mars, whose fine dust scatters red light forward, is butterscotch by day "
        "and has blue sunsets.\n\n"
    )
    filler = (
        "In short, the colour of the sky is a measure of how strongly air molecules scatter "
        "each wavelength, weighted by the spectrum of the sun and the response of the eye. "
        "Change any of the three and the sky changes colour with it: a planet with a thicker "
        "atmosphere, a redder star, or an animal that sees ultraviolet would each describe a "
        "different sky above the same physics. "
    )
    room = size - len(head)
    if room <= 1:
        raise ValueError(f"answer size {size} is below the fixed part ({len(head)})")
    tail = (filler * (room // len(filler) + 1))[: room - 1].rstrip()
    return head + tail + "." * (room - len(tail))  # ends a sentence, whatever the cut


def tokens(text: str, size: int = TOKEN_CHARS) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


class Timed:
    """Wraps a Stream for stream_into(): notes when the first and last text deltas arrive."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.first: float | None = None
        self.last: float | None = None
        self.deltas = 0

    def __iter__(self):
        for event in self._stream:
            if isinstance(event, TextDelta):
                now = time.monotonic()
                if self.first is None:
                    self.first = now
                self.last = now
                self.deltas += 1
            yield event

    def interrupt(self) -> None:
        self._stream.interrupt()


def one_run(text: str, chat: int, interval: float, tps: float, prefill: float) -> dict:
    """Stream `text` into `chat` with the default settings but `interval`; measure it."""
    config = Config()
    config = replace(config, streaming=replace(config.streaming, edit_interval=interval))
    pieces = tokens(text)
    parts: list = [Pause(prefill)] if prefill > 0 else []
    for event in answer(*pieces):
        parts += [event, Pause(1.0 / tps)]
    parts = parts[:-1]
    with FakeBotAPI() as fake, SSEServer() as server:  # FakeBotAPI's default flood limits
        server.reply(Reply(parts=parts))
        api = BotAPI(fake.token, fake.api_base)
        client = ChatClient(server.url, None, "test-model")
        try:
            start = time.monotonic()
            streamer = streamer_for(api, config, chat)
            timed = Timed(client.stream([{"role": "user", "content": "Why is the sky blue?"}]))
            delivery = stream_into(timed, streamer)
            end = time.monotonic()
        finally:
            client.close()
            api.close()
        calls = fake.calls
        shown = fake.texts(chat)
        draft_left = fake.draft(chat) if chat > 0 else None
    return measure(text, chat, interval, calls, shown, draft_left, delivery, timed, start, end)


def measure(text, chat, interval, calls, shown, draft_left, delivery, timed, start, end) -> dict:
    ok = [c for c in calls if c.ok]
    first_visible = next(
        (
            c.time
            for c in ok
            if c.method in ("sendMessageDraft", "sendMessage") and c.payload.get("text")
        ),
        None,
    )
    finals = [
        c
        for c in ok
        if c.method in ("sendMessage", "editMessageText") and c.payload.get("parse_mode")
    ]
    final_at = finals[-1].time if finals else None
    mode = Config().telegram.parse_mode
    expected = visible(render(text, mode), mode).strip()
    fake_expected = parse_text(render(text, mode), mode)[0].strip()
    by_method = Counter(c.method for c in calls)
    rate = (timed.deltas - 1) / (timed.last - timed.first) if timed.deltas > 1 else 0.0
    return {
        "chat": "private" if chat > 0 else "group",
        "interval": interval,
        "calls": dict(by_method),
        "calls_total": len(calls),
        "rate_limited": sum(1 for c in calls if c.status == 429),
        "failed_other": sum(1 for c in calls if not c.ok and c.status != 429),
        "first_visible_s": None if first_visible is None else first_visible - timed.first,
        "final_s": None if final_at is None else final_at - timed.last,
        "wall_s": end - start,
        "stream_s": timed.last - timed.first,
        "token_rate": rate,
        "messages": len(shown),
        "final_matches": shown == [expected] and expected == fake_expected,
        "draft_left": draft_left is not None,
        "complete": delivery.complete,
        "delivery": delivery.describe(),
    }


def _calls_text(calls: dict) -> str:
    order = ["sendChatAction", "sendMessageDraft", "sendMessage", "editMessageText"]
    names = order + sorted(set(calls) - set(order))
    return " ".join(f"{_SHORT.get(m, m)} {calls[m]}" for m in names if calls.get(m))


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--intervals", default="1.5,1.0,0.5", help="edit_interval values to run")
    parser.add_argument("--tps", type=float, default=50.0, help="tokens per second")
    parser.add_argument("--prefill", type=float, default=0.0, help="seconds before token 1")
    parser.add_argument("--json", help="write the headline figures to this file")
    args = parser.parse_args()

    text = build_answer()
    assert len(text) == ANSWER_CHARS, len(text)
    intervals = [float(v) for v in args.intervals.split(",") if v.strip()]
    print(
        f"answer: {len(text)} characters, {len(tokens(text))} tokens of ~{TOKEN_CHARS} chars "
        f"at {args.tps:g}/s; defaults: {Config().streaming}, parse_mode "
        f"{Config().telegram.parse_mode}; fake Bot API default flood limits",
        flush=True,
    )
    results: list[dict] = []
    for interval in intervals:
        # The two chats are independent (own fake, own model server): run them side by side.
        found: dict[int, dict] = {}

        def run(chat: int, interval: float = interval, found: dict = found) -> None:
            found[chat] = one_run(text, chat, interval, args.tps, args.prefill)

        threads = [threading.Thread(target=run, args=(chat,)) for chat in (PRIVATE, GROUP)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for chat in (PRIVATE, GROUP):
            if chat not in found:
                raise SystemExit(f"the run into chat {chat} at {interval} s failed")
            results.append(found[chat])
            r = found[chat]
            print(
                f"  {r['chat']:7} edit_interval {interval:g}: {r['wall_s']:.1f} s, {r['delivery']}",
                flush=True,
            )

    headers = [
        "run",
        "interval",
        "Bot API calls",
        "429s",
        "1st token->visible s",
        "last token->final s",
        "wall s",
        "tok/s",
        "final == answer",
    ]
    rows = []
    for r in results:
        mark = "yes" if r["final_matches"] and r["complete"] and not r["draft_left"] else "NO"
        rows.append(
            [
                "private (drafts)" if r["chat"] == "private" else "group (edits)",
                f"{r['interval']:g}",
                f"{r['calls_total']}: {_calls_text(r['calls'])}",
                r["rate_limited"],
                _seconds(r["first_visible_s"]),
                _seconds(r["final_s"]),
                f"{r['wall_s']:.1f}",
                f"{r['token_rate']:.1f}",
                mark,
            ]
        )
    print()
    print(_common.table(headers, rows))
    default = [r for r in results if r["interval"] == Config().streaming.edit_interval]
    if default:
        total = sum(r["rate_limited"] for r in default)
        print(
            f"\n429s at default settings: {total} "
            f"({'target met' if total == 0 else 'TARGET MISSED'}: zero 429s)"
        )
    others = [r for r in results if r["failed_other"]]
    for r in others:
        print(
            f"note: {r['chat']} at {r['interval']:g} s had {r['failed_other']} other failed calls"
        )
    _common.write_summary(args.json, {"runs": results})


if __name__ == "__main__":
    main()
