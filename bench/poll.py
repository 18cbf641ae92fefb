"""Wall time and peak memory of `hermes telegram poll --once` (issue 5), as cron runs it.

    .venv/bin/python bench/poll.py [--runs 10] [--busy-runs 3] [--messages 20] [--importtime]

Each run is `python bin/hermes telegram poll --once --config CFG` in a child process, against
the fake Bot API (tests/fake_botapi.py) and a local SSE model (tests/sse_server.py) living in
this process on 127.0.0.1. The wall time runs from the spawn to the child's exit; the peak
memory is that child's own ru_maxrss, from os.wait4 (RUSAGE_CHILDREN would give the maximum
over every child so far). The baseline, `python -c "import requests"`, is spawned and measured
the same way, interleaved with the empty runs.

Cases: "empty", a run that finds nothing to do (10 runs, target under 0.3 s and 40 MB),
"busy", a run that answers 20 short messages from 20 users in 20 private chats (3 runs,
each with a fresh state file and fresh servers), and "concurrent" (issue 11): 16 chats,
each answer streamed over 5 s at a fixed token rate, answered with telegram.concurrency 16
beside the same run with concurrency 1 (target: within 2x one answer's time, 0 x 429
against the fake Bot API's limits, first visible text in every chat within 1 s of its
first token). The config is the shipped defaults apart from
the addresses, the allowed users and the state path. Each run is checked: exit 0, nothing on
stdout or stderr, and (busy) every message answered once. Two passes, like startup.py: the
environment as it is (here PYTHONDONTWRITEBYTECODE=1, so the checkout's hermes_min is compiled
from source on every start) and with a bytecode cache in a temporary PYTHONPYCACHEPREFIX, as
an installed copy has. Over target, or with --importtime, it prints the biggest imports of an
empty run from `python -X importtime`.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import _common

from tests.fake_botapi import FakeBotAPI
from tests.sse_server import Pause, Reply, SSEServer, answer

TARGET_SECONDS = 0.3
TARGET_MB = 40.0
HERMES = os.path.join(_common.ROOT, "bin", "hermes")
USERS = list(range(5001, 5021))


def _env(base: dict, tmp: str, token: str) -> dict:
    env = {k: v for k, v in base.items() if "proxy" not in k.lower()}
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "HERMES_CONFIG", "HERMES_MODEL"):
        env.pop(name, None)
    env.update(
        TELEGRAM_BOT_TOKEN=token,
        XDG_CONFIG_HOME=os.path.join(tmp, "xdg-config"),
        XDG_STATE_HOME=os.path.join(tmp, "xdg-state"),
    )
    return env


def _config(
    tmp: str, fake: FakeBotAPI, model: SSEServer, users: list[int], telegram: str = ""
) -> str:
    path = os.path.join(tmp, "hermes.yaml")
    with open(path, "w", encoding="utf-8") as out:
        out.write(
            f"provider:\n  base_url: {model.url}\n  model: m\n"
            f"telegram:\n  api_base: {fake.api_base}\n  allowed_users: {users}\n{telegram}"
            f"storage:\n  path: {os.path.join(tmp, 'state', 'hermes.db')}\n"
        )
    return path


def _spawn(cmd: list[str], env: dict, tmp: str) -> tuple[float, float, float, int, str]:
    """(wall s, peak MB, cpu s, exit code, output) of one child, from its own rusage."""
    out_path = os.path.join(tmp, "child.out")
    with open(out_path, "w+b") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=_common.ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped by wait4
        out.seek(0)
        output = out.read().decode("utf-8", "replace")
    peak_mb = usage.ru_maxrss / 1024  # Linux: KiB
    return wall, peak_mb, usage.ru_utime + usage.ru_stime, proc.returncode, output


def _check(name: str, code: int, output: str) -> None:
    if code != 0 or output:
        raise SystemExit(f"{name}: exit {code}, output {output[-500:]!r}")


def _poll_cmd(config: str, *extra: str) -> list[str]:
    return [sys.executable, *extra, HERMES, "telegram", "poll", "--once", "--config", config]


def measure_empty(runs: int, base_env: dict) -> dict[str, list[tuple[float, float, float]]]:
    """Empty poll runs interleaved with `import requests`, after one warm-up of each."""
    results: dict[str, list[tuple[float, float, float]]] = {"empty": [], "requests": []}
    with tempfile.TemporaryDirectory() as tmp, FakeBotAPI() as fake, SSEServer() as model:
        config = _config(tmp, fake, model, USERS[:1])
        env = _env(base_env, tmp, fake.token)
        baseline = [sys.executable, "-c", "import requests"]
        for round_ in range(runs + 1):
            wall, peak, cpu, code, output = _spawn(_poll_cmd(config), env, tmp)
            _check("empty poll", code, output)
            if round_:
                results["empty"].append((wall, peak, cpu))
            wall, peak, cpu, code, output = _spawn(baseline, env, tmp)
            _check("import requests", code, output)
            if round_:
                results["requests"].append((wall, peak, cpu))
        if model.requests or fake.calls_to("sendMessage"):
            raise SystemExit("the empty run talked to the model or sent a message")
    return results


def measure_busy(
    runs: int, messages: int, base_env: dict
) -> tuple[list[tuple[float, float, float]], list[int]]:
    """Runs that answer `messages` short messages, one per private chat, each from scratch;
    also how many typing actions each run sent (each holds that chat's final back by the
    pacing: half of streaming.edit_interval)."""
    out, typing = [], []
    users = USERS[:messages] if messages <= len(USERS) else list(range(5001, 5001 + messages))
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp, FakeBotAPI() as fake, SSEServer() as model:
            model.reply(Reply(parts=answer("A short ", "answer.")))  # the last one repeats
            for n, user in enumerate(users):
                fake.queue_text(user, f"short message {n}")
            config = _config(tmp, fake, model, users)
            wall, peak, cpu, code, output = _spawn(
                _poll_cmd(config), _env(base_env, tmp, fake.token), tmp
            )
            _check("busy poll", code, output)
            answered = [fake.texts(u) for u in users]
            if answered != [["A short answer."]] * len(users) or fake.pending_updates:
                raise SystemExit(f"not every message was answered once: {answered}")
            out.append((wall, peak, cpu))
            typing.append(len(fake.calls_to("sendChatAction")))
    return out, typing


class TimedModel(SSEServer):
    """Streams every answer over `seconds` at a fixed token rate; notes when each chat's
    first token went out (by the chat named in the prompt)."""

    def __init__(self, seconds: float, tokens: int = 50) -> None:
        super().__init__()
        self.first_token: dict[str, float] = {}
        step = seconds / tokens
        parts = answer(*["word " for _ in range(tokens)])
        self._timed = [parts[0]]
        for part in parts[1:]:
            self._timed += [Pause(step), part]

    def _send(self, conn: Any, reply: Reply) -> bool:
        prompt = self.requests[-1]["json"]["messages"][-1]["content"]
        return super()._send(conn, Reply(parts=[_Mark(self, prompt), *self._timed]))

    def _part(self, conn: Any, part: Any, framing: str) -> bool:
        return True if isinstance(part, _Mark) else super()._part(conn, part, framing)


class _Mark:
    """Not sent: where TimedModel notes the time of a chat's first token."""

    def __init__(self, model: TimedModel, prompt: str) -> None:
        model.first_token.setdefault(prompt, time.monotonic())


