"""Start-up time of `hermes --version` against `import requests` and bare `python -c pass`.

    .venv/bin/python bench/startup.py [--runs 15] [--importtime]

Every command uses this interpreter (sys.executable), runs from the repo root, and is run
interleaved with the others, after 2 warm-ups each. Prints median wall ms and the ratio
hermes / import-requests (target: within 0.6x); over target, or with --importtime, the
five biggest imports of `hermes --version` from `-X importtime`.

Two passes: the environment as it is, and with a bytecode cache. The venv's packages were
byte-compiled by pip, but with PYTHONDONTWRITEBYTECODE=1 (set on this machine) the checkout's
hermes_min is compiled from source on every start. The second pass unsets it and points
PYTHONPYCACHEPREFIX at a temporary folder (for every module alike), as an installed copy
of hermes_min would have .pyc files.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import _common

TARGET = 0.6  # issue 9: start-up must not grow back
BARE, REQUESTS = "python -c pass", "python -c 'import requests'"
HERMES = "python bin/hermes --version"


def commands() -> list[tuple[str, list[str]]]:
    py = sys.executable
    cmds = [
        (BARE, [py, "-c", "pass"]),
        (REQUESTS, [py, "-c", "import requests"]),
        (HERMES, [py, "bin/hermes", "--version"]),
        ("python -m hermes_min --version", [py, "-m", "hermes_min", "--version"]),
    ]
    script = os.path.join(os.path.dirname(py), "hermes")
    if os.path.isfile(script):
        cmds.append(("installed console script --version", [script, "--version"]))
    return cmds


def _once(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=_common.ROOT, env=env, capture_output=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.decode()[-500:]}")
    return elapsed * 1000


def measure(runs: int, env: dict) -> dict[str, list[float]]:
    cmds = commands()
    times: dict[str, list[float]] = {name: [] for name, _ in cmds}
    for round_ in range(runs + 2):
        for name, cmd in cmds:
            ms = _once(cmd, env)
            if round_ >= 2:
                times[name].append(ms)
    return times


def report(title: str, times: dict[str, list[float]]) -> float:
    medians, rows = _common.startup_rows(times, BARE, REQUESTS)
    req = medians[REQUESTS]
    print(f"\n{title}")
    print(_common.table(["command", "median ms", "range", "minus bare", "/import requests"], rows))
    ratio = medians[HERMES] / req
    verdict = "met" if ratio <= TARGET else "MISSED"
    print(f"hermes --version / import requests: {ratio:.2f}x (target within {TARGET}x: {verdict})")
    return ratio


def _importtimes(args: list[str], env: dict) -> dict[str, tuple[int, int]]:
    """module -> (own us, cumulative us), from one `-X importtime` run."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        cwd=_common.ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    out = {}
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "cumulative" not in line:
            own, cumulative, name = line[len("import time:") :].split("|")
            out[name.strip()] = (int(own), int(cumulative))
    return out


def importtime(env: dict, top: int = 5) -> None:
    """The biggest imports of `bin/hermes --version`, and what it imports beyond requests."""
    _importtimes(["bin/hermes", "--version"], env)  # warm any cache first
    hermes = _importtimes(["bin/hermes", "--version"], env)
    plain = _importtimes(["-c", "import requests"], env)
    print(f"-X importtime, bin/hermes --version: {len(hermes)} modules")
    ranked = sorted(hermes.items(), key=lambda kv: kv[1][1], reverse=True)[:top]
    print(
        _common.table(
            [f"top {top} cumulative", "cumulative ms", "own ms"],
            [[name, f"{c / 1000:.1f}", f"{o / 1000:.1f}"] for name, (o, c) in ranked],
        )
    )
    extra = {name: t for name, t in hermes.items() if name not in plain}
    spent = sum(o for o, _ in extra.values()) / 1000
    print(
        f"{len(extra)} modules beyond those of `import requests`, {spent:.1f} ms own time; "
        f"top {top}:"
    )
    ranked = sorted(extra.items(), key=lambda kv: kv[1][0], reverse=True)[:top]
    print(
        _common.table(["module", "own ms"], [[name, f"{o / 1000:.1f}"] for name, (o, _) in ranked])
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--importtime", action="store_true", help="always show -X importtime")
    parser.add_argument("--json", help="write the headline figures here (run_all.py)")
    args = parser.parse_args()
    print(
        f"{sys.executable} ({sys.version.split()[0]}), {args.runs} interleaved runs after "
        f"2 warm-ups; PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}"
    )
    cache = tempfile.mkdtemp(prefix="hermes-bench-pyc-")
    cached_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cached_env["PYTHONPYCACHEPREFIX"] = cache
    passes = [
        ("environment as is", dict(os.environ)),
        ("with a bytecode cache (PYTHONPYCACHEPREFIX, as an installed copy)", cached_env),
    ]
    summary = {}
    try:
        for title, env in passes:
            times = measure(args.runs, env)
            ratio = report(title, times)
            if args.importtime or ratio > TARGET:
                importtime(env)
            summary[title] = {
                "median_ms": {name: round(_common.median(t), 1) for name, t in times.items()},
                "ratio": round(ratio, 2),
                "target_met": ratio <= TARGET,
            }
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    _common.write_summary(args.json, summary)


if __name__ == "__main__":
    main()
