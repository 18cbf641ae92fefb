"""Settings: config.yaml, then the environment, then flags, into frozen dataclasses."""

from __future__ import annotations

import difflib
import logging
import math
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError

log = logging.getLogger(__name__)

_NUMBER = (int, float)
CONFIG_LIMIT = 1 << 20  # a config file is a few KiB; more is a mistake (or an attack)
SECRET_LIMIT = 4096  # a key or token file holds one line: read no more than this
MAX_SECONDS = 1_000_000.0  # past this a timeout overflows the platform's time_t somewhere


@dataclass(frozen=True)
class ProviderConfig:
    """Where and how to reach the model."""

    base_url: str = "https://api.openai.com/v1"
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
    source: str | None = None

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
        "fallback": _MappingOf(
            {"base_url": str, "model": str, "api_key": str, "api_key_file": str}
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
_TOP_LEVEL = {"tools": _ListOf(str)}  # keys that are values, not sections
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

# Environment variables, first found wins; HERMES_* beat the names other tools use.
_ENV = {
    "provider.base_url": ("HERMES_BASE_URL", "OPENAI_BASE_URL", "OPENAI_API_BASE"),
    "provider.api_key": ("HERMES_API_KEY", "OPENAI_API_KEY"),
    "provider.model": ("HERMES_MODEL",),
    "telegram.token": ("TELEGRAM_BOT_TOKEN",),
}


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
) -> Config:
    """Read settings: the file, then `env` (default os.environ), then `overrides` ("a.b": v)."""
    env = os.environ if env is None else env
    file, named = config_path(path, env)
    values = _read_file(file, named)
    source = str(file) if values is not None else None
    merged = _check(values or {}, source or "config")
    for key, names in _ENV.items():
        name = next((n for n in names if env.get(n)), None)
        if name is not None:
            merged[key] = _checked(key, env[name], name)
    for key, value in (overrides or {}).items():
        if value is not None:
            merged[key] = _checked(key, value, "the command line")
    return _secrets_from_files(_build(merged, source), source)


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
    if not _is_a(value, want):
        shown = "something else" if name in _SECRETS else repr(value)  # never a key's value
        raise ConfigError(
            f"{name} in {source} must be {_type_name(want)}, not {shown}", name, source
        )
    if isinstance(want, _ListOf):
        return tuple(value)
    return _in_range(name, float(value) if want is _NUMBER else value, source)


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
        if item.name == "source" or item.name in _TOP_LEVEL:
            continue
        values = {k.split(".")[1]: v for k, v in flat.items() if k.startswith(item.name + ".")}
        sections[item.name] = item.default_factory(**values)  # type: ignore[misc]
    return Config(source=source, **sections)


def _secrets_from_files(config: Config, source: str | None) -> Config:
    """Fill api_key / token from their *_file settings (how cron jobs keep secrets)."""
    provider, telegram = config.provider, config.telegram
    if not provider.api_key and provider.api_key_file:
        key = _secret_file(provider.api_key_file, "provider.api_key_file", source)
        provider = replace(provider, api_key=key)
    fallback = dict(provider.fallback)
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
