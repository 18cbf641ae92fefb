"""One run per bot: an flock beside the database, which the kernel releases on any exit."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import PollError

EX_TEMPFAIL = 75  # sysexits.h: "temporary failure ... the user is invited to retry later"


@contextlib.contextmanager
def run_lock(path: Path, wait: bool) -> Iterator[None]:
    """Hold the bot's lock for the block; a second run exits 75 (or waits, with `wait`)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise PollError(
                f"another poll run holds {path}; this one stops (--wait-lock waits for it instead)",
                EX_TEMPFAIL,
            ) from None
        yield
    finally:
        os.close(fd)


def lock_path(state: Path, token: str) -> Path:
    """The lock file of the bot with this token, beside the database."""
    return state.with_name(f"telegram-{bot_id(token)}.lock")


def bot_id(token: str) -> str:
    """The bot's id: the token's part before the colon (public, unlike the rest)."""
    return token.split(":", 1)[0] if ":" in token else "bot"
