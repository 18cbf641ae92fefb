"""The settings a command runs with (the config, flags on top) and what they open."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

from ..config import Config, load_config
from ..conversation import Conversation
from ..errors import UsageError
from ..storage import Store, open_store


def load(args: argparse.Namespace) -> Config:
    """The settings, with the command line's provider flags on top."""
    overrides = {
        "provider.model": getattr(args, "model", None),
        "provider.base_url": getattr(args, "base_url", None),
        "provider.api_key": getattr(args, "api_key", None),
        "provider.ca_bundle": getattr(args, "ca_bundle", None),
    }
    return load_config(args.config, overrides=overrides)


@contextlib.contextmanager
def opened_store(config: Config, args: argparse.Namespace) -> Iterator[Store | None]:
    """The conversation store; required only when continuing a conversation."""
    store = open_store(config, required=bool(args.continue_ or args.cid))
    try:
        yield store
    finally:
        if store is not None:
            store.close()


def conversation(store: Store | None, args: argparse.Namespace, model: str | None) -> Conversation:
    """The conversation to continue (--cid, --continue) or a new one."""
    cid = None
    if args.cid and store is not None:
        cid = store.resolve(args.cid)
    elif args.continue_ and store is not None:
        cid = store.last_conversation()
        if cid is None:
            raise UsageError("there is no conversation to continue yet")
    return Conversation(store, cid, model=model, system=args.system)
