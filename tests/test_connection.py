"""TLS trust, proxies and error wording, over real sockets where traffic is involved."""

from __future__ import annotations

import logging

import pytest

from hermes_min import ChatClient, StreamError
from hermes_min.connection import HttpSession, HttpSettings, resolve_verify
from hermes_min.redact import redact
from tests.sse_server import Reply, SSEServer, answer
from tests.tls import make_ca

USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    made = make_ca(tmp_path_factory.mktemp("ca"))
    if made is None:
        pytest.skip("the openssl command is needed to make a throw-away CA")
    ca, context = made
    with SSEServer(tls=context) as server:
        server.reply(Reply(parts=answer("secure")))
        yield server, str(ca)


def test_untrusted_certificate_says_so_and_names_the_setting(tls):
    server, _ = tls
    with (
        ChatClient(server.url, None, "m", max_retries=0) as client,
        pytest.raises(StreamError) as caught,
    ):
        client.complete(USER)
    assert caught.value.kind == "tls"
    assert "certificate" in str(caught.value) and "ca_bundle" in str(caught.value)


def test_ca_bundle_is_trusted(tls):
    server, ca = tls
    with ChatClient(server.url, None, "m", ca_bundle=ca) as client:
        assert client.complete(USER).content == "secure"


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"])
def test_ca_environment_variables_are_honoured(tls, monkeypatch, variable):
    server, ca = tls
    monkeypatch.setenv(variable, ca)
    with ChatClient(server.url, None, "m") as client:
        assert client.complete(USER).content == "secure"


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_insecure_works_and_warns(tls, caplog):
    server, _ = tls
    with caplog.at_level(logging.WARNING), ChatClient(server.url, None, "m", insecure=True) as c:
        assert c.complete(USER).content == "secure"
    assert any("certificate checks are OFF" in r.getMessage() for r in caplog.records)


def test_ca_bundle_beats_the_environment(monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/env/ca.pem")
    assert resolve_verify("/conf/ca.pem", False) == "/conf/ca.pem"
    assert resolve_verify(None, False) == "/env/ca.pem"


def test_http_proxy_carries_the_request(server):
    server.reply(Reply(parts=answer("proxied")))
    proxy = server.url[: -len("/v1")]
    with ChatClient("http://model.internal.test/v1", None, "m", proxy=proxy) as client:
        assert client.complete(USER).content == "proxied"
    assert server.requests[0]["path"] == "http://model.internal.test/v1/chat/completions"


def test_proxy_from_the_environment(server, monkeypatch):
    server.reply(Reply(parts=answer("via env")))
    monkeypatch.setenv("HTTP_PROXY", server.url[: -len("/v1")])
    with ChatClient("http://model.internal.test/v1", None, "m") as client:
        assert client.complete(USER).content == "via env"
    assert server.requests[0]["path"].startswith("http://model.internal.test/")


def test_loopback_never_goes_through_a_proxy(server, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    server.reply(Reply(parts=answer("direct")))
    with ChatClient(server.url, None, "m", proxy="http://127.0.0.1:9") as client:
        assert client.complete(USER).content == "direct"


@pytest.mark.parametrize(
    "no_proxy, url, proxied",
    [
        ("", "https://api.example.com/v1", True),
        ("example.com", "https://api.example.com/v1", False),
        ("10.0.0.0/8", "http://10.1.2.3:8080/v1", False),
        ("10.0.0.0/8", "http://11.1.2.3:8080/v1", True),
        ("", "http://localhost:8080/v1", False),
        ("", "http://[::1]:8080/v1", False),
    ],
)
def test_no_proxy_hosts_and_cidr_ranges(monkeypatch, no_proxy, url, proxied):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    with (
        HttpSession(HttpSettings(proxy=None)) as env_session,
        HttpSession(HttpSettings(proxy="http://cfg:1")) as cfg_session,
    ):
        assert bool(env_session.proxies_for(url)) is proxied
        assert bool(cfg_session.proxies_for(url)) is proxied


def test_socks_proxy_says_pysocks_is_needed():
    with (
        ChatClient(
            "http://model.internal.test/v1", None, "m", proxy="socks5://127.0.0.1:9", max_retries=0
        ) as client,
        pytest.raises(StreamError) as caught,
    ):
        client.complete(USER)
    assert caught.value.kind == "proxy" and "PySocks" in str(caught.value)


def test_proxy_credentials_never_appear_in_errors():
    with (
        ChatClient(
            "http://model.internal.test/v1",
            None,
            "m",
            max_retries=0,
            proxy="http://alice:hunter2@127.0.0.1:9",
        ) as client,
        pytest.raises(StreamError) as caught,
    ):
        client.complete(USER)
    assert caught.value.kind == "proxy"
    assert "hunter2" not in str(caught.value)


def test_redact_known_and_key_shaped_secrets():
    text = "key sk-abc123456789 token bot123456:AAE_abcdefghijklmnopqrstu url http://u:pw@h/ mine"
    out = redact(text, ["mine"])
    for secret in ("sk-abc123456789", "AAE_abcdefghijklmnopqrstu", "u:pw", "mine"):
        assert secret not in out


def test_a_missing_ca_file_is_named():
    with (
        ChatClient(
            "https://127.0.0.1:9/v1", None, "m", ca_bundle="/nonexistent/ca.pem", max_retries=0
        ) as client,
        pytest.raises(StreamError) as caught,
    ):
        client.complete(USER)
    assert caught.value.kind == "tls" and "/nonexistent/ca.pem does not exist" in str(caught.value)


def test_without_any_ca_file_certifi_is_trusted_from_memory(tls, monkeypatch, tmp_path):
    # As inside hermes.pyz on a host with no system CA file: certifi's file is not on disk.
    import certifi

    from hermes_min import connection

    server, ca = tls
    with open(ca, encoding="ascii") as pem:
        bundle = pem.read()
    monkeypatch.setattr(connection, "_system_ca_file", lambda: None)
    monkeypatch.setattr(certifi, "where", lambda: str(tmp_path / "in-the-archive" / "cacert.pem"))
    monkeypatch.setattr(certifi, "contents", lambda: bundle)
    with ChatClient(server.url, None, "m") as client:
        assert client.complete(USER).content == "secure"  # trusted, and nothing was written
    assert not (tmp_path / "in-the-archive").exists()


def test_the_in_memory_trust_still_refuses_strangers(tls, monkeypatch, tmp_path):
    import certifi

    from hermes_min import connection

    server, _ = tls
    monkeypatch.setattr(connection, "_system_ca_file", lambda: None)
    real = certifi.contents()
    monkeypatch.setattr(certifi, "where", lambda: str(tmp_path / "missing.pem"))
    monkeypatch.setattr(certifi, "contents", lambda: real)  # the public CAs only
    with (
        ChatClient(server.url, None, "m", max_retries=0) as client,
        pytest.raises(StreamError) as caught,
    ):
        client.complete(USER)
    assert caught.value.kind == "tls" and "does not exist" not in str(caught.value)
