"""hermes.pyz (issue 6): built once per session from the package index, run in a clean world.

Every run is `python -I -S hermes.pyz ...` (no site-packages in reach) with an empty HOME and
an empty TMPDIR that is read-only (mode 0555; root ignores that, so each run also checks that
both are still empty afterwards), on this interpreter's base CPython and, when present, on
CPython 3.9, which ignores the archive's .pyc files and compiles from source. Where the output
can be compared, it must equal what the checkout (`bin/hermes`, the venv's packages) prints.
The build is skipped only when pip cannot reach the package index.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hermes_min import __version__
from tests.fake_botapi import FakeBotAPI
from tests.sse_server import Reply, SSEServer, answer, free_port
from tests.tls import make_ca

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "tools" / "build_pyz.py"
HOST_ENV = dict(os.environ)  # before conftest's clean_env: pip may need the proxy or CA settings
PY = os.path.realpath(sys.executable)  # the venv's base interpreter: no venv site-packages
PY39 = next(
    (
        p
        for p in (os.environ.get("HERMES_TEST_PY39"), "/root/.pyenv/versions/3.9.18/bin/python3")
        if p and os.path.isfile(p)
    ),
    None,
)
PYTHONS = [pytest.param(PY, id="py")] + ([pytest.param(PY39, id="py3.9")] if PY39 else [])
DEPS = ("requests", "urllib3", "idna", "certifi", "charset-normalizer", "PyYAML")
EXIT_NO_INDEX = 3  # tools/build_pyz.py: pip could not reach the package index


@pytest.fixture(scope="session")
def pyz(tmp_path_factory):
    """dist/hermes.pyz built from scratch into a temporary folder, once per session."""
    out = tmp_path_factory.mktemp("pyz") / "hermes.pyz"
    env = dict(HOST_ENV, PIP_RETRIES="3", PIP_DEFAULT_TIMEOUT="30")
    done = subprocess.run(
        [sys.executable, str(BUILD), "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode == EXIT_NO_INDEX:
        pytest.skip(f"cannot build hermes.pyz, pip cannot reach the package index: {done.stderr}")
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture
def world(tmp_path):
    """Empty HOME and TMPDIR (read-only), XDG folders outside both, and a cron-like PATH."""
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    tmp.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
        "XDG_STATE_HOME": str(tmp_path / "xdg-state"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
    }
    yield env
    tmp.chmod(0o755)


def hermes(pyz, world, *args, python=PY, env=None, flags=("-I", "-S")):
    """Run the archive; (exit code, stdout, stderr). HOME and TMPDIR must stay empty."""
    done = subprocess.run(
        [python, *flags, str(pyz), *args],
        env={**world, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        encoding="utf-8",
        timeout=60,
    )
    for name in ("HOME", "TMPDIR"):
        assert os.listdir(world[name]) == [], f"hermes.pyz wrote into {name}"
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


def checkout(world, *args, env=None):
    """The same command from the checkout with the venv's packages: what hermes prints."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "hermes"), *args],
        env={**world, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        encoding="utf-8",
        timeout=60,
    )
    return done.returncode, done.stdout, done.stderr


def config(tmp_path, **sections) -> str:
    """A config file outside HOME (JSON is YAML) holding the given sections."""
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(sections), encoding="utf-8")
    return str(path)


# --- the archive itself ---------------------------------------------------------------------


def test_archive_is_pure_python_with_licences_and_no_caches(pyz):
    assert pyz.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(pyz) as archive:
        names = archive.namelist()
        main = archive.read("__main__.py").decode()
        core = archive.read("certifi/core.py").decode()
        bundled = archive.read("hermes_min/_bundled.py").decode()
    assert not [n for n in names if n.endswith((".so", ".pyd", ".dylib", ".dll")) or ".so." in n]
    assert not [n for n in names if "__pycache__" in n]
    assert not [n for n in names if n.endswith(".py") and n + "c" not in names]  # legacy .pyc
    assert names == sorted(names)
    licences = [n for n in names if ".dist-info/" in n and "LICENSE" in n.upper()]
    for dist in ("requests-", "urllib3-", "idna-", "certifi-", "charset_normalizer-", "PyYAML-"):
        assert [n for n in licences if n.startswith(dist)], f"no licence file for {dist}"
    assert [n for n in names if n.startswith("requests-") and n.endswith("/NOTICE")]
    assert "yaml/__init__.py" in names and not [n for n in names if n.startswith("yaml/_yaml")]
    assert "sys.modules[_name] = None" in main and "hermes.pyz" in core
    assert all(f"'{dep}'" in bundled for dep in DEPS)
    assert not (ROOT / "hermes_min" / "_bundled.py").exists()  # written into the archive only


