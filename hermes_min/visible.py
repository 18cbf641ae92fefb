"""Text for a terminal: control characters shown as visible symbols, never obeyed.

What a model, a server or a stored conversation says must not move the cursor, retitle
the window, hide text or reorder it on the user's terminal. Pipes and JSON output keep the
text exact; only what goes to a terminal passes through here.
"""

from __future__ import annotations

# C0 controls (but tab and newline) as the "control pictures" of U+2400, DEL as U+2421,
# C1 controls as \x escapes, and the bidirectional overrides and isolates (which can make
# text read in another order than it runs, CVE-2021-42574) as <U+XXXX>.
_CONTROLS = {
    **{code: chr(0x2400 + code) for code in range(0x20) if code not in (0x09, 0x0A)},
    0x7F: "\u2421",
    **{code: f"\\x{code:02x}" for code in range(0x80, 0xA0)},
    **{code: f"<U+{code:04X}>" for code in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))},
}


def printable(text: str) -> str:
    """`text` safe for a terminal: control characters shown visibly (CRLF becomes LF)."""
    if text.isprintable():
        return text  # the common case: nothing to look up
    return text.replace("\r\n", "\n").translate(_CONTROLS)
