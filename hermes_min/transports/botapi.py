"""A small synchronous Telegram Bot API client: one funnel, one method per call hermes makes."""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import quote

import requests

from ..errors import ConfigError, TelegramError
from ..redact import redact

log = logging.getLogger(__name__)

# Telegram's descriptions, matched case-insensitively as substrings (Bot API server strings).
NOT_MODIFIED = "message is not modified"
CHAT_NOT_FOUND = "chat not found"
BOT_BLOCKED = "bot was blocked by the user"
USER_DEACTIVATED = "user is deactivated"
MESSAGE_GONE = "message to edit not found"
THREAD_GONE = "message thread not found"
PARSE_ERROR = "can't parse entities"
_FATAL_FOR_CHAT = (CHAT_NOT_FOUND, BOT_BLOCKED, USER_DEACTIVATED)
_RETRY_AFTER = re.compile(r"retry after (\d+)", re.IGNORECASE)
# "The HTTP read timeout must exceed the long-poll timeout" (getUpdates); this is the margin.
_POLL_MARGIN = 10.0


class _RedactTokens(logging.Filter):
    """Rewrites urllib3's request lines, which print the URL path `/bot<token>/<method>`."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact any live token from the formatted record; never drops a record."""
        if self.tokens:
            message = record.getMessage()
            clean = redact(message, self.tokens)
            if clean != message:
                record.msg, record.args = clean, None
        return True


# urllib3 logs every request path at DEBUG; without this a debug log would contain the token.
_URLLIB3_FILTER = _RedactTokens()
logging.getLogger("urllib3.connectionpool").addFilter(_URLLIB3_FILTER)


