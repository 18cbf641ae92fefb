"""`hermes chat`: a conversation in the terminal, one line (or block) at a time."""

from __future__ import annotations

import argparse
import os
import select
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable, TextIO

from .. import assemble
from ..agent import Agent, Turn
from ..client import ChatClient
from ..config import Config
from ..conversation import Conversation
from ..errors import StreamError, Terminated
from ..storage import default_path
from ..transports.terminal import TerminalPrinter
from ..visible import printable
from .console import isatty, valid_text
from .settings import conversation, load, opened_store, resumed
from .usage import Clock, usage_line

HELP = """\
/new            start a new conversation
/model NAME     use another model from now on
/system TEXT    set the system prompt (/system alone clears it)
/history        show this conversation
/help           this list
/exit           leave (Ctrl-D also leaves)
A line ending in \\ continues on the next line; a pasted block is taken whole.
Ctrl-C stops an answer; at an empty prompt, press it twice to leave."""


def chat(args: argparse.Namespace, config: Config | None = None) -> int:
    """`hermes chat`: a conversation in the terminal."""
    config = config or load(args)
    with opened_store(config, args) as store:
        config, cid = resumed(args, config, store)
        with assemble.chat_client(config) as model_client:
            model_client.resolve_model()
            talk = conversation(store, args, cid, model_client, config)
            return _talk(args, config, model_client, talk)


def _talk(
    args: argparse.Namespace, config: Config, model_client: ChatClient, talk: Conversation
) -> int:
    """The REPL over one client and conversation, until the user leaves."""
    history = Path(config.storage.path or default_path()).with_name("chat_history")
    # One agent for the session: /model changes client.model, which it shares.
    agent = assemble.agent(config, model_client, args.tool)
    repl = Repl(
        client=model_client,
        conversation=talk,
        agent_for=lambda: agent,
        stdin=_tolerant(sys.stdin),
        stdout=sys.stdout,
        stderr=sys.stderr,
        history_file=history,
        mode=config.terminal.mode,
        show_reasoning=args.show_reasoning,
        usage=getattr(args, "usage", False),
    )
    try:
        return repl.run()
    finally:
        if agent.fallback is not None:
            agent.fallback.close()


def _tolerant(stdin: TextIO) -> TextIO:
    """stdin, set to read bytes that are not UTF-8 without raising (Repl replaces them)."""
    try:
        stdin.reconfigure(errors="surrogateescape")  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):
        pass  # not a TextIOWrapper (a test's stream), or closed: read it as it is
    return stdin


