"""`hermes chat` driven through a pseudo-terminal, as a person at a keyboard would."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.processes import wait_until_asleep
from tests.sse_server import Hold, Reply, answer, chunk, sse

ROOT = Path(__file__).resolve().parents[1]

# The child of pty.fork() execs at once, so the threads of the test servers cannot deadlock
# it (the risk 3.12+ warns about is a child that keeps running Python after the fork).
pytestmark = pytest.mark.filterwarnings("ignore:This process .* is multi-threaded")


class Terminal:
    """hermes running on a pty: type into it, wait for what it prints.

    Before a signal (^C, SIGTERM), wait for what hermes prints, then call blocked(). CPython's
    readline draws the prompt and only then blocks in select(); Python's handlers run when
    select() fails with EINTR. A signal that lands in between is held back until another
    signal comes (keys do not help: they end select() normally; python/cpython#112585), so
    hermes would sit at the prompt with the ^C or SIGTERM unanswered. See tests/processes.py.
    """

    def __init__(self, argv: list[str], env: dict) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the pty is its controlling terminal, so ^C is SIGINT
            os.execve(sys.executable, [sys.executable, str(ROOT / "bin" / "hermes"), *argv], env)
        self.screen = ""

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def blocked(self) -> None:
        """Wait (bounded) until hermes blocks, in readline's select() or on its next event."""
        wait_until_asleep(self.pid, meanwhile=self._read)

    def _read(self, timeout: float) -> None:
        if select.select([self.fd], [], [], timeout)[0]:
            try:
                self.screen += os.read(self.fd, 65536).decode("utf-8", "replace")
            except OSError:  # the child exited
                pass

    def expect(self, text: str, timeout: float = 10.0) -> str:
        """Wait (bounded) until `text` appears after what was already seen; return the output."""
        deadline = time.monotonic() + timeout
        while text not in self.screen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"waited for {text!r}; screen so far: {self.screen!r}"
            if select.select([self.fd], [], [], remaining)[0]:
                try:
                    self.screen += os.read(self.fd, 65536).decode("utf-8", "replace")
                except OSError:  # the child exited
                    break
        assert text in self.screen, f"{text!r} not in {self.screen!r}"
        seen, _, self.screen = self.screen.partition(text)
        return seen + text

    def exit_code(self, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return (
                    os.waitstatus_to_exitcode(status)
                    if hasattr(os, "waitstatus_to_exitcode")
                    else (status >> 8)
                )
            if select.select([self.fd], [], [], 0.05)[0]:
                try:
                    os.read(self.fd, 65536)
                except OSError:
                    pass
        raise AssertionError("hermes chat did not exit")

    def close(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(self.fd)


@pytest.fixture
def chat(server, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env.update(
        OPENAI_BASE_URL=server.url,
        HERMES_MODEL="m",
        TERM="dumb",
        XDG_STATE_HOME=str(tmp_path / "state"),
        XDG_CONFIG_HOME=str(tmp_path / "cfg"),
    )
    terminals = []

    def start(*argv):
        terminal = Terminal(["chat", *argv], env)
        terminals.append(terminal)
        terminal.expect("m> ")
        return terminal

    yield start
    for terminal in terminals:
        terminal.close()


def test_a_conversation_with_commands(chat, server):
    server.reply(
        Reply(parts=answer("Hello! How can I help?")),
        Reply(parts=answer("Sure.")),
        Reply(parts=answer("Fresh start.")),
    )
    term = chat()
    term.type("hi there\r")
    assert "Hello! How can I help?" in term.expect("m> ")
    term.type("and a second \\\r")
    term.expect("... ")
    term.type("line\r")
    term.expect("Sure.")
    term.expect("m> ")
    assert [m["content"] for m in server.requests[1]["json"]["messages"]] == [
        "hi there",
        "Hello! How can I help?",
        "and a second \nline",
    ]
    term.type("/model other-model\r")
    term.expect("other-model> ")
    term.type("/new\r")
    term.expect("(new conversation)")
    term.type("again\r")
    term.expect("Fresh start.")
    assert server.requests[2]["json"]["model"] == "other-model"
    assert server.requests[2]["json"]["messages"] == [{"role": "user", "content": "again"}]
    term.type("/help\r")
    term.expect("/system TEXT")
    term.type("/exit\r")
    assert term.exit_code() == 0


def test_ctrl_c_stops_an_answer_and_keeps_the_conversation(chat, server):
    server.reply(
        Reply(parts=[sse(chunk("a long answer that"), done=False), Hold()]),
        Reply(parts=answer("continuing")),
    )
    term = chat()
    term.type("tell me a story\r")
    term.expect("a long answer that")
    assert server.holding.wait(10)
    term.blocked()  # waiting for the next event, which the held server never sends
    term.type("\x03")  # Ctrl-C
    term.expect("(interrupted)")
    term.expect("m> ")
    assert server.client_gone.wait(5)
    term.type("go on\r")
    term.expect("continuing")
    history = server.requests[1]["json"]["messages"]
    assert history[1]["content"].startswith("a long answer that")


def test_ctrl_c_at_an_empty_prompt_asks_then_leaves(chat):
    term = chat()
    term.blocked()
    term.type("\x03")
    term.expect("press Ctrl-C again")
    term.expect("m> ")
    term.blocked()
    term.type("\x03")
    assert term.exit_code() == 0


def test_ctrl_d_leaves(chat):
    term = chat()
    term.type("\x04")
    assert term.exit_code() == 0


def test_without_a_terminal_it_reads_lines_and_prints_no_prompts(server, tmp_path):
    server.reply(Reply(parts=answer("one")), Reply(parts=answer("two")))
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env.update(OPENAI_BASE_URL=server.url, HERMES_MODEL="m", XDG_STATE_HOME=str(tmp_path / "state"))
    done = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "hermes"), "chat"],
        input=b"first\nsecond\n",
        capture_output=True,
        env=env,
        timeout=20,
    )
    assert done.returncode == 0
    assert done.stdout == b"one\ntwo\n" and b"m> " not in done.stdout + done.stderr


def test_sigterm_at_the_prompt_leaves_with_143(chat):
    term = chat()
    term.blocked()
    os.kill(term.pid, signal.SIGTERM)
    assert term.exit_code() == 143


def test_system_prompt_set_in_chat_is_kept_for_later_turns(chat, server):
    server.reply(Reply(parts=answer("one")), Reply(parts=answer("two")))
    term = chat()
    term.type("first\r")
    term.expect("one")
    term.expect("m> ")
    term.type("/system Answer in French\r")
    term.expect("(system prompt set)")
    term.type("second\r")
    term.expect("two")
    term.type("/exit\r")
    assert term.exit_code() == 0
    assert server.requests[1]["json"]["messages"][0] == {
        "role": "system",
        "content": "Answer in French",
    }


def test_ctrl_c_with_text_typed_drops_the_line_and_stays(chat, server):
    server.reply(Reply(parts=answer("only this")))
    term = chat()
    term.type("half a thought")
    term.expect("half a thought")
    term.blocked()
    term.type("\x03")
    seen = term.expect("m> ")
    assert "press Ctrl-C again" not in seen
    term.type("a real question\r")
    term.expect("only this")
    assert [m["content"] for m in server.requests[0]["json"]["messages"]] == ["a real question"]
