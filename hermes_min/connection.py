"""The HTTP layer: TLS trust, proxies, timeouts, and aborting a blocked read from any thread."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies, should_bypass_proxies
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .errors import StreamError

log = logging.getLogger(__name__)
_READ_SIZE = 64 * 1024
_current = threading.local()  # the SocketSlot of the request this thread is making


class SocketSlot:
    """The socket of one request, so another thread can shut it down mid-read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self.aborted = False

    def hold(self, sock: socket.socket | None) -> None:
        """Remember the request's socket (shut it at once if abort came first)."""
        with self._lock:
            self._sock = sock
            if self.aborted:
                _shutdown(sock)

    def abort(self) -> None:
        """Shut the socket down: a read blocked in another thread returns at once."""
        with self._lock:
            self.aborted = True
            _shutdown(self._sock)


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
    """Mixed into urllib3's connections: hand each socket in use to the thread's slot."""

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self._hand_over()

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._hand_over()  # a pooled connection that is reused is not connected again
        super().request(*args, **kwargs)  # type: ignore[misc]

    def _hand_over(self) -> None:
        slot = getattr(_current, "slot", None)
        sock = getattr(self, "sock", None)
        if slot is not None and sock is not None:
            slot.hold(sock)


class _HTTPConnection(_Tracking, HTTPConnection):
    """An HTTP connection whose socket can be shut from another thread."""


class _HTTPSConnection(_Tracking, HTTPSConnection):
    """An HTTPS connection whose socket can be shut from another thread."""


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class _TrackingAdapter(HTTPAdapter):
    """requests' adapter with pools whose sockets the current SocketSlot can reach.

    With `ssl_context`, TLS trusts that context's CAs (loaded in memory) instead of a CA file.
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None, **kwargs: Any) -> None:
        self._ssl_context = ssl_context  # before super(): it calls init_poolmanager
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self._ssl_context is not None:
            kwargs["ssl_context"] = self._ssl_context
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        if self._ssl_context is not None:
            kwargs["ssl_context"] = self._ssl_context
        manager = super().proxy_manager_for(proxy, **kwargs)
        manager.pool_classes_by_scheme = dict(_POOLS)
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


def mount_trust(session: requests.Session, context: ssl.SSLContext | None) -> None:
    """Make a session's HTTPS use `context`'s CAs (see bundled_ca_context)."""
    if context is not None:
        session.mount("https://", _TrackingAdapter(ssl_context=context))


class HttpSession:
    """A requests session set up for one endpoint's trust, proxy and timeout settings."""

    def __init__(
        self,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 300.0,
        ca_bundle: str | None = None,
        insecure: bool = False,
        proxy: str | None = None,
    ) -> None:
        self.timeout = (connect_timeout, read_timeout)
        self.proxy = proxy or None
        self.verify = resolve_verify(ca_bundle, insecure)
        self._session = requests.Session()
        self._session.trust_env = False  # proxies and CA are resolved here, explicitly
        context = bundled_ca_context() if self.verify is True else None
        for prefix in ("http://", "https://"):
            self._session.mount(prefix, _TrackingAdapter(ssl_context=context))

    def request(
        self, method: str, url: str, *, slot: SocketSlot | None = None, **kwargs: Any
    ) -> requests.Response:
        """Send a request (body left unread); requests' errors become StreamError."""
        _current.slot = slot
        try:
            return self._session.request(
                method,
                url,
                stream=True,
                timeout=self.timeout,
                verify=self.verify,
                proxies=self.proxies_for(url),
                allow_redirects=False,
                **kwargs,
            )
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise translate(exc, url, self.timeout) from None
        finally:
            _current.slot = None

    def reads(self, response: requests.Response) -> Iterator[bytes]:
        """The body as it arrives: each read returns whatever is there, chunked or not."""
        raw, url = response.raw, response.url
        try:
            if raw.chunked:
                yield from raw.read_chunked(None, decode_content=True)  # one HTTP chunk each
                return
            while True:
                data = raw.read1(_READ_SIZE, decode_content=True)  # what has arrived, no waiting
                if not data:
                    return
                yield data
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise translate(exc, url, self.timeout) from None

    def proxies_for(self, url: str) -> dict:
        """The proxy for this URL: none for loopback or NO_PROXY, else config, else environment."""
        host = urlsplit(url).hostname or ""
        if _is_loopback(host):
            return {}  # a proxy can never reach this machine's own model server
        if self.proxy:
            return (
                {}
                if should_bypass_proxies(url, None)
                else {"http": self.proxy, "https": self.proxy}
            )
        return get_environ_proxies(url)  # HTTP(S)_PROXY / ALL_PROXY, honouring NO_PROXY

    def close(self) -> None:
        """Close pooled connections; safe to call twice."""
        self._session.close()

    def __enter__(self) -> HttpSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


def translate(exc: BaseException, url: str, timeout: tuple[float, float]) -> StreamError:
    """One clear StreamError for a requests/urllib3/socket failure; never the secret-laden URL."""
    where = _where(url)
    text = str(exc)
    if "Could not find a suitable TLS CA certificate bundle" in text:
        path = text.rsplit("invalid path: ", 1)[-1]
        return StreamError(
            "tls",
            f"the CA file {path} does not exist "
            "(set provider.ca_bundle or --ca-bundle to your CA file)",
        )
    if isinstance(exc, requests.exceptions.SSLError) or "CERTIFICATE_VERIFY_FAILED" in text:
        return StreamError(
            "tls",
            f"TLS certificate check failed for {where}: {_ssl_reason(text)} "
            "(set provider.ca_bundle or --ca-bundle to your CA file)",
        )
    if isinstance(exc, requests.exceptions.InvalidSchema) and "socks" in text.lower():
        return StreamError(
            "proxy",
            "SOCKS proxies need the PySocks package, which hermes does not "
            "ship; use an HTTP proxy (provider.proxy or HTTPS_PROXY)",
        )
    if isinstance(exc, requests.exceptions.ProxyError):
        return StreamError(
            "proxy",
            f"the proxy refused or failed the connection to {where}: "
            f"{_reason(text)} (check provider.proxy / HTTPS_PROXY / NO_PROXY)",
        )
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return StreamError(
            "timeout",
            f"could not connect to {where} within {timeout[0]:g} s (provider.connect_timeout)",
            transient=True,
        )
    if _is_read_timeout(exc):
        return StreamError(
            "timeout",
            f"no data from {where} for {timeout[1]:g} s "
            "(provider.read_timeout; a local server may need minutes for a long prompt)",
        )
    if isinstance(
        exc,
        (
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
        ),
    ):
        return StreamError("connection", f"not a valid URL: {where}")
    if isinstance(exc, requests.exceptions.ConnectionError) and not _mid_body(exc):
        return StreamError(
            "connection", f"cannot connect to {where}: {_reason(text)}", transient=True
        )
    return StreamError("connection", f"the connection to {where} broke: {_reason(text)}")


def _is_read_timeout(exc: BaseException) -> bool:
    return isinstance(
        exc, (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError, socket.timeout)
    ) or "Read timed out" in str(exc)


def _mid_body(exc: BaseException) -> bool:
    return isinstance(exc, requests.exceptions.ChunkedEncodingError)


def _where(url: str) -> str:
    """scheme://host:port/path without credentials or query (keys can hide in both)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _reason(text: str) -> str:
    match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if match:
        reason = match.group(1).strip()
        return (
            "host not found"
            if "name" in reason.lower() and "resol" in reason.lower() or "not known" in reason
            else reason
        )
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
