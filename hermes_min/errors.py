"""The exceptions hermes_min raises on purpose, each carrying the data a caller needs."""

from __future__ import annotations

from typing import Any


class HermesError(Exception):
    """Root of every error hermes_min raises; `exit_code` is what the CLI returns for it."""

    exit_code = 1


class ConfigError(HermesError, ValueError):
    """A setting is unknown, of the wrong type, or missing; names the key and its source."""

    exit_code = 2

    def __init__(self, message: str, key: str | None = None, source: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.source = source


class UsageError(HermesError):
    """The command line asks for something that cannot be done (exit 2)."""

    exit_code = 2


class StreamError(HermesError):
    """A chat-completions request or its stream failed; `.partial` keeps what had arrived.

    `kind` is one of api_error, incomplete, invalid_json, http_error (the body said so),
    or connection, timeout, tls, proxy, interrupted (the transport did).
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        retry: str | None = None,
        partial: Any = None,
        retry_after: float | None = None,
        transient: bool = False,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry = retry
        self.partial = partial
        self.retry_after = retry_after
        self.transient = transient  # the same request may succeed later (connect error, 429, 5xx)

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict:
        """The `error` object of `--json` output."""
        return {"kind": self.kind, "message": self.message, "status": self.status}


class TelegramError(HermesError):
    """A Bot API call failed: the method, Telegram's error_code and description, and hints."""

    def __init__(
        self,
        method: str,
        description: str,
        *,
        error_code: int | None = None,
        retry_after: float | None = None,
        migrate_to_chat_id: int | None = None,
        uncertain: bool = False,
    ) -> None:
        where = f"HTTP {error_code}" if error_code else "network"
        super().__init__(f"Telegram {method} failed ({where}): {description}")
        self.method = method
        self.description = description
        self.error_code = error_code
        self.retry_after = retry_after
        self.migrate_to_chat_id = migrate_to_chat_id
        # The request may have reached Telegram and been acted on, only the reply was
        # lost (a read timeout, a reset after sending): resending could post it twice.
        self.uncertain = uncertain


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so a stream is interrupted like Ctrl-C (exit 143)."""
