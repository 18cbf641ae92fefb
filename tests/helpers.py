"""What many test modules share: a terminal-like stdin, running main() in-process, one-line
errors, and bounded waits."""

from __future__ import annotations

import functools
import io
import threading
import time
from typing import Any, Callable

from hermes_min.cli import main
from hermes_min.telegram import poller
from hermes_min.telegram.pacing import Budgets


class FakeTTY(io.StringIO):
    """Stdin as a terminal: nothing piped."""

    def isatty(self) -> bool:
        return True


def short_group_window(monkeypatch: Any, window: float = 1.0) -> None:
    """The bot paces groups for a fake Bot API whose group window is `window` s, not 60 s."""
    # Telegram allows 20 messages a minute in a group, so the bot sends one every 3 s there.
    # The bot fixtures' fakes shorten that window to 1 s; pacing to match keeps each group
    # test from waiting 3 s a message. Real group pacing: test_telegram, on an injected clock.
    fast = functools.partial(Budgets, group_interval=window / 20, group_window=window)
    monkeypatch.setattr(poller, "Budgets", fast)


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    """`hermes ARGV` in-process: (exit code, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    """An error run's stderr: exactly one `hermes:` line, never a traceback."""
    assert "Traceback" not in err
    assert err.startswith("hermes: ") and err.count("\n") == 1, err
    return err


def within(seconds: float, fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) on a thread, waited for at most `seconds`: a hang fails instead of hanging."""
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            outcome["error"] = exc

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{getattr(fn, '__name__', fn)} did not return within {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def bounded_wait(condition: Callable[[], bool], timeout: float) -> bool:
    """A bounded poll on recorded state (not a sleep used as synchronisation): True once
    `condition` holds, False if it did not within `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """bounded_wait() that must succeed."""
    if not bounded_wait(condition, timeout):
        raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
