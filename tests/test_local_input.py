"""Bad local input is one clear line (#10): bytes that are not UTF-8, a closed or full stdout,
hostile config files and key files, out-of-range flags. Never a traceback, never a hang."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hermes_min.cli import main
from hermes_min.config import load_config
from hermes_min.errors import ConfigError
from hermes_min.storage import Store
from tests.sse_server import Reply, answer

ROOT = Path(__file__).resolve().parents[1]
HERMES = [sys.executable, str(ROOT / "bin" / "hermes")]


def env_for(tmp_path: Path, url: str = "http://127.0.0.1:9/v1", **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env.update(
        OPENAI_BASE_URL=url,
        HERMES_MODEL="m",
        XDG_STATE_HOME=str(tmp_path / "state"),
        XDG_CONFIG_HOME=str(tmp_path / "cfg"),
        **extra,
    )
    return env


def one_line(err: bytes) -> str:
    """The single `hermes: ...` line on stderr (and proof there was nothing else)."""
    text = err.decode("utf-8", "replace")
    assert "Traceback" not in text and "Exception ignored" not in text, text
    lines = text.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hermes: "), text
    return lines[0]


def stored_user_messages(tmp_path: Path) -> list[str]:
    db = tmp_path / "state" / "hermes" / "hermes.db"
    with sqlite3.connect(db) as check:
        rows = check.execute("SELECT content FROM messages WHERE role = 'user' ORDER BY id")
        return [row[0] for row in rows]


# --- bytes that are not UTF-8 ------------------------------------------------------------------


def test_non_utf8_bytes_in_argv_are_replaced_and_the_turn_is_stored(server, tmp_path):
    server.reply(Reply(parts=answer("ok")))
    run = subprocess.run(
        [*HERMES, b"caf\xe9 au lait"],
        env=env_for(tmp_path, server.url),
        capture_output=True,
        timeout=30,
    )
    assert run.returncode == 0 and run.stdout == b"ok\n", run.stderr
    assert run.stderr == b""
    assert stored_user_messages(tmp_path) == ["caf\ufffd au lait"]
    assert server.requests[-1]["json"]["messages"][-1]["content"] == "caf\ufffd au lait"


def test_storage_replaces_what_cannot_be_encoded_instead_of_losing_the_turn(tmp_path):
    with Store(tmp_path / "h.db") as store:
        cid = store.new_conversation(model="m\udcff", system="s\udce9")
        store.append_turn(
            cid,
            [{"role": "user", "content": "caf\udce9"}, {"role": "assistant", "content": "\ud800"}],
            model="m\udcff",
        )
        assert [m["content"] for m in store.messages(cid)] == ["s\ufffd", "caf\ufffd", "\ufffd"]


# --- bytes typed into chat that are not UTF-8 ------------------------------------------------


@pytest.mark.parametrize("locale", ["C.UTF-8", "C"])  # strict stdin, surrogateescape stdin
def test_non_utf8_bytes_typed_into_chat_are_replaced_and_stored(server, tmp_path, locale):
    server.reply(Reply(parts=answer("first")), Reply(parts=answer("second")))
    run = subprocess.run(
        [*HERMES, "chat", "-s", b"be \xff brief"],
        input=b"caf\xe9\n/system \xfe\nthe \xc3 end\n",
        env=env_for(tmp_path, server.url, LC_ALL=locale, LANG=locale),
        capture_output=True,
        timeout=30,
    )
    assert run.returncode == 0, run.stderr
    assert b"Traceback" not in run.stderr and run.stdout == b"first\nsecond\n"
    assert stored_user_messages(tmp_path) == ["caf\ufffd", "the \ufffd end"]
    assert server.requests[-1]["json"]["messages"][0] == {"role": "system", "content": "\ufffd"}


# --- a closed or full stdout -------------------------------------------------------------------


@pytest.fixture
def stored(tmp_path):
    """A stored conversation, so `history` has something to print."""
    with Store(tmp_path / "state" / "hermes" / "hermes.db") as store:
        cid = store.new_conversation(model="m")
        store.append_turn(
            cid,
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a" * 20_000}],
            model="m",
        )
    return cid


def _redirected(
    redirect: str, argv: list, env: dict, stdin: bytes = b""
) -> subprocess.CompletedProcess:
    """hermes run by a real shell with stdout closed (`>&-`) or sent to /dev/full."""
    return subprocess.run(
        ["sh", "-c", f'exec "$@" {redirect}', "sh", *HERMES, *argv],
        env=env,
        input=stdin,
        capture_output=True,
        timeout=30,
    )


@pytest.mark.parametrize("redirect", [">&-", ">/dev/full"])
@pytest.mark.parametrize(
    "argv",
    [
        ["history"],
        ["history", "{cid}"],
        ["history", "--json"],
        ["replay", str(ROOT / "examples" / "sky.sse")],
        ["replay", str(ROOT / "examples" / "sky.sse"), "--json"],
        ["--version"],
        ["ask-the-server"],
    ],
)
def test_a_closed_or_full_stdout_is_one_line_and_exit_1(server, tmp_path, stored, redirect, argv):
    server.reply(Reply(parts=answer("an answer\n" * 2000)))
    argv = ["a question"] if argv == ["ask-the-server"] else [a.format(cid=stored) for a in argv]
    run = _redirected(redirect, argv, env_for(tmp_path, server.url))
    line = one_line(run.stderr)
    assert run.returncode == 1, line
    assert "stdout" in line


@pytest.mark.parametrize("redirect", [">&-", ">/dev/full"])
def test_chat_with_a_closed_or_full_stdout_still_stores_the_turn(server, tmp_path, redirect):
    server.reply(Reply(parts=answer("an answer\n" * 2000)))
    run = _redirected(redirect, ["chat"], env_for(tmp_path, server.url), b"hello\nagain\n")
    assert run.returncode == 1 and "stdout" in one_line(run.stderr)
    assert stored_user_messages(tmp_path) == ["hello"]  # stored; the REPL stops there


def test_a_closed_stdout_is_fine_for_a_command_that_prints_nothing(tmp_path):
    run = _redirected(">&-", ["history"], env_for(tmp_path))  # no conversations: no output
    assert run.returncode == 0 and run.stderr == b""


# --- config files ------------------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


NUMBERS = [
    "provider.connect_timeout",
    "provider.read_timeout",
    "provider.total_timeout",
    "streaming.edit_interval",
    "agent.tool_timeout",
    "telegram.answer_timeout",
]


@pytest.mark.parametrize("name", NUMBERS)
@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", ".NaN", "-1", "-0.5", "1.0e+300"])
def test_timeouts_and_intervals_must_be_finite_and_positive(tmp_path, name, value):
    section, key = name.split(".")
    path = write(tmp_path, f"{section}:\n  {key}: {value}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.key == name and name in str(caught.value) and path in str(caught.value)


BOMB = """\
provider:
  extra_body:
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


