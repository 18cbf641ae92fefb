"""The terminal printer: deltas on a TTY, whole lines into a pipe, notes on stderr."""

from __future__ import annotations

import io

import pytest

from hermes_min.events import ReasoningDelta, SegmentBreak, TextDelta, ToolCallStarted, ToolProgress
from hermes_min.transports.terminal import TerminalPrinter, wants_color


class Recorder(io.StringIO):
    """A stream that records each write and each flush, optionally a terminal."""

    def __init__(self, tty: bool = False) -> None:
        super().__init__()
        self.tty = tty
        self.flushed: list[str] = []

    def isatty(self) -> bool:
        return self.tty

    def flush(self) -> None:
        self.flushed.append(self.getvalue())


def printer(out_tty=False, err_tty=False, **kwargs):
    out, err = Recorder(out_tty), Recorder(err_tty)
    return TerminalPrinter(out, err, **kwargs), out, err


def test_pipe_gets_complete_lines_then_the_last_partial_line():
    show, out, _ = printer()
    for piece in ["\n\nfir", "st li", "ne\nsec", "ond"]:
        show.handle(TextDelta(piece))
    assert out.getvalue() == "first line\n"  # the partial "second" waits
    show.close()
    assert out.getvalue() == "first line\nsecond\n"
    show.close()
    assert out.getvalue() == "first line\nsecond\n"


def test_terminal_gets_each_delta_at_once():
    show, out, _ = printer(out_tty=True)
    show.handle(TextDelta("\nab"))
    assert out.flushed[-1] == "ab"
    show.handle(TextDelta("c"))
    assert out.flushed[-1] == "abc"
    show.close()
    assert out.getvalue() == "abc\n"


@pytest.mark.parametrize("mode, expected", [("chars", "x"), ("lines", "")])
def test_mode_overrides_the_tty_guess(mode, expected):
    show, out, _ = printer(out_tty=mode == "lines", mode=mode)
    show.handle(TextDelta("x"))
    assert out.getvalue() == expected


def test_answer_that_ends_with_a_newline_gets_no_extra_one():
    show, out, _ = printer()
    show.handle(TextDelta("done\n"))
    show.close()
    assert out.getvalue() == "done\n"


def test_nothing_printed_means_no_stray_newline():
    show, out, _ = printer()
    show.close()
    assert out.getvalue() == ""


def test_reasoning_only_on_stderr_and_only_when_asked():
    show, out, err = printer(show_reasoning=True)
    show.handle(ReasoningDelta("hmm"))
    show.handle(TextDelta("answer"))
    show.close()
    assert out.getvalue() == "answer\n" and err.getvalue() == "hmm\n"
    quiet, out, err = printer()
    quiet.handle(ReasoningDelta("hmm"))
    assert out.getvalue() + err.getvalue() == ""


def test_reasoning_is_dim_on_a_terminal_unless_no_color(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    show, _, err = printer(err_tty=True, show_reasoning=True)
    show.handle(ReasoningDelta("r"))
    assert "\x1b[2m" in err.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    assert not wants_color(Recorder(tty=True))


def test_tool_progress_is_one_line_on_stderr_and_text_resumes_below():
    show, out, err = printer()
    show.handle(TextDelta("Let me look"))
    show.handle(ToolCallStarted(0, "search"))
    show.handle(SegmentBreak())
    show.handle(ToolProgress("search", "c1"))
    show.handle(ToolProgress("search", "c1", ok=True))
    show.handle(ToolProgress("fetch", "c2"))
    show.handle(ToolProgress("fetch", "c2", ok=False, detail="timed out after 5 s"))
    show.handle(TextDelta("\n\nFound it."))
    show.close()
    assert out.getvalue() == "Let me look\nFound it.\n"
    assert (
        err.getvalue()
        == "\u2699 search \u2026 done\n\u2699 fetch \u2026 failed: timed out after 5 s\n"
    )


def test_spinner_only_on_a_terminal_and_gone_at_the_first_delta():
    show, _, err = printer(out_tty=True, err_tty=True)
    assert show._spinner is not None
    show.handle(TextDelta("x"))
    assert show._spinner is None and err.getvalue().endswith("\r\x1b[K")
    piped, _, err = printer(out_tty=False, err_tty=True)
    assert piped._spinner is None
    piped.close()


HOSTILE = "Done.\x1b]0;pwned\x07\x1b[2J\rgone\u009b31m\ttab\r\nnext"


def test_control_characters_from_the_model_are_shown_not_obeyed_on_a_terminal():
    show, out, err = printer(out_tty=True, err_tty=True, show_reasoning=True)
    show.handle(ReasoningDelta("think\x1b[8m"))
    show.handle(TextDelta(HOSTILE))
    show.handle(ToolProgress("evil\x1b[2Jname", "c1"))
    show.handle(ToolProgress("evil\x1b[2Jname", "c1", ok=False, detail="bad\x07"))
    show.close()
    seen = out.getvalue() + err.getvalue()  # (our own dim colour and spinner codes stay)
    for obeyed in ("\x1b]0;", "\x1b[2J", "\x07", "\x9b", "\x1b[8m", "\rgone"):
        assert obeyed not in seen
    assert not any(ord(c) < 32 and c not in "\n\t" for c in out.getvalue())
    assert "\u241b]0;pwned\u2407" in out.getvalue() and "\ttab\nnext" in out.getvalue()
    assert "evil\u241b[2Jname" in err.getvalue()


def test_control_characters_stay_exact_into_a_pipe():
    show, out, _ = printer(out_tty=False, err_tty=False)
    show.handle(TextDelta(HOSTILE))
    show.close()
    assert out.getvalue() == HOSTILE + "\n"
