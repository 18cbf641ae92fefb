"""Issue 12, "a first run that guides": what to set when nothing is, a 401 that names the
key's source, `hermes config init|path|show`, and each key only where it was meant to go."""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
from pathlib import Path

import pytest

from tests.helpers import FakeTTY, one_line, run
from tests.sse_server import Reply, answer

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-test-0123456789abcdef"


@pytest.fixture(autouse=True)
def terminal(monkeypatch):
    monkeypatch.setattr(sys, "stdin", FakeTTY())


def config_file(tmp_path) -> Path:
    return tmp_path / "xdg-config" / "hermes" / "config.yaml"


def authorization(server, index=-1):
    return server.requests[index]["headers"].get("authorization")


# ------------------------------------------------------------------ the first run


@pytest.mark.parametrize("argv", [["hi"], ["models"], ["chat"], ["-v", "-o", "seed", "1", "hi"]])
def test_with_nothing_configured_the_first_line_says_what_to_set(capsys, tmp_path, argv):
    code, out, err = run(capsys, *argv)
    line = one_line(err)
    assert code == 2 and out == ""
    for words in ("--base-url", "--api-key", "HERMES_API_KEY", "hermes config init"):
        assert words in line, words
    assert str(config_file(tmp_path)) in line and "cannot connect" not in line


def _refuse_key(server):
    body = json.dumps({"error": {"message": "Incorrect API key provided"}}).encode()
    server.reply(Reply(parts=[body], status=401, content_type="application/json", framing="length"))


@pytest.mark.parametrize(
    "how, source",
    [
        ("flag", "flag --api-key"),
        ("HERMES_API_KEY", "environment HERMES_API_KEY"),
        ("OPENAI_API_KEY", "environment OPENAI_API_KEY"),
        ("api_key_file", "provider.api_key_file"),
    ],
)
def test_a_401_names_where_the_key_came_from(server, capsys, monkeypatch, tmp_path, how, source):
    argv = ["--base-url", server.url, "-m", "m"]
    if how == "flag":
        argv += ["--api-key", KEY]
    elif how == "api_key_file":
        key = tmp_path / "key"
        key.write_text(KEY + "\n")
        key.chmod(0o600)
        config = tmp_path / "c.yaml"
        config.write_text(f"provider:\n  api_key_file: {key}\n")
        argv += ["--config", str(config)]
    else:
        monkeypatch.setenv(how, KEY)
        if how == "OPENAI_API_KEY":  # it goes only to OPENAI_BASE_URL
            monkeypatch.setenv("OPENAI_BASE_URL", server.url)
            argv = ["-m", "m"]
    _refuse_key(server)
    code, out, err = run(capsys, *argv, "hi")
    line = one_line(err)
    assert code == 1 and "refused the API key from" in line and source in line
    assert "HTTP 401" in line and KEY not in out + err
    others = [n for n in ("OPENAI_API_KEY", "--api-key", "provider.api_key") if n not in source]
    assert not [name for name in others if name in line], line  # only the key that was sent