def measure_concurrent(
    chats: int, seconds: float, concurrency: int, base_env: dict
) -> dict[str, float]:
    """One run answering `chats` private chats at once with the given concurrency."""
    users = list(range(7001, 7001 + chats))
    with tempfile.TemporaryDirectory() as tmp, FakeBotAPI() as fake, TimedModel(seconds) as model:
        for user in users:
            fake.queue_text(user, f"chat {user}")
        config = _config(tmp, fake, model, users, f"  concurrency: {concurrency}\n")
        wall, peak, cpu, code, output = _spawn(
            _poll_cmd(config), _env(base_env, tmp, fake.token), tmp
        )
        _check("concurrent poll", code, output)
        if fake.pending_updates or any(len(fake.texts(u)) != 1 for u in users):
            raise SystemExit("not every chat got one answer")
        flood = sum(1 for call in fake.calls if call.status == 429)
        lags = []
        for user in users:
            shown = [c.time for c in fake.calls if c.chat_id == user and _shows_text(c)]
            token = model.first_token.get(f"chat {user}")
            if shown and token is not None:
                lags.append(min(shown) - token)
    return {
        "wall": wall,
        "peak_mb": peak,
        "ratio": wall / seconds,
        "flood": flood,
        "worst_first_text": max(lags) if lags else float("nan"),
    }


