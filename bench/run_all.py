"""Run every bench script in turn (each in its own process) and print a summary table.

.venv/bin/python bench/run_all.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import _common

SCRIPTS = ["startup.py", "per_chunk.py", "interrupt.py", "memory.py"]


def _headline(script: str, s: dict) -> tuple[str, str, bool]:
    if script == "startup.py":
        as_is, cached = list(s.values())
        text = f"{as_is['ratio']:.2f}x as is, {cached['ratio']:.2f}x with .pyc cache"
        return text, "within 0.6x import requests", cached["target_met"] and as_is["target_met"]
    if script == "per_chunk.py":
        text = ", ".join(
            f"{framing} {r['ratio_stream']:.2f}x/{r['ratio_result']:.2f}x"
            for framing, r in s.items()
        )
        return (
            text + " (stream/result)",
            "within 1.5x baseline",
            all(r["target_met"] for r in s.values()),
        )
    if script == "interrupt.py":
        text = "; ".join(
            f"{c['case']}: {c['median_ms']:.1f} ms median, {c['max_ms']:.1f} max"
            for c in s["cases"]
        )
        return text, "under 20 ms", s["target_met"]
    peak = s["peak_mib"]
    text = f"{peak['hermes']:.1f} MiB ({peak['hermes'] - peak['imports']:+.1f} over imports)"
    return text, "under 40 MB", s["target_met"]


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for script in SCRIPTS:
            out = os.path.join(tmp, script + ".json")
            print(f"\n===== {script}", flush=True)
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, os.path.join(_common.BENCH, script), "--json", out],
                cwd=_common.ROOT,
                check=True,
            )
            took = time.perf_counter() - start
            with open(out, encoding="utf-8") as f:
                text, target, met = _headline(script, json.load(f))
            rows.append([script, text, target, "met" if met else "MISSED", f"{took:.0f} s"])
    print("\n===== summary")
    print(_common.table(["script", "measured", "target", "", "took"], rows))


if __name__ == "__main__":
    main()
