"""Tools: schemas from signatures, loading by name, the built-ins, and running within limits."""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys
import threading
import time
from typing import Any, List, Literal, Optional  # noqa: UP035 - the old spellings are tested

import pytest

from hermes_min.errors import ConfigError
from hermes_min.tools import (
    MAX_CHARS,
    Tool,
    ToolResult,
    load_tool,
    make_read_file,
    now,
    run_tool,
    tool,
    validate,
)
from hermes_min.tools.schema import _split_top_level

# This file uses `from __future__ import annotations`, so every annotation below is a string;
# on Python 3.9 the `X | None` ones cannot be evaluated and take the fallback parser.


def properties(func) -> dict:
    return tool(func).parameters["properties"]


# --- schemas ---------------------------------------------------------------------------------


def test_basic_types_map_to_json_types():
    def f(s: str, i: int, x: float, b: bool, d: dict, anything, a: Any):
        """F."""

    assert properties(f) == {
        "s": {"type": "string"},
        "i": {"type": "integer"},
        "x": {"type": "number"},
        "b": {"type": "boolean"},
        "d": {"type": "object"},
        "anything": {},
        "a": {},
    }
    assert tool(f).parameters["required"] == ["s", "i", "x", "b", "d", "anything", "a"]
    assert tool(f).parameters["additionalProperties"] is False


def test_lists_become_arrays_of_their_item_type():
    def f(a: list[int], b: List[str], c: list, d: list[list[float]]):  # noqa: UP006
        """F."""

    assert properties(f) == {
        "a": {"type": "array", "items": {"type": "integer"}},
        "b": {"type": "array", "items": {"type": "string"}},
        "c": {"type": "array"},
        "d": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
    }


def test_optional_and_none_unions_are_not_required():
    def f(
        a: Optional[int],  # noqa: UP045
        b: int | None,
        c: None | str,
        d: list[str] | None,
        e: str,
        g: bool | None,
    ):
        """F."""

    schema = tool(f).parameters
    assert schema["required"] == ["e"]
    assert schema["properties"]["a"] == {"type": "integer"}
    assert schema["properties"]["b"] == {"type": "integer"}
    assert schema["properties"]["c"] == {"type": "string"}
    assert schema["properties"]["d"] == {"type": "array", "items": {"type": "string"}}
    assert schema["properties"]["g"] == {"type": "boolean"}


def test_literal_becomes_an_enum():
    def f(unit: Literal["c", "f"], level: Literal[1, 2, 3], mixed: Literal["a", 1] = "a"):
        """F."""

    assert properties(f) == {
        "unit": {"type": "string", "enum": ["c", "f"]},
        "level": {"type": "integer", "enum": [1, 2, 3]},
        "mixed": {"enum": ["a", 1], "default": "a"},
    }


def test_optional_literal_string_annotation():
    def f(unit: Literal["c", "f"] | None = None):
        """F."""

    assert properties(f) == {"unit": {"type": "string", "enum": ["c", "f"]}}


def test_defaults_are_recorded_and_make_a_parameter_optional():
    def f(city: str, days: int = 3, tags: list[str] = [], note: str | None = None, obj=object()):  # noqa: B006, B008
        """F."""

    schema = tool(f).parameters
    assert schema["required"] == ["city"]
    assert schema["properties"]["days"] == {"type": "integer", "default": 3}
    assert schema["properties"]["tags"]["default"] == []
    # None is not a string and an object is not JSON: neither is written as a default
    assert "default" not in schema["properties"]["note"]
    assert "default" not in schema["properties"]["obj"]


def test_split_top_level_ignores_bars_inside_brackets():
    assert _split_top_level("dict[str, int | None] | None") == ["dict[str, int | None] ", " None"]


def test_google_docstring_gives_description_and_parameter_descriptions():
    def weather(city: str, days: int = 1, unit: str = "c") -> str:
        """Get the weather forecast
        for a city.

        It asks a service nobody has heard of.

        Args:
            city: the city's name,
                in English
            days (int): how many days ahead
            unit: c or f

        Returns:
            the forecast
        """

    made = tool(weather)
    assert made.description == "Get the weather forecast for a city."
    assert made.parameters["properties"]["city"]["description"] == "the city's name, in English"
    assert made.parameters["properties"]["days"]["description"] == "how many days ahead"
    assert made.parameters["properties"]["unit"]["description"] == "c or f"