def _shows_text(call: Any) -> bool:
    """A call that puts answer text in front of the user (a draft, an edit, a message)."""
    visible = ("sendMessageDraft", "sendMessage", "editMessageText")
    return call.method in visible and call.status == 200 and bool(call.payload.get("text"))


def report_concurrent(args: argparse.Namespace, env: dict) -> dict:
    rows, figures = [], {}
    for concurrency in (args.chats, 1):
        got = measure_concurrent(args.chats, args.answer_seconds, concurrency, env)
        figures[concurrency] = got
        rows.append(
            [
                f"{args.chats} chats, concurrency {concurrency}",
                f"{got['wall']:.1f}",
                f"{got['ratio']:.2f}x",
                got["flood"],
                f"{got['worst_first_text']:.2f}",
                f"{got['peak_mb']:.1f}",
            ]
        )
    headers = ["", "wall s", "/ one answer", "429s", "worst first text s", "peak MB"]
    print(f"\nconcurrent answers, each {args.answer_seconds:g} s long")
    print(_common.table(headers, rows))
    best = figures[args.chats]
    met = best["ratio"] <= 2 and best["flood"] == 0 and best["worst_first_text"] <= 1.0
    print(f"target (within 2x, 0 x 429, first text within 1 s): {'met' if met else 'MISSED'}")
    return {"concurrent": figures[args.chats], "sequential": figures[1], "target_met": met}


# Imported by an empty run only because bot.py imports them at the top; only answering needs
# them (TelegramStreamer, Delivery, Failed).
ANSWER_ONLY = ("hermes_min.telegram.streamer", "hermes_min.events")


