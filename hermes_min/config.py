"""Settings: config.yaml, then the environment, then flags, into frozen dataclasses."""

from __future__ import annotations

import difflib
import logging
import math
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError
from .redact import redact

log = logging.getLogger(__name__)

_NUMBER = (int, float)
CONFIG_LIMIT = 1 << 20  # a config file is a few KiB; more is a mistake (or an attack)
SECRET_LIMIT = 4096  # a key or token file holds one line: read no more than this
MAX_SECONDS = 1_000_000.0  # past this a timeout overflows the platform's time_t somewhere
DEFAULT_BASE_URL = "https://api.openai.com/v1"
OPENAI_HOST = "api.openai.com"
# Request-body keys hermes sets itself: extra_body or -o setting them would silently replace
# the model or break the conversation, so they are refused.
RESERVED_BODY_KEYS = ("model", "messages", "stream", "tools")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ProviderConfig:
    """Where and how to reach the model."""

    base_url: str = DEFAULT_BASE_URL
    api_key: str | None = field(default=None, repr=False)
    api_key_file: str | None = None
    model: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 300.0
    total_timeout: float | None = None  # one whole response, request to last byte; None: off
    max_retries: int = 2
    ca_bundle: str | None = None
    insecure: bool = False
    proxy: str | None = field(default=None, repr=False)
    extra_body: dict = field(default_factory=dict)
    fallback: dict = field(default_factory=dict, repr=False)
    name: str | None = None  # the named provider in use (-p, HERMES_PROVIDER), if any
    api_key_source: str | None = None  # where api_key came from, never the key itself
    api_key_note: str | None = None  # why a key that is set is not sent to this endpoint


@dataclass(frozen=True)
class StreamingConfig:
    """Whether and how answers are streamed."""

    enabled: bool = True
    transport: str = "auto"
    edit_interval: float = 1.5
    buffer_threshold: int = 40
    cursor: str = " \u2589"


@dataclass(frozen=True)
class TerminalConfig:
    """How the terminal shows a streamed answer."""

    mode: str = "auto"


@dataclass(frozen=True)
class TelegramConfig:
    """The Telegram bot and how it formats answers."""

    token: str | None = field(default=None, repr=False)
    token_file: str | None = None
    api_base: str = "https://api.telegram.org"
    parse_mode: str = "MarkdownV2"
    tool_progress: bool = False
    allowed_users: tuple = ()
    allowed_chats: tuple = ()
    deny_message: str | None = None
    group_mode: str = "mention"
    proxy: str | None = field(default=None, repr=False)
    answer_timeout: float = 600.0  # the bound on one answer of the bot
    concurrency: int = 4  # chats answered at the same time
    system: str | None = None  # the bot's system prompt: its persona
    models: tuple = ()  # the names /model may switch among (none: /model is off)
    chats: dict = field(default_factory=dict)  # chat id -> {system, model}


@dataclass(frozen=True)
class AgentConfig:
    """How the agent runs tools."""

    max_turns: int = 8
    tool_timeout: float = 60.0
    strip_think_tags: bool = True
    read_dirs: tuple = ()
    context_tokens: int = 8192  # the model's context window; 0: send the whole history


@dataclass(frozen=True)
class StorageConfig:
    """Where conversations are kept."""

    path: str | None = None


