"""Peak RSS of streaming a 1 MB answer through hermes_min, each figure from a fresh process.

    .venv/bin/python bench/memory.py [--runs 5] [--chunks 4000] [--chars 256]

The answer (4,000 content chunks of 256 characters = 1,024,000 characters) comes from
bench/_sse_source.py in a separate process. Each measurement is a new interpreter that
reports resource.getrusage(RUSAGE_SELF).ru_maxrss; medians of --runs. Target: under 40 MB
total for the stream.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from typing import Any

import _common

TARGET_MB = 40.0
KINDS = [
    ("bare", "this script only: requests, hermes_min not imported"),
    ("imports", "baseline: import requests + hermes_min"),
    ("requests", "bare requests: iter_lines() + json.loads, same stream"),
    ("hermes", "hermes: ChatClient.stream().result()"),
    ("hermes-iter", "hermes: ChatClient.stream() iterated"),
]


def child(kind: str, url: str) -> None:
    """Runs in the fresh process: do `kind`, print the peak RSS as JSON."""
    length = 0
    if kind != "bare":
        import requests  # noqa: F401

        from hermes_min import ChatClient, Done
    messages = [{"role": "user", "content": "Say a lot."}]
    if kind == "hermes":
        with ChatClient(url, None, "m") as client:
            length = len(client.stream(messages).result().content)
    elif kind == "hermes-iter":
        with ChatClient(url, None, "m") as client:
            for event in client.stream(messages):
                if isinstance(event, Done):
                    length = len(event.message.content)
    elif kind == "requests":
        length = _bare_requests(url, messages)
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"maxrss_kb": rss_kb, "length": length}))


def _bare_requests(url: str, messages: list) -> int:
    import requests

    parts = []
    with requests.Session() as session:
        session.trust_env = False
        body = {"model": "m", "messages": messages, "stream": True}
        with session.post(url + "/chat/completions", json=body, stream=True) as resp:
            for line in resp.iter_lines():
                if not line.startswith(b"data:") or line[5:].strip() == b"[DONE]":
                    continue
                choices = json.loads(line[5:]).get("choices")
                if choices and choices[0]["delta"].get("content"):
                    parts.append(choices[0]["delta"]["content"])
    return len("".join(parts))


def _measure(kind: str, url: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, url],
        cwd=_common.ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed: {done.stderr[-800:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--chunks", type=int, default=4000)
    parser.add_argument("--chars", type=int, default=256)
    parser.add_argument("--json", help="write the headline figures here (run_all.py)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    expected = args.chunks * args.chars
    peaks: dict[str, list[int]] = {kind: [] for kind, _ in KINDS}
    with _common.Source("--chunks", str(args.chunks), "--piece-chars", str(args.chars)) as src:
        for _ in range(args.runs):
            for kind, _title in KINDS:
                out = _measure(kind, src.url("chunked"))
                if kind in ("requests", "hermes", "hermes-iter") and out["length"] != expected:
                    raise SystemExit(f"{kind}: {out['length']} characters, not {expected}")
                peaks[kind].append(out["maxrss_kb"])
    mb = {kind: _common.median(v) / 1024 for kind, v in peaks.items()}
    base = mb["imports"]
    print(
        f"peak RSS (ru_maxrss), {args.chunks} chunks x {args.chars} chars = {expected} "
        f"characters, chunked framing; median of {args.runs} fresh processes each"
    )
    rows = [
        [
            title,
            f"{mb[kind]:.1f}",
            f"{min(peaks[kind]) / 1024:.1f}-{max(peaks[kind]) / 1024:.1f}",
            f"{mb[kind] - base:+.1f}",
        ]
        for kind, title in KINDS
    ]
    print(_common.table(["process", "peak MiB", "range", "vs imports"], rows))
    worst = max(mb["hermes"], mb["hermes-iter"])
    verdict = "met" if worst < TARGET_MB else "MISSED"
    print(
        f"hermes 1 MB answer: {mb['hermes']:.1f} MiB total, {mb['hermes'] - base:+.1f} MiB "
        f"over the imports (target under {TARGET_MB:g} MB total: {verdict})"
    )
    _common.write_summary(
        args.json,
        {"peak_mib": {k: round(v, 1) for k, v in mb.items()}, "target_met": verdict == "met"},
    )


if __name__ == "__main__":
    main()
