"""The chat-completions protocol: request bodies, the retry and fallback ladder, models."""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import threading
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import urlsplit

from . import __version__
from .config import RESERVED_BODY_KEYS
from .connection import Deadline, HttpSession, HttpSettings, SocketSlot
from .errors import ConfigError, NetworkError, StreamError
from .events import Failed
from .message import Message
from .redact import redact
from .response import BodyFolder
from .stream import Sink, Stream

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)
DEFAULT_BASE_URL = "https://api.openai.com/v1"
_MAX_WAIT = 60.0  # a Retry-After longer than this is reported, not slept through
_BODY_LIMIT = 8 * 1024 * 1024
_REFUSAL_LIMIT = 64 * 1024  # enough for any provider's error JSON or proxy page
_MAX_MODELS = 10_000


def normalize_base_url(url: str) -> str:
    """Accept a base URL with or without /v1 (and with a pasted /chat/completions)."""
    url = url.strip().rstrip("/")
    if url.endswith("/chat/completions"):
        url = url[: -len("/chat/completions")]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"base URL must start with http:// or https://: {url!r}", "provider.base_url"
        )
    return url if parts.path not in ("", "/") else url + "/v1"


class _Opened:
    """A response ready for a Stream: live from the socket, or a body already read."""

    def __init__(
        self, status: int, content_type: str, reads: Iterator[bytes], close: Callable
    ) -> None:
        self.status = status
        self.content_type = content_type
        self._reads = reads
        self.close = close

    def reads(self) -> Iterator[bytes]:
        return self._reads


