"""Builds the working parts from settings: model client, fallback, tools, agent."""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from .agent import Agent
from .client import ChatClient
from .config import Config
from .storage import default_path
from .tools import Tool, load_tool

log = logging.getLogger(__name__)


def chat_client(config: Config, stream: bool = True) -> ChatClient:
    """The client for provider.* settings."""
    p = config.provider
    client = _client(config, p.base_url, p.api_key, p.model, stream)
    client.key_source, client.key_note = p.api_key_source, p.api_key_note
    # -v: which key goes where, by its source; never the key.
    if p.api_key_source:
        log.info("sending the API key from %s to %s", p.api_key_source, client.base_url)
    else:
        note = f" ({p.api_key_note})" if p.api_key_note else ""
        log.info("sending no API key to %s%s", client.base_url, note)
    return client


def fallback_client(config: Config, stream: bool = True) -> ChatClient | None:
    """The client for provider.fallback (a mapping, or a named provider resolved into one),
    inheriting every other provider setting."""
    fallback, p = config.provider.fallback, config.provider
    if not fallback:
        return None
    return _client(
        config,
        fallback.get("base_url", p.base_url),
        fallback.get("api_key"),
        fallback.get("model", p.model),
        stream,
        extra_body=fallback.get("extra_body", p.extra_body),
        ca_bundle=fallback.get("ca_bundle", p.ca_bundle),
    )


def _client(
    config: Config,
    base_url: str,
    api_key: str | None,
    model: str | None,
    stream: bool,
    *,
    extra_body: dict | None = None,
    ca_bundle: str | None = None,
) -> ChatClient:
    p = config.provider
    return ChatClient(
        base_url,
        api_key,
        model,
        connect_timeout=p.connect_timeout,
        read_timeout=p.read_timeout,
        total_timeout=p.total_timeout,
        max_retries=p.max_retries,
        ca_bundle=ca_bundle or p.ca_bundle,
        insecure=p.insecure,
        proxy=p.proxy,
        extra_body=p.extra_body if extra_body is None else extra_body,
        stream=stream,
    )


def tools(config: Config, extra: Iterable[str] = ()) -> list[Tool]:
    """The tools listed in config.yaml plus any --tool, loaded (ConfigError if one fails)."""
    specs = list(dict.fromkeys([*config.tools, *extra]))  # each once, in order
    dirs, refused = config.agent.read_dirs, own_files(config)
    return [load_tool(spec, allowed_dirs=dirs, refused=refused) for spec in specs]


def own_files(config: Config) -> tuple[str, ...]:
    """Glob patterns of hermes' own files, which read_file refuses even under read_dirs.

    The config file in use, the key and token files, the database with its journals, the
    REPL's line history beside it, and the bot's lock files (telegram-<bot>.lock): a model
    must not be able to read a secret, or the conversations, through a tool.
    """
    db = Path(config.storage.path or default_path()).expanduser().absolute()
    named = (
        config.source,
        config.provider.api_key_file,
        config.provider.fallback.get("api_key_file"),
        *(entry.get("api_key_file") for entry in config.providers.values()),
        config.telegram.token_file,
        *(f"{db}{suffix}" for suffix in ("", "-wal", "-shm", "-journal")),
        str(db.with_name("chat_history")),
    )
    files = [glob.escape(os.path.abspath(os.path.expanduser(name))) for name in named if name]
    return (*files, os.path.join(glob.escape(str(db.parent)), "telegram-*.lock"))


def agent(
    config: Config, client: ChatClient, extra_tools: Iterable[str] = (), stream: bool = True
) -> Agent:
    """An agent with the configured tools, limits and fallback."""
    a = config.agent
    return Agent(
        client,
        tools=tools(config, extra_tools),
        max_turns=a.max_turns,
        tool_timeout=a.tool_timeout,
        strip_think_tags=a.strip_think_tags,
        context_tokens=a.context_tokens,
        fallback=fallback_client(config, stream),
        secrets=config.secrets,
    )
