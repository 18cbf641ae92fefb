"""SIGINT and SIGTERM for the bot: the first lets the answer in progress end, a second cuts it."""

from __future__ import annotations

import signal
import threading
from types import FrameType

from ..errors import Wakeup


class Signals:
    """Installs the bot's handlers while in a `with` block; `stop` is set at the first signal.

    Only one signal ever raises inside an answer: whatever follows (delivering the cut
    answer, recording it) must not be cut again, or an answer could be sent and not kept.
    """

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.signum: int | None = None
        self.idle = False  # True only while waiting on Telegram or a back-off
        self._cut = False
        self._previous: dict = {}

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
            raise KeyboardInterrupt  # the answer in progress is cut, delivered and kept
