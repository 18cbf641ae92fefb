"""`hermes history [ID]`: the stored conversations, listed or one shown turn by turn."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from ..storage import open_store
from ..visible import printable
from .console import EXIT_OK, isatty, print_json
from .settings import load


def history(args: argparse.Namespace) -> int:
    """List the stored conversations, or show one."""
    config = load(args)
    store = open_store(config, required=True)
    assert store is not None  # required: a failure raised
    # Stored text is the model's: on a terminal its control characters are shown, not
    # obeyed; into a pipe (and as JSON) it stays exactly as stored.
    show = printable if isatty(sys.stdout) else _as_it_is
    with store:
        if args.id:
            record = store.conversation(store.resolve(args.id))
            print_json(record) if args.json else _print_conversation(record, show)
            return EXIT_OK
        listed = store.list_conversations(limit=args.n)
    if args.json:
        print_json(listed)
        return EXIT_OK
    for item in listed:
        when = (item.get("updated") or "")[:16].replace("T", " ")
        print(
            show(
                f"{item['id']}  {when}  {item.get('model') or '-'}  "
                f"{item.get('turns', 0)} turn(s)  {item.get('title') or ''}"
            )
        )
    return EXIT_OK


def _as_it_is(text: str) -> str:
    return text


def _print_conversation(record: dict, show: Callable[[str], str]) -> None:
    """One stored conversation, turn by turn."""
    print(show(f"{record['id']}  {record.get('model') or '-'}  {record.get('title') or ''}"))
    if record.get("system"):
        print(show(f"system: {record['system']}"))
    for turn in record.get("turns", []):
        note = "  (interrupted)" if turn.get("interrupted") else ""
        print(f"\n--- turn {turn.get('number')}{note}")
        for message in turn.get("messages", []):
            print(show(_message_line(message)))


def _message_line(message: dict) -> str:
    """A stored message as text: its content, or its tool calls and results."""
    role, content = message.get("role"), message.get("content") or ""
    if role == "tool":
        return f"  <- {content}"
    calls = [c["function"] for c in message.get("tool_calls") or []]
    lines = [f"{role}: {content}"] if content or not calls else []
    lines += [f"  -> {c['name']}({c['arguments']})" for c in calls]
    return "\n".join(lines)