def importtime(base_env: dict, top: int = 15) -> tuple[list[tuple[int, int, str]], dict]:
    """The biggest imports of an empty run, three levels deep: (cumulative µs, self µs,
    indented name); and the cumulative µs of every module, top-level ones under "total"."""
    with tempfile.TemporaryDirectory() as tmp, FakeBotAPI() as fake, SSEServer() as model:
        config = _config(tmp, fake, model, USERS[:1])
        done = subprocess.run(
            _poll_cmd(config, "-X", "importtime"),
            cwd=_common.ROOT,
            env=_env(base_env, tmp, fake.token),
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"the importtime run failed: {done.stderr[-500:]}")
    rows = []
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            own, cumulative, indent, name = match.groups()
            rows.append((int(cumulative), int(own), (len(indent) - 1) // 2, name))
    cumulative = {name: c for c, _, _, name in rows}
    cumulative["total"] = sum(c for c, _, level, _ in rows if level == 0)
    shown = sorted((r for r in rows if r[2] <= 3), key=lambda r: -r[0])[:top]
    return [(c, s, f"{'  ' * level}{name}") for c, s, level, name in shown], cumulative


def report_imports(env: dict) -> None:
    rows, cumulative = importtime(env)
    print(
        "\nbiggest imports of an empty run (with the cache; -X importtime, top-level total "
        f"{cumulative['total'] / 1000:.0f} ms; cumulative includes the indented children):"
    )
    print(
        _common.table(
            ["module", "cumulative ms", "self ms"],
            [[n, f"{c / 1000:.1f}", f"{s / 1000:.1f}"] for c, s, n in rows],
        )
    )
    spare = sum(cumulative.get(name, 0) for name in ANSWER_ONLY) / 1000
    if spare:
        print(
            f"an empty run needs neither {' nor '.join(ANSWER_ONLY)} ({spare:.0f} ms): "
            "bot.py could import TelegramStreamer inside streamer_for, Failed inside _ending, "
            "and Delivery for annotations only"
        )


def _stats(values: list[float]) -> tuple[float, float, float]:
    return _common.median(values), min(values), max(values)


def _row(name: str, samples: list[tuple[float, float, float]]) -> list[Any]:
    wall = _stats([s[0] * 1000 for s in samples])
    peak = _stats([s[1] for s in samples])
    cpu = _common.median([s[2] * 1000 for s in samples])
    return [
        name,
        len(samples),
        f"{wall[0]:.0f}",
        f"{wall[1]:.0f}-{wall[2]:.0f}",
        f"{cpu:.0f}",
        f"{peak[0]:.1f}",
        f"{peak[1]:.1f}-{peak[2]:.1f}",
    ]


def run_pass(label: str, env: dict, args: argparse.Namespace) -> dict:
    empty = measure_empty(args.runs, env)
    busy, typing = measure_busy(args.busy_runs, args.messages, env)
    rows = [
        _row('python -c "import requests"', empty["requests"]),
        _row("poll --once, nothing to do", empty["empty"]),
        _row(f"poll --once, {args.messages} messages", busy),
    ]
    headers = ["", "runs", "wall ms", "range", "cpu ms", "peak MB", "range"]
    print(f"\n{label}")
    print(_common.table(headers, rows))
    empty_s = _common.median([s[0] for s in empty["empty"]])
    empty_mb = _common.median([s[1] for s in empty["empty"]])
    req_s = _common.median([s[0] for s in empty["requests"]])
    req_mb = _common.median([s[1] for s in empty["requests"]])
    busy_s = _common.median([s[0] for s in busy])
    print(
        f"empty run / import requests: {empty_s / req_s:.2f}x wall, "
        f"{empty_mb / req_mb:.2f}x peak memory; "
        f"{args.messages} messages: {busy_s * 1000 / args.messages:.0f} ms per message "
        f"({(busy_s - empty_s) * 1000 / args.messages:.0f} ms over the empty run)"
    )
    print(
        f"typing actions in the busy runs: {typing} (a run's wall time grows by ~0.75 s "
        "for each: the chat's final waits out the pacing at the default edit_interval)"
    )
    met = empty_s < TARGET_SECONDS and empty_mb < TARGET_MB
    verdict = "met" if met else "MISSED"
    print(
        f"target (empty run under {TARGET_SECONDS:.1f} s and {TARGET_MB:.0f} MB): {verdict} "
        f"({empty_s * 1000:.0f} ms, {empty_mb:.1f} MB median)"
    )
    return {
        "empty_s": empty_s,
        "empty_mb": empty_mb,
        "requests_s": req_s,
        "requests_mb": req_mb,
        "busy_s": busy_s,
        "busy_mb": _common.median([s[1] for s in busy]),
        "ratio": empty_s / req_s,
        "target_met": met,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="empty runs (and baseline runs)")
    parser.add_argument("--busy-runs", type=int, default=3, help="runs that answer messages")
    parser.add_argument("--messages", type=int, default=20, help="messages per busy run")
    parser.add_argument("--importtime", action="store_true", help="always show the imports")
    parser.add_argument("--json", help="write the headline figures to this file")
    parser.add_argument("--chats", type=int, default=16, help="chats in the concurrent run")
    parser.add_argument("--answer-seconds", type=float, default=5.0, help="one answer's time")
    parser.add_argument(
        "--only-concurrent", action="store_true", help="skip the start-up measurements"
    )
    args = parser.parse_args()
    if resource.getrusage(resource.RUSAGE_SELF).ru_maxrss <= 0:
        raise SystemExit("this platform reports no ru_maxrss")

    if args.only_concurrent:
        _common.write_summary(args.json, report_concurrent(args, dict(os.environ)))
        return
    summary = {"as is": run_pass("as is", dict(os.environ), args)}
    cache = tempfile.mkdtemp(prefix="hermes-pycache-")
    try:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache
        summary["with .pyc cache"] = run_pass("with a bytecode cache", env, args)
        summary["concurrent"] = report_concurrent(args, env)
        missed = not all(s["target_met"] for s in summary.values())
        if args.importtime or missed:
            report_imports(env)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    _common.write_summary(args.json, summary)


if __name__ == "__main__":
    main()