class ChatClient:
    """Opens chat-completions streams against one OpenAI-compatible endpoint."""

    BACKOFF = 0.5  #: seconds before the first retry when the server gives no Retry-After

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        model: str | None = None,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 300.0,
        total_timeout: float | None = None,
        max_retries: int = 2,
        ca_bundle: str | None = None,
        insecure: bool = False,
        proxy: str | None = None,
        extra_body: dict | None = None,
        stream: bool = True,
        stream_delta_callback: Callable[[str], None] | None = None,
        on_first_delta: Callable[[], None] | None = None,
        key_source: str | None = None,
        key_note: str | None = None,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self.model = model or None
        self.max_retries = max_retries
        self.total_timeout = total_timeout  # seconds for one whole response; None: no bound
        reserved = [key for key in RESERVED_BODY_KEYS if key in (extra_body or {})]
        if reserved:  # it would silently replace the model, or break the conversation
            raise ConfigError(
                f"extra_body must not set {reserved[0]} (hermes sets it)", "provider.extra_body"
            )
        self.extra_body = dict(extra_body or {})
        # Where the key came from (never the key), and why a key that is set was not sent:
        # a 401 names them, so the person knows which key the endpoint refused.
        self.key_source = key_source
        self.key_note = key_note
        self.streaming = stream
        self.stream_delta_callback = stream_delta_callback
        self.on_first_delta = on_first_delta
        self._api_key = api_key or None
        # What the server refused, per model, so the next request does not fail the same
        # way ("drop_stream_options", "non_streaming"); the agent shares this client.
        self._quirks: dict[str, set[str]] = {}
        self._quirks_lock = threading.Lock()
        self._http = HttpSession(
            HttpSettings(
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                ca_bundle=ca_bundle,
                insecure=insecure,
                proxy=proxy,
                secrets=self._secrets(),
            )
        )

    def stream(
        self,
        messages: list[dict],
        *,
        tools: list[dict] | None = None,
        model: str | None = None,
        record: Sink | None = None,
        stream_delta_callback: Callable[[str], None] | None = None,
        on_first_delta: Callable[[], None] | None = None,
        **extra: Any,
    ) -> Stream:
        """Start a response for `messages`; iterate the Stream for events, or call result()."""
        body = self._body(messages, tools, model, extra)
        return Stream(
            lambda slot, cancel: self._send(body, slot, cancel),
            secrets=self._secrets(),
            stream_delta_callback=stream_delta_callback or self.stream_delta_callback,
            on_first_delta=on_first_delta or self.on_first_delta,
            record=record,
            total_timeout=self.total_timeout,
        )

    def complete(self, messages: list[dict], **kwargs: Any) -> Message:
        """Stream a response to the end and return it (raises StreamError)."""
        with self.stream(messages, **kwargs) as stream:
            return stream.result()

    def models(self, *, slot: SocketSlot | None = None) -> list[dict]:
        """The endpoint's models (`GET /models`), as the server describes them."""
        url = self.base_url + "/models"
        slot = slot or SocketSlot()
        with Deadline(self.total_timeout, slot) as deadline:
            try:
                response = self._http.request("GET", url, headers=self._headers(False), slot=slot)
                body, _ = self._http.read_body(response, _BODY_LIMIT)
            except NetworkError as error:
                if deadline.expired:
                    raise StreamError(
                        "timeout",
                        f"listing the models took longer than {self.total_timeout:g} s "
                        "(provider.total_timeout)",
                    ) from None
                raise StreamError.from_network(error) from None
        return self._model_list(response.status_code, response.headers, body)

    def resolve_model(self, *, slot: SocketSlot | None = None) -> str:
        """The model to use: the configured one, else the only one the server serves."""
        if self.model:
            return self.model
        try:
            listed = self.models(slot=slot)
            ids = [m["id"] for m in listed if isinstance(m.get("id"), str) and m["id"]]
        except StreamError as error:
            if error.kind != "http_error" or error.status not in (400, 404, 405, 501):
                raise  # the server is unreachable or failing: that, not the model, is the news
            raise ConfigError(
                f"no model set, and the server's model list failed ({error}); "
                "pass -m MODEL, set HERMES_MODEL or provider.model",
                "provider.model",
            ) from None
        if len(ids) != 1:
            offer = (
                f"the server offers {len(ids)} models, see `hermes models`"
                if ids
                else "the server lists none"
            )
            raise ConfigError(
                f"no model set ({offer}); pass -m MODEL, set HERMES_MODEL or provider.model",
                "provider.model",
            )
        self.model = ids[0]
        return self.model

    def close(self) -> None:
        """Close pooled connections; safe to call twice."""
        self._http.close()

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _body(
        self, messages: list[dict], tools: list[dict] | None, model: str | None, extra: dict
    ) -> dict:
        body: dict[str, Any] = {"model": model or self.model, "messages": messages}
        if self.streaming:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}  # usage arrives only if asked
        else:
            body["stream"] = False
        if tools:
            body["tools"] = tools
        body.update(self.extra_body)
        body.update(extra)
        return body

    def _send(self, body: dict, slot: SocketSlot, cancel: threading.Event) -> _Opened:
        if not body.get("model"):
            body["model"] = self.resolve_model(slot=slot)  # interruptible like the stream
        body = self._apply_quirks(body)
        attempt = 0
        while True:
            try:
                response = self._post(body, slot)
            except StreamError as error:
                if not self._may_retry(error, attempt, cancel, None):
                    raise
                attempt += 1
                continue
            if response.status_code == 200 or cancel.is_set():
                return self._live(response, body)
            error = self._read_refusal(response)
            change = error.retry
            if change and self._learn(body, change):
                body = self._apply_quirks(body)
                continue
            if not self._may_retry(error, attempt, cancel, error.retry_after):
                raise error  # the stream ends with it, as read once here
            attempt += 1

    def _post(self, body: dict, slot: SocketSlot) -> requests.Response:
        headers = self._headers(bool(body.get("stream")))
        try:
            return self._http.request(
                "POST",
                self.base_url + "/chat/completions",
                slot=slot,
                data=json.dumps(body).encode(),
                headers=headers,
            )
        except NetworkError as error:
            raise StreamError.from_network(error) from None

    def _live(self, response: requests.Response, body: dict) -> _Opened:
        content_type = response.headers.get("Content-Type", "")
        if not body.get("stream") and "event-stream" not in content_type:
            content_type = "application/json"  # we asked for JSON, whatever the label says
        return _Opened(
            response.status_code, content_type, self._http.reads(response), response.close
        )

    def _read_refusal(self, response: requests.Response) -> StreamError:
        """Read a non-200 body once: the error it decides the retry with, and reports."""
        try:
            body, _ = self._http.read_body(response, _REFUSAL_LIMIT)
        except NetworkError:
            body = b""  # the status alone describes the failure
        content_type = response.headers.get("Content-Type", "")
        folder = BodyFolder(response.status_code, content_type, self._secrets())
        folder.feed(body)
        failed = folder.finish()[-1]
        assert isinstance(failed, Failed)
        failed.error.retry_after = _retry_after(response.headers)
        return self._explained(failed.error)

    def _explained(self, error: StreamError) -> StreamError:
        """A 401, said as what it means here: this endpoint refused this key (or wants one)."""
        if error.status != 401:
            return error
        if self._api_key:
            said = f"{self.base_url} refused the API key from {self.key_source or 'the settings'}"
        else:
            hint = self.key_note or "set HERMES_API_KEY, --api-key or provider.api_key_file"
            said = f"{self.base_url} wants an API key and none was sent ({hint})"
        return StreamError(
            error.kind,
            f"{said}: {error.message}",
            status=error.status,
            retry=error.retry,
            partial=error.partial,
            retry_after=error.retry_after,
            network=error.network,
        )

    def _may_retry(
        self, error: StreamError, attempt: int, cancel: threading.Event, retry_after: float | None
    ) -> bool:
        """Wait before another try if this failure is worth one; False if it is not."""
        if not error.retryable or attempt >= self.max_retries or cancel.is_set():
            return False
        delay = retry_after if retry_after is not None else min(self.BACKOFF * 2**attempt, 8.0)
        if delay > _MAX_WAIT:
            return False
        delay += random.uniform(0, self.BACKOFF / 2)  # jitter: cron hosts must not retry in step
        log.info(
            "%s; retrying in %.1f s (%d of %d)",
            redact(str(error), self._secrets()),
            delay,
            attempt + 1,
            self.max_retries,
        )
        return not cancel.wait(delay)

    def _learn(self, body: dict, change: str) -> bool:
        """Remember a refusal that a changed request avoids; False if already applied (or not
        one the client can avoid: "trim_context" is the agent's, which owns the history)."""
        if change not in ("drop_stream_options", "non_streaming"):
            return False
        if change == "drop_stream_options" and "stream_options" not in body:
            return False
        if change == "non_streaming" and not body.get("stream"):
            return False
        with self._quirks_lock:
            self._quirks.setdefault(body.get("model") or "", set()).add(change)
        log.info("the server refused %s; retrying without it", change.replace("_", " "))
        return True

    def _apply_quirks(self, body: dict) -> dict:
        with self._quirks_lock:
            quirks = set(self._quirks.get(body.get("model") or "", ()))
        body = dict(body)
        if "drop_stream_options" in quirks or "non_streaming" in quirks:
            body.pop("stream_options", None)
        if "non_streaming" in quirks:
            body["stream"] = False
        return body

    def _headers(self, streaming: bool) -> dict:
        headers = {
            "Accept": "text/event-stream" if streaming else "application/json",
            # A compressed stream arrives only as fast as the server flushes its compressor.
            "Accept-Encoding": "identity",
            "Content-Type": "application/json",
            "User-Agent": f"hermes_min/{__version__}",
        }
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _secrets(self) -> tuple[str, ...]:
        return (self._api_key,) if self._api_key else ()

    def _model_list(self, status: int, headers: Mapping[str, str], body: bytes) -> list[dict]:
        if status != 200:
            folder = BodyFolder(status, headers.get("Content-Type", ""), self._secrets())
            folder.feed(body)
            raise self._explained(folder.finish()[-1].error)
        try:
            data = json.loads(body.decode("utf-8", "replace"))
        except (ValueError, RecursionError):
            raise StreamError("invalid_json", "the model list is not JSON") from None
        models = data.get("data", data.get("models")) if isinstance(data, dict) else data
        if not isinstance(models, list):
            raise StreamError("invalid_json", "the model list has no `data` array")
        # A model is an object, or (some servers) its bare name; nothing else is kept, and
        # a list longer than any real server's is cut: memory stays bounded.
        kept = models[:_MAX_MODELS]
        return [m if isinstance(m, dict) else {"id": m} for m in kept if isinstance(m, (dict, str))]


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    value = (headers.get("Retry-After") or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