@dataclass(frozen=True)
class Config:
    """Every setting, resolved; `source` is the file it came from, if any."""

    provider: ProviderConfig = field(default_factory=ProviderConfig)
    streaming: StreamingConfig = field(default_factory=StreamingConfig)
    terminal: TerminalConfig = field(default_factory=TerminalConfig)
    telegram: TelegramConfig = field(default_factory=TelegramConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    tools: tuple = ()
    providers: dict = field(default_factory=dict)  # name -> {base_url, model, ...} as written
    source: str | None = None
    # Where each setting came from ("file", "environment HERMES_MODEL", "flag", ...);
    # a setting missing here has its default.
    origins: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The API keys and bot token these settings hold: never shown, sent or stored."""
        found = (self.provider.api_key, self.provider.fallback.get("api_key"), self.telegram.token)
        return tuple(dict.fromkeys(secret for secret in found if secret))


class _ListOf:
    """A config value that must be a list of one type."""

    def __init__(self, item: type) -> None:
        self.item = item


class _MappingOf:
    """A config value that must be a mapping with these keys only."""

    def __init__(self, keys: dict[str, type]) -> None:
        self.keys = keys


class _ByChat:
    """A config value that maps chat ids (integers) to mappings with these keys only."""

    def __init__(self, entry: _MappingOf) -> None:
        self.entry = entry


class _ByName:
    """A config value that maps names (strings) to mappings with these keys only."""

    def __init__(self, entry: _MappingOf) -> None:
        self.entry = entry


class _NameOr:
    """A config value that is a name (a string), or a mapping with these keys only."""

    def __init__(self, entry: _MappingOf) -> None:
        self.entry = entry


# A named endpoint under `providers:`. The key is never written here: a file, or the name of
# an environment variable that holds it.
_PROVIDER_ENTRY = _MappingOf(
    {
        "base_url": str,
        "api_key_file": str,
        "api_key_env": str,
        "model": str,
        "extra_body": dict,
        "ca_bundle": str,
    }
)


# The type each key must have: a type, a tuple of types, or a tuple of allowed strings.
_TYPES: dict[str, dict[str, Any]] = {
    "provider": {
        "base_url": str,
        "api_key": str,
        "api_key_file": str,
        "model": str,
        "connect_timeout": _NUMBER,
        "read_timeout": _NUMBER,
        "total_timeout": _NUMBER,
        "max_retries": int,
        "ca_bundle": str,
        "insecure": bool,
        "proxy": str,
        "extra_body": dict,
        "fallback": _NameOr(
            _MappingOf({"base_url": str, "model": str, "api_key": str, "api_key_file": str})
        ),
    },
    "streaming": {
        "enabled": bool,
        "transport": ("auto", "draft", "edit"),
        "edit_interval": _NUMBER,
        "buffer_threshold": int,
        "cursor": str,
    },
    "terminal": {"mode": ("auto", "chars", "lines")},
    "telegram": {
        "token": str,
        "token_file": str,
        "api_base": str,
        "parse_mode": ("MarkdownV2", "HTML"),
        "tool_progress": bool,
        "allowed_users": _ListOf(int),
        "allowed_chats": _ListOf(int),
        "deny_message": str,
        "group_mode": ("mention", "all"),
        "proxy": str,
        "answer_timeout": _NUMBER,
        "concurrency": int,
        "system": str,
        "models": _ListOf(str),
        "chats": _ByChat(_MappingOf({"system": str, "model": str})),
    },
    "agent": {
        "max_turns": int,
        "tool_timeout": _NUMBER,
        "strip_think_tags": bool,
        "read_dirs": _ListOf(str),
        "context_tokens": int,
    },
    "storage": {"path": str},
}
_TOP_LEVEL = {"tools": _ListOf(str), "providers": _ByName(_PROVIDER_ENTRY)}  # not sections
_POSITIVE = frozenset(
    {
        "provider.connect_timeout",
        "provider.read_timeout",
        "provider.total_timeout",
        "telegram.answer_timeout",
        "streaming.edit_interval",
        "agent.max_turns",
        "telegram.concurrency",
        "agent.tool_timeout",
    }
)
_NON_NEGATIVE = frozenset(
    {"provider.max_retries", "streaming.buffer_threshold", "agent.context_tokens"}
)
_COUNTS = frozenset({"agent.max_turns", "telegram.concurrency"})  # positive, not seconds
_SECONDS = _POSITIVE - _COUNTS
_SECRETS = frozenset({"provider.api_key", "telegram.token"})

# Environment variables, first found wins; HERMES_* beat the names other tools use. The API
# key is not here: which key goes to which endpoint is decided by _route_key.
_ENV = {
    "provider.base_url": ("HERMES_BASE_URL", "OPENAI_BASE_URL", "OPENAI_API_BASE"),
    "provider.model": ("HERMES_MODEL",),
    "telegram.token": ("TELEGRAM_BOT_TOKEN",),
}
_OPENAI_BASE = ("OPENAI_BASE_URL", "OPENAI_API_BASE")  # where OPENAI_API_KEY may go
# What a named provider (or a continued conversation's endpoint) decides for the run.
_ENDPOINT_KEYS = ("base_url", "model", "extra_body", "ca_bundle")


def config_path(explicit: str | None, env: Mapping[str, str]) -> tuple[Path, bool]:
    """The config file to read, and whether the user named it (so it must exist)."""
    if explicit:
        return Path(explicit).expanduser(), True
    if env.get("HERMES_CONFIG"):
        return Path(env["HERMES_CONFIG"]).expanduser(), True
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "hermes" / "config.yaml", False


def load_config(
    path: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    provider: str | None = None,
    conversation: Mapping[str, str | None] | None = None,
) -> Config:
    """Read settings: the file, then `env` (default os.environ), then a named provider
    (`provider`, else HERMES_PROVIDER), then a continued `conversation`'s own endpoint and
    model ({"base_url", "provider", "model"}), then `overrides` ("a.b": v, the flags)."""
    env = os.environ if env is None else env
    file, named = config_path(path, env)
    values = _read_file(file, named)
    source = str(file) if values is not None else None
    where = source or "config"
    merged = _check(values or {}, where)
    origins = {key: f"file {source}" for key in merged}
    for key, names in _ENV.items():
        name = next((n for n in names if env.get(n)), None)
        if name is not None:
            merged[key] = _checked(key, env[name], name)
            origins[key] = f"environment {name}"
    flags = {key: value for key, value in (overrides or {}).items() if value is not None}
    flag_key = flags.pop("provider.api_key", None)
    configured = flags.get("provider.base_url", merged.get("provider.base_url", DEFAULT_BASE_URL))
    chosen = _chosen_provider(provider, env, conversation, merged, source)
    if chosen is not None:
        entry = merged["providers"][chosen]
        for key in _ENDPOINT_KEYS:  # the provider's own, or the defaults: none of the rest
            merged.pop(f"provider.{key}", None)
            origins.pop(f"provider.{key}", None)
            if key in entry:
                merged[f"provider.{key}"] = entry[key]
                origins[f"provider.{key}"] = f"providers.{chosen}"
        merged["provider.name"] = chosen
        origins["provider.name"] = "flag" if provider else _chooser(conversation, chosen)
    for key in ("base_url", "model"):
        value = (conversation or {}).get(key)
        if not value or (key == "base_url" and chosen is not None):
            continue
        current = merged.get("provider.base_url", DEFAULT_BASE_URL)
        if key == "base_url" and _same_endpoint(value, current):
            continue  # the configured URL names it, with what was not stored (a password)
        merged[f"provider.{key}"] = value
        origins[f"provider.{key}"] = "the conversation"
    for key, value in flags.items():
        merged[key] = _checked(key, value, "the command line")
        origins[key] = "flag"
    at_configured = chosen is None and _same_endpoint(
        merged.get("provider.base_url", DEFAULT_BASE_URL), configured
    )
    key, key_source, note = _route_key(
        merged,
        env,
        _checked("provider.api_key", flag_key, "--api-key") if flag_key else None,
        chosen,
        at_configured,
        source,
    )
    merged.pop("provider.api_key", None)
    origins.pop("provider.api_key", None)
    if key is not None:
        merged["provider.api_key"] = key
        origins["provider.api_key"] = key_source
    merged["provider.api_key_source"] = key_source
    merged["provider.api_key_note"] = note
    config = _secrets_from_files(_build(merged, source), source)
    config = _named_fallback(config, env, source)
    return replace(config, origins=origins)


def _chosen_provider(
    flag: str | None,
    env: Mapping[str, str],
    conversation: Mapping[str, str | None] | None,
    merged: dict[str, Any],
    source: str | None,
) -> str | None:
    """The named provider the run uses: -p, else a continued conversation's, else
    HERMES_PROVIDER (a conversation with an endpoint of its own keeps it)."""
    providers = merged.get("providers", {})
    if flag:
        name = flag
    elif conversation and (conversation.get("base_url") or conversation.get("provider")):
        name = conversation.get("provider")
        return name if name in providers else None  # gone from the config: its base_url
    else:
        name = env.get("HERMES_PROVIDER") or None
    if name is None:
        return None
    if name not in providers:
        known = ", ".join(sorted(providers)) or "none are configured"
        raise ConfigError(
            f"no provider {name!r} under providers: in {source or 'the config'} "
            f"(known: {known}){_suggest(name, providers)}",
            "providers",
            source,
        )
    return name


def _chooser(conversation: Mapping[str, str | None] | None, chosen: str) -> str:
    if conversation and conversation.get("provider") == chosen:
        return "the conversation"
    return "environment HERMES_PROVIDER"


def _route_key(
    merged: dict[str, Any],
    env: Mapping[str, str],
    flag_key: str | None,
    chosen: str | None,
    at_configured: bool,
    source: str | None,
) -> tuple[str | None, str | None, str | None]:
    """The API key for the run's endpoint, where it came from, and (when none is sent) why
    a key that is set is not.

    A key goes only where it was meant to go: --api-key to this run's endpoint; a named
    provider's key to that provider's base_url; HERMES_API_KEY and the config's key to the
    configured endpoint; OPENAI_API_KEY to OPENAI_BASE_URL (or OPENAI_API_BASE), else only
    to OpenAI's own API, never to any other --base-url (as llm does).
    """
    if flag_key:
        return flag_key, "flag --api-key", None
    base = merged.get("provider.base_url", DEFAULT_BASE_URL)
    notes = []
    if chosen is not None:
        entry = merged["providers"][chosen]
        if _same_endpoint(base, entry["base_url"]):
            key, key_source = _provider_key(chosen, entry, env, source)
            if key is not None:
                return key, key_source, None
    elif at_configured:
        where = source or "the config"
        if env.get("HERMES_API_KEY"):
            key = _checked("provider.api_key", env["HERMES_API_KEY"], "HERMES_API_KEY")
            return key, "environment HERMES_API_KEY", None
        if env.get("OPENAI_API_KEY") and _openai_endpoint(base, env):
            return _openai_key(env), "environment OPENAI_API_KEY", None
        if merged.get("provider.api_key"):
            return merged["provider.api_key"], f"file {where} (provider.api_key)", None
        if merged.get("provider.api_key_file"):
            path = merged["provider.api_key_file"]
            key = _secret_file(path, "provider.api_key_file", source)
            return key, f"file {path} (provider.api_key_file)", None
    else:
        notes.append(
            "the keys set for the configured endpoint are not sent to a continued "
            "conversation's other endpoint (pass --api-key)"
        )
    if env.get("OPENAI_API_KEY"):
        if _openai_endpoint(base, env):
            return _openai_key(env), "environment OPENAI_API_KEY", None
        notes.append(
            "OPENAI_API_KEY is set, but it goes only to OpenAI's API or to OPENAI_BASE_URL; "
            "use HERMES_API_KEY or --api-key for this endpoint"
        )
    return None, None, "; ".join(notes) or None


def _openai_key(env: Mapping[str, str]) -> str:
    return _checked("provider.api_key", env["OPENAI_API_KEY"], "OPENAI_API_KEY")


def _openai_endpoint(base_url: str, env: Mapping[str, str]) -> bool:
    """Whether OPENAI_API_KEY may go to `base_url`: the endpoint OPENAI_BASE_URL (or
    OPENAI_API_BASE) names, or, with neither set, OpenAI's own API over https."""
    named = next((env[name] for name in _OPENAI_BASE if env.get(name)), None)
    if named is not None:
        return _same_endpoint(base_url, named)
    parts = urlsplit(base_url.strip())
    return parts.scheme == "https" and (parts.hostname or "") == OPENAI_HOST


def _same_endpoint(one: str, other: str) -> bool:
    """Whether two base URLs name the same endpoint (with or without /v1, a trailing /)."""
    return _endpoint(one) == _endpoint(other)


def _endpoint(url: str) -> tuple[str, str, int | None, str]:
    """A base URL reduced to what identifies an endpoint: scheme, host, port, path."""
    url = url.strip().rstrip("/")
    if url.endswith("/chat/completions"):
        url = url[: -len("/chat/completions")]
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    path = parts.path.rstrip("/") or "/v1"
    return parts.scheme.lower(), (parts.hostname or "").lower(), port or default, path


def same_endpoint(one: str, other: str) -> bool:
    """Whether two base URLs name the same endpoint (with or without /v1, a trailing /)."""
    return _same_endpoint(one, other)


def _provider_key(
    name: str, entry: Mapping[str, Any], env: Mapping[str, str], source: str | None
) -> tuple[str | None, str | None]:
    """A named provider's key (from its environment variable, else its key file)."""
    variable = entry.get("api_key_env")
    if variable and env.get(variable):
        key = f"providers.{name}.api_key_env"
        _check_secret(env[variable], f"{variable} ({key})", key, source)
        return env[variable], f"environment {variable} ({key})"
    path = entry.get("api_key_file")
    if path:
        key = f"providers.{name}.api_key_file"
        return _secret_file(path, key, source), f"file {path} ({key})"
    return None, None


def _named_fallback(config: Config, env: Mapping[str, str], source: str | None) -> Config:
    """provider.fallback: NAME becomes that provider's endpoint, model and key."""
    name = config.provider.fallback
    if not isinstance(name, str):
        return config
    entry = config.providers.get(name)
    if entry is None:
        raise ConfigError(
            f"provider.fallback in {source or 'the config'} names {name!r}, which is not "
            f"under providers:{_suggest(name, config.providers)}",
            "provider.fallback",
            source,
        )
    key, _ = _provider_key(name, entry, env, source)
    fallback = {k: entry[k] for k in (*_ENDPOINT_KEYS, "api_key_file") if k in entry}
    fallback["name"] = name
    if key is not None:
        fallback["api_key"] = key
    return replace(config, provider=replace(config.provider, fallback=fallback))


_MASK = "********"


def describe(config: Config) -> list[tuple[str, Any, str]]:
    """Every setting in effect as (key, value, where it came from: default, file, environment,
    flag, a named provider, the conversation), with keys and tokens masked."""
    secrets = config.secrets
    rows: list[tuple[str, Any, str]] = []
    if config.provider.name is not None:
        rows.append(("provider.name", config.provider.name, config.origins["provider.name"]))
    for section, keys in _TYPES.items():
        part = getattr(config, section)
        for key in keys:
            name = f"{section}.{key}"
            value = getattr(part, key)
            rows.append((name, _masked(name, value, secrets), _origin(config, name, value)))
    for name in _TOP_LEVEL:
        value = getattr(config, name)
        rows.append((name, _masked(name, value, secrets), _origin(config, name, value)))
    return rows


def _masked(name: str, value: Any, secrets: tuple[str, ...]) -> Any:
    """A setting's value as JSON can show it: keys and tokens masked, URL passwords too."""
    if name in _SECRETS:
        return _MASK if value else None
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, Mapping):
        return {
            str(k): _MASK if k == "api_key" and v else _masked(f"{name}.{k}", v, secrets)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_masked(name, item, secrets) for item in value]
    return value


