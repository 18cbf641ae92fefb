"""Secrets stay secret (#10): read_file refuses hermes' own files and reads race-free, tool
results and stored models are masked, terminals get no control characters from the model,
and keys over plain http or in loose files are warned about."""

from __future__ import annotations

import json
import logging
import os
import pty
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from hermes_min import assemble
from hermes_min.agent import Agent
from hermes_min.cli import main
from hermes_min.client import ChatClient
from hermes_min.config import load_config
from hermes_min.connection import HttpSession, HttpSettings
from hermes_min.storage import Store
from hermes_min.tools import run_tool, tool
from hermes_min.tools.builtins import make_read_file
from tests.sse_server import Reply, answer, chunk, sse

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-test-Abc123Def456Ghi789"
FALLBACK_KEY = "fallback-key-Zyx987Wvu654"
TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"

pytestmark = pytest.mark.filterwarnings("ignore:This process .* is multi-threaded")


def private(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def call_reply(name: str, arguments: dict, call_id: str = "c1") -> Reply:
    """A response asking for one tool call."""
    fragment = {
        "index": 0,
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }
    return Reply(parts=[sse(chunk(tool_calls=[fragment]), chunk(finish="tool_calls"))])


def _env(tmp_path: Path, server_url: str = "http://127.0.0.1:9/v1") -> dict:
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env.update(
        OPENAI_BASE_URL=server_url,
        HERMES_MODEL="m",
        TERM="dumb",
        XDG_STATE_HOME=str(tmp_path / "state"),
        XDG_CONFIG_HOME=str(tmp_path / "cfg"),
    )
    return env


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A home directory holding hermes' config, key files, token file and database."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    private(home / ".config" / "hermes" / "openai.key", KEY + "\n")
    private(home / ".config" / "hermes" / "fallback.key", FALLBACK_KEY + "\n")
    private(home / ".config" / "hermes" / "telegram.token", TOKEN + "\n")
    private(home / "notes.txt", "an ordinary file\n")
    private(
        home / ".config" / "hermes" / "config.yaml",
        "provider:\n"
        "  api_key_file: ~/.config/hermes/openai.key\n"
        "  fallback: {base_url: 'http://127.0.0.1:9/v1', api_key_file: "
        "'~/.config/hermes/fallback.key'}\n"
        "telegram:\n  token_file: ~/.config/hermes/telegram.token\n"
        "agent:\n  read_dirs: ['~']\n"
        "storage:\n  path: ~/state/hermes.db\n",
    )
    return home


# --- read_file refuses hermes' own files ----------------------------------------------------


def test_read_file_refuses_every_secret_file_of_the_settings_even_under_read_dirs(home):
    config = load_config(None)
    (reader,) = assemble.tools(config, ["hermes:read_file"])
    assert reader.func(str(home / "notes.txt")) == "an ordinary file\n"
    with Store(home / "state" / "hermes.db") as store:  # open: -wal and -shm exist now
        store.new_conversation(model="m")
        # Created after the tool was made: what to refuse is looked up at each read.
        lock = private(home / "state" / "telegram-123456789.lock", "")
        own = [
            home / ".config" / "hermes" / "config.yaml",
            home / ".config" / "hermes" / "openai.key",
            home / ".config" / "hermes" / "fallback.key",
            home / ".config" / "hermes" / "telegram.token",
            home / "state" / "hermes.db",
            home / "state" / "hermes.db-wal",
            home / "state" / "hermes.db-shm",
            lock,
        ]
        for path in own:
            assert path.exists(), path
            with pytest.raises(PermissionError, match="hermes' own"):
                reader.func(str(path))


def test_read_file_refuses_a_secret_file_by_identity_not_name(home):
    token = home / ".config" / "hermes" / "telegram.token"
    os.link(token, home / "innocent.txt")  # the same file under another name
    (home / "via-link.txt").symlink_to(token)
    (reader,) = assemble.tools(load_config(None), ["hermes:read_file"])
    for name in ("innocent.txt", "via-link.txt", ".config/../.config/hermes/telegram.token"):
        with pytest.raises(PermissionError, match="hermes' own"):
            reader.func(str(home / name))


def test_a_model_asking_for_the_token_file_gets_a_refusal_not_the_token(home, server, capsys):
    """The reproduced case: read_dirs ['~'], the model asks to read the token file."""
    server.reply(
        call_reply("read_file", {"path": "~/.config/hermes/telegram.token"}),
        Reply(parts=answer("I cannot read that.")),
    )
    code = main(
        ["--base-url", server.url, "-m", "m", "--no-stdin", "--tool", "hermes:read_file", "token?"]
    )
    assert code == 0, capsys.readouterr()
    tool_message = server.requests[-1]["json"]["messages"][-1]
    assert tool_message["role"] == "tool" and "hermes' own" in tool_message["content"]
    assert TOKEN.split(":")[1] not in json.dumps(server.requests[-1]["json"])


# --- tool results are masked -----------------------------------------------------------------


def test_run_tool_masks_the_known_secrets_in_what_the_model_gets():
    @tool
    def leak(what: str) -> str:
        """Say something with a secret in it."""
        return f"{what}: {KEY} and {TOKEN} and {FALLBACK_KEY}"

    result = run_tool(leak, '{"what": "here"}', timeout=5, secrets=(KEY, TOKEN, FALLBACK_KEY))
    assert result.ok and result.content == "here: *** and *** and ***"
    bad = run_tool(
        leak, json.dumps({"what": 1, "x": FALLBACK_KEY}), timeout=5, secrets=(FALLBACK_KEY,)
    )
    assert not bad.ok and FALLBACK_KEY not in bad.content


def test_the_agent_masks_tool_results_with_the_secrets_assemble_gives_it(home, server):
    @tool
    def leak() -> str:
        """Read the fallback key file, as a careless tool might."""
        return (home / ".config" / "hermes" / "fallback.key").read_text()

    config = load_config(None)
    server.reply(call_reply("leak", {}), Reply(parts=answer("done")))
    with ChatClient(server.url, None, "m") as client:
        built = assemble.agent(config, client)
        assert set(built.secrets) >= {KEY, FALLBACK_KEY, TOKEN}
        agent = Agent(client, tools=[leak], secrets=built.secrets)
        assert agent.turn([{"role": "user", "content": "go"}]).result().content == "done"
        built.fallback.close()
    sent = json.dumps(server.requests[-1]["json"])
    assert FALLBACK_KEY not in sent and "***" in sent


# --- read_file opens race-free ---------------------------------------------------------------


def _swap_while_reading(swap: Callable[[int], None], read: Callable[[], str]) -> list[str]:
    """Call swap(i) in a thread, in a tight loop, while reading in this one; what was read.

    Bounded in iterations on both sides: the swapper stops when the reads are done.
    """
    swaps, reads = 50_000, 20_000
    started, stop, results = threading.Event(), threading.Event(), []

    def swapper() -> None:
        for i in range(swaps):
            if stop.is_set():
                return
            swap(i)
            started.set()

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: the race needs it
    thread = threading.Thread(target=swapper, daemon=True)
    try:
        thread.start()
        assert started.wait(30)
        for _ in range(reads):
            try:
                results.append(read())
            except OSError as exc:  # refused or missing: fine, as long as it is not read
                results.append(f"error: {exc}")
            if not thread.is_alive():
                break
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(previous)
    return results


@pytest.fixture
def sides(tmp_path):
    root, outside = tmp_path / "allowed", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "data.txt").write_text("OUTSIDE SECRET", encoding="utf-8")
    return root, outside


