"""Writes every event as one JSON object per line, as it happens (`--events`)."""

from __future__ import annotations

import json
from typing import TextIO


class EventWriter:
    """One line of JSON per event, flushed at once so a reader sees it live."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def handle(self, event: object) -> None:
        """Write one event."""
        to_dict = getattr(event, "to_dict", None)
        if to_dict is not None:
            self.out.write(json.dumps(to_dict(), ensure_ascii=False) + "\n")
            self.out.flush()

    def close(self) -> None:
        """Nothing is buffered; here for the transport interface."""