def _origin(config: Config, name: str, value: Any) -> str:
    origin = config.origins.get(name)
    if origin is not None:
        return origin
    if name == "telegram.token" and value and config.telegram.token_file:
        return f"file {config.telegram.token_file} (telegram.token_file)"
    return "default"


def _read_file(file: Path, named: bool) -> dict | None:
    """The file's settings; None when no file was named and the default one does not exist."""
    try:
        data, _ = _read_small(file, CONFIG_LIMIT, f"config file {file}", None, str(file))
    except FileNotFoundError:
        if named:
            raise ConfigError(f"config file not found: {file}", source=str(file)) from None
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{file}: not UTF-8 text (byte {exc.start} is invalid)", source=str(file)
        ) from None
    values = _parse_yaml(text, file)
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{file}: the top level must be a mapping of sections", source=str(file))
    return values


def _parse_yaml(text: str, file: Path) -> Any:
    """The YAML document in `text`, refusing anchors and aliases (one line naming where)."""
    import yaml  # here, not at the top: `hermes --version` must not pay for it

    try:
        return yaml.load(text, Loader=_loader())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"{file}{where}: {problem}", source=str(file)) from None
    except RecursionError:  # the pure-Python parser has no depth limit of its own
        raise ConfigError(f"{file}: nested too deeply", source=str(file)) from None