def test_a_directory_swapped_for_a_symlink_while_reading_never_reads_outside(sides):
    """`d` is a real directory when the path is checked, a symlink out when it is opened."""
    root, outside = sides
    (root / "d").mkdir()
    (root / "d" / "data.txt").write_text("inside text", encoding="utf-8")
    (root / "d.link").symlink_to(outside)
    names = (root / "d", root / "d.real", root / "d.link")

    def swap(i: int) -> None:
        here, real, link = names
        if i % 2 == 0:  # the directory steps aside, the symlink takes its name
            os.rename(here, real)
            os.rename(link, here)
        else:
            os.rename(here, link)
            os.rename(real, here)

    reader = make_read_file([str(root)])
    results = _swap_while_reading(swap, lambda: reader.func(str(root / "d" / "data.txt")))
    assert not [r for r in results if "OUTSIDE" in r]
    assert "inside text" in results  # the reads did happen


def test_a_file_swapped_for_a_symlink_while_reading_never_reads_outside(sides):
    """`f` is a regular file when the path is checked, a symlink out when it is opened."""
    root, outside = sides
    (root / "f").write_text("inside text", encoding="utf-8")
    spare = root / "f.new"

    def swap(i: int) -> None:
        if i % 2 == 0:
            spare.symlink_to(outside / "data.txt")
        else:
            spare.write_text("inside text", encoding="utf-8")
        os.replace(spare, root / "f")  # atomic: `f` always exists, as one or the other

    reader = make_read_file([str(root)])
    results = _swap_while_reading(swap, lambda: reader.func(str(root / "f")))
    assert not [r for r in results if "OUTSIDE" in r]
    assert "inside text" in results


def test_read_file_never_blocks_on_a_fifo_swapped_in(tmp_path):
    root = tmp_path / "allowed"
    root.mkdir()
    os.mkfifo(root / "pipe")
    reader = make_read_file([str(root)])
    with pytest.raises(OSError, match="not a regular file"):
        reader.func(str(root / "pipe"))  # O_NONBLOCK: no writer needed to return


