"""One conversation: its stored history, a turn at a time through the agent, saved after each."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .errors import StreamError

if TYPE_CHECKING:
    from .agent import Agent, Turn
    from .storage import Store

log = logging.getLogger(__name__)

# A StreamError's kind -> how the turn it cut is stored (storage.ENDINGS): the model is told
# whether the user stopped it, the connection broke or the server reported an error.
_ENDED_BY = {
    "interrupted": "interrupted",
    "connection": "connection",
    "timeout": "connection",
    "incomplete": "connection",
    "tls": "connection",
    "proxy": "connection",
    "max_turns": "max_turns",
}


class Conversation:
    """The history a turn is asked against, and where the finished turn is written."""

    def __init__(
        self,
        store: Store | None,
        cid: str | None = None,
        *,
        model: str | None = None,
        system: str | None = None,
        key: str | None = None,
        default_system: str | None = None,
        base_url: str | None = None,
        provider: str | None = None,
        keep: bool = True,
    ) -> None:
        self.store = store
        self.default_system = default_system  # used while the conversation stores none
        self.cid = cid
        self.model = model
        self.system = system
        self.key = key
        self.base_url = base_url  # where the conversation continues (-c), with `provider`
        self.provider = provider
        self.keep = keep  # False: read the history, write nothing (--no-log)
        self._pending: dict | None = None  # the user message of the turn in flight
        self._system_cleared = False

    @classmethod
    def for_key(
        cls,
        store: Store,
        key: str,
        *,
        model: str | None = None,
        default_system: str | None = None,
    ) -> Conversation:
        """The current conversation of `key` (a Telegram chat or topic), or a new one."""
        cid = store.conversation_for_key(key)
        return cls(store, cid, model=model, key=key, default_system=default_system)

    def messages(self) -> list[dict]:
        """The conversation so far, with the system prompt this session uses."""
        history = self.store.messages(self.cid) if self.store is not None and self.cid else []
        if self.system is None and not self._system_cleared:
            stored = bool(history) and history[0].get("role") == "system"
            if self.default_system and not stored:
                return [{"role": "system", "content": self.default_system}, *history]
            return list(history)
        rest = [m for m in history if m.get("role") != "system"]
        return [{"role": "system", "content": self.system}, *rest] if self.system else rest

    def set_system(self, system: str | None) -> None:
        """Use (or, with None, drop) a system prompt from now on, stored with the conversation."""
        self.system = system
        self._system_cleared = system is None
        if self.store is not None and self.cid is not None:
            self.store.set_system(self.cid, system)

    def ask(self, agent: Agent, text: str, *, model: str | None = None) -> Turn:
        """Start a turn for the user's `text` (on `model`, else the agent's client's)."""
        self._pending = {"role": "user", "content": text}
        return agent.turn([*self.messages(), self._pending], model=model)

    def save(self, turn: Turn) -> None:
        """Write the finished (or cut) turn in one transaction.

        A request that got no answer at all (a refused key, a server that is down, an
        interrupt before the first word) is not a turn: nothing is written.
        """
        pending, self._pending = self._pending, None
        if self.store is None or pending is None or not self.keep:
            return
        answer = turn.record()
        ended = None if turn.completed else _ended(turn)
        if ended is not None and not answer:
            return
        with self.store.transaction():
            if self.cid is None:
                self.cid = self.store.new_conversation(
                    model=self.model, system=self.system, key=self.key
                )
            self.store.append_turn(
                self.cid,
                [pending, *answer],
                model=turn.model or self.model,
                usage=turn.usage,
                ended=ended,
            )
            if self.base_url is not None or self.provider is not None:
                self.store.set_endpoint(
                    self.cid, model=self.model, base_url=self.base_url, provider=self.provider
                )

    def new(self) -> None:
        """Start over: the next turn begins a new conversation."""
        if self.store is not None and self.key is not None:
            self.store.reset_key(self.key)
        self.cid = None


def _ended(turn: Turn) -> str:
    """How a turn without a complete answer ended (a key of storage.ENDINGS)."""
    try:
        turn.result()
    except StreamError as error:
        return _ENDED_BY.get(error.kind, "error")
    return "error"  # not completed, yet no error: treat it as cut by the server