def test_sphinx_param_lines_give_parameter_descriptions():
    def search(query: str, limit: int = 5):
        """Search the notes.
        :param query: words to look for
            in any order
        :param int limit: at most this many hits
        :returns: the hits
        """

    made = tool(search)
    assert made.description == "Search the notes."
    assert made.parameters["properties"]["query"]["description"] == "words to look for in any order"
    assert made.parameters["properties"]["limit"]["description"] == "at most this many hits"


def test_explicit_name_description_and_parameters_win():
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}

    def f(**kwargs):
        """Docstring."""
        return kwargs

    made = tool(f, name="search", description="Search things.", parameters=schema)
    assert (made.name, made.description, made.parameters) == ("search", "Search things.", schema)


def test_explicit_parameters_must_be_an_object_schema():
    with pytest.raises(ValueError, match="type object"):
        tool(lambda: None, name="x", parameters={"type": "string"})


def test_decorator_forms_all_make_tools():
    @tool
    def plain(a: int) -> int:
        """Double a."""
        return 2 * a

    @tool()
    def called(a: int) -> int:
        """Called."""
        return a

    @tool(name="renamed", description="Other.")
    def original(a: int) -> int:
        """Original."""
        return a

    assert all(isinstance(t, Tool) for t in (plain, called, original))
    assert (original.name, original.description) == ("renamed", "Other.")
    assert plain(4) == 8  # a decorated function still works as one
    assert tool(plain, name="again").name == "again"


def test_schema_is_a_chat_completions_tools_entry():
    @tool
    def ping() -> str:
        """Answer pong."""
        return "pong"

    assert ping.schema() == {
        "type": "function",
        "function": {
            "name": "ping",
            "description": "Answer pong.",
            "parameters": {
                "type": "object",
                "properties": {},
                "required": [],
                "additionalProperties": False,
            },
        },
    }


@pytest.mark.parametrize(
    "source, message",
    [
        ("def f(*args): pass", r"takes \*args"),
        ("def f(a: int, **kw): pass", r"takes \*\*kw"),
        ("def f(a, /): pass", "positional-only"),
        ("def f(a: set): pass", "unsupported annotation .* 'a'"),
        ("def f(a: int | str = 1): pass", "unsupported union"),
        ("def f(a: Missing): pass", "cannot evaluate annotation 'Missing'"),
    ],
)
def test_signatures_a_tool_cannot_have_are_rejected_clearly(source, message):
    namespace: dict = {}
    exec(compile("from __future__ import annotations\n" + source, "<tool>", "exec"), namespace)
    with pytest.raises(TypeError, match=message):
        tool(namespace["f"])


def test_a_name_the_api_would_refuse_is_rejected():
    with pytest.raises(ValueError, match="pass name="):
        tool(lambda: None)
    assert tool(lambda: None, name="noop").name == "noop"


# --- load_tool -------------------------------------------------------------------------------