# --- text from the model on a terminal -------------------------------------------------------

EVIL = "red \x1b[31mtext\x1b[0m \x1b]0;owned\x07 bell\x07 cr\roverwrite \x9b2J"


def _evil_conversation(tmp_path: Path) -> str:
    with Store(tmp_path / "state" / "hermes" / "hermes.db") as store:
        cid = store.new_conversation(model="m", system=f"sys {EVIL}")
        store.append_turn(
            cid,
            [{"role": "user", "content": f"hi {EVIL}"}, {"role": "assistant", "content": EVIL}],
            model="m",
        )
    return cid


def _on_pty(
    argv: list[str], env: dict, stdin: bytes = b"", which: str = "stdout"
) -> tuple[int, str]:
    """Run hermes with stdout (or stderr) on a pseudo-terminal; exit code and what it showed.

    The other stream is a pipe, read after the child exits (it says little), and must hold
    no traceback.
    """
    master, slave = pty.openpty()
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, which: slave}
    child = subprocess.Popen(
        [sys.executable, str(ROOT / "bin" / "hermes"), *argv],
        env=env,
        stdin=subprocess.PIPE,
        **streams,
    )
    os.close(slave)
    child.stdin.write(stdin)
    child.stdin.close()
    out = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if select.select([master], [], [], deadline - time.monotonic())[0]:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal (it exited)
                break
            if not data:
                break
            out += data
    os.close(master)
    code = child.wait(30)
    other = child.stderr if which == "stdout" else child.stdout
    assert b"Traceback" not in other.read()
    other.close()
    return code, out.decode("utf-8", "replace")


def _neutralised(shown: str) -> None:
    assert "\x1b" not in shown and "\x07" not in shown and "\x9b" not in shown
    assert "\r" not in shown.replace("\r\n", "\n")  # the pty turns \n into \r\n; nothing else
    assert "␛[31mtext" in shown and "␇" in shown


def test_history_on_a_terminal_shows_control_characters_visibly(tmp_path):
    cid = _evil_conversation(tmp_path)
    code, shown = _on_pty(["history", cid], _env(tmp_path))
    assert code == 0
    _neutralised(shown)
    code, listed = _on_pty(["history"], _env(tmp_path))
    assert code == 0 and cid in listed and "\x1b" not in listed


def test_history_into_a_pipe_and_json_keep_the_text_exact(tmp_path):
    cid = _evil_conversation(tmp_path)
    env = _env(tmp_path)
    hermes = [sys.executable, str(ROOT / "bin" / "hermes")]
    piped = subprocess.run([*hermes, "history", cid], env=env, capture_output=True, timeout=30)
    assert piped.returncode == 0 and EVIL.encode() in piped.stdout
    code, shown = _on_pty(["history", cid, "--json"], env)
    record = json.loads(shown.replace("\r\n", "\n"))
    assert record["turns"][0]["messages"][1]["content"] == EVIL


def test_the_repl_history_echo_on_a_terminal_is_neutralised(tmp_path):
    cid = _evil_conversation(tmp_path)
    code, shown = _on_pty(["chat", "--cid", cid], _env(tmp_path), b"/history\n")
    assert code == 0
    _neutralised(shown)


def test_the_repl_error_line_on_a_terminal_shows_control_characters_visibly(server, tmp_path):
    """A server's error message, quoted in the REPL's `hermes: ...` line on stderr."""
    body = json.dumps({"error": {"message": "bad \x1b]0;owned\x07 request"}}).encode()
    server.reply(Reply(parts=[body], status=400, content_type="application/json", framing="length"))
    env = _env(tmp_path, server.url)
    code, shown = _on_pty(["chat"], env, b"hello\n", which="stderr")
    assert code == 0 and "bad ␛]0;owned␇ request" in shown
    assert "\x1b" not in shown and "\x07" not in shown


def test_the_repl_prompt_shows_a_served_model_name_visibly(server, tmp_path):
    """A model name chosen by the server (the only one served) appears in the prompt."""
    models = json.dumps({"data": [{"id": "evil\x1b]0;owned\x07"}]}).encode()
    server.reply(Reply(parts=[models], content_type="application/json", framing="length"))
    env = _env(tmp_path, server.url)
    del env["HERMES_MODEL"]
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(sys.executable, [sys.executable, str(ROOT / "bin" / "hermes"), "chat"], env)
    screen = b""
    try:
        deadline = time.monotonic() + 30
        while b"> " not in screen and time.monotonic() < deadline:
            if select.select([fd], [], [], deadline - time.monotonic())[0]:
                try:
                    screen += os.read(fd, 65536)
                except OSError:  # the child exited
                    break
        assert b"> " in screen, screen
        assert b"\x1b]0;owned" not in screen and "evil␛]0;owned␇> ".encode() in screen
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)