class Repl:
    """Reads prompts, streams answers, and keeps the conversation, until the user leaves."""

    def __init__(
        self,
        *,
        client: ChatClient,
        conversation: Conversation,
        agent_for: Callable[[], Agent],
        stdin: TextIO,
        stdout: TextIO,
        stderr: TextIO,
        history_file: Path | None = None,
        mode: str = "auto",
        show_reasoning: bool = False,
        usage: bool = False,
    ) -> None:
        self.client, self.conversation, self.agent_for = client, conversation, agent_for
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.tty = isatty(stdin) and isatty(stdout)  # prompts and line editing only then
        # Stored and served text (a model name, /history) is shown with control characters
        # made visible on a terminal, and exactly as it is into a pipe.
        self._visible_out, self._visible_err = isatty(stdout), isatty(stderr)
        self.history_file = history_file
        self.mode, self.show_reasoning = mode, show_reasoning
        self.usage = usage  # -u: a line after each answer
        self._armed = False  # Ctrl-C was pressed once at an empty prompt
        self._readline: ModuleType | None = None

    def run(self) -> int:
        """The loop; returns the exit code."""
        self._load_history()
        try:
            return self._loop()
        finally:
            self._save_history()

    def _loop(self) -> int:
        if self.tty:
            self._say(f"hermes chat with {self.client.model}: /help for commands, Ctrl-D to leave")
        while True:
            try:
                text = self._read()
            except EOFError:
                self._out("\n" if self.tty else "")
                return 0
            except Terminated:
                raise  # SIGTERM leaves (exit 143), whatever the prompt shows
            except KeyboardInterrupt:
                if self._typed():
                    self._out("\n")  # like a shell: Ctrl-C drops the line being typed
                    continue
                if self._armed:
                    self._out("\n")
                    return 0
                self._armed = True
                self._say("\n(press Ctrl-C again, or Ctrl-D, to leave)")
                continue
            self._armed = False
            if text.strip().startswith("/"):
                if self._command(text.strip()) == "exit":
                    return 0
            elif text.strip():
                self._ask(text)

    def _typed(self) -> bool:
        """Whether the interrupted prompt held text (readline keeps it until the next line)."""
        try:
            return bool(self._readline and self._readline.get_line_buffer().strip())
        except Exception:  # noqa: BLE001 - an odd readline build: treat as an empty line
            return False

    def _read(self) -> str:
        lines = [self._line(f"{printable(str(self.client.model))}> ")]
        while lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1]
            lines.append(self._line("... "))
        while self._more_waiting():  # a pasted block: its lines arrive all at once
            lines.append(self._line(""))
        return "\n".join(lines)

    def _line(self, prompt: str) -> str:
        """One line typed or piped, with bytes that were not UTF-8 replaced."""
        if self.tty:
            return valid_text(input(prompt))  # readline (if loaded) gives editing and history
        line = self.stdin.readline()
        if not line:
            raise EOFError
        return valid_text(line.rstrip("\n"))

    def _more_waiting(self) -> bool:
        if not self.tty:
            return False
        try:
            return bool(select.select([self.stdin], [], [], 0)[0])
        except (OSError, ValueError):
            return False

    def _ask(self, text: str) -> None:
        clock = Clock()
        turn = self.conversation.ask(self.agent_for(), text)
        printer = TerminalPrinter(
            self.stdout, self.stderr, mode=self.mode, show_reasoning=self.show_reasoning
        )
        stopped: BaseException | None = None  # raised again once the turn is saved
        try:
            with turn:
                for event in turn:
                    clock.saw(event)
                    printer.handle(event)
        except KeyboardInterrupt as signal_:
            turn.interrupt()
            stopped = signal_ if isinstance(signal_, Terminated) else None
        except (OSError, ValueError) as error:  # stdout is closed or full: save, then leave
            turn.interrupt()
            stopped = error
        finally:
            failed = self._settle(
                turn, printer, clock, report=not isinstance(stopped, (OSError, ValueError))
            )
        if stopped is not None:
            raise stopped
        if failed is not None:
            raise failed

    def _settle(
        self, turn: Turn, printer: TerminalPrinter, clock: Clock, *, report: bool
    ) -> BaseException | None:
        """Show how the turn ended and save it; neither another Ctrl-C nor an output that
        fails (stdout closed or full) can skip the save. The output's error, if any."""
        steps = [lambda: turn.join(2.0), printer.close]
        if report:
            steps.append(lambda: self._report(turn))
            if self.usage:
                steps.append(lambda: self._usage(turn, clock))
        failed = None
        for step in steps:
            try:
                step()
            except KeyboardInterrupt:
                pass
            except (OSError, ValueError) as error:
                failed = error  # main() says it once; nothing more is shown
                break
        for _ in range(3):
            try:
                self.conversation.save(turn)
                break
            except KeyboardInterrupt:
                continue  # the transaction rolled back: write it again
        return failed

    def _report(self, turn: Turn) -> None:
        try:
            turn.result()
        except StreamError as error:
            self._say("(interrupted)" if error.kind == "interrupted" else f"hermes: {error}")

    def _usage(self, turn: Turn, clock: Clock) -> None:
        """-u: the answer's tokens and speed (details only for a one-response turn)."""
        try:
            message = turn.result()
        except StreamError:
            return  # after an answer only: the failure's own line says what happened
        rounds = sum(1 for m in turn.new_messages if m.get("role") == "assistant")
        last = message.usage if message is not None and rounds <= 1 else None
        self._say(f"hermes: {usage_line(turn.usage or last, last, clock)}")

    def _command(self, line: str) -> str | None:
        name, _, rest = line.partition(" ")
        rest = rest.strip()
        if name in ("/exit", "/quit"):
            return "exit"
        handler = {
            "/new": self._new,
            "/model": self._model,
            "/system": self._system,
            "/history": self._history,
            "/help": self._help,
        }.get(name)
        if handler is None:
            self._say(f"unknown command {name}: /help lists them")
        else:
            handler(rest)
        return None

    def _new(self, _: str) -> None:
        self.conversation.new()
        self._say("(new conversation)")

    def _model(self, name: str) -> None:
        if not name:
            self._say(f"model: {self.client.model}")
            return
        self.client.model = self.conversation.model = name
        self._say(f"(model: {name})")

    def _system(self, text: str) -> None:
        self.conversation.set_system(text or None)
        self._say("(system prompt set)" if text else "(system prompt cleared)")

    def _history(self, _: str) -> None:
        for message in self.conversation.messages():
            content = message.get("content") or ""
            calls = ", ".join(c["function"]["name"] for c in message.get("tool_calls") or [])
            self._out(f"{message['role']}: {content}{' [tools: ' + calls + ']' if calls else ''}\n")

    def _help(self, _: str) -> None:
        self._out(HELP + "\n")

    def _load_history(self) -> None:
        if not self.tty:
            return
        try:
            import readline  # not on every platform; input() still works without it
        except ImportError:
            return
        self._readline = readline
        if self.history_file is not None and self.history_file.is_file():
            try:
                readline.read_history_file(str(self.history_file))
            except OSError:
                pass

    def _save_history(self) -> None:
        if self._readline is None or self.history_file is None:
            return
        try:
            self.history_file.parent.mkdir(parents=True, exist_ok=True)
            self._readline.set_history_length(1000)
            self._readline.write_history_file(str(self.history_file))
            os.chmod(self.history_file, 0o600)
        except OSError:
            pass

    def _say(self, text: str) -> None:
        self.stderr.write((printable(text) if self._visible_err else text) + "\n")
        self.stderr.flush()

    def _out(self, text: str) -> None:
        self.stdout.write(printable(text) if self._visible_out else text)
        self.stdout.flush()
