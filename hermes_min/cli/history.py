"""`hermes history [ID | rm ID]`: the stored conversations, listed (or searched), one shown
turn by turn, or one deleted."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from ..errors import UsageError
from ..storage import ENDINGS, open_store
from ..visible import printable
from .console import EXIT_OK, isatty, print_json, say
from .settings import load


def history(args: argparse.Namespace) -> int:
    """List (or search) the stored conversations, show one, or delete one."""
    action, cid = _action(args.words)
    config = load(args)
    store = open_store(config, required=True)
    assert store is not None  # required: a failure raised
    # Stored text is the model's: on a terminal its control characters are shown, not
    # obeyed; into a pipe (and as JSON) it stays exactly as stored.
    show = printable if isatty(sys.stdout) else _as_it_is
    with store:
        if action == "rm":
            resolved = store.resolve(cid)
            store.delete_conversation(resolved)
            say(f"deleted conversation {resolved}")
            return EXIT_OK
        if action == "show":
            record = store.conversation(store.resolve(cid))
            print_json(record) if args.json else _print_conversation(record, show)
            return EXIT_OK
        listed = store.list_conversations(limit=args.n, query=args.query, model=args.model)
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


def _action(words: list[str]) -> tuple[str, str]:
    """("list", ""), ("show", ID) or ("rm", ID) from the words after `history`."""
    if not words:
        return "list", ""
    if words[0] == "rm":
        if len(words) != 2 or not words[1].strip():
            raise UsageError("hermes history rm takes one conversation id (see hermes history -h)")
        return "rm", words[1]
    if len(words) > 1:
        raise UsageError(
            f"hermes history takes one conversation id, not {len(words)} words "
            "(rm ID deletes one; see hermes history -h)"
        )
    if not words[0].strip():
        raise UsageError("the conversation id is empty (see hermes history -h)")
    return "show", words[0]


def _as_it_is(text: str) -> str:
    return text


def _print_conversation(record: dict, show: Callable[[str], str]) -> None:
    """One stored conversation, turn by turn."""
    print(show(f"{record['id']}  {record.get('model') or '-'}  {record.get('title') or ''}"))
    if record.get("system"):
        print(show(f"system: {record['system']}"))
    for turn in record.get("turns", []):
        ended = turn.get("ended")
        note = f"  {ENDINGS[ended]}" if ended in ENDINGS else ""
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
