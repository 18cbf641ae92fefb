"""The settings a command runs with (the config, flags on top) and what they open."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..config import RESERVED_BODY_KEYS, Config, config_path, load_config
from ..conversation import Conversation
from ..errors import ConfigError, UsageError
from ..storage import Store, open_store

if TYPE_CHECKING:
    from ..client import ChatClient  # `hermes history` loads settings, and no requests


def load(args: argparse.Namespace, conversation: dict | None = None) -> Config:
    """The settings, with the command line's flags on top (and, when continuing, the
    conversation's own endpoint and model under them)."""
    overrides = {
        "provider.model": getattr(args, "model", None),
        "provider.base_url": getattr(args, "base_url", None),
        "provider.api_key": getattr(args, "api_key", None),
        "provider.ca_bundle": getattr(args, "ca_bundle", None),
    }
    config = load_config(
        args.config,
        overrides=overrides,
        provider=getattr(args, "provider", None),
        conversation=conversation,
    )
    options = request_options(getattr(args, "options", None) or ())
    if options:
        body = {**config.provider.extra_body, **options}
        origins = {**config.origins, "provider.extra_body": "flag -o"}
        config = replace(config, provider=replace(config.provider, extra_body=body))
        config = replace(config, origins=origins)
    if getattr(args, "needs_model", False):  # models, telegram send (prompts: in resumed())
        require_endpoint(config, args)
    return config


def _continuing(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "continue_", False) or getattr(args, "cid", None))


def require_endpoint(config: Config, args: argparse.Namespace) -> None:
    """With no endpoint and no key set anywhere, say what to set (not "cannot connect to
    api.openai.com"): the first thing a new user sees."""
    if "provider.base_url" in config.origins or config.provider.api_key:
        return
    path, _ = config_path(getattr(args, "config", None), os.environ)
    # A file that exists (config init wrote it, or one of its own) needs editing, not writing.
    file = (
        f"set provider.base_url in {path}"
        if config.source
        else f"run `hermes config init` to write {path} and edit it"
    )
    raise ConfigError(
        "no endpoint or API key is set: pass --base-url URL (a local server needs no key) "
        "and/or --api-key KEY, or set HERMES_BASE_URL and HERMES_API_KEY (OPENAI_API_KEY for "
        f"OpenAI's API), or {file}",
        "provider.base_url",
        config.source,
    )


def request_options(pairs: Any) -> dict[str, Any]:
    """-o KEY VALUE pairs as request-body keys: the value read as JSON when it is JSON
    (a number, true/false, null, an object, a list, a "quoted string"), else as text."""
    options: dict[str, Any] = {}
    for key, text in pairs:
        if not key.strip():
            raise UsageError("-o needs a key: -o KEY VALUE (see hermes -h)")
        if key in RESERVED_BODY_KEYS:
            hint = "use -m/--model" if key == "model" else "hermes sets it"
            raise UsageError(f"-o {key} is refused: {hint}")
        options[key] = _json_or_text(key, text)
    return options


def _json_or_text(key: str, text: str) -> Any:
    try:
        value = json.loads(text, parse_constant=_not_json)
    except (ValueError, RecursionError):
        return text
    if not _finite(value):
        raise UsageError(f"-o {key}: {text[:40]!r} is not a finite number")
    return value


def _not_json(name: str) -> None:
    """NaN and Infinity: Python's json reads them, no server does."""
    raise ValueError(name)


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(item) for item in value.values())
    if isinstance(value, list):
        return all(_finite(item) for item in value)
    return True


@contextlib.contextmanager
def opened_store(config: Config, args: argparse.Namespace) -> Iterator[Store | None]:
    """The conversation store; required only when continuing a conversation, and not opened
    at all for a run that stores nothing (--no-log) and continues nothing."""
    continuing = _continuing(args)
    if getattr(args, "no_log", False) and not continuing:
        yield None
        return
    store = open_store(config, required=continuing)
    try:
        yield store
    finally:
        if store is not None:
            store.close()


def resumed(
    args: argparse.Namespace, config: Config, store: Store | None
) -> tuple[Config, str | None]:
    """The settings to run with, and the id of the conversation to continue (None: a new one).

    -c and --cid continue on the conversation's own model and endpoint (and named
    provider); -m, --base-url and -p switch it, and the switch is stored with the next turn.
    """
    cid = None
    if args.cid and store is not None:
        cid = store.resolve(args.cid)
    elif args.continue_ and store is not None:
        cid = store.last_conversation()
        if cid is None:
            raise UsageError("there is no conversation to continue yet")
    if cid is not None:
        stored = store.endpoint(cid) if store is not None else {}
        own: dict[str, str | None] = {}
        if not (args.provider or args.base_url):
            own.update(base_url=stored.get("base_url"), provider=stored.get("provider"))
        if not (args.model or args.provider):
            own["model"] = stored.get("model")
        config = load(args, own)
    require_endpoint(config, args)
    return config, cid


def conversation(
    store: Store | None,
    args: argparse.Namespace,
    cid: str | None,
    client: ChatClient,
    config: Config,
) -> Conversation:
    """The conversation a prompt joins: `cid`'s, or a new one; it remembers the model and
    endpoint it runs on, so -c continues there."""
    return Conversation(
        store,
        cid,
        model=client.model,
        system=args.system,
        base_url=client.base_url,
        provider=config.provider.name,
        keep=not getattr(args, "no_log", False),
    )