def _loader() -> type:
    """A safe YAML loader that refuses anchors and aliases.

    An alias is a reference: ten lines of them make a structure of billions of items once
    anything walks it (a request body holding extra_body), and no setting needs one. The
    check sits in PyYAML's Python composer, over the C parser where PyYAML has it.
    """
    import yaml  # its submodules by attribute: they are loaded with it

    composer, constructor, resolver = yaml.composer, yaml.constructor, yaml.resolver
    parser = getattr(getattr(yaml, "cyaml", None), "CParser", None)
    if parser is None:  # a pure-Python PyYAML, as in hermes.pyz
        base: type = yaml.SafeLoader
    else:

        class base(  # type: ignore[no-redef]
            composer.Composer, parser, constructor.SafeConstructor, resolver.Resolver
        ):
            """CSafeLoader with the Python composer, which can be told to refuse aliases."""

            def __init__(self, stream: str) -> None:
                parser.__init__(self, stream)
                constructor.SafeConstructor.__init__(self)
                resolver.Resolver.__init__(self)
                composer.Composer.__init__(self)

    class NoAliasLoader(base):  # type: ignore[valid-type, misc]
        """A safe loader that stops at the first anchor or alias, naming its line."""

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise composer.ComposerError(
                    None, None, "YAML anchors and aliases (&, *) are not allowed", event.start_mark
                )
            return super().compose_node(parent, index)

    return NoAliasLoader