def test_build_tool_and_the_code_it_writes_are_python_3_9():
    spec = importlib.util.spec_from_file_location("build_pyz", BUILD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, source in (("build_pyz", BUILD.read_text()), ("main", module.MAIN)):
        ast.parse(source, name, feature_version=(3, 9))
    ast.parse(module.CERTIFI_CORE, "certifi/core.py", feature_version=(3, 9))


def test_an_unreachable_index_is_exit_status_3(tmp_path):
    """What the pyz fixture turns into a skip: pip cannot reach the index."""
    env = dict(
        HOST_ENV,
        PIP_CONFIG_FILE=os.devnull,
        PIP_INDEX_URL=f"http://127.0.0.1:{free_port()}/simple",
        PIP_EXTRA_INDEX_URL="",
        PIP_FIND_LINKS="",
        PIP_RETRIES="1",
    )
    done = subprocess.run(
        [sys.executable, str(BUILD), "--out", str(tmp_path / "x.pyz")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == EXIT_NO_INDEX, done.stderr
    assert "cannot reach the package index" in done.stderr and not (tmp_path / "x.pyz").exists()


@pytest.mark.parametrize("python", PYTHONS)
def test_version_names_the_bundled_dependencies(pyz, world, python):
    code, out, err = hermes(pyz, world, "--version", python=python)
    text = " ".join(out.split())
    assert (code, err) == (0, "")
    assert text.startswith(f"hermes {__version__} (bundled: requests 2.")
    assert all(f"{dep} " in text for dep in DEPS)


@pytest.mark.parametrize("python", PYTHONS)
def test_replay_prints_what_the_installed_hermes_prints(pyz, world, python):
    args = ("replay", str(ROOT / "examples" / "sky.sse"))
    result = hermes(pyz, world, *args, python=python)
    assert result[0] == 0 and "blue" in result[1]
    assert result == checkout(world, *args)


AUDIT = """
import json, os, sys
writes = []
def hook(event, args):
    if event == "open" and isinstance(args[0], str) and (
        any(c in str(args[1] or "") for c in "wax+") or args[2] & (os.O_WRONLY | os.O_RDWR)
    ):
        writes.append(args[0])
    elif event in ("os.mkdir", "os.rename", "os.replace"):
        writes.append(str(args[0]))
sys.addaudithook(hook)
sys.path.insert(0, sys.argv[1])
import requests, yaml, certifi, charset_normalizer, idna, urllib3
assert all(m.__file__.startswith(sys.argv[1]) for m in (requests, yaml, certifi, idna, urllib3))
print(json.dumps({"writes": writes, "where": certifi.where(), "libyaml": yaml.__with_libyaml__}))
"""


def test_importing_the_bundled_packages_writes_nothing(pyz, world):
    done = subprocess.run(
        [PY, "-I", "-S", "-c", AUDIT, str(pyz)],
        env=world,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["writes"] == [] and seen["libyaml"] is False
    assert os.path.isfile(seen["where"])  # certifi.where(): a real file on disk, not a copy
    assert not seen["where"].startswith((str(pyz), world["TMPDIR"], "/tmp/"))
    assert os.listdir(world["HOME"]) == os.listdir(world["TMPDIR"]) == []


# --- over the network ------------------------------------------------------------------------


@pytest.mark.parametrize("python", PYTHONS)
def test_streams_an_answer_over_http(pyz, world, server, python):
    server.reply(Reply(parts=answer("Hello", " from ", "the pyz")))
    args = ("--base-url", server.url, "-m", "m", "Say", "hello")
    assert hermes(pyz, world, *args, python=python) == (0, "Hello from the pyz\n", "")
    assert server.requests[0]["json"]["messages"] == [{"role": "user", "content": "Say hello"}]
    assert checkout(world, *args) == (0, "Hello from the pyz\n", "")


@pytest.mark.parametrize("python", PYTHONS)
def test_config_init_writes_the_template_from_inside_the_archive(pyz, world, python):
    """#12: the documented config travels in the archive; config init reads it from there."""
    code, _, err = hermes(pyz, world, "config", "init", python=python)
    written = Path(world["XDG_CONFIG_HOME"]) / "hermes" / "config.yaml"
    assert code == 0 and str(written) in err
    assert written.read_bytes() == (ROOT / "config.yaml").read_bytes()


def test_models_subcommand(pyz, world, server):
    server.reply(
        Reply(
            parts=[b'{"data":[{"id":"a"},{"id":"b"}]}'],
            content_type="application/json",
            framing="length",
        )
    )
    assert hermes(pyz, world, "models", "--base-url", server.url) == (0, "a\nb\n", "")


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    made = make_ca(tmp_path_factory.mktemp("ca"))
    if made is None:
        pytest.skip("no openssl command to make a test CA")
    ca, context = made
    with SSEServer(tls=context) as server:
        yield server, str(ca)


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("how", ["config", "flag", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"])
def test_https_with_a_private_ca(pyz, world, tls, tmp_path, python, how):
    server, ca = tls
    server.reply(Reply(parts=answer("trusted")))
    args = ["--base-url", server.url, "-m", "m", "hi"]
    env = {}
    if how == "config":
        args += ["--config", config(tmp_path, provider={"ca_bundle": ca})]
    elif how == "flag":
        args += ["--ca-bundle", ca]
    else:
        env[how] = ca
    assert hermes(pyz, world, *args, python=python, env=env) == (0, "trusted\n", "")


def test_https_without_the_ca_is_refused_in_one_line(pyz, world, tls):
    server, _ = tls
    args = ("--base-url", server.url, "-m", "m", "hi")
    code, out, err = hermes(pyz, world, *args)
    assert (code, out, err.count("\n")) == (1, "", 1), err
    assert err.startswith("hermes: ") and "certificate" in err and "ca_bundle" in err
    assert (code, out, err) == checkout(world, *args)


def test_no_usable_home_or_temporary_directory_is_needed(pyz, world, tls):
    """Even root cannot create anything under /dev/null: nothing of hermes.pyz's needs to."""
    server, ca = tls
    server.reply(Reply(parts=answer("no disk")))
    unusable = {"HOME": "/dev/null/home", "TMPDIR": "/dev/null/tmp", "XDG_CACHE_HOME": ""}
    args = ("--base-url", server.url, "--ca-bundle", ca, "-m", "m", "hi")
    code, out, _ = hermes(pyz, world, *args, env=unusable)
    assert (code, out) == (0, "no disk\n")  # stderr may say conversations are not saved


def test_insecure_works_and_warns(pyz, world, tls, tmp_path):
    server, _ = tls
    server.reply(Reply(parts=answer("unchecked")))
    path = config(tmp_path, provider={"insecure": True})
    code, out, err = hermes(pyz, world, "--config", path, "--base-url", server.url, "-m", "m", "x")
    assert (code, out) == (0, "unchecked\n") and "OFF" in err


def test_http_proxy_from_the_environment_and_no_proxy(pyz, world, server, tmp_path):
    proxy = server.url[: -len("/v1")]  # the SSE server answers absolute-URI requests as a proxy
    server.reply(Reply(parts=answer("via the proxy")))
    limits = {"max_retries": 0, "connect_timeout": 1, "read_timeout": 2}
    cfg = config(tmp_path, provider=limits)
    args = ("--config", cfg, "-m", "m", "hi")
    env = {"HTTP_PROXY": proxy, "HERMES_BASE_URL": "http://model.internal.test/v1"}
    assert hermes(pyz, world, *args, env=env) == (0, "via the proxy\n", "")
    assert server.requests[0]["path"] == "http://model.internal.test/v1/chat/completions"
    # A CIDR entry in NO_PROXY: such a request goes direct (and fails), never through the
    # proxy. 0.0.0.0 is not loopback to hermes (which never proxies loopback anyway), yet
    # Linux connects it to this machine: the test sends nothing to another host.
    env = {
        "HTTP_PROXY": proxy,
        "HERMES_BASE_URL": f"http://0.0.0.0:{free_port()}/v1",
        "NO_PROXY": "0.0.0.0/8",
    }
    code, out, _ = hermes(pyz, world, *args, env=env)
    assert (code, out) == (1, "") and len(server.requests) == 1


def test_telegram_send(pyz, world, server, tmp_path):
    server.reply(Reply(parts=answer("The **alerts** ", "were quiet ", "today.")))
    with FakeBotAPI(per_chat_interval=0.02) as fake:
        path = config(
            tmp_path,
            provider={"base_url": server.url, "model": "m", "max_retries": 0},
            telegram={"api_base": fake.api_base},
            streaming={"edit_interval": 0.05, "buffer_threshold": 5},
        )
        env = {"HERMES_CONFIG": path, "TELEGRAM_BOT_TOKEN": fake.token}
        result = hermes(pyz, world, "telegram", "send", "--chat-id", "5150", "Summarise", env=env)
        assert result == (0, "", "")
        assert [m.text for m in fake.messages(5150)] == ["The alerts were quiet today."]
        fake.assert_clean()


# --- the host cannot get in --------------------------------------------------------------------


def test_host_packages_and_pth_hooks_are_not_used(pyz, world, server, tmp_path):
    """A site dir whose .pth imports a fake requests/certifi, with a chardet that must not load."""
    home = Path(tmp_path / "user-home")
    minor = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    site = home / ".local" / "lib" / minor / "site-packages"  # the user site dir, processed
    for name in ("requests", "certifi", "urllib3", "yaml", "chardet", "simplejson"):
        (site / name).mkdir(parents=True)
        (site / name / "__init__.py").write_text(
            "raise RuntimeError('host package imported')\n" if name != "requests" else ""
        )
    (site / "certifi" / "__init__.py").write_text("def where():\n    return '/nonexistent'\n")
    (site / "hook.pth").write_text("import requests, certifi\n")
    server.reply(Reply(parts=answer("isolated")))
    cfg = config(tmp_path, provider={"base_url": server.url, "model": "m"})
    env = {"HOME": str(home)}
    probe = subprocess.run(
        [PY, "-c", "import requests; print(requests.__file__)"],
        env={**world, **env},
        capture_output=True,
        text=True,
    )
    assert str(site) in probe.stdout, "the fake host site dir is not in effect"
    code, out, err = hermes(pyz, world, "--config", cfg, "hi", flags=(), env=env)
    assert (code, out, err) == (0, "isolated\n", "")


def test_certifi_without_a_system_ca_file(pyz, world, tmp_path):
    """No system CA file: certifi's CAs are used from memory, and nothing is written."""
    code = (
        f"import sys; sys.path.insert(0, {str(pyz)!r}); import certifi.core as c; "
        "c._system_file = lambda: None; import os; "
        "from hermes_min import connection; connection._system_ca_file = lambda: None; "
        "context = connection.bundled_ca_context(); "
        "print(c.where(), os.path.exists(c.where()), len(context.get_ca_certs()) > 50)"
    )
    cache = tmp_path / "cache"
    run = subprocess.run(
        [PY, "-I", "-S", "-c", code],
        env={**world, "XDG_CACHE_HOME": str(cache)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.stdout.split() == [
        "/nonexistent/hermes.pyz/certifi-is-in-memory/cacert.pem",
        "False",
        "True",
    ], run.stderr
    assert not cache.exists()
    assert os.listdir(world["HOME"]) == os.listdir(world["TMPDIR"]) == []
