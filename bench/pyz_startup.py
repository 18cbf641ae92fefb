"""Start-up of the single-file build: `python3 hermes.pyz --version` against `import requests`.

    .venv/bin/python bench/pyz_startup.py [--pyz dist/hermes.pyz] [--runs 15] [--also PYTHON]

Build the archive first (`make pyz`). The reference is `.venv/bin/python -c "import requests"`
(this interpreter, the venv's byte-compiled packages). The archive runs on the interpreter
behind the venv (`--python`, default: this one with the venv symlink resolved), which is the
CPython its .pyc files were built for when `make pyz` ran with it. All commands run from the
repo root, interleaved, `--runs` times after 2 warm-ups; the figure is the median wall time.
Target: `hermes.pyz --version` within 1.5x of `import requests`.

Also shown: the hardened form (`-I -S`), `replay` of the shipped example, and importing the
bundled requests + yaml from the archive (what a run that talks to a server pays on top).
`--also PYTHON` adds `PYTHON hermes.pyz --version` for another interpreter (e.g. 3.9, which
cannot use the archive's .pyc files and compiles from source on every start).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import _common

TARGET = 1.5
REQUESTS = "venv: python -c 'import requests'"
PYZ = "python3 hermes.pyz --version"


def commands(python: str, pyz: str, also: list[str]) -> list[tuple[str, list[str]]]:
    sky = os.path.join(_common.ROOT, "examples", "sky.sse")
    deps = f"import sys; sys.path.insert(0, {pyz!r}); import requests, yaml"
    cmds = [
        ("python3 -c pass", [python, "-c", "pass"]),
        (REQUESTS, [sys.executable, "-c", "import requests"]),
        (PYZ, [python, pyz, "--version"]),
        ("python3 -I -S hermes.pyz --version", [python, "-I", "-S", pyz, "--version"]),
        ("python3 -I -S hermes.pyz replay sky.sse", [python, "-I", "-S", pyz, "replay", sky]),
        ("python3 -I -S: import requests, yaml from the pyz", [python, "-I", "-S", "-c", deps]),
    ]
    for other in also:
        version = subprocess.run(
            [other, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        cmds.append((f"python{version} hermes.pyz --version", [other, pyz, "--version"]))
    return cmds


def _once(cmd: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=_common.ROOT, capture_output=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.decode()[-500:]}")
    return elapsed * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pyz", default=os.path.join(_common.ROOT, "dist", "hermes.pyz"))
    parser.add_argument("--python", default=os.path.realpath(sys.executable))
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--also", action="append", default=[], metavar="PYTHON")
    parser.add_argument("--json", help="write the headline figures here")
    args = parser.parse_args()
    if not os.path.isfile(args.pyz):
        raise SystemExit(f"{args.pyz} does not exist: run `make pyz` first")
    cmds = commands(args.python, args.pyz, args.also)
    print(
        f"{args.pyz}: {os.path.getsize(args.pyz) / 1024:.0f} KiB; python3 = {args.python}; "
        f"venv = {sys.executable}; {args.runs} interleaved runs after 2 warm-ups"
    )
    times: dict[str, list[float]] = {name: [] for name, _ in cmds}
    for round_ in range(args.runs + 2):
        for name, cmd in cmds:
            ms = _once(cmd)
            if round_ >= 2:
                times[name].append(ms)
    medians = {name: _common.median(t) for name, t in times.items()}
    req = medians[REQUESTS]
    rows = [
        [name, f"{m:.1f}", f"{min(times[name]):.1f}-{max(times[name]):.1f}", f"{m / req:.2f}x"]
        for name, m in medians.items()
    ]
    print(_common.table(["command", "median ms", "range", "/import requests"], rows))
    ratio = medians[PYZ] / req
    verdict = "met" if ratio <= TARGET else "MISSED"
    print(f"hermes.pyz --version / import requests: {ratio:.2f}x (target {TARGET}x: {verdict})")
    _common.write_summary(
        args.json,
        {
            "size_kib": round(os.path.getsize(args.pyz) / 1024),
            "median_ms": {name: round(m, 1) for name, m in medians.items()},
            "ratio": round(ratio, 2),
            "target_met": ratio <= TARGET,
        },
    )


if __name__ == "__main__":
    main()
