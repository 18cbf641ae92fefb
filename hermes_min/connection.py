"""The one HTTP set-up, for the model endpoint and the Bot API alike: TLS trust, proxies,
timeouts, requests' errors translated by type, and aborting a blocked read from any thread."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies, should_bypass_proxies
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .errors import NetworkError
from .redact import redact

log = logging.getLogger(__name__)
_READ_SIZE = 64 * 1024


@dataclass(frozen=True)
class HttpSettings:
    """How to reach one endpoint; each endpoint (model, fallback, Bot API) has its own."""

    connect_timeout: float = 10.0
    read_timeout: float = 300.0
    ca_bundle: str | None = None  # None: the CA environment variables, then the system file
    insecure: bool = False
    proxy: str | None = None  # None: HTTPS_PROXY / HTTP_PROXY / ALL_PROXY, honouring NO_PROXY
    secrets: tuple[str, ...] = ()  # never in an error message (a token in the URL path)
    # The settings a person would change, named in error messages.
    ca_hint: str = "set provider.ca_bundle or --ca-bundle to your CA file"
    proxy_hint: str = "check provider.proxy / HTTPS_PROXY / NO_PROXY"
    connect_hint: str = "provider.connect_timeout"
    read_hint: str = "provider.read_timeout; a local server may need minutes for a long prompt"


class SocketSlot:
    """The socket of one request, so another thread can shut it down mid-read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        # A duplicate of the TCP socket while TLS is negotiated: wrapping a socket in TLS
        # detaches the original object, whose shutdown() then reaches nothing.
        self._connecting: socket.socket | None = None
        self.aborted = False

    def hold_connecting(self, sock: socket.socket) -> None:
        """Remember a socket that is connected but not yet in use (a TLS handshake next)."""
        with self._lock:
            self._close_connecting()
            try:
                self._connecting = sock.dup()
            except OSError:
                return  # closed already: nothing left to shut
            if self.aborted:
                _shutdown(self._connecting)

    def hold(self, sock: socket.socket | None) -> None:
        """Remember the request's socket (shut it at once if abort came first)."""
        with self._lock:
            self._sock = sock
            self._close_connecting()
            if self.aborted:
                _shutdown(sock)

    def settle(self) -> None:
        """The request was sent (or failed): no handshake is left to interrupt."""
        with self._lock:
            self._close_connecting()

    def abort(self) -> bool:
        """Shut the socket down (a read blocked in another thread returns at once); whether
        there was one: False while the request is still connecting, or not yet begun."""
        with self._lock:
            self.aborted = True
            _shutdown(self._sock)
            _shutdown(self._connecting)
            return self._sock is not None or self._connecting is not None

    def _close_connecting(self) -> None:
        if self._connecting is not None:
            self._connecting.close()
            self._connecting = None


class Deadline:
    """Shuts `slot`'s socket after `seconds` (None: never); a context manager."""

    def __init__(self, seconds: float | None, slot: SocketSlot) -> None:
        self.expired = False
        self._slot = slot
        self._timer = threading.Timer(seconds, self._expire) if seconds else None
        if self._timer is not None:
            self._timer.daemon = True
            self._timer.start()

    def _expire(self) -> None:
        self.expired = True
        self._slot.abort()

    def close(self) -> None:
        """Stop the timer; safe to call twice."""
        if self._timer is not None:
            self._timer.cancel()

    def __enter__(self) -> Deadline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _shutdown(sock: socket.socket | None) -> None:
    # close() alone does not wake a thread blocked in recv(); shutdown() does, and the
    # server sees the connection end, so it stops generating (providers.md §4.3).
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Tracking:
    """Mixed into urllib3's connections: hand each socket in use to the request's slot.

    `slots` is the owning HttpSession's thread-local (set on a per-session subclass), which
    holds the SocketSlot of the request the current thread is making.
    """

    slots: threading.local

    def _new_conn(self) -> socket.socket:
        # The TCP socket, handed over as soon as it is connected: an interrupt during the
        # TLS handshake (a server that accepts and never says hello) shuts it too.
        sock = super()._new_conn()  # type: ignore[misc]
        slot = getattr(self.slots, "slot", None)
        if slot is not None:
            slot.hold_connecting(sock)
        return sock

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self._hand_over()

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._hand_over()  # a pooled connection that is reused is not connected again
        super().request(*args, **kwargs)  # type: ignore[misc]

    def _hand_over(self) -> None:
        slot = getattr(self.slots, "slot", None)
        sock = getattr(self, "sock", None)
        if slot is not None and sock is not None:
            slot.hold(sock)


