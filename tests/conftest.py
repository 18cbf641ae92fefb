"""Shared fixtures: a local SSE server, and an environment free of the user's settings."""

from __future__ import annotations

import signal

import pytest

from tests.sse_server import SSEServer

_USER_ENV = (
    "OPENAI_BASE_URL",
    "OPENAI_API_BASE",
    "OPENAI_API_KEY",
    "HERMES_BASE_URL",
    "HERMES_API_KEY",
    "HERMES_MODEL",
    "HERMES_CONFIG",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "REQUESTS_CA_BUNDLE",
    "SSL_CERT_FILE",
    "CURL_CA_BUNDLE",
    "NO_COLOR",
    "TELEGRAM_BOT_TOKEN",
)


@pytest.fixture(autouse=True, scope="session")
def sigint_reaches_children():
    """Child processes start with SIGINT at its default, so ^C and SIGINT tests mean something.

    A shell starts a background job (`make test &`, nohup, some CI runners) with SIGINT
    ignored, and an ignored signal stays ignored across exec: hermes would never see ^C, as
    Python installs its KeyboardInterrupt handler only over the default. A handled signal
    is reset to the default by exec, so handling it here is enough.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No test sees the developer's keys, proxies or config."""
    for name in _USER_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))


@pytest.fixture
def server():
    """A local SSE server; queue Replies with server.reply(...)."""
    with SSEServer() as srv:
        yield srv
