"""Every exception hermes_min raises, each carrying its kind: callers decide by kind, not text.

The kind is decided once, where the error is raised (a status code, a library's exception
type, a Bot API reply); the properties below are the only place a kind becomes a policy
such as "retry now", "try the next run" or "a human must fix the settings".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .message import Message


class HermesError(Exception):
    """Root of every error hermes_min raises; `exit_code` is what the CLI returns for it."""

    exit_code = 1
    kind = "error"
    status: int | None = None

    def to_dict(self) -> dict:
        """The `error` object of `--json` output."""
        return {"kind": self.kind, "message": str(self), "status": self.status}


class ConfigError(HermesError, ValueError):
    """A setting is unknown, of the wrong type, or missing; names the key and its source."""

    exit_code = 2
    kind = "config"

    def __init__(self, message: str, key: str | None = None, source: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.source = source


class UsageError(HermesError):
    """The command line asks for something that cannot be done (exit 2)."""

    exit_code = 2
    kind = "usage"


class NetworkError(HermesError):
    """A request got no HTTP response; `kind` says where it failed.

    Kinds: tls, proxy, url, request (our settings: retrying cannot help), connect (the
    server was never reached), dropped (the connection closed before a response), timeout
    (no data within the read timeout), broken (the body was cut). `reached`: the server may
    have acted on the request. `detail` is a few words without the URL.
    """

    SETUP = ("tls", "proxy", "url", "request")

    def __init__(self, kind: str, message: str, *, reached: bool, detail: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.reached = reached
        self.detail = detail or message

    def __str__(self) -> str:
        return self.message

    @property
    def setup(self) -> bool:
        """Our own network settings are wrong (CA, proxy, URL): only a person can fix them."""
        return self.kind in self.SETUP


class StreamError(HermesError):
    """A chat-completions request or its stream failed; `.partial` keeps what had arrived.

    `kind` is one of api_error, incomplete, invalid_json, http_error (the body said so),
    protocol (a reply of the wrong shape), too_large (past a cap on memory), connection,
    timeout, tls, proxy (the transport did), interrupted, max_turns (the agent gave up),
    or internal (a bug of hermes' own, not the server's). `network` is the NetworkError
    kind when the network failed.
    """

    _NETWORK_KINDS = {"tls": "tls", "proxy": "proxy", "timeout": "timeout"}

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        retry: str | None = None,
        partial: Message | None = None,
        retry_after: float | None = None,
        network: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry = retry  # a request change that may avoid this refusal (client quirks)
        self.partial = partial
        self.retry_after = retry_after
        self.network = network

    @classmethod
    def from_network(cls, error: NetworkError, partial: Message | None = None) -> StreamError:
        """The StreamError for a failed request or body read."""
        kind = cls._NETWORK_KINDS.get(error.kind, "connection")
        return cls(kind, error.message, partial=partial, network=error.kind)

    def __str__(self) -> str:
        return self.message

    @property
    def retryable(self) -> bool:
        """Sending the same request again now may succeed: it never reached the server, or
        the server said it is busy (429) or failing (5xx)."""
        if self.network in ("connect", "dropped"):
            return True
        return self.status == 429 or (self.status or 0) >= 500

    @property
    def outage(self) -> bool:
        """The endpoint is down, slow or overloaded rather than refusing this request, so the
        same request may succeed later (a cron bot leaves the message for the next run)."""
        if self.retryable or self.status == 408 or self.network in ("timeout", "broken"):
            return True
        return self.kind in ("timeout", "incomplete")

    @property
    def misconfigured(self) -> bool:
        """Our settings are wrong (CA, proxy, URL, key, base URL or model): a person must fix
        them, and every later request would fail the same way."""
        return self.network in NetworkError.SETUP or self.status in (401, 403, 404)


class TelegramError(HermesError):
    """A Bot API call failed: the method, Telegram's error_code and description, and its kind.

    Kinds: setup (our network settings), network (no reply), server (5xx), not_api (a
    reply that is not the Bot API's), unauthorized (the token), conflict (another poller),
    webhook, rate_limited, chat_gone (blocked, kicked, deleted), not_modified, parse,
    message_gone, thread_gone, bad_request (any other refusal), internal (our own bug).
    """

    def __init__(
        self,
        method: str,
        description: str,
        *,
        kind: str = "bad_request",
        error_code: int | None = None,
        retry_after: float | None = None,
        migrate_to_chat_id: int | None = None,
        uncertain: bool = False,
    ) -> None:
        where = f"HTTP {error_code}" if error_code else "network"
        super().__init__(f"Telegram {method} failed ({where}): {description}")
        self.method = method
        self.description = description
        self.kind = kind
        self.error_code = error_code
        self.retry_after = retry_after
        self.migrate_to_chat_id = migrate_to_chat_id
        # The request may have reached Telegram and been acted on, only the reply was
        # lost (a read timeout, a reset after sending): resending could post it twice.
        self.uncertain = uncertain

    @property
    def transient(self) -> bool:
        """No reply, Telegram's side failed, or our own: the same call may succeed later."""
        return self.kind in ("network", "server", "internal")

    @property
    def rate_limited(self) -> bool:
        """Flood control: wait `retry_after` seconds before calling this chat again."""
        return self.kind == "rate_limited"

    @property
    def fatal_for_chat(self) -> bool:
        """Nothing more can be sent to this chat (blocked, kicked, deleted, or a bad token)."""
        return self.kind in ("chat_gone", "unauthorized")


class StorageError(HermesError):
    """The conversation store cannot be opened, read or written; one line says why.

    Kinds: busy (another process holds it: try later), readonly, full, corrupt, foreign
    (not a hermes database), newer (a newer schema), closed, other.
    """

    def __init__(self, message: str, kind: str = "other") -> None:
        super().__init__(message)
        self.kind = kind

    @property
    def busy(self) -> bool:
        """Another process holds the store's write lock: the same write may succeed later."""
        return self.kind == "busy"


class PollError(HermesError):
    """The bot's run cannot go on; `exit_code` says: retry later (75) or a human must fix it (1)."""

    def __init__(
        self,
        message: str,
        exit_code: int = 1,
        *,
        final: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.retry_after = retry_after  # a 429 says how long; waiting less extends it
        self.final = final  # stop even a long poll (another poller: waiting cannot help)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so a stream is interrupted like Ctrl-C (exit 143)."""


class Wakeup(BaseException):
    """A signal arrived while the bot was only waiting: stop waiting.

    A BaseException, like KeyboardInterrupt, so no `except Exception` on the way swallows it.
    """