def _pool_classes(slots: threading.local) -> dict[str, type]:
    """urllib3 pool classes whose connections report their sockets to `slots`."""
    tracked = {"slots": slots}
    http = type("_HTTPConnection", (_Tracking, HTTPConnection), tracked)
    https = type("_HTTPSConnection", (_Tracking, HTTPSConnection), tracked)
    return {
        "http": type("_HTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
        "https": type("_HTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https}),
    }


class _TrackingAdapter(HTTPAdapter):
    """requests' adapter with pools whose sockets a SocketSlot can reach.

    With `ssl_context`, TLS trusts that context's CAs (loaded in memory) instead of a CA file.
    """

    def __init__(self, pools: dict[str, type], ssl_context: ssl.SSLContext | None) -> None:
        self._pools = pools
        self._ssl_context = ssl_context  # before super(): it calls init_poolmanager
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self._ssl_context is not None:
            kwargs["ssl_context"] = self._ssl_context
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(self._pools)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        if self._ssl_context is not None:
            kwargs["ssl_context"] = self._ssl_context
        manager = super().proxy_manager_for(proxy, **kwargs)
        manager.pool_classes_by_scheme = dict(self._pools)
        return manager

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        if self._ssl_context is None or verify is not True:
            super().cert_verify(conn, url, verify, cert)
            return
        # requests insists on a CA file here; the context already holds the CAs.
        conn.cert_reqs, conn.ca_certs, conn.ca_cert_dir = "CERT_REQUIRED", None, None


def bundled_ca_context() -> ssl.SSLContext | None:
    """certifi's CAs in memory, when its CA file is not on disk (inside hermes.pyz).

    Stock requests would copy the file out of the archive on every start; nothing is
    written this way. None when certifi's file exists (an ordinary install).
    """
    try:
        import certifi
    except ImportError:
        return None
    if os.path.isfile(certifi.where()) or not hasattr(certifi, "contents"):
        return None
    return ssl.create_default_context(cadata=certifi.contents())


class HttpSession:
    """A requests session set up from one endpoint's HttpSettings; a context manager."""

    def __init__(self, settings: HttpSettings | None = None) -> None:
        self.settings = settings = settings or HttpSettings()
        self.timeout = (settings.connect_timeout, settings.read_timeout)
        self.verify = resolve_verify(settings.ca_bundle, settings.insecure)
        self._slots = threading.local()  # the SocketSlot of the request each thread makes
        self._warned_plain = False  # the plain-http warning is said once per session
        self._session: requests.Session | None = requests.Session()
        self._session.trust_env = False  # proxies and CA are resolved here, explicitly
        context = bundled_ca_context() if self.verify is True else None
        adapter = _TrackingAdapter(_pool_classes(self._slots), context)
        for prefix in ("http://", "https://"):
            self._session.mount(prefix, adapter)

    def request(
        self,
        method: str,
        url: str,
        *,
        slot: SocketSlot | None = None,
        timeout: tuple[float, float] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send a request (body left unread); requests' errors become NetworkError."""
        if self._session is None:
            raise NetworkError("url", "the HTTP session is closed", reached=False)
        self._check_ca_file()
        self._warn_plain_http(url)
        proxies = self.proxies_for(url)
        self._slots.slot = slot
        try:
            return self._session.request(
                method,
                url,
                stream=True,
                timeout=timeout or self.timeout,
                verify=self.verify,
                proxies=proxies,
                allow_redirects=False,
                **kwargs,
            )
        except _TRANSLATED as exc:
            raise self._translate(exc, url, before_response=True) from None
        finally:
            self._slots.slot = None
            if slot is not None:
                slot.settle()

    def reads(self, response: requests.Response) -> Iterator[bytes]:
        """The body as it arrives: each read returns whatever is there, chunked or not."""
        raw = response.raw
        try:
            if raw.chunked:
                # One HTTP chunk each, but never more than _READ_SIZE at once: a server may
                # announce a chunk of gigabytes, and memory must stay bounded.
                yield from raw.read_chunked(_READ_SIZE, decode_content=True)
                return
            while True:
                data = raw.read1(_READ_SIZE, decode_content=True)  # what has arrived, no waiting
                if not data:
                    return
                yield data
        except _TRANSLATED as exc:
            raise self._translate(exc, response.url, before_response=False) from None

    def read_body(self, response: requests.Response, limit: int) -> tuple[bytes, bool]:
        """The whole body up to `limit` bytes, and whether there was more (then cut short)."""
        body = bytearray()
        try:
            for read in self.reads(response):
                body += read
                if len(body) > limit:
                    return bytes(body[:limit]), True
        finally:
            response.close()
        return bytes(body), False

    def proxies_for(self, url: str) -> dict:
        """The proxy for this URL: none for loopback or NO_PROXY, else config, else environment."""
        host = urlsplit(url).hostname or ""
        if _is_loopback(host):
            return {}  # a proxy can never reach this machine's own model server
        proxy = self.settings.proxy
        if proxy:
            chosen = {} if should_bypass_proxies(url, None) else {"http": proxy, "https": proxy}
        else:
            chosen = get_environ_proxies(url)  # HTTP(S)_PROXY / ALL_PROXY, honouring NO_PROXY
        if any(str(p).lower().startswith("socks") for p in chosen.values()):
            raise NetworkError(
                "proxy",
                "SOCKS proxies need the PySocks package, which hermes does not "
                "ship; use an HTTP proxy (provider.proxy or HTTPS_PROXY)",
                reached=False,
            )
        return chosen

    def close(self) -> None:
        """Close pooled connections; safe to call twice."""
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def __enter__(self) -> HttpSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _warn_plain_http(self, url: str) -> None:
        """Say once that a key or token is about to cross the network unencrypted."""
        if self._warned_plain or not self.settings.secrets:
            return
        try:
            parts = urlsplit(url)
        except ValueError:
            return  # requests reports the bad URL itself
        if parts.scheme.lower() != "http" or _is_loopback(parts.hostname or ""):
            return  # TLS, or this machine's own server: the secret never crosses a network
        self._warned_plain = True
        log.warning(
            "the API key or bot token is sent unencrypted (http://) to %s: anyone on the way "
            "can read it; use https://",
            parts.hostname,
        )

    def _check_ca_file(self) -> None:
        # requests would raise a bare OSError naming the path; saying it here names the fix.
        if isinstance(self.verify, str) and not os.path.exists(self.verify):
            raise NetworkError(
                "tls",
                f"the CA file {self.verify} does not exist ({self.settings.ca_hint})",
                reached=False,
            )

    def _translate(self, exc: BaseException, url: str, *, before_response: bool) -> NetworkError:
        """One NetworkError for a requests/urllib3/socket failure; never the secret-laden URL."""
        kind = _kind_of(exc, before_response)
        message = _message(kind, exc, _where(url), self.settings)
        reached = kind not in ("tls", "proxy", "url", "request", "connect")
        secrets = self.settings.secrets
        detail = redact(_detail(kind, exc), secrets)
        return NetworkError(kind, redact(message, secrets), reached=reached, detail=detail)


_TRANSLATED = (requests.RequestException, urllib3.exceptions.HTTPError, OSError)

# requests/urllib3 exception types -> NetworkError kind, first match wins. Each type is
# checked on the exception and on the cause urllib3 wrapped in it (MaxRetryError.reason).
_KINDS: tuple[tuple[tuple[type, ...], str], ...] = (
    ((requests.exceptions.SSLError, urllib3.exceptions.SSLError, ssl.SSLError), "tls"),
    ((requests.exceptions.ProxyError, urllib3.exceptions.ProxyError), "proxy"),
    (
        (
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
            urllib3.exceptions.LocationParseError,
        ),
        "url",
    ),
    ((requests.exceptions.InvalidHeader,), "request"),
    (
        (
            requests.exceptions.ConnectTimeout,
            urllib3.exceptions.ConnectTimeoutError,  # NewConnectionError is one too
            urllib3.exceptions.NameResolutionError,
            ConnectionRefusedError,
            socket.gaierror,
        ),
        "connect",
    ),
    (
        (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError, socket.timeout),
        "timeout",
    ),
)


def _kind_of(exc: BaseException, before_response: bool) -> str:
    """The NetworkError kind for a failure, decided by the exception types involved."""
    causes = _causes(exc)
    for types, kind in _KINDS:
        if any(isinstance(cause, types) for cause in causes):
            return kind
    # Anything else broke an open connection: before the response it may be a stale pooled
    # connection ("dropped": worth one more try), after it the body was cut ("broken").
    return "dropped" if before_response else "broken"


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and what it wraps (requests -> MaxRetryError -> its reason)."""
    found, seen = [exc], 0
    while seen < len(found) and len(found) < 6:
        current = found[seen]
        seen += 1
        for inner in (getattr(current, "reason", None), *getattr(current, "args", ())[:1]):
            if isinstance(inner, BaseException) and inner not in found:
                found.append(inner)
    return found


def _message(kind: str, exc: BaseException, where: str, settings: HttpSettings) -> str:
    """The one line a person reads, naming the setting that would fix it."""
    if kind == "tls":
        return (
            f"TLS certificate check failed for {where}: {_ssl_reason(str(exc))} "
            f"({settings.ca_hint})"
        )
    if kind == "proxy":
        return (
            f"the proxy refused or failed the connection to {where}: {_reason(exc)} "
            f"({settings.proxy_hint})"
        )
    if kind == "url":
        return f"not a valid URL: {where}"
    if kind == "request":
        return f"the request to {where} could not be sent: a header holds a forbidden character"
    if kind == "connect" and _is_a(exc, requests.exceptions.ConnectTimeout):
        return (
            f"could not connect to {where} within {settings.connect_timeout:g} s "
            f"({settings.connect_hint})"
        )
    if kind == "connect":
        return f"cannot connect to {where}: {_reason(exc)}"
    if kind == "timeout":
        return f"no data from {where} for {settings.read_timeout:g} s ({settings.read_hint})"
    if kind == "dropped":
        return f"cannot connect to {where}: {_reason(exc)}"
    return f"the connection to {where} broke: {_reason(exc)}"


def _detail(kind: str, exc: BaseException) -> str:
    """A short reason without the URL, for callers that word their own messages."""
    if kind == "tls":
        return _ssl_reason(str(exc))
    if kind == "timeout" or _is_a(exc, requests.exceptions.ConnectTimeout):
        return "timed out"
    return _reason(exc)


def _is_a(exc: BaseException, kind: type) -> bool:
    return any(isinstance(cause, kind) for cause in _causes(exc))


def resolve_verify(ca_bundle: str | None, insecure: bool) -> str | bool:
    """What to trust: ca_bundle, else the CA environment variables, else the system CA file."""
    if insecure:
        log.warning(
            "TLS certificate checks are OFF (provider.insecure): anyone on the path can "
            "read and change this traffic"
        )
        return False
    for candidate in (
        ca_bundle,
        os.environ.get("REQUESTS_CA_BUNDLE"),
        os.environ.get("SSL_CERT_FILE"),
        os.environ.get("CURL_CA_BUNDLE"),
    ):
        if candidate:
            return os.path.expanduser(candidate)
    return _system_ca_file() or True


# Where distributions keep the system store (internal CAs are added there); checked after
# OpenSSL's own default, which a Python built with its own OpenSSL may point elsewhere.
_SYSTEM_CA_FILES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine, Arch
    "/etc/pki/tls/certs/ca-bundle.crt",  # RHEL, Fedora, CentOS
    "/etc/ssl/ca-bundle.pem",  # SUSE
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",  # RHEL 7+
    "/etc/ssl/cert.pem",  # macOS, BSDs
)


def _system_ca_file() -> str | None:
    """The system's CA file (where internal CAs are installed), if there is one."""
    default = ssl.get_default_verify_paths().cafile
    for candidate in (default, *_SYSTEM_CA_FILES):
        if candidate and os.path.isfile(candidate):
            return candidate
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _where(url: str) -> str:
    """scheme://host:port/path without credentials or query (keys can hide in both)."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "an invalid URL"
    return f"{parts.scheme}://{parts.hostname or '?'}{port}{parts.path}"


def _reason(exc: BaseException) -> str:
    """A few words for a failure, from the innermost OS error where there is one.

    urllib3 wraps the OS error's text into its own exceptions' messages and gives no errno
    for some (NameResolutionError): the words are read from the text, for the message only.
    """
    for cause in reversed(_causes(exc)):
        if isinstance(cause, socket.gaierror):
            return "host not found"
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
    text = str(exc)
    match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if match:
        reason = match.group(1).strip()
        lowered = reason.lower()
        return "host not found" if "resol" in lowered or "not known" in lowered else reason
    for phrase in (
        "Connection refused",
        "Connection reset by peer",
        "Remote end closed",
        "IncompleteRead",
        "Connection broken",
        "timed out",
    ):
        if phrase.lower() in text.lower():
            return phrase.lower()
    return "connection error"


def _ssl_reason(text: str) -> str:
    match = re.search(r"certificate verify failed: ([^(']+)", text)
    if match:
        return match.group(1).strip().rstrip(".")
    match = re.search(r"(hostname '[^']+' doesn't match[^'\"]*|wrong version number)", text)
    return match.group(1) if match else "the server's certificate is not trusted"