class BotAPI:
    """A Bot API client over one requests.Session; every call goes through `_call`."""

    def __init__(
        self,
        token: str,
        api_base: str = "https://api.telegram.org",
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        session: requests.Session | None = None,
        verify: bool | str = True,
        proxies: dict | None = None,
        ssl_context: Any = None,
    ) -> None:
        if not token or not token.strip():
            raise ConfigError("the Telegram bot token is empty")
        self._token = token.strip()
        self._secrets = (self._token, quote(self._token, safe=""))
        self._api_base = api_base.rstrip("/")
        self._timeouts = (connect_timeout, read_timeout)
        self._own_session = session is None  # a session the caller passed in stays theirs
        self._session: requests.Session | None = session or requests.Session()
        if ssl_context is not None and self._own_session:
            from ..connection import mount_trust

            mount_trust(self._session, ssl_context)  # CAs held in memory (hermes.pyz)
        self._verify = verify
        self._proxies = proxies
        _URLLIB3_FILTER.tokens.add(self._token)

    def __repr__(self) -> str:
        return f"BotAPI(api_base={self._api_base!r})"

    def __enter__(self) -> BotAPI:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the HTTP session (if we created it); safe to call twice."""
        if self._session is None:
            return
        if self._own_session:
            self._session.close()
        self._session = None
        _URLLIB3_FILTER.tokens.discard(self._token)

    # ------------------------------------------------------------------ the funnel

    def _call(self, method: str, payload: dict, *, read_timeout: float | None = None) -> Any:
        """POST `payload` as JSON to `method`; return `result` or raise TelegramError."""
        if self._session is None:
            raise RuntimeError("BotAPI is closed")
        timeout = (self._timeouts[0], read_timeout or self._timeouts[1])
        log.debug("-> %s chat_id=%s keys=%s", method, payload.get("chat_id"), sorted(payload))
        try:
            response = self._session.post(
                f"{self._api_base}/bot{self._token}/{method}",
                json=payload,
                timeout=timeout,
                verify=self._verify,
                proxies=self._proxies,
            )
        except requests.RequestException as exc:
            error = TelegramError(method, self._network_reason(exc), uncertain=_maybe_sent(exc))
        else:
            return self._result(method, response)
        # Raised outside the except block so the exception has neither __cause__ nor
        # __context__: requests' exception text contains the URL, and the URL the token.
        log.debug("<- %s failed: %s", method, error.description)
        raise error

    def _network_reason(self, exc: requests.RequestException) -> str:
        """A one-line, token-free description of a failure that produced no HTTP response."""
        kind = "timed out" if isinstance(exc, requests.Timeout) else "network error"
        inner = exc.args[0] if exc.args else exc
        reason = getattr(inner, "reason", inner)  # urllib3's MaxRetryError wraps the real cause
        return redact(f"{kind} ({type(exc).__name__}): {reason}", self._secrets)[:300]

    def _result(self, method: str, response: requests.Response) -> Any:
        """Unpack a Bot API reply: `ok` true gives `result`, anything else a TelegramError."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("ok"), bool):
            raise self._not_api_reply(method, response)
        if body["ok"]:
            log.debug("<- %s ok", method)
            return body.get("result")
        error = _api_error(method, body, response.status_code)
        log.debug("<- %s error %s: %s", method, error.error_code, error.description)
        raise error

    def _not_api_reply(self, method: str, response: requests.Response) -> TelegramError:
        """A reply that is not Bot API JSON, e.g. a proxy's HTML error page."""
        kind = response.headers.get("Content-Type", "no content type").split(";")[0]
        snippet = " ".join(response.text[:200].split())
        log.debug("<- %s non-JSON reply: %s", method, redact(snippet, self._secrets))
        description = (
            f"a non-JSON reply ({kind}, {response.reason or 'no reason'}): "
            "something other than the Bot API answered (a proxy or gateway?)"
        )
        return TelegramError(
            method, redact(description, self._secrets), error_code=response.status_code
        )

    # ------------------------------------------------------------------ methods

    def get_me(self) -> dict:
        """The bot's own User object."""
        return self._call("getMe", {})

    def send_message(
        self,
        chat_id: int | str,
        text: str,
        *,
        parse_mode: str | None = None,
        message_thread_id: int | None = None,
        reply_to_message_id: int | None = None,
        disable_link_preview: bool = False,
    ) -> dict:
        """Send a text message; returns the sent Message."""
        payload = _payload(
            chat_id=chat_id, text=text, parse_mode=parse_mode, message_thread_id=message_thread_id
        )
        if reply_to_message_id is not None:
            # "Pass True if the message should be sent even if the specified replied-to message
            # is not found": a question the user deleted meanwhile must not fail the answer.
            payload["reply_parameters"] = {
                "message_id": reply_to_message_id,
                "allow_sending_without_reply": True,
            }
        if disable_link_preview:
            payload["link_preview_options"] = {"is_disabled": True}
        return self._call("sendMessage", payload)

    def edit_message_text(
        self,
        chat_id: int | str,
        message_id: int,
        text: str,
        *,
        parse_mode: str | None = None,
        disable_link_preview: bool = False,
    ) -> dict | bool:
        """Replace a message's text; returns the edited Message."""
        # No message_thread_id here: "the message already lives in its topic".
        payload = _payload(chat_id=chat_id, message_id=message_id, text=text, parse_mode=parse_mode)
        if disable_link_preview:
            payload["link_preview_options"] = {"is_disabled": True}
        return self._call("editMessageText", payload)

    def delete_message(self, chat_id: int | str, message_id: int) -> bool:
        """Delete one message; returns True."""
        return self._call("deleteMessage", {"chat_id": chat_id, "message_id": message_id})

    def send_message_draft(
        self,
        chat_id: int,
        draft_id: int,
        text: str,
        *,
        message_thread_id: int | None = None,
        parse_mode: str | None = None,
    ) -> bool:
        """Show or update a streaming draft in a private chat; returns True."""
        # "draft_id: unique identifier of the message draft; must be non-zero" (Bot API).
        payload = _payload(
            chat_id=chat_id,
            draft_id=draft_id,
            text=text,
            message_thread_id=message_thread_id,
            parse_mode=parse_mode,
        )
        return self._call("sendMessageDraft", payload)

    def send_chat_action(
        self, chat_id: int | str, action: str = "typing", *, message_thread_id: int | None = None
    ) -> bool:
        """Show "typing..." (or another action) for up to 5 seconds; returns True."""
        payload = _payload(chat_id=chat_id, action=action, message_thread_id=message_thread_id)
        return self._call("sendChatAction", payload)

    def get_updates(
        self,
        offset: int | None = None,
        timeout: int = 0,
        limit: int = 100,
        allowed_updates: list[str] | None = None,
    ) -> list[dict]:
        """Fetch pending updates; an offset confirms every update below it."""
        payload = _payload(
            offset=offset, timeout=timeout, limit=limit, allowed_updates=allowed_updates
        )
        # "timeout: Timeout in seconds for long polling": the server holds the request that
        # long, so our HTTP read must wait longer or every quiet poll would look like a failure.
        return self._call("getUpdates", payload, read_timeout=timeout + _POLL_MARGIN)

    def get_webhook_info(self) -> dict:
        """The WebhookInfo object; `url` is empty when polling is allowed."""
        return self._call("getWebhookInfo", {})

    def delete_webhook(self) -> bool:
        """Remove the webhook so getUpdates works; returns True."""
        return self._call("deleteWebhook", {})