@pytest.mark.parametrize("libyaml", [True, False])
def test_a_yaml_alias_bomb_is_refused_at_load_naming_file_and_line(tmp_path, monkeypatch, libyaml):
    if not libyaml:  # as inside hermes.pyz: PyYAML without its C parser
        monkeypatch.delattr(yaml, "cyaml", raising=False)
    path = write(tmp_path, BOMB)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    message = str(caught.value)
    assert path in message and "line 3" in message and "alias" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "text, line",
    [
        ("provider:\n  model: &m gpt\n", 2),  # an anchor alone
        ("defaults: &d {model: x}\n", 1),  # (an unknown section would be refused later)
        ("provider:\n  extra_body: {a: 1}\nstreaming:\n  cursor: *nothing\n", 4),
    ],
)
def test_every_anchor_and_alias_is_refused(tmp_path, text, line):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=f"line {line}: .*alias"):
        load_config(path, env={})


def _limited(argv: list, env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    """hermes under a 2 GB memory limit, so a regression fails the test, not the machine."""
    return subprocess.run(
        ["sh", "-c", 'ulimit -v 2000000; exec "$@"', "sh", *HERMES, *argv],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
    )


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


@pytest.fixture
def huge(tmp_path):
    path = tmp_path / "huge"
    with open(path, "wb") as f:
        f.truncate(1 << 30)  # sparse: a gigabyte that takes no disk
    return path


@pytest.mark.parametrize("key", ["provider.api_key_file", "telegram.token_file", "fallback"])
@pytest.mark.parametrize(
    "target, words", [("/dev/zero", "not a regular file"), ("fifo", "FIFO"), ("huge", "too large")]
)
def test_a_key_file_that_is_a_device_fifo_or_huge_is_refused(tmp_path, key, target, words, request):
    target = request.getfixturevalue(target) if target in ("fifo", "huge") else target
    if key == "fallback":
        key, text = (
            "provider.fallback.api_key_file",
            f"provider:\n  fallback:\n    api_key_file: {target}\n",
        )
    else:
        section, name = key.split(".")
        text = f"{section}:\n  {name}: {target}\n"
    config = write(tmp_path, text)
    run = _limited(["history", "--config", config], env_for(tmp_path))
    line = one_line(run.stderr)
    assert run.returncode == 2 and key in line and str(target) in line and words in line, line


@pytest.mark.parametrize(
    "content, words",
    [
        ("sk-abc\ndef\n", "line break"),
        ("sk-abc\x1bdef", "control character"),
        ("sk-abc\x00def", "control character"),
        ("\tsk-abc\rdef", "control character"),
        (b"sk-\xff\xfe", "UTF-8"),
    ],
)
def test_a_key_with_a_line_break_or_control_character_is_refused_naming_the_file(
    tmp_path, content, words
):
    key = tmp_path / "key"
    key.write_bytes(content if isinstance(content, bytes) else content.encode())
    key.chmod(0o600)
    path = write(tmp_path, f"provider:\n  api_key_file: {key}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    message = str(caught.value)
    assert str(key) in message and "provider.api_key_file" in message and words in message
    assert "sk-abc" not in message and "def" not in message  # never the secret itself


@pytest.mark.parametrize(
    "env, words",
    [
        ({"HERMES_API_KEY": "sk-abc\ndef"}, "HERMES_API_KEY"),
        ({"TELEGRAM_BOT_TOKEN": "1:abc\x1b"}, "TELEGRAM_BOT_TOKEN"),
    ],
)
def test_a_key_with_a_control_character_in_the_environment_is_refused(tmp_path, env, words):
    with pytest.raises(ConfigError, match=words):
        load_config(None, env={"XDG_CONFIG_HOME": str(tmp_path), **env})


def test_a_config_path_that_is_a_directory_or_fifo_says_so(tmp_path, fifo):
    (tmp_path / "dir.yaml").mkdir()
    for path, words in ((tmp_path / "dir.yaml", "is a directory"), (fifo, "FIFO")):
        run = _limited(["history", "--config", str(path)], env_for(tmp_path), timeout=30)
        line = one_line(run.stderr)
        assert run.returncode == 2 and str(path) in line and words in line, line
        assert "not found" not in line


def test_the_default_config_path_being_a_directory_says_so(tmp_path):
    (tmp_path / "cfg" / "hermes" / "config.yaml").mkdir(parents=True)
    run = _limited(["history"], env_for(tmp_path), timeout=30)
    assert run.returncode == 2 and "is a directory" in one_line(run.stderr)


def test_a_huge_config_file_is_refused_unread(tmp_path, huge):
    run = _limited(["history", "--config", str(huge)], env_for(tmp_path))
    line = one_line(run.stderr)
    assert run.returncode == 2 and "too large" in line


def test_a_config_nested_too_deeply_is_one_line(tmp_path):
    path = write(tmp_path, "provider:\n  extra_body: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nested"):
        load_config(path, env={})


# --- flags -------------------------------------------------------------------------------------


def run_main(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("n", ["0", "-1", "-5", "1000001", "99999999999999999999999"])
def test_history_n_out_of_range_is_a_usage_error(capsys, n):
    code, out, err = run_main(capsys, "history", "-n", n)
    assert code == 2 and out == "" and err.startswith("hermes: ") and "-n" in err
    assert len(err.splitlines()) == 1


def test_history_n_in_range_works(capsys):
    assert run_main(capsys, "history", "-n", "1")[0] == 0
    assert run_main(capsys, "history", "-n", "1000000")[0] == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["--cid", "", "hi"],
        ["--cid", "  ", "hi"],
        ["chat", "--cid", ""],
        ["history", ""],
        ["telegram", "poll", "--max-seconds", "nan"],
        ["telegram", "poll", "--max-seconds", "-1"],
        ["telegram", "poll", "--max-seconds", "inf"],
        ["telegram", "poll", "--max-updates", "-1"],
        ["telegram", "poll", "--max-updates", "9" * 5000],
    ],
)
def test_empty_ids_and_senseless_bounds_are_usage_errors(server, capsys, argv):
    server.reply(Reply(parts=answer("must not be asked")))
    code, out, err = run_main(capsys, *argv)
    assert code == 2 and out == "" and err.startswith("hermes: "), err
    assert server.requests == []


def test_history_json_still_lists(capsys, tmp_path):
    with Store(tmp_path / "xdg-state" / "hermes" / "hermes.db") as store:
        store.new_conversation(model="m")
    code, out, _ = run_main(capsys, "history", "--json", "-n", "5")
    assert code == 0 and len(json.loads(out)) == 1
