"""A small synchronous Telegram Bot API client: one funnel, one method per call hermes makes."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from ..connection import Deadline, HttpSession, HttpSettings, SocketSlot
from ..errors import ConfigError, NetworkError, TelegramError
from ..redact import redact

log = logging.getLogger(__name__)

# Telegram's descriptions, matched case-insensitively as substrings. The Bot API gives no
# error type beyond error_code, so where the code alone does not decide, the text does.
NOT_MODIFIED = "message is not modified"
CHAT_NOT_FOUND = "chat not found"
BOT_BLOCKED = "bot was blocked by the user"
USER_DEACTIVATED = "user is deactivated"
MESSAGE_GONE = "message to edit not found"
THREAD_GONE = "message thread not found"
PARSE_ERROR = "can't parse entities"
_KIND_BY_TEXT = (
    (NOT_MODIFIED, "not_modified"),
    (PARSE_ERROR, "parse"),
    (MESSAGE_GONE, "message_gone"),
    (THREAD_GONE, "thread_gone"),
    (CHAT_NOT_FOUND, "chat_gone"),
    (BOT_BLOCKED, "chat_gone"),
    (USER_DEACTIVATED, "chat_gone"),
)
_KIND_BY_CODE = {401: "unauthorized", 403: "chat_gone", 429: "rate_limited"}
_RETRY_AFTER = re.compile(r"retry after (\d+)", re.IGNORECASE)
# "The HTTP read timeout must exceed the long-poll timeout" (getUpdates); this is the margin.
_POLL_MARGIN = 10.0
REPLY_LIMIT = 16 * 1024 * 1024  # a full getUpdates is a few MB at most; past this it is not one


class _RedactTokens(logging.Filter):
    """Rewrites urllib3's request lines, which print the URL path `/bot<token>/<method>`."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the token from the formatted record; never drops a record."""
        message = record.getMessage()
        clean = redact(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def telegram_settings(
    proxy: str | None = None,
    connect_timeout: float = 10.0,
    read_timeout: float = 30.0,
    secrets: tuple[str, ...] = (),
) -> HttpSettings:
    """The Bot API's HTTP settings: the CA environment variables and the system store.

    Not provider.ca_bundle: that may hold only an internal CA, which would make every call to
    api.telegram.org fail. `secrets`: the token, which every request's URL path holds, so
    the connection's own messages leave it out.
    """
    return HttpSettings(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        proxy=proxy,
        secrets=secrets,
        ca_hint="set REQUESTS_CA_BUNDLE or SSL_CERT_FILE to a CA file that has Telegram's",
        proxy_hint="check telegram.proxy / HTTPS_PROXY / NO_PROXY",
        connect_hint="the network or telegram.proxy",
        read_hint="Telegram is slow or unreachable",
    )


class BotAPI:
    """A Bot API client over one HttpSession; every call goes through `_call`."""

    def __init__(
        self,
        token: str,
        api_base: str = "https://api.telegram.org",
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        proxy: str | None = None,
        http: HttpSession | None = None,
    ) -> None:
        if not token or not token.strip():
            raise ConfigError("the Telegram bot token is empty")
        self._token = token.strip()
        self._secrets = (self._token, quote(self._token, safe=""))
        self._api_base = api_base.rstrip("/")
        self._own_http = http is None  # a session the caller passed in stays theirs
        self._http: HttpSession | None = http or HttpSession(
            telegram_settings(proxy, connect_timeout, read_timeout, self._secrets)
        )
        self._timeouts = self._http.timeout
        # urllib3 logs every request path at DEBUG; without this a debug log would hold the
        # token. The filter is this client's own, removed again by close().
        self._log_filter = _RedactTokens(self._secrets)
        logging.getLogger("urllib3.connectionpool").addFilter(self._log_filter)

    def __repr__(self) -> str:
        return f"BotAPI(api_base={self._api_base!r})"

    def __enter__(self) -> BotAPI:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def secrets(self) -> tuple[str, ...]:
        """The token, as written and URL-encoded: what to redact from any text."""
        return self._secrets

    def close(self) -> None:
        """Release the HTTP session (if we created it); safe to call twice."""
        if self._http is None:
            return
        if self._own_http:
            self._http.close()
        self._http = None
        logging.getLogger("urllib3.connectionpool").removeFilter(self._log_filter)

    # ------------------------------------------------------------------ the funnel

    def _call(
        self,
        method: str,
        payload: dict,
        *,
        read_timeout: float | None = None,
        within: float | None = None,
    ) -> Any:
        """POST `payload` as JSON to `method`; return `result` or raise TelegramError.

        `within`: the caller must be done in that many seconds, so neither the connect nor
        the read may wait longer (a reply that comes later is lost: `uncertain`). Every
        call ends by connect + read timeout whatever arrives: a gateway that trickles a
        byte at a time never resets the read timeout, so a timer shuts the socket then.
        """
        if self._http is None:
            raise RuntimeError("BotAPI is closed")
        timeout = (self._timeouts[0], read_timeout or self._timeouts[1])
        if within is not None:
            timeout = (min(timeout[0], within), min(timeout[1], within))
        total = timeout[0] + timeout[1] if within is None else within
        log.debug("-> %s chat_id=%s keys=%s", method, payload.get("chat_id"), sorted(payload))
        slot = SocketSlot()
        try:
            with Deadline(total, slot) as deadline:
                response = self._http.request(
                    "POST",
                    f"{self._api_base}/bot{self._token}/{method}",
                    slot=slot,
                    timeout=timeout,
                    data=json.dumps(payload, ensure_ascii=False).encode(),
                    headers={"Content-Type": "application/json"},
                )
                body, cut = self._http.read_body(response, REPLY_LIMIT)
        except NetworkError as exc:
            error = self._network_error(method, exc, deadline.expired, total)
        else:
            return self._result(method, response.status_code, response.headers, body, cut)
        # Raised outside the except block so the exception has neither __cause__ nor
        # __context__: a library's exception text may contain the URL, and the URL the token.
        log.debug("<- %s failed: %s", method, error.description)
        raise error

    def _network_error(
        self, method: str, exc: NetworkError, expired: bool = False, total: float = 0.0
    ) -> TelegramError:
        """A failure that produced no HTTP response, in a few token-free words."""
        if expired:
            return TelegramError(
                method,
                f"timed out: no whole reply within {total:g} s",
                kind="network",
                uncertain=exc.reached,
            )
        if exc.kind == "timeout":
            description = f"timed out: {exc.detail}"
        else:
            description = f"network error ({exc.kind}): {exc.detail}"
        return TelegramError(
            method,
            redact(description, self._secrets)[:300],
            kind="setup" if exc.setup else "network",
            uncertain=exc.reached,
        )

    def _result(
        self, method: str, status: int, headers: Mapping[str, str], body: bytes, cut: bool
    ) -> Any:
        """Unpack a Bot API reply: `ok` true gives `result`, anything else a TelegramError."""
        try:
            reply = None if cut else json.loads(body.decode("utf-8", "replace"))
        except (ValueError, RecursionError):  # RecursionError: JSON nested beyond reason
            reply = None
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            raise self._not_api_reply(method, status, headers, body)
        if reply["ok"]:
            log.debug("<- %s ok", method)
            return reply.get("result")
        error = api_error(method, reply, status, self._secrets)
        log.debug("<- %s error %s: %s", method, error.error_code, error.description)
        raise error

    def _not_api_reply(
        self, method: str, status: int, headers: Mapping[str, str], body: bytes
    ) -> TelegramError:
        """A reply that is not Bot API JSON, e.g. a proxy's HTML error page."""
        kind = (headers.get("Content-Type") or "no content type").split(";")[0]
        snippet = " ".join(body[:200].decode("utf-8", "replace").split())
        log.debug("<- %s non-JSON reply: %s", method, redact(snippet, self._secrets))
        description = (
            f"a non-JSON reply ({kind}, HTTP {status}): "
            "something other than the Bot API answered (a proxy or gateway?)"
        )
        return TelegramError(
            method,
            redact(description, self._secrets),
            kind="server" if status >= 500 else "not_api",
            error_code=status,
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
        timeout: float | None = None,
    ) -> dict:
        """Send a text message; returns the sent Message (`timeout`: see `_call`'s within)."""
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
        return self._call("sendMessage", payload, within=timeout)

    def edit_message_text(
        self,
        chat_id: int | str,
        message_id: int,
        text: str,
        *,
        parse_mode: str | None = None,
        disable_link_preview: bool = False,
        timeout: float | None = None,
    ) -> dict | bool:
        """Replace a message's text; returns the edited Message (`timeout`: see `_call`)."""
        # No message_thread_id here: "the message already lives in its topic".
        payload = _payload(chat_id=chat_id, message_id=message_id, text=text, parse_mode=parse_mode)
        if disable_link_preview:
            payload["link_preview_options"] = {"is_disabled": True}
        return self._call("editMessageText", payload, within=timeout)

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
        *,
        within: float | None = None,
    ) -> list[dict]:
        """Fetch pending updates; an offset confirms every update below it."""
        payload = _payload(
            offset=offset, timeout=timeout, limit=limit, allowed_updates=allowed_updates
        )
        # "timeout: Timeout in seconds for long polling": the server holds the request that
        # long, so our HTTP read must wait longer or every quiet poll would look like a failure.
        read = timeout + _POLL_MARGIN
        if within is not None:
            within = max(within, timeout + 1.0)  # never shorter than the poll it asks for
        return self._call("getUpdates", payload, read_timeout=read, within=within)

    def set_my_commands(
        self, commands: list[tuple[str, str]], *, scope: dict | None = None
    ) -> bool:
        """Set the command list Telegram's menu shows: (name without "/", description)."""
        listed = [{"command": name, "description": text} for name, text in commands]
        return self._call("setMyCommands", _payload(commands=listed, scope=scope))

    def get_webhook_info(self) -> dict:
        """The WebhookInfo object; `url` is empty when polling is allowed."""
        return self._call("getWebhookInfo", {})

    def delete_webhook(self) -> bool:
        """Remove the webhook so getUpdates works; returns True."""
        return self._call("deleteWebhook", {})


