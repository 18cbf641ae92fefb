"""An incremental WHATWG event-stream decoder: body reads in, (event type, data) pairs out."""

from __future__ import annotations

from .errors import StreamError

MAX_LINE = 16 * 1024 * 1024  # one line, and one event's data: a large tool argument fits
_BOM = b"\xef\xbb\xbf"
_TERMINATORS = (b"\n", b"\r")
_BLANK = (b"\n", b"\r\n", b"\r")


def _one_event(chunk: bytes) -> bool:
    """Whether `chunk` is exactly `data: ...` LF LF (no CR, no other line, no field)."""
    return (
        chunk[:6] == b"data: "
        and chunk[-2:] == b"\n\n"
        and chunk.count(b"\n") == 2
        and b"\r" not in chunk
    )


class SSEDecoder:
    """Feed it reads of any size; it returns each event as soon as its blank line arrives.

    A line or an event longer than `max_line` bytes raises StreamError(too_large): memory
    stays bounded whatever a server sends.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._max = max_line
        self._head: bytes | None = b""  # bytes seen before the BOM check; None once done
        self._partial = bytearray()  # an unterminated line carried between reads
        self._after_cr = False  # the last read ended in CR: a leading LF belongs to it
        self._event = ""
        self._data: list[str] = []
        self._size = 0  # characters of data in the event being built

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        """Decode one read; return the events it completed."""
        if self._head is not None:
            chunk = self._strip_bom(chunk)
        if not chunk:
            return []
        if _one_event(chunk) and not (self._partial or self._data or self._event or self._after_cr):
            # What nearly every server sends per read: one `data:` line and a blank line.
            data = chunk[6:-2].decode("utf-8", "replace")
            return [("message", data)] if data and not data.isspace() else []
        if self._after_cr and chunk[:1] == b"\n":
            chunk = chunk[1:]  # the LF of a CRLF that was split across reads
        self._after_cr = False
        if b"\n" not in chunk and b"\r" not in chunk:
            self._partial += chunk  # bytearray append: a long line stays linear, not quadratic
            self._check(len(self._partial), "one line")
            return []
        if self._partial:
            self._partial += chunk
            chunk = bytes(self._partial)
            self._partial.clear()
        lines = chunk.splitlines(True)  # bytes.splitlines breaks on CR, LF, CRLF only (not U+2028)
        if not lines[-1].endswith(_TERMINATORS):
            self._partial += lines.pop()
            self._check(len(self._partial), "one line")
        elif lines[-1].endswith(b"\r"):
            self._after_cr = True
        return self._lines(lines)

    def close(self) -> tuple[str, str] | None:
        """End of body: return the event that was still open (the caller decides its fate)."""
        if self._head:
            self._partial += self._head  # a body shorter than a BOM
        if self._partial:
            self._lines([bytes(self._partial)])
            self._partial.clear()
        pending = self._take()
        return pending

    def _strip_bom(self, chunk: bytes) -> bytes:
        # "The stream must then be parsed by ... UTF-8 decode", which drops one leading BOM,
        # also when the BOM's three bytes arrive in different reads.
        if self._head is None:
            return chunk
        head = self._head + chunk
        if len(head) < 3 and _BOM.startswith(head):
            self._head = head
            return b""
        self._head = None
        return head[3:] if head.startswith(_BOM) else head

    def _check(self, size: int, what: str) -> None:
        if size > self._max:
            raise StreamError(
                "too_large",
                f"the server sent more than {self._max // 2**20} MiB in {what} of the event "
                "stream; stopped reading (a cap that keeps memory bounded)",
            )

    def _lines(self, lines: list[bytes]) -> list[tuple[str, str]]:
        events = []
        for raw in lines:
            if raw[:6] == b"data: ":  # the common case, without the general field parsing
                self._add(raw[6:].rstrip(b"\r\n").decode("utf-8", "replace"))
                continue
            line = raw.rstrip(b"\r\n").decode("utf-8", "replace") if raw not in _BLANK else ""
            if not line:
                event = self._take()
                if event is not None:
                    events.append(event)
            elif line[0] != ":":  # "If the line starts with a U+003A COLON character: ignore"
                self._field(line)
        return events

    def _field(self, line: str) -> None:
        name, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]  # "If value starts with a U+0020 SPACE character, remove it"
        if name == "data":
            self._add(value)
        elif name == "event":
            self._event = value
        elif name == "error":
            # Not a spec field: llama.cpp before PR #16109 sent errors as `error: {...}`.
            # Dropping it (as the spec says for unknown fields) would make a failure look
            # like an empty success, so it becomes an `error` event.
            self._event, self._data, self._size = "error", [value], len(value)

    def _add(self, value: str) -> None:
        self._size += len(value) + 1
        self._check(self._size, "one event")
        self._data.append(value)

    def _take(self) -> tuple[str, str] | None:
        # "If the data buffer is an empty string, set the data buffer and the event type
        # buffer to the empty string and return." We also skip whitespace-only data: there
        # is nothing in it to parse.
        parts, event = self._data, self._event or "message"
        self._data, self._event, self._size = [], "", 0
        data = parts[0] if len(parts) == 1 else "\n".join(parts)
        return (event, data) if data and not data.isspace() else None