def _read_small(
    path: Path, limit: int, where: str, key: str | None, source: str | None
) -> tuple[bytes, os.stat_result]:
    """A small regular file's bytes and status; never blocks on a FIFO, never reads a device.

    FileNotFoundError when it does not exist (the caller knows whether that is fine), else
    a ConfigError that names `where`. The checks are on the descriptor opened (O_NONBLOCK:
    opening a FIFO does not wait for a writer), so a file swapped in cannot slip past them.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read: {exc.strerror}", key, source) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"{where} is a directory", key, source)
        if not stat.S_ISREG(info.st_mode):
            kind = _file_kind(info.st_mode)
            raise ConfigError(f"{where} is {kind}, not a regular file", key, source)
        # Its size is checked before reading and again after: a file can grow meanwhile.
        data = b""
        if info.st_size <= limit:
            with open(fd, "rb", closefd=False) as file:  # read() loops to the size or EOF
                data = file.read(limit + 1)
        size = max(info.st_size, len(data))
        if size > limit:
            raise ConfigError(f"{where} is too large ({size} bytes)", key, source)
        return data, info
    except OSError as exc:  # a read error (EIO, EISDIR on some systems)
        raise ConfigError(f"{where} cannot be read: {exc.strerror}", key, source) from None
    finally:
        os.close(fd)


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "something else"


def _check(data: dict, source: str) -> dict[str, Any]:
    """Flatten {section: {key: value}} to {"section.key": value}, rejecting what is unknown."""
    flat: dict[str, Any] = {}
    for section, body in data.items():
        if section in _TOP_LEVEL:
            if body is not None:
                flat[section] = _checked(section, body, source)
            continue
        if section not in _TYPES:
            known = {**_TYPES, **_TOP_LEVEL}
            raise ConfigError(
                f"unknown section {section!r} in {source}{_suggest(section, known)}",
                str(section),
                source,
            )
        flat.update(_section(section, body, source))
    return flat


def _section(section: str, body: Any, source: str) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ConfigError(f"{section} in {source} must be a mapping of keys", section, source)
    flat = {}
    for key, value in body.items():
        name = f"{section}.{key}"
        if key not in _TYPES[section]:
            raise ConfigError(
                f"unknown key {name} in {source}{_suggest(key, _TYPES[section])}", name, source
            )
        if value is not None:
            flat[name] = _checked(name, value, source)
    return flat


def _want(name: str) -> Any:
    if "." not in name:
        return _TOP_LEVEL[name]
    section, key = name.split(".")
    return _TYPES[section][key]


def _checked(name: str, value: Any, source: str) -> Any:
    """`value` if it has the type `name` needs."""
    want = _want(name)
    if isinstance(want, tuple) and want and isinstance(want[0], str):
        if value not in want:
            raise ConfigError(
                f"{name} in {source} must be one of {', '.join(want)}, not {value!r}", name, source
            )
        return value
    if isinstance(want, _MappingOf):
        return _mapping(name, value, want, source)
    if isinstance(want, _ByChat):
        return _by_chat(name, value, want, source)
    if isinstance(want, _ByName):
        return _by_name(name, value, want, source)
    if isinstance(want, _NameOr):
        if isinstance(value, str):
            if not value.strip():
                raise ConfigError(f"{name} in {source} must not be empty", name, source)
            return value
        return _mapping(name, value, want.entry, source)
    if not _is_a(value, want):
        shown = "something else" if name in _SECRETS else repr(value)  # never a key's value
        raise ConfigError(
            f"{name} in {source} must be {_type_name(want)}, not {shown}", name, source
        )
    if isinstance(want, _ListOf):
        return tuple(value)
    if want is dict and name.endswith("extra_body"):
        check_body_keys(value, f"{name} in {source}", name, source)
    return _in_range(name, float(value) if want is _NUMBER else value, source)


def check_body_keys(body: Mapping[str, Any], where: str, key: str, source: str | None) -> None:
    """Refuse request-body keys that hermes sets itself (model, messages, stream, tools)."""
    for reserved in RESERVED_BODY_KEYS:
        if reserved in body:
            hint = "use -m or provider.model" if reserved == "model" else "hermes sets it"
            raise ConfigError(f"{where} must not set {reserved} ({hint})", key, source)


def _by_name(name: str, value: Any, want: _ByName, source: str) -> dict:
    """{name: {key: value}}: `providers:`, each entry with a base_url and no inline key."""
    if not isinstance(value, dict):
        raise ConfigError(f"{name} in {source} must be a mapping of names", name, source)
    checked = {}
    for entry_name, entry in value.items():
        if not isinstance(entry_name, str) or not entry_name.strip():
            raise ConfigError(
                f"{name} in {source}: {entry_name!r} is not a name (a string)", name, source
            )
        where = f"{name}.{entry_name}"
        if isinstance(entry, dict) and "api_key" in entry:
            raise ConfigError(
                f"{where} in {source} must not hold the key itself: name a file "
                "(api_key_file) or an environment variable (api_key_env)",
                f"{where}.api_key",
                source,
            )
        checked[entry_name] = _mapping(where, entry, want.entry, source)
        if not checked[entry_name].get("base_url"):
            raise ConfigError(f"{where} in {source} needs a base_url", f"{where}.base_url", source)
        variable = checked[entry_name].get("api_key_env")
        if variable is not None and not _ENV_NAME.match(variable):
            raise ConfigError(
                f"{where}.api_key_env in {source} must be the name of an environment "
                f"variable, not {variable!r}",
                f"{where}.api_key_env",
                source,
            )
        if "extra_body" in checked[entry_name]:
            check_body_keys(
                checked[entry_name]["extra_body"],
                f"{where}.extra_body in {source}",
                f"{where}.extra_body",
                source,
            )
    return checked


def _mapping(name: str, value: Any, want: _MappingOf, source: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{name} in {source} must be a mapping", name, source)
    for key, item in value.items():
        if key not in want.keys:
            raise ConfigError(
                f"unknown key {name}.{key} in {source}{_suggest(key, want.keys)}",
                f"{name}.{key}",
                source,
            )
        if not isinstance(item, want.keys[key]) or isinstance(item, bool):
            raise ConfigError(
                f"{name}.{key} in {source} must be {_type_name(want.keys[key])}, "
                f"not {'something else' if key == 'api_key' else repr(item)}",
                f"{name}.{key}",
                source,
            )
        if key == "api_key":
            _check_secret(item, f"{name}.{key} in {source}", f"{name}.{key}", source)
    return dict(value)


def _by_chat(name: str, value: Any, want: _ByChat, source: str) -> dict:
    """{chat id: {key: value}}: ids are integers (a group's is negative)."""
    if not isinstance(value, dict):
        raise ConfigError(f"{name} in {source} must be a mapping of chat ids", name, source)
    checked = {}
    for chat, entry in value.items():
        if not isinstance(chat, int) or isinstance(chat, bool):
            raise ConfigError(
                f"{name} in {source}: {chat!r} is not a chat id (an integer)", name, source
            )
        checked[chat] = _mapping(f"{name}.{chat}", entry, want.entry, source)
    return checked


def _is_a(value: Any, want: Any) -> bool:
    if isinstance(want, _ListOf):
        return isinstance(value, list) and all(_is_a(v, want.item) for v in value)
    if isinstance(value, bool) and want is not bool:
        return False  # YAML's `yes` is not a number or a string
    return isinstance(value, want)


def _in_range(name: str, value: Any, source: str) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(
            f"{name} in {source} must be a finite number, not {value!r}", name, source
        )
    if name in _SECONDS and value > MAX_SECONDS:
        raise ConfigError(
            f"{name} in {source} must be at most {MAX_SECONDS:g} seconds, not {value!r}",
            name,
            source,
        )
    if name in _SECRETS:
        _check_secret(value, f"{name} in {source}", name, source)
    if name in _POSITIVE and value <= 0:
        raise ConfigError(f"{name} in {source} must be greater than 0, not {value!r}", name, source)
    if name in _NON_NEGATIVE and value < 0:
        raise ConfigError(f"{name} in {source} must not be negative, not {value!r}", name, source)
    return value


def _type_name(want: Any) -> str:
    if isinstance(want, _ListOf):
        return f"a list of {_type_name(want.item).replace('a ', '', 1)}s"
    names = {
        str: "a string",
        bool: "true or false",
        int: "a whole number",
        dict: "a mapping",
        _NUMBER: "a number",
        list: "a list",
    }
    return names.get(want, str(want))


def _suggest(word: Any, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(str(word), list(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _build(flat: dict[str, Any], source: str | None) -> Config:
    sections: dict[str, Any] = {name: flat[name] for name in _TOP_LEVEL if name in flat}
    for item in fields(Config):
        if item.name in ("source", "origins") or item.name in _TOP_LEVEL:
            continue
        values = {k.split(".")[1]: v for k, v in flat.items() if k.startswith(item.name + ".")}
        sections[item.name] = item.default_factory(**values)  # type: ignore[misc]
    return Config(source=source, **sections)


def _secrets_from_files(config: Config, source: str | None) -> Config:
    """Fill the fallback's key and the bot token from their *_file settings (how cron jobs
    keep secrets); the API key's file is read by _route_key, when it is the key to send."""
    provider, telegram = config.provider, config.telegram
    fallback = dict(provider.fallback) if isinstance(provider.fallback, dict) else {}
    if fallback.get("api_key_file") and not fallback.get("api_key"):
        fallback["api_key"] = _secret_file(
            fallback["api_key_file"], "provider.fallback.api_key_file", source
        )
        provider = replace(provider, fallback=fallback)
    if not telegram.token and telegram.token_file:
        token = _secret_file(telegram.token_file, "telegram.token_file", source)
        telegram = replace(telegram, token=token)
    return replace(config, provider=provider, telegram=telegram)


def _secret_file(path: str, key: str, source: str | None) -> str:
    """The key or token a *_file setting names: one line of a small, private, regular file."""
    file = Path(path).expanduser()
    try:
        data, info = _read_small(file, SECRET_LIMIT, f"{key}: {path}", key, source)
    except FileNotFoundError:
        raise ConfigError(f"{key}: {path} does not exist", key, source) from None
    try:
        value = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{key}: {path} is not UTF-8 text", key, source) from None
    if not value:
        raise ConfigError(f"{key}: {path} is empty", key, source)
    _check_secret(value, f"{key}: {path}", key, source)
    if info.st_mode & 0o066:  # others can read it (or write their own key into it)
        log.warning(
            "%s: %s can be read or written by other users; run chmod 600 %s", key, file, file
        )
    return value


def _check_secret(value: str, where: str, key: str, source: str | None) -> None:
    """Refuse a key or token with a line break or control character (it cannot be sent)."""
    if any(ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in value):
        # Never the value itself in the message: it is a secret.
        raise ConfigError(
            f"{where} holds a line break or a control character; it must hold only the "
            "key, on one line",
            key,
            source,
        )