@pytest.fixture
def modules(tmp_path, monkeypatch):
    """Write modules into a directory on sys.path; forget them afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)

    def write(name: str, source: str) -> None:
        (tmp_path / f"{name}.py").write_text(source, encoding="utf-8")

    yield write
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_load_tool_wraps_a_function(modules):
    modules("ldt_plain", "def shout(text: str) -> str:\n    'Shout it.'\n    return text.upper()\n")
    loaded = load_tool("ldt_plain:shout")
    assert (loaded.name, loaded.description) == ("shout", "Shout it.")
    assert run_tool(loaded, '{"text": "hi"}', timeout=5) == ToolResult(True, "HI")


def test_load_tool_returns_a_tool_as_it_is_and_follows_dotted_names(modules):
    modules(
        "ldt_ready",
        "from hermes_min.tools import tool\n"
        "@tool(name='ready_tool')\n"
        "def ready() -> str:\n    'Ready.'\n    return 'yes'\n"
        "class Box:\n    @staticmethod\n    def inner(n: int) -> int:\n        'Inner.'\n"
        "        return n\n",
    )
    assert load_tool("ldt_ready:ready").name == "ready_tool"
    assert load_tool("ldt_ready:Box.inner").name == "inner"


@pytest.mark.parametrize(
    "spec, source, problem",
    [
        ("no_colon", None, "expected module:function"),
        ("a:b:c", None, "expected module:function"),
        ("", None, "expected module:function"),
        ("ldt_absent_module:f", None, "no module named 'ldt_absent_module'.*PYTHONPATH"),
        ("ldt_deps:f", "import ldt_not_installed\n", "importing ldt_deps failed"),
        ("ldt_boom:f", "raise RuntimeError('no\\nway')\n", "RuntimeError: no way"),
        ("ldt_syntax:f", "def f(:\n", "SyntaxError"),
        ("ldt_attr:g", "def f(): pass\n", "ldt_attr has no attribute 'g'"),
        ("ldt_const:X", "X = 3\n", "X is a int, not a function"),
        ("ldt_star:f", "def f(*a):\n    'F.'\n", r"takes \*a"),
        ("hermes:shell", None, "no such built-in tool; built-ins are now, read_file"),
    ],
)
def test_load_tool_failures_are_one_line_config_errors(modules, spec, source, problem):
    if source is not None:
        modules(spec.split(":")[0], source)
    with pytest.raises(ConfigError) as caught:
        load_tool(spec)
    message = str(caught.value)
    assert caught.value.key == "tools"
    assert "\n" not in message
    assert message.startswith(f"tools: cannot load {spec!r}: ")
    assert re.search(problem, message), message


def test_load_tool_does_not_import_from_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "ldt_cwd_only.py").write_text("def f(): pass\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    with pytest.raises(ConfigError, match="PYTHONPATH"):
        load_tool("ldt_cwd_only:f")


def test_load_tool_knows_the_built_ins(tmp_path):
    assert load_tool("hermes:now").name == "now"
    (tmp_path / "a.txt").write_text("alpha", encoding="utf-8")
    reader = load_tool("hermes:read_file", allowed_dirs=[str(tmp_path)])
    assert reader.name == "read_file"
    assert run_tool(reader, json.dumps({"path": str(tmp_path / "a.txt")}), timeout=5).content == (
        "alpha"
    )


# --- built-ins -------------------------------------------------------------------------------


def test_now_is_iso_8601_with_offset_and_weekday():
    text = now()
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d) \((\w+day)\)", text)
    assert match, text
    moment = datetime.datetime.fromisoformat(match.group(1))
    assert match.group(2) == moment.strftime("%A")
    assert abs((datetime.datetime.now(datetime.timezone.utc) - moment).total_seconds()) < 5


@pytest.fixture
def allowed(tmp_path):
    """An allowed directory with a text file, and a secret file outside it."""
    root = tmp_path / "allowed"
    root.mkdir()
    (root / "notes.txt").write_text("hello ✓\n", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("secret", encoding="utf-8")
    return root


def read(root, path, **extra) -> str:
    return make_read_file([str(root)]).func(str(path), **extra)


def test_read_file_reads_text_under_an_allowed_directory(allowed, monkeypatch):
    assert read(allowed, allowed / "notes.txt") == "hello ✓\n"
    monkeypatch.chdir(allowed)
    assert read(allowed, "notes.txt") == "hello ✓\n"


def test_read_file_refuses_paths_outside(allowed):
    with pytest.raises(PermissionError, match="outside the allowed directories"):
        read(allowed, allowed.parent / "secret.txt")
    (allowed.parent / "allowed2").mkdir()  # a sibling whose name merely starts the same
    (allowed.parent / "allowed2" / "x.txt").write_text("x", encoding="utf-8")
    with pytest.raises(PermissionError):
        read(allowed, allowed.parent / "allowed2" / "x.txt")


def test_read_file_refuses_dotdot_escapes(allowed):
    with pytest.raises(PermissionError):
        read(allowed, f"{allowed}/../secret.txt")


def test_read_file_refuses_symlinks_that_lead_outside(allowed):
    (allowed / "link.txt").symlink_to(allowed.parent / "secret.txt")
    with pytest.raises(PermissionError):
        read(allowed, allowed / "link.txt")


def test_read_file_follows_an_allowed_directory_given_as_a_symlink(allowed, tmp_path):
    (tmp_path / "via").symlink_to(allowed)
    assert read(tmp_path / "via", tmp_path / "via" / "notes.txt") == "hello ✓\n"
    assert read(tmp_path / "via", allowed / "notes.txt") == "hello ✓\n"


def test_read_file_with_no_directories_says_how_to_allow_some(allowed):
    reader = make_read_file([])
    result = run_tool(reader, json.dumps({"path": str(allowed / "notes.txt")}), timeout=5)
    assert not result.ok
    assert "agent.read_dirs" in result.content


def test_read_file_refuses_binary_files_and_non_utf8(allowed):
    (allowed / "blob.bin").write_bytes(b"PK\x03\x04\x00\x00")
    with pytest.raises(ValueError, match="binary"):
        read(allowed, allowed / "blob.bin")
    (allowed / "latin.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        read(allowed, allowed / "latin.txt")


def test_read_file_refuses_what_is_not_a_regular_file(allowed):
    with pytest.raises(FileNotFoundError, match="not a regular file"):
        read(allowed, allowed)
    with pytest.raises(FileNotFoundError):
        read(allowed, allowed / "missing.txt")


def test_read_file_truncates_with_a_note_without_splitting_a_character(allowed):
    (allowed / "long.txt").write_text("é" * 10, encoding="utf-8")  # 20 bytes
    text = read(allowed, allowed / "long.txt", max_bytes=5)
    assert text == "éé\n[truncated: showed the first 5 of 20 bytes]"
    assert read(allowed, allowed / "long.txt", max_bytes=20) == "é" * 10


# --- run_tool --------------------------------------------------------------------------------


@tool
def add(a: int, b: int = 0) -> int:
    """Add two numbers."""
    return a + b


@tool
def describe(name: str, unit: Literal["c", "f"] = "c", note: str | None = None) -> dict:
    """Describe."""
    return {"name": name, "unit": unit, "note": note, "when": datetime.date(2024, 5, 1)}


def test_run_tool_returns_strings_as_they_are():
    shout = tool(lambda text: text.upper(), name="shout")
    assert run_tool(shout, '{"text": "ünï"}', timeout=5) == ToolResult(True, "ÜNÏ")


def test_run_tool_serialises_other_results_as_json():
    assert run_tool(add, '{"a": 2, "b": 3}', timeout=5) == ToolResult(True, "5")
    result = run_tool(describe, '{"name": "Zürich"}', timeout=5)
    assert json.loads(result.content) == {
        "name": "Zürich",
        "unit": "c",
        "note": None,
        "when": "2024-05-01",
    }
    assert "Zürich" in result.content  # not \u escapes


def test_run_tool_falls_back_to_str_for_what_json_cannot_hold():
    loop: list = []
    loop.append(loop)
    assert run_tool(tool(lambda: loop, name="loop"), "", timeout=5) == ToolResult(True, "[[...]]")


@pytest.mark.parametrize(
    "arguments, said",
    [
        ('{"a": 1,', "not valid JSON"),
        ("{'a': 1}", "not valid JSON"),
        ("[1, 2]", "must be a JSON object, not array"),
        ('"a"', "must be a JSON object, not string"),
    ],
)
def test_run_tool_reports_broken_argument_json_with_an_excerpt(arguments, said):
    result = run_tool(add, arguments, timeout=5)
    assert not result.ok and not result.interrupted
    assert said in result.content
    assert repr(arguments) in result.content


def test_run_tool_quotes_only_a_short_excerpt_of_long_broken_json():
    result = run_tool(add, '{"a": "' + "x" * 5000, timeout=5)
    assert "not valid JSON" in result.content
    assert len(result.content) < 300


def test_run_tool_takes_empty_arguments_as_no_arguments():
    assert run_tool(tool(lambda: "ok", name="noargs"), "  ", timeout=5) == ToolResult(True, "ok")
    assert "missing required argument 'a'" in run_tool(add, "", timeout=5).content


def test_run_tool_lists_every_schema_problem():
    result = run_tool(describe, '{"unit": "k", "extra": 1, "note": 5}', timeout=5)
    assert not result.ok
    assert result.content.startswith("error: the arguments do not fit describe: ")
    for problem in (
        "missing required argument 'name'",
        '\'unit\' must be one of "c", "f", not "k"',
        "unknown argument 'extra' (expected: name, unit, note)",
        "'note' must be a string, not integer",
    ):
        assert problem in result.content
    assert "must be an integer, not boolean" in run_tool(add, '{"a": true}', timeout=5).content


def test_run_tool_takes_null_for_an_optional_parameter_as_not_given():
    @tool
    def greet(name: str, title: str | None) -> str:
        """Greet."""
        return f"{title} {name}"

    assert run_tool(greet, '{"name": "Ada", "title": null}', timeout=5).content == "None Ada"
    assert run_tool(greet, '{"name": "Ada"}', timeout=5).content == "None Ada"
    assert not run_tool(greet, '{"name": null}', timeout=5).ok


def test_a_raising_tool_becomes_an_error_text_without_a_traceback(caplog):
    def fail(reason: str) -> str:
        raise ValueError(reason)

    with caplog.at_level(logging.DEBUG, logger="hermes_min.tools"):
        result = run_tool(tool(fail), '{"reason": "no luck"}', timeout=5)
    assert result == ToolResult(False, "error: ValueError: no luck")
    assert any(r.exc_info for r in caplog.records)  # the traceback goes to the debug log
    assert run_tool(
        tool(sys.exit, name="exit", parameters={"type": "object"}), "{}", timeout=5
    ) == (ToolResult(False, "error: SystemExit"))


@pytest.fixture
def never():
    """An Event the test never sets while it runs, released afterwards to end the thread."""
    event = threading.Event()
    yield event
    event.set()


def test_a_tool_that_runs_too_long_times_out(never):
    slow = tool(lambda: never.wait(), name="slow")
    start = time.monotonic()
    result = run_tool(slow, "{}", timeout=0.2)  # the tool never returns: only a timeout ends it
    elapsed = time.monotonic() - start
    assert result == ToolResult(False, "error: slow timed out after 0.2 s")
    assert elapsed >= 0.2  # not before its time (a lower bound: load only lengthens it)


def test_cancel_interrupts_a_running_tool_at_once(never):
    started, cancel = threading.Event(), threading.Event()

    def blocked() -> str:
        started.set()
        never.wait()
        return "too late"

    def interrupter() -> None:
        started.wait(10)
        cancel.set()

    threading.Thread(target=interrupter, daemon=True).start()
    # The tool never returns and the timeout is far off: only the cancel can end the call
    # now, and a timeout would say so (interrupted is False then).
    result = run_tool(tool(blocked), "{}", timeout=60, cancel=cancel)
    assert result.interrupted and not result.ok
    assert started.is_set()


def test_a_cancel_set_before_the_call_does_not_run_the_tool():
    ran = threading.Event()
    cancel = threading.Event()
    cancel.set()
    result = run_tool(
        tool(ran.set, name="mark", parameters={"type": "object"}), "{}", timeout=5, cancel=cancel
    )
    assert result.interrupted
    assert not ran.is_set()


def test_a_fast_tool_with_cancel_given_returns_its_result():
    assert run_tool(add, '{"a": 1}', timeout=5, cancel=threading.Event()) == ToolResult(True, "1")


def test_long_results_are_truncated_with_a_note():
    big = tool(lambda n: "x" * n, name="big", parameters={"type": "object"})
    result = run_tool(big, '{"n": 100}', timeout=5, max_chars=10)
    assert result == ToolResult(
        True, "x" * 10 + "\n[truncated: 100 characters, showed the first 10]"
    )
    huge = run_tool(big, json.dumps({"n": MAX_CHARS + 1}), timeout=5).content
    assert huge.startswith("x" * MAX_CHARS + "\n[truncated: ")


# --- the validator ---------------------------------------------------------------------------


def test_validate_follows_json_types():
    assert validate(1, {"type": "number"}) == []
    assert validate(1.5, {"type": "integer"}) == ["the arguments must be an integer, not number"]
    assert validate(True, {"type": "integer"}) != []
    assert validate(None, {"type": ["string", "null"]}) == []
    assert validate(True, {"enum": [1]}) != []  # true is not 1 in JSON
    assert validate({"k": "v"}, {"type": "object"}) == []


def test_validate_walks_items_and_nested_objects():
    schema = {
        "type": "object",
        "properties": {
            "points": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"x": {"type": "number"}},
                    "required": ["x"],
                },
            }
        },
        "additionalProperties": {"type": "string"},
    }
    problems = validate({"points": [{"x": 1}, {"y": 2}, {"x": "a"}], "tag": 3}, schema)
    assert problems == [
        "missing required argument 'points[1].x'",
        "'points[2].x' must be a number, not string",
        "'tag' must be a string, not integer",
    ]
