"""SIGINT and SIGTERM for the bot: the first lets answers in progress end, a second cuts them."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Callable

from ..errors import Wakeup


class Signals:
    """Installs the bot's handlers while in a `with` block; `stop` is set at the first signal.

    The second signal calls `on_cut` (the answers run on other threads: they are cut, and
    then delivered and recorded as usual), or, without one, raises KeyboardInterrupt once.
    Only one signal ever cuts: whatever follows (delivering the cut answers, recording
    them) must not be cut again, or an answer could be sent and not kept.
    """

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.signum: int | None = None
        self.idle = False  # True only while waiting on Telegram or a back-off
        self._cut = False
        self._previous: dict = {}
        self.on_cut: Callable[[], None] | None = None

    @property
    def cut(self) -> bool:
        """Whether a second signal cut the answers in progress."""
        return self._cut

    def __enter__(self) -> Signals:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        second = self.stop.is_set()
        self.signum = self.signum or signum
        self.stop.set()
        if self.idle:
            self.idle = False
            raise Wakeup
        if second and not self._cut:
            self._cut = True
            if self.on_cut is not None:
                self.on_cut()
                return
            raise KeyboardInterrupt  # the answer in progress is cut, delivered and kept
