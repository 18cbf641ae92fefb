"""Start-up of `hermes chat` to its first prompt, against `import requests` and `python -c pass`.

    .venv/bin/python bench/chat_startup.py [--runs 15] [--term dumb]

Every command runs under a pseudo-terminal (pty.fork, as tests/test_chat.py's Terminal does),
with this interpreter, from the repo root, interleaved, `--runs` times after 2 warm-ups.
`python bin/hermes chat` is timed from the fork to the prompt text `m> ` appearing on the
terminal (then it is killed); the others (`python -c pass`, `python -c "import requests"`,
and `python bin/hermes --version` for reference) from the fork to their exit.

hermes gets OPENAI_BASE_URL pointing at a socket this script listens on and never answers,
HERMES_MODEL=m (so no /models call is made), and a fresh temporary XDG_STATE_HOME and
XDG_CONFIG_HOME for every run (so the conversation store is created each time, and no user
config is read). Proxy, HERMES_* and OPENAI_* variables are dropped. After the runs the
script reports how many connections reached the socket (expected: none).

Two passes, as in bench/startup.py: the environment as it is (this machine sets
PYTHONDONTWRITEBYTECODE=1, so the checkout's hermes_min compiles from source on every start),
and with a bytecode cache in a temporary PYTHONPYCACHEPREFIX, as an installed copy would have.
Prints the median and range per command, and hermes chat / import requests. Nothing asserted.
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import shutil
import signal
import socket
import sys
import tempfile
import time

import _common

PROMPT = "m> "
BARE, REQUESTS = "python -c pass", "python -c 'import requests'"
VERSION, CHAT = "python bin/hermes --version", "python bin/hermes chat -> 'm> '"
TIMEOUT = 20.0


def commands() -> list[tuple[str, list[str], bool]]:
    """(name, argv, waits for the prompt) for each command; otherwise timed to its exit."""
    py, hermes = sys.executable, os.path.join(_common.ROOT, "bin", "hermes")
    return [
        (BARE, [py, "-c", "pass"], False),
        (REQUESTS, [py, "-c", "import requests"], False),
        (VERSION, [py, hermes, "--version"], False),
        (CHAT, [py, hermes, "chat"], True),
    ]


def _spawn(argv: list[str], env: dict) -> tuple[int, int]:
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its controlling terminal
        try:
            os.chdir(_common.ROOT)
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    return pid, fd


def _read(fd: int, deadline: float) -> str | None:
    """What the terminal shows next ("" on timeout), or None once the child has gone."""
    remaining = deadline - time.monotonic()
    if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
        return ""
    try:
        data = os.read(fd, 65536)
    except OSError:  # EIO: the child exited and closed the terminal
        return None
    return data.decode("utf-8", "replace") if data else None


def _exit_code(status: int) -> int:
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)


def to_prompt(argv: list[str], env: dict) -> float:
    """Seconds from the fork until PROMPT is on the terminal."""
    start = time.perf_counter()
    pid, fd = _spawn(argv, env)
    screen = ""
    try:
        deadline = time.monotonic() + TIMEOUT
        while PROMPT not in screen:
            got = _read(fd, deadline)
            if not got:
                why = "exited" if got is None else "timed out"
                raise SystemExit(f"{' '.join(argv)} {why} before {PROMPT!r}: {screen[-500:]!r}")
            screen += got
        return time.perf_counter() - start
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)


def to_exit(argv: list[str], env: dict) -> float:
    """Seconds from the fork until the process has exited (and its output is read)."""
    start = time.perf_counter()
    pid, fd = _spawn(argv, env)
    screen = ""
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            got = _read(fd, deadline)
            if got is None:
                break
            if not got and time.monotonic() >= deadline:
                os.kill(pid, signal.SIGKILL)
                raise SystemExit(f"{' '.join(argv)} did not exit: {screen[-500:]!r}")
            screen += got
        _, status = os.waitpid(pid, 0)
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
    if _exit_code(status) != 0:
        raise SystemExit(f"{' '.join(argv)} exited {_exit_code(status)}: {screen[-500:]!r}")
    return elapsed


def base_env(url: str) -> dict:
    drop = ("HERMES_", "OPENAI_")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().endswith("_PROXY") and not k.upper().startswith(drop)
    }
    env.update(OPENAI_BASE_URL=url, HERMES_MODEL="m")
    return env


def measure(runs: int, env: dict) -> dict[str, list[float]]:
    cmds = commands()
    times: dict[str, list[float]] = {name: [] for name, _, _ in cmds}
    for round_ in range(runs + 2):
        for name, argv, prompt in cmds:
            home = tempfile.mkdtemp(prefix="hermes-bench-chat-")
            run_env = dict(
                env,
                XDG_STATE_HOME=os.path.join(home, "state"),
                XDG_CONFIG_HOME=os.path.join(home, "cfg"),
            )
            try:
                seconds = (to_prompt if prompt else to_exit)(argv, run_env)
            finally:
                shutil.rmtree(home, ignore_errors=True)
            if round_ >= 2:
                times[name].append(seconds * 1000)
    return times


def report(title: str, times: dict[str, list[float]]) -> dict:
    medians, rows = _common.startup_rows(times, BARE, REQUESTS)
    req = medians[REQUESTS]
    print(f"\n{title}")
    print(
        _common.table(
            ["command (under a pty)", "median ms", "range", "minus bare", "/import requests"], rows
        )
    )
    ratio = medians[CHAT] / req
    extra = medians[CHAT] - medians[VERSION]
    print(
        f"hermes chat to its prompt / import requests: {ratio:.2f}x "
        f"({medians[CHAT] - req:+.1f} ms); chat prompt minus --version: {extra:+.1f} ms"
    )
    return {"median_ms": {n: round(m, 1) for n, m in medians.items()}, "ratio": round(ratio, 2)}


def _connections(listener: socket.socket) -> int:
    listener.setblocking(False)
    count = 0
    while True:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--term", default="dumb", help="TERM for the pty (tests use dumb)")
    parser.add_argument("--json", help="write the headline figures here (run_all.py)")
    args = parser.parse_args()
    print(
        f"{sys.executable} ({sys.version.split()[0]}), {args.runs} interleaved runs after "
        f"2 warm-ups, each under a pty with TERM={args.term}; "
        f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}"
    )
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # never accepted while the runs go on: nothing needs to answer
    env = base_env(f"http://127.0.0.1:{listener.getsockname()[1]}/v1")
    env["TERM"] = args.term
    cache = tempfile.mkdtemp(prefix="hermes-bench-pyc-")
    cached_env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cached_env["PYTHONPYCACHEPREFIX"] = cache
    passes = [
        ("environment as is", env),
        ("with a bytecode cache (PYTHONPYCACHEPREFIX, as an installed copy)", cached_env),
    ]
    summary = {}
    try:
        for title, pass_env in passes:
            summary[title] = report(title, measure(args.runs, pass_env))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        seen = _connections(listener)
        listener.close()
    print(f"\nconnections that reached the model server during the runs: {seen} (expected 0)")
    summary["server_connections"] = seen
    _common.write_summary(args.json, summary)


if __name__ == "__main__":
    main()
