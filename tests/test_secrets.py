"""Secrets stay secret (#10): read_file refuses hermes' own files and reads race-free, tool
results and stored models are masked, terminals get no control characters from the model,
and keys over plain http or in loose files are warned about."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from hermes_min.cli import main
from tests.sse_server import Reply, chunk, sse

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
