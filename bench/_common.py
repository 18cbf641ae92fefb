"""Shared bits of the bench scripts: the repo on sys.path, medians, tables, the SSE source."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from typing import Any

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)  # hermes_min and tests/ import from the checkout


def median(values: list[float]) -> float:
    return statistics.median(values)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain, right-aligned text table (first column left-aligned)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = [c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_summary(path: str | None, summary: dict) -> None:
    """For run_all.py: the script's headline figures as JSON."""
    if path:
        with open(path, "w", encoding="utf-8") as out:
            json.dump(summary, out, indent=1)


class Source:
    """bench/_sse_source.py in its own process; `url(framing)` is a base URL for ChatClient."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(BENCH, "_sse_source.py"), *args],
            stdout=subprocess.PIPE,
            stdin=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if not line or line[0] != "port":
            self.close()
            raise RuntimeError("the SSE source did not start")
        self.port = int(line[1])

    def url(self, framing: str = "chunked") -> str:
        return f"http://127.0.0.1:{self.port}/{framing}/v1"

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # the source exits when its stdin closes
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def startup_rows(times: dict[str, list[float]], bare: str, baseline: str) -> tuple[dict, list]:
    """Medians per command and the table rows (median, range, minus bare, ratio to baseline)."""
    medians = {name: median(t) for name, t in times.items()}
    rows = [
        [
            name,
            f"{m:.1f}",
            f"{min(times[name]):.1f}-{max(times[name]):.1f}",
            f"{m - medians[bare]:.1f}",
            f"{m / medians[baseline]:.2f}x",
        ]
        for name, m in medians.items()
    ]
    return medians, rows


def trim_profile(text: str) -> str:
    """A pstats printout without its preamble, keeping the call count line."""
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if "ncalls" in ln), 0)
    head = [ln for ln in lines[:start] if "function calls" in ln]
    return "\n".join(head + lines[start:]).rstrip()
