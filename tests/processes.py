"""What the kernel says about a child process: has it blocked, so that a signal reaches it?

A signal to a Python program acts in two steps: the C handler only records it, and Python
runs the Python handler between two bytecodes, or when a blocking call fails with EINTR.
A signal that lands after the last such check and before the program blocks (readline's
select(), a queue's lock) is held back until something else wakes the program; when nothing
else is due, never. Output cannot tell a test that the program has blocked, since the
program writes before it blocks. The kernel can: after the text a test waited for is out,
the program's main thread next sleeps in that blocking call (or for the GIL, on its way to
the next bytecode, where the signal is noticed as well), and a signal sent then is acted on.
Linux only (/proc); elsewhere the wait is skipped.
"""

from __future__ import annotations

import os
import time
from typing import Callable


def main_thread_state(pid: int) -> str | None:
    """The main thread's state: R running, S asleep, Z exited, ... (None without /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except OSError:
        return "gone" if os.path.isdir("/proc/self") else None
    return text.rsplit(")", 1)[1].split()[0]  # after "(name)", which may hold spaces


def wait_until_asleep(
    pid: int, timeout: float = 10.0, *, meanwhile: Callable[[float], object] = time.sleep
) -> None:
    """Bounded poll until the main thread of `pid` sleeps in a blocking call.

    `meanwhile(seconds)` runs between looks (a pty's reader drains the output there). Not a
    sleep used as synchronisation: the condition is read from the kernel each time.
    """
    deadline = time.monotonic() + timeout
    while True:
        state = main_thread_state(pid)
        if state in (None, "S"):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} did not block within {timeout}s (state {state})")
        meanwhile(0.005)
