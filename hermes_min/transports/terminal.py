"""Prints a streamed answer: deltas as they come on a terminal, whole lines into a pipe."""

from __future__ import annotations

import os
import threading
from typing import TextIO

from ..events import ReasoningDelta, SegmentBreak, TextDelta, ToolCallStarted, ToolProgress
from ..visible import printable

_DIM, _RESET = "\x1b[2m", "\x1b[0m"
_FRAMES = "\u280b\u2819\u2839\u2838\u283c\u2834\u2826\u2827\u2807\u280f"


def _same(text: str) -> str:
    return text


def wants_color(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set or TERM is dumb."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return _isatty(stream)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Spinner:
    """A spinner on stderr while waiting for the first token; a thread, so a context manager."""

    def __init__(self, err: TextIO, interval: float = 0.1) -> None:
        self._err = err
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name="hermes-spinner", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        frame = 0
        while not self._stop.wait(self._interval):
            self._err.write(f"\r{_FRAMES[frame % len(_FRAMES)]} ")
            self._err.flush()
            frame += 1

    def close(self) -> None:
        """Stop and erase the spinner; safe to call twice."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        self._err.write("\r\x1b[K")
        self._err.flush()

    def __enter__(self) -> Spinner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TerminalPrinter:
    """Writes answer text to `out`, reasoning and tool notes to `err`."""

    def __init__(
        self, out: TextIO, err: TextIO, *, mode: str = "auto", show_reasoning: bool = False
    ) -> None:
        self.out, self.err = out, err
        tty = _isatty(out)
        # On a terminal, text from the model is shown, never obeyed (escape sequences);
        # into a pipe it stays exact.
        self._out_text = printable if tty else _same
        self._err_text = printable if _isatty(err) else _same
        # Into a pipe, complete lines only (as the original design's line printer did).
        self.mode = mode if mode != "auto" else ("chars" if tty else "lines")
        self.show_reasoning = show_reasoning
        self._dim = wants_color(err)
        self._spinner = Spinner(err) if tty and _isatty(err) else None
        self._pending: list[str] = []  # the line not yet complete, in pieces
        self._started = False  # leading newlines of the answer are dropped
        self._last = "\n"
        self._in_reasoning = False

    def handle(self, event: object) -> None:
        """Show one event."""
        if isinstance(event, (TextDelta, ReasoningDelta, ToolCallStarted, ToolProgress)):
            self._stop_spinner()
        if isinstance(event, TextDelta):
            self._text(event.text)
        elif isinstance(event, ReasoningDelta) and self.show_reasoning:
            self._in_reasoning = True
            self._note(event.text)
        elif isinstance(event, SegmentBreak):
            self._end_segment()
        elif isinstance(event, ToolProgress):
            self._tool(event)

    def close(self) -> None:
        """Flush the last partial line and end with a newline; safe to call twice."""
        self._stop_spinner()
        self._end_segment()

    def __enter__(self) -> TerminalPrinter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _end_segment(self) -> None:
        """Tools run next: finish the text so far, so their notes and the next text go below."""
        self._end_reasoning()
        if self._pending:
            self._write("".join(self._pending))
            self._pending = []
        if self._started and self._last != "\n":
            self._write("\n")
        self._started = False  # the next segment's leading newlines are dropped too

    def _tool(self, event: ToolProgress) -> None:
        # One line per call: its name when it starts, how it went when it ends.
        if event.started:
            self._note(f"\u2699 {event.name} \u2026 ")
        elif event.ok:
            self._note("done\n")
        else:
            self._note(f"failed: {event.detail}\n" if event.detail else "failed\n")

    def _text(self, text: str) -> None:
        self._end_reasoning()
        if not self._started:
            text = text.lstrip("\r\n")
            if not text:
                return
            self._started = True
        if self.mode == "chars":
            self._write(text)
            return
        if "\n" not in text:
            self._pending.append(text)  # a list: a long line costs one join, not one per piece
            return
        lines, _, rest = "".join([*self._pending, text]).rpartition("\n")
        self._pending = [rest] if rest else []
        self._write(lines + "\n")

    def _write(self, text: str) -> None:
        self.out.write(self._out_text(text))
        self.out.flush()
        self._last = text[-1]

    def _note(self, text: str) -> None:
        text = self._err_text(text)
        self.err.write(f"{_DIM}{text}{_RESET}" if self._dim else text)
        self.err.flush()

    def _end_reasoning(self) -> None:
        if self._in_reasoning:
            self._in_reasoning = False
            self.err.write("\n")
            self.err.flush()

    def _stop_spinner(self) -> None:
        if self._spinner is not None:
            self._spinner.close()
            self._spinner = None
