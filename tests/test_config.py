"""Settings: file, then environment, then flags; bad input is one line naming key and file."""

from __future__ import annotations

import pytest

from hermes_min.config import load_config
from hermes_min.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_defaults_without_any_file(tmp_path):
    config = load_config(None, env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert config.source is None
    assert config.provider.base_url == "https://api.openai.com/v1"
    assert config.streaming.enabled is True and config.terminal.mode == "auto"


def test_file_then_environment_then_flags(tmp_path):
    path = write(
        tmp_path,
        "provider:\n  base_url: http://file/v1\n  model: file-model\n  api_key: file-key\n",
    )
    env = {
        "OPENAI_BASE_URL": "http://openai-env/v1",
        "HERMES_BASE_URL": "http://hermes-env/v1",
        "HERMES_API_KEY": "env-key",  # OPENAI_API_KEY would not go to http://hermes-env (#12)
    }
    config = load_config(path, env=env, overrides={"provider.model": "flag-model"})
    assert config.provider.base_url == "http://hermes-env/v1"
    assert config.provider.api_key == "env-key"
    assert config.provider.model == "flag-model"
    assert config.source == path


def test_config_path_from_hermes_config_then_xdg(tmp_path):
    xdg = tmp_path / "xdg" / "hermes"
    xdg.mkdir(parents=True)
    (xdg / "config.yaml").write_text("provider:\n  model: from-xdg\n")
    assert (
        load_config(None, env={"XDG_CONFIG_HOME": str(tmp_path / "xdg")}).provider.model
        == "from-xdg"
    )
    other = write(tmp_path, "provider:\n  model: from-env-path\n")
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HERMES_CONFIG": other}
    assert load_config(None, env=env).provider.model == "from-env-path"


def test_api_key_file_for_cron(tmp_path):
    key = tmp_path / "key"
    key.write_text("sk-from-file\n")
    path = write(tmp_path, f"provider:\n  api_key_file: {key}\n")
    assert load_config(path, env={}).provider.api_key == "sk-from-file"


def test_secrets_are_not_in_the_repr(tmp_path):
    path = write(tmp_path, "provider:\n  api_key: sk-very-secret\n  proxy: http://u:p@h:1\n")
    assert "sk-very-secret" not in repr(load_config(path, env={}))


@pytest.mark.parametrize(
    "text, words",
    [
        ("provider:\n  bse_url: x\n", ["provider.bse_url", "did you mean base_url"]),
        ("provder:\n  model: x\n", ["provder", "did you mean provider"]),
        ("provider:\n  read_timeout: soon\n", ["provider.read_timeout", "a number"]),
        ("provider:\n  insecure: 1\n", ["provider.insecure", "true or false"]),
        ("provider:\n  max_retries: yes\n", ["provider.max_retries", "whole number"]),
        ("provider:\n  read_timeout: 0\n", ["provider.read_timeout", "greater than 0"]),
        ("terminal:\n  mode: fancy\n", ["terminal.mode", "auto, chars, lines"]),
        ("provider:\n  extra_body: [1]\n", ["provider.extra_body", "mapping"]),
        ("provider:\n  fallback: {bse_url: x}\n", ["provider.fallback.bse_url", "base_url"]),
        ("tools: [1, 2]\n", ["tools", "list of strings"]),
        ("agent:\n  read_dirs: /tmp\n", ["agent.read_dirs", "list"]),
        ("agent:\n  max_turns: 0\n", ["agent.max_turns", "greater than 0"]),
        ("provider: [1, 2]\n", ["provider", "mapping"]),
        ("- just\n- a list\n", ["top level"]),
        ("provider:\n  model: [unclosed\n", ["line"]),
    ],
)
def test_bad_config_is_one_line_naming_key_and_file(tmp_path, text, words):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    message = str(caught.value)
    assert "\n" not in message and path in message
    for word in words:
        assert word in message
    assert caught.value.exit_code == 2


def test_named_config_file_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "missing.yaml"), env={})


def test_missing_key_file_is_named(tmp_path):
    path = write(tmp_path, f"provider:\n  api_key_file: {tmp_path / 'nope'}\n")
    with pytest.raises(ConfigError, match="provider.api_key_file"):
        load_config(path, env={})


def test_repository_example_config_is_valid_and_documents_every_key():
    from pathlib import Path

    from hermes_min.config import _TOP_LEVEL, _TYPES

    example = Path(__file__).resolve().parents[1] / "config.yaml"
    text = example.read_text(encoding="utf-8")
    load_config(str(example), env={})
    for section, keys in _TYPES.items():
        for key in keys:
            assert f"{key}:" in text, f"{section}.{key} is not documented in config.yaml"
    for key in _TOP_LEVEL:
        assert f"\n{key}:" in text, f"{key} is not documented in config.yaml"
