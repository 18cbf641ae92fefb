"""Issue 12, "options go where people put them": `hermes [options] COMMAND [options]`, a
prompt that starts with a command's name, -h everywhere, and a host without the packages."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hermes_min.cli import main
from tests.fake_botapi import FakeBotAPI
from tests.helpers import FakeTTY, one_line, run
from tests.sse_server import Reply, answer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def terminal_stdin(monkeypatch):
    monkeypatch.setattr(sys, "stdin", FakeTTY())


@pytest.fixture
def config(tmp_path, server):
    path = tmp_path / "config.yaml"
    path.write_text(f"provider:\n  base_url: {server.url}\n  max_retries: 0\n")
    return str(path)


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "{config}", "history"],
        ["-v", "history"],
        ["--config", "{config}", "-v", "history", "-n", "3"],
        ["-n", "3", "history"],  # history's own -n N, before its name
    ],
)
def test_options_before_history_reach_history_and_send_nothing(server, capsys, config, argv):
    argv = [config if word == "{config}" else word for word in argv]
    code, out, err = run(capsys, *argv)
    assert (code, out, err) == (0, "", "")  # an empty history, not an answer to "history"
    assert server.requests == []


def test_a_model_before_chat_is_chat_s_model(server, capsys, config, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n"))  # chat without a terminal
    server.reply(Reply(parts=answer("hi")))
    code, out, _ = run(capsys, "--config", config, "-m", "M", "chat")
    assert code == 0 and out == "hi\n"
    [request] = server.requests
    assert request["json"]["model"] == "M"
    assert request["json"]["messages"] == [{"role": "user", "content": "hello"}]


@pytest.mark.parametrize(
    "argv, named",
    [
        (["-m", "M", "models"], "-m is not an option of hermes models"),
        (["-q", "hi", "models"], "-q is not an option of hermes models"),  # history's
        (["--chat-id", "1", "models"], "--chat-id is not an option of hermes models"),  # send's
        (["--max-seconds", "5", "history"], "--max-seconds is not an option of hermes history"),
    ],
)
def test_an_option_before_a_command_that_does_not_take_it_names_both(
    server, capsys, config, argv, named
):
    code, out, err = run(capsys, "--config", config, *argv)
    assert code == 2 and out == ""
    assert named in one_line(err)
    assert server.requests == []


def test_options_before_telegram_poll_reach_poll(capsys, tmp_path, monkeypatch):
    with FakeBotAPI() as bot:
        path = tmp_path / "config.yaml"
        path.write_text(
            f"telegram:\n  api_base: {bot.api_base}\n  allowed_users: [1]\n"
            f"storage:\n  path: {tmp_path / 'hermes.db'}\n"
        )
        monkeypatch.setenv("TELEGRAM_BOT_TOKEN", bot.token)
        argv = ["--max-updates", "0", "--once", "--config", str(path), "telegram", "poll"]
        assert run(capsys, *argv) == (0, "", "")
        bot.assert_clean()


@pytest.mark.parametrize("action", ["whoami", "setup"])
def test_every_telegram_action_takes_verbose(capsys, tmp_path, monkeypatch, action):
    with FakeBotAPI() as bot:
        path = tmp_path / "config.yaml"
        path.write_text(f"telegram:\n  api_base: {bot.api_base}\n")
        monkeypatch.setenv("TELEGRAM_BOT_TOKEN", bot.token)
        code, _, err = run(capsys, "-v", "--config", str(path), "telegram", action)
        assert code == 0, err
        bot.assert_clean()


@pytest.mark.parametrize(
    "argv, system, prompt",
    [
        (["-s", "models", "hi", "-m", "m"], "models", "hi"),  # an option's value
        (["-s", "history", "-m", "m", "--", "chat", "now"], "history", "chat now"),
    ],
)
def test_a_command_name_as_an_option_s_value_is_a_value(
    server, capsys, config, argv, system, prompt
):
    server.reply(Reply(parts=answer("ok")))
    code, out, _ = run(capsys, "--config", config, *argv)
    assert (code, out) == (0, "ok\n")
    assert server.requests[-1]["json"]["messages"] == [
        {"role": "system", "content": system},
        {"role": "user", "content": prompt},
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "{config}", "telegram", "send", "--chat-id", "1", "hi"],
        ["--config", "{config}", "--chat-id", "1", "telegram", "send", "hi"],  # send's own
        ["--chat-id", "1", "telegram", "--config", "{config}", "send", "hi"],
        ["-s", "terse", "--chat-id=1", "--config", "{config}", "telegram", "send", "hi"],
    ],
)
def test_options_before_telegram_send_reach_send(server, capsys, tmp_path, monkeypatch, argv):
    with FakeBotAPI(per_chat_interval=0.02) as bot:
        path = tmp_path / "config.yaml"
        path.write_text(
            f"provider:\n  base_url: {server.url}\n  model: m\n"
            f"telegram:\n  api_base: {bot.api_base}\n"
            "streaming:\n  edit_interval: 0.05\n"
        )
        monkeypatch.setenv("TELEGRAM_BOT_TOKEN", bot.token)
        server.reply(Reply(parts=answer("sent")))
        code, out, err = run(capsys, *[str(path) if w == "{config}" else w for w in argv])
        assert (code, out, err) == (0, "", "")
        assert [m.text for m in bot.messages(1)] == ["sent"]
        bot.assert_clean()


@pytest.mark.parametrize(
    "argv",
    [
        ["--", "models", "are", "wrong"],
        ["ask", "models", "are", "wrong"],
        ["-m", "m", "ask", "models", "are", "wrong"],
        ["-v", "--", "models", "are", "wrong"],
    ],
)
def test_a_prompt_that_starts_with_a_command_name(server, capsys, config, argv):
    server.reply(Reply(parts=answer("ok")))
    code, out, _ = run(capsys, "--config", config, "-m", "m", *argv)
    assert (code, out) == (0, "ok\n")
    assert server.requests[-1]["json"]["messages"][-1]["content"] == "models are wrong"


@pytest.mark.parametrize(
    "argv, prompt",
    [
        (["--", "-m", "is", "the", "model", "flag"], "-m is the model flag"),
        (["--", "-u", "means", "usage"], "-u means usage"),
        (["--", "--help", "me"], "--help me"),
        (["--", "-v is a flag"], "-v is a flag"),
        (["ask", "--", "--json", "please"], "--json please"),
        (["why", "--", "-1"], "why -1"),
    ],
)
def test_everything_after_a_double_dash_is_prompt(server, capsys, config, argv, prompt):
    """POSIX: "--" ends the options (argparse's intermixed parsing dropped it)."""
    server.reply(Reply(parts=answer("ok")))
    code, out, err = run(capsys, "--config", config, "-m", "m", *argv)
    assert (code, out, err) == (0, "ok\n", "")  # no -u line, no help, no error
    [request] = server.requests
    assert request["json"]["model"] == "m"
    assert request["json"]["messages"][-1]["content"] == prompt


def test_prompt_words_on_both_sides_of_an_option(server, capsys, config):
    server.reply(Reply(parts=answer("ok")))
    assert run(capsys, "--config", config, "why", "-m", "m", "is", "it")[0] == 0
    assert server.requests[0]["json"]["messages"][0]["content"] == "why is it"


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as done:
        main(["-h"])
    out = capsys.readouterr().out
    assert done.value.code == 0
    for words in (
        "hermes [ask] PROMPT",
        "hermes chat",
        "hermes models",
        "hermes history [ID | rm ID]",
        "hermes replay FILE",
        "hermes config init|path|show",
        "hermes telegram send",
        "poll|whoami",
        "hermes -- models are wrong",
    ):
        assert words in out, words


@pytest.mark.parametrize(
    "argv, usage",
    [
        (["ask", "-h"], "usage: hermes ask"),
        (["chat", "-h"], "usage: hermes chat"),
        (["models", "-h"], "usage: hermes models"),
        (["-h", "models"], "usage: hermes models"),  # -h before the command is its -h
        (["history", "-h"], "usage: hermes history"),
        (["replay", "-h"], "usage: hermes replay"),
        (["config", "-h"], "usage: hermes config"),
        (["config", "init", "-h"], "usage: hermes config init"),
        (["config", "path", "-h"], "usage: hermes config path"),
        (["config", "show", "-h"], "usage: hermes config show"),
        (["telegram", "-h"], "usage: hermes telegram"),
        (["telegram", "send", "-h"], "usage: hermes telegram send"),
        (["telegram", "poll", "-h"], "usage: hermes telegram poll"),
        (["telegram", "whoami", "-h"], "usage: hermes telegram whoami"),
    ],
)
def test_each_command_has_help(capsys, argv, usage):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0 and capsys.readouterr().out.startswith(usage)


def _without_packages(tmp_path, *argv):
    """bin/hermes on an interpreter that sees only the standard library (-I -S)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    env.update(XDG_CONFIG_HOME=str(tmp_path / "cfg"), XDG_STATE_HOME=str(tmp_path / "state"))
    return subprocess.run(
        [sys.executable, "-I", "-S", str(ROOT / "bin" / "hermes"), *argv],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def test_the_interpreter_really_lacks_the_packages(tmp_path):
    probe = subprocess.run(
        [sys.executable, "-I", "-S", "-c", "import requests"], capture_output=True, timeout=60
    )
    assert probe.returncode != 0  # otherwise the tests below would prove nothing


@pytest.mark.parametrize(
    "argv, config",
    [
        (["--base-url", "http://127.0.0.1:9", "-m", "m", "hi"], None),  # requests
        (["history"], "provider:\n  model: m\n"),  # yaml, for the config file
    ],
)
def test_without_requests_or_yaml_one_line_says_what_to_install(tmp_path, argv, config):
    if config is not None:
        (tmp_path / "cfg" / "hermes").mkdir(parents=True)
        (tmp_path / "cfg" / "hermes" / "config.yaml").write_text(config)
    done = _without_packages(tmp_path, *argv)
    assert done.returncode == 1 and done.stdout == ""
    line = one_line(done.stderr)
    assert "pip install requests PyYAML" in line and "hermes.pyz" in line


def test_without_the_packages_version_and_help_still_work(tmp_path):
    assert _without_packages(tmp_path, "--version").returncode == 0
    done = _without_packages(tmp_path, "-h")
    assert done.returncode == 0 and "hermes telegram send" in done.stdout