def _payload(**fields: Any) -> dict:
    """The fields that are set (not None), under the Bot API's own names."""
    return {name: value for name, value in fields.items() if value is not None}


def api_error(method: str, body: dict, status: int, secrets: tuple[str, ...] = ()) -> TelegramError:
    """The TelegramError an `ok: false` body describes, its kind decided here, once.

    The description is redacted: a gateway or self-hosted Bot API server may echo the
    URL, and the URL holds the token.
    """
    description = redact(str(body.get("description") or f"HTTP {status}"), secrets)[:500]
    parameters = body.get("parameters") if isinstance(body.get("parameters"), dict) else {}
    code = body.get("error_code") if _is_int(body.get("error_code")) else status
    retry_after = parameters.get("retry_after")
    if not _is_number(retry_after):
        match = _RETRY_AFTER.search(description)
        retry_after = int(match.group(1)) if match else None
    migrate = parameters.get("migrate_to_chat_id")
    return TelegramError(
        method,
        description,
        kind=_kind(code, description),
        error_code=code,
        retry_after=retry_after,
        migrate_to_chat_id=migrate if _is_int(migrate) else None,
    )


def _kind(code: int, description: str) -> str:
    """What an error_code and description mean (see TelegramError for the kinds)."""
    text = description.lower()
    if code == 409:
        # "Conflict: can't use getUpdates method while webhook is active": the same code
        # as a second poller, told apart only by the words.
        return "webhook" if "webhook" in text else "conflict"
    if code == 404:
        return "unauthorized"  # Telegram answers a malformed token with 404, as PTB notes
    if code >= 500:
        return "server"
    for phrase, kind in _KIND_BY_TEXT:
        if phrase in text:
            return kind
    return _KIND_BY_CODE.get(code, "bad_request")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