def _maybe_sent(exc: requests.RequestException) -> bool:
    """Whether the request may have reached Telegram before the failure."""
    never_left = (
        requests.ConnectTimeout,
        requests.exceptions.SSLError,
        requests.exceptions.ProxyError,
        requests.exceptions.InvalidSchema,
        requests.exceptions.InvalidURL,
        requests.exceptions.MissingSchema,
    )
    if isinstance(exc, never_left):
        return False
    if isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.ReadTimeout):
        # urllib3 names failures before a byte was sent: no connection, no DNS, no proxy.
        text = str(exc)
        return not any(
            w in text
            for w in (
                "NewConnectionError",
                "NameResolution",
                "Connection refused",
                "ProxyError",
                "SSLError",
            )
        )
    return True


def _payload(**fields: Any) -> dict:
    """The fields that are set (not None), under the Bot API's own names."""
    return {name: value for name, value in fields.items() if value is not None}


def _api_error(method: str, body: dict, status: int) -> TelegramError:
    """The TelegramError an `ok: false` body describes."""
    description = str(body.get("description") or f"HTTP {status}")
    parameters = body.get("parameters") or {}
    retry_after = parameters.get("retry_after")
    if retry_after is None:
        match = _RETRY_AFTER.search(description)
        retry_after = int(match.group(1)) if match else None
    return TelegramError(
        method,
        description,
        error_code=body.get("error_code") or status,
        retry_after=retry_after,
        migrate_to_chat_id=parameters.get("migrate_to_chat_id"),
    )


# ---------------------------------------------------------------------- classification


def _says(err: TelegramError, phrase: str) -> bool:
    """Whether Telegram's description contains `phrase` (case-insensitive)."""
    return phrase in (err.description or "").lower()


def is_not_modified(err: TelegramError) -> bool:
    """The edit changed nothing; callers treat it as success."""
    return _says(err, NOT_MODIFIED)


def is_rate_limited(err: TelegramError) -> bool:
    """Flood control: wait `err.retry_after` seconds before calling this chat again."""
    return err.error_code == 429


def is_fatal_for_chat(err: TelegramError) -> bool:
    """Nothing more can be sent to this chat (blocked, kicked, deleted, unknown)."""
    # 401: the token is wrong, so nothing can be sent anywhere.
    if err.error_code in (401, 403):
        return True
    return any(_says(err, phrase) for phrase in _FATAL_FOR_CHAT)


def is_message_gone(err: TelegramError) -> bool:
    """The message being edited no longer exists."""
    return _says(err, MESSAGE_GONE)


def is_thread_gone(err: TelegramError) -> bool:
    """The forum topic (`message_thread_id`) no longer exists."""
    return _says(err, THREAD_GONE)


def is_parse_error(err: TelegramError) -> bool:
    """The MarkdownV2/HTML markup was rejected."""
    return _says(err, PARSE_ERROR)


def is_transient(err: TelegramError) -> bool:
    """A network failure or a server-side (5xx) error: the same call may succeed later."""
    return err.error_code is None or err.error_code >= 500