def test_a_401_without_a_key_says_none_was_sent_and_why(server, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # meant for OpenAI, not for this endpoint
    _refuse_key(server)
    code, _, err = run(capsys, "--base-url", server.url, "-m", "m", "hi")
    line = one_line(err)
    assert code == 1 and "none was sent" in line and "OPENAI_API_KEY is set, but" in line
    assert "check the API key" not in line  # no key to check: it says what to set instead
    assert authorization(server) is None and KEY not in err


# ------------------------------------------------------------------ key routing


@pytest.mark.parametrize(
    "env, flags, sent",
    [
        ({"OPENAI_API_KEY": KEY}, ["--base-url", "{url}"], False),  # as llm: not to --base-url
        ({"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": "{url}"}, [], True),
        ({"OPENAI_API_KEY": KEY, "OPENAI_API_BASE": "{url}/"}, [], True),
        ({"OPENAI_API_KEY": KEY, "HERMES_BASE_URL": "{url}"}, [], False),
        ({"HERMES_API_KEY": KEY}, ["--base-url", "{url}"], True),
        ({"HERMES_API_KEY": KEY, "HERMES_BASE_URL": "{url}"}, [], True),
        ({}, ["--base-url", "{url}", "--api-key", KEY], True),
    ],
)
def test_a_key_goes_only_where_it_was_meant_to_go(server, capsys, monkeypatch, env, flags, sent):
    for name, value in env.items():
        monkeypatch.setenv(name, value.replace("{url}", server.url))
    server.reply(Reply(parts=answer("ok")))
    argv = [flag.replace("{url}", server.url) for flag in flags]
    assert run(capsys, *argv, "-m", "m", "hi")[0] == 0
    assert authorization(server) == (f"Bearer {KEY}" if sent else None)


def test_a_configured_key_goes_to_the_configured_endpoint(server, capsys, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"provider:\n  api_key: {KEY}\n")
    server.reply(Reply(parts=answer("ok")))
    assert run(capsys, "--config", str(config), "--base-url", server.url, "-m", "m", "hi")[0] == 0
    assert authorization(server) == f"Bearer {KEY}"


def test_verbose_names_the_key_source_never_the_key(server, capsys, monkeypatch, caplog):
    monkeypatch.setenv("HERMES_API_KEY", KEY)
    server.reply(Reply(parts=answer("ok")))
    with caplog.at_level(logging.INFO):
        code, _, err = run(capsys, "-v", "--base-url", server.url, "-m", "m", "hi")
    said = caplog.text + err
    assert code == 0 and "sending the API key from environment HERMES_API_KEY" in said
    assert KEY not in said


# ------------------------------------------------------------------ hermes config


def test_config_init_writes_the_documented_template_privately(capsys, tmp_path):
    code, out, err = run(capsys, "config", "init")
    path = config_file(tmp_path)
    assert code == 0 and out == "" and str(path) in one_line(err)
    assert path.read_bytes() == (ROOT / "config.yaml").read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_config_init_never_overwrites(capsys, tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("provider:\n  model: mine\n")
    code, _, err = run(capsys, "config", "init", "--config", str(path))
    assert code == 2 and "already exists" in one_line(err)
    assert path.read_text() == "provider:\n  model: mine\n"


def test_the_written_template_is_valid_and_still_asks_for_an_endpoint(capsys, tmp_path):
    assert run(capsys, "config", "init")[0] == 0
    code, _, err = run(capsys, "hi")
    line = one_line(err)
    assert code == 2 and f"set provider.base_url in {config_file(tmp_path)}" in line
    assert "config init" not in line  # it exists already: init would refuse


def test_the_template_in_the_package_is_the_repository_s_config():
    template = ROOT / "hermes_min" / "config_template.yaml"
    assert template.read_bytes() == (ROOT / "config.yaml").read_bytes(), (
        "cp config.yaml hermes_min/config_template.yaml"
    )


def test_setup_py_ships_the_template():
    assert '"config_template.yaml"' in (ROOT / "setup.py").read_text()


@pytest.mark.parametrize("where", ["xdg", "HERMES_CONFIG", "--config"])
def test_config_path_prints_the_path_in_use(capsys, tmp_path, monkeypatch, where):
    argv = ["config", "path"]
    expected = config_file(tmp_path)
    if where == "HERMES_CONFIG":
        expected = tmp_path / "env.yaml"
        monkeypatch.setenv("HERMES_CONFIG", str(expected))
    elif where == "--config":
        expected = tmp_path / "flag.yaml"
        argv = ["--config", str(expected), *argv]
    code, out, err = run(capsys, *argv)
    assert code == 0 and out == f"{expected}\n" and "does not exist" in err


def test_config_show_masks_secrets_and_says_where_each_came_from(capsys, tmp_path, monkeypatch):
    path = config_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(
        "provider:\n  model: from-file\n  proxy: http://user:hunter2@proxy:3128\n"
        "telegram:\n  token: 123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456\n"
    )
    monkeypatch.setenv("HERMES_BASE_URL", "http://127.0.0.1:9/v1")
    code, out, _ = run(capsys, "config", "show", "--api-key", KEY, "--ca-bundle", "/ca.pem")
    assert code == 0
    assert KEY not in out and "hunter2" not in out and "ABCDEFGHIJ" not in out
    lines = {line.split()[0]: line for line in out.splitlines() if not line.startswith("#")}
    assert lines["provider.model"].endswith("# file")
    assert lines["provider.base_url"].endswith("# environment HERMES_BASE_URL")
    assert (
        lines["provider.api_key"].endswith("# flag --api-key")
        and "***" in lines["provider.api_key"]
    )
    assert lines["provider.ca_bundle"].endswith("# flag")
    assert lines["provider.read_timeout"].endswith("# default")
    assert lines["telegram.token"].endswith("# file") and "***" in lines["telegram.token"]
    assert f"# config file: {path} (read)" in out


def test_config_show_json(capsys, monkeypatch):
    monkeypatch.setenv("HERMES_API_KEY", KEY)
    code, out, _ = run(capsys, "config", "show", "--json")
    settings = {row["key"]: row for row in json.loads(out)["settings"]}
    assert code == 0 and KEY not in out
    assert settings["provider.api_key"]["from"] == "environment HERMES_API_KEY"
    assert settings["provider.model"] == {"key": "provider.model", "value": None, "from": "default"}


def test_config_show_reads_no_secret_into_the_process_environment(capsys):
    assert run(capsys, "config", "show")[0] == 0
    assert "HERMES_API_KEY" not in os.environ