# --- keys over plain http, key files others can read ------------------------------------------


def test_a_secret_over_plain_http_to_another_host_is_warned_about_once(server, caplog):
    proxy = server.url[: -len("/v1")]  # the server plays a proxy: no real remote host needed
    server.reply(*[Reply(parts=answer("ok"))] * 3)
    with (
        HttpSession(HttpSettings(proxy=proxy, secrets=(KEY,))) as http,
        caplog.at_level(logging.WARNING),
    ):
        for _ in range(3):
            http.request("POST", "http://model.example.test/v1/chat/completions").close()
    warnings = [r for r in caplog.records if "http://" in r.getMessage()]
    assert len(warnings) == 1 and "model.example.test" in warnings[0].getMessage()
    assert KEY not in caplog.text


@pytest.mark.parametrize(
    "url, secrets",
    [
        ("http://127.0.0.1:{port}/v1/x", (KEY,)),  # loopback: never leaves the machine
        ("http://localhost:{port}/v1/x", (KEY,)),
        ("http://model.example.test/v1/x", ()),  # nothing secret goes with it
    ],
)
def test_no_warning_for_loopback_or_without_a_secret(server, caplog, url, secrets):
    proxy = server.url[: -len("/v1")]
    server.reply(Reply(parts=answer("ok")))
    with (
        HttpSession(HttpSettings(proxy=proxy, secrets=secrets)) as http,
        caplog.at_level(logging.WARNING),
    ):
        http.request("POST", url.format(port=server.port)).close()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_one_plain_http_warning_per_run_of_the_command(server, tmp_path):
    models = json.dumps({"data": [{"id": "only"}]}).encode()
    server.reply(
        Reply(parts=[models], content_type="application/json", framing="length"),
        Reply(parts=answer("ok")),
    )  # two requests (the model list, the answer) on one session
    env = _env(tmp_path)
    del env["HERMES_MODEL"]
    env.update(HTTP_PROXY=server.url[: -len("/v1")], HERMES_API_KEY=KEY)
    env["OPENAI_BASE_URL"] = "http://model.example.test/v1"
    run = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "hermes"), "hi"],
        env=env,
        capture_output=True,
        timeout=30,
    )
    err = run.stderr.decode()
    assert run.returncode == 0 and run.stdout == b"ok\n", err
    assert len(server.requests) == 2
    (line,) = [line for line in err.splitlines() if "http://" in line]
    assert line.startswith("hermes: ") and "model.example.test" in line
    assert KEY not in err


@pytest.mark.parametrize(
    "key, name",
    [
        ("provider.api_key_file", "openai.key"),
        ("provider.fallback.api_key_file", "fallback.key"),
        ("telegram.token_file", "telegram.token"),
    ],
)
def test_a_key_file_others_can_read_is_warned_about(home, caplog, key, name):
    path = home / ".config" / "hermes" / name
    with caplog.at_level(logging.WARNING):
        load_config(None)
    assert not caplog.records  # 0600: nothing to say
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        load_config(None)
    (record,) = [r for r in caplog.records if str(path) in r.getMessage()]
    assert key in record.getMessage() and "chmod 600" in record.getMessage()


def test_a_group_writable_key_file_is_warned_about(tmp_path, caplog):
    path = private(tmp_path / "key", KEY)
    path.chmod(0o620)
    config = private(tmp_path / "c.yaml", f"provider:\n  api_key_file: {path}\n")
    with caplog.at_level(logging.WARNING):
        load_config(str(config), env={})
    assert "chmod 600" in caplog.text and KEY not in caplog.text


# --- a key echoed by the server is masked before it is stored --------------------------------


def test_a_key_echoed_in_the_model_field_is_not_stored(server, capsys, tmp_path):
    echoed = dict(chunk("hello"), model=f"gpt-echo-{KEY}")
    done = dict(chunk(finish="stop"), model=f"gpt-echo-{KEY}")
    server.reply(Reply(parts=[sse(echoed, done)]))
    assert main(["--base-url", server.url, "--api-key", KEY, "-m", "m", "--no-stdin", "hi"]) == 0
    capsys.readouterr()
    state = tmp_path / "xdg-state" / "hermes"
    db = state / "hermes.db"
    with sqlite3.connect(db) as check:
        models = check.execute("SELECT model FROM turns UNION SELECT model FROM conversations")
        assert {row[0] for row in models} == {"gpt-echo-***"}
    data = b"".join(p.read_bytes() for p in state.iterdir() if p.name.startswith("hermes.db"))
    assert KEY.encode() not in data
