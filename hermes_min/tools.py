"""Tools the agent can call: schemas from signatures, loading by name, running within limits.

A tool is a plain Python callable. `tool()` builds its JSON Schema from the signature, type
hints and docstring (or takes one given explicitly); `load_tool("module:function")` imports
one by name; `run_tool()` checks the model's arguments and runs the call in a worker thread
with a timeout and an interrupt, always returning a `ToolResult` instead of raising.
"""

from __future__ import annotations

import codecs
import datetime
import importlib
import inspect
import json
import logging
import os
import re
import sys
import threading
import time
import typing
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from .errors import ConfigError

__all__ = [
    "BUILTINS",
    "MAX_CHARS",
    "Tool",
    "ToolResult",
    "load_tool",
    "make_read_file",
    "now",
    "run_tool",
    "tool",
    "validate",
]

log = logging.getLogger(__name__)

MAX_CHARS = 50_000  # a tool result longer than this is cut before it reaches the model
READ_LIMIT = 1_000_000  # read_file never reads more than this, whatever max_bytes says
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what the chat-completions API accepts
_SPEC = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}
_SECTION = re.compile(r"\s*(Args|Arguments|Parameters|Returns|Yields|Raises|Examples?|Notes?):\s*")
_ARGS_HEADER = re.compile(r"\s*(Args|Arguments|Parameters):\s*")
_PARAM_LINE = re.compile(r"\s*:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)")
_ARG_LINE = re.compile(r"\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)")


@dataclass(frozen=True)
class Tool:
    """A callable the model may call, with the JSON Schema of its keyword arguments."""

    name: str
    description: str
    parameters: dict
    func: Callable[..., Any]

    def schema(self) -> dict:
        """The entry for the `tools` list of a chat-completions request."""
        function = {"name": self.name, "description": self.description}
        return {"type": "function", "function": {**function, "parameters": self.parameters}}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function directly, so a decorated function still works as one."""
        return self.func(*args, **kwargs)


@dataclass(frozen=True)
class ToolResult:
    """What a tool call produced: the text for the model, and whether it worked."""

    ok: bool
    content: str
    interrupted: bool = False


# --- building a Tool -------------------------------------------------------------------------


def tool(
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: dict | None = None,
) -> Any:
    """Wrap `func` as a Tool; works as `@tool`, `@tool(name=...)` and `tool(func)`."""
    if func is None:
        return lambda f: tool(f, name=name, description=description, parameters=parameters)
    if isinstance(func, Tool):
        changes = {"name": name, "description": description, "parameters": parameters}
        return replace(func, **{k: v for k, v in changes.items() if v is not None})
    if not callable(func):
        raise TypeError(f"a tool must be callable, not {type(func).__name__}")
    name = name or getattr(func, "__name__", "")
    if not _NAME.fullmatch(name):
        raise ValueError(f"tool name {name!r} must be 1-64 letters, digits, _ or -; pass name=")
    summary, param_docs = _parse_docstring(inspect.getdoc(func) or "")
    if parameters is None:
        parameters = _signature_schema(func, param_docs)
    elif not isinstance(parameters, dict) or parameters.get("type") != "object":
        raise ValueError(f"parameters of tool {name!r} must be a JSON Schema with type object")
    return Tool(name, summary if description is None else description, parameters, func)


def _signature_schema(func: Callable[..., Any], param_docs: dict[str, str]) -> dict:
    """The JSON Schema object for the keyword arguments `func` accepts."""
    properties: dict[str, dict] = {}
    required: list[str] = []
    hints = _type_hints(func)
    for param in inspect.signature(func).parameters.values():
        _check_kind(func, param)
        where = f"parameter {param.name!r} of {getattr(func, '__name__', func)!r}"
        annotation = hints.get(param.name, param.annotation)
        schema, optional = _annotation_schema(annotation, where)
        if param.name in param_docs:
            schema["description"] = param_docs[param.name]
        if param.default is not param.empty:
            if param.default is not None and _is_json(param.default):
                schema["default"] = param.default  # not None: the type would not admit it
        elif not optional:
            required.append(param.name)
        properties[param.name] = schema
    result = {"type": "object", "properties": properties, "required": required}
    return {**result, "additionalProperties": False}


def _check_kind(func: Callable[..., Any], param: inspect.Parameter) -> None:
    """Reject parameters the model cannot fill with named JSON values."""
    if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
        star = "*" if param.kind is param.VAR_POSITIONAL else "**"
        raise TypeError(
            f"{getattr(func, '__name__', func)!r} takes {star}{param.name}; a tool needs named "
            "parameters (or pass parameters= with an explicit schema)"
        )
    if param.kind is param.POSITIONAL_ONLY:
        raise TypeError(f"parameter {param.name!r} is positional-only; tools are called by name")


def _type_hints(func: Callable[..., Any]) -> dict[str, Any]:
    """Evaluated annotations, also for `X | None` strings that Python 3.9 cannot evaluate."""
    try:
        return typing.get_type_hints(func)
    except Exception:  # noqa: BLE001 - fall back to one parameter at a time below
        pass
    namespace = _namespace(func)
    hints = {}
    for param in inspect.signature(func).parameters.values():
        if isinstance(param.annotation, str):
            where = f"parameter {param.name!r}"
            hints[param.name] = _eval_annotation(param.annotation, namespace, where)
    return hints


def _namespace(func: Callable[..., Any]) -> dict:
    """The globals annotations of `func` are evaluated in."""
    target = getattr(func, "func", func)  # functools.partial keeps the function here
    found = getattr(inspect.unwrap(target), "__globals__", None)
    module = sys.modules.get(getattr(func, "__module__", "") or "")
    return found if found is not None else vars(module) if module else {}


def _eval_annotation(text: str, namespace: dict, where: str) -> Any:
    """Evaluate one annotation string, rebuilding `X | None` as a typing.Union on 3.9."""
    try:
        return eval(text, namespace)  # the same evaluation typing.get_type_hints does
    except TypeError:  # 3.9: "unsupported operand type(s) for |"; parsed below
        pass
    except Exception as exc:
        raise TypeError(f"cannot evaluate annotation {text!r} of {where}: {exc}") from None
    parts = _split_top_level(text)
    if len(parts) > 1:
        return typing.Union[tuple(_eval_annotation(p, namespace, where) for p in parts)]
    inner = re.fullmatch(r"\s*(?:typing\.)?(?:list|List)\[(.*)\]\s*", text)
    if inner:
        return list[_eval_annotation(inner.group(1), namespace, where)]
    raise TypeError(f"cannot evaluate annotation {text!r} of {where}")


def _split_top_level(text: str) -> list[str]:
    """Split an annotation string at the `|` signs outside brackets."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += (char in "[(") - (char in "])")
        if char == "|" and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def _annotation_schema(annotation: Any, where: str) -> tuple[dict, bool]:
    """The schema for one parameter, and whether its annotation is Optional."""
    args = typing.get_args(annotation)
    if _is_union(annotation):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return _type_schema(rest[0], where), True
        raise TypeError(f"unsupported union {annotation!r} for {where}; pass parameters=")
    return _type_schema(annotation, where), False


def _is_union(annotation: Any) -> bool:
    """True for Optional[X], Union[...] and (3.10+) X | Y."""
    origin = typing.get_origin(annotation)
    return origin is typing.Union or type(annotation).__name__ == "UnionType"


def _type_schema(annotation: Any, where: str) -> dict:
    """The JSON Schema for a (non-Optional) annotation."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation in _SCALARS:
        return {"type": _SCALARS[annotation]}
    if annotation is inspect.Parameter.empty or annotation is Any:
        return {}  # no annotation: any JSON value
    if annotation is list or origin is list:
        return {"type": "array", **({"items": _type_schema(args[0], where)} if args else {})}
    if annotation is dict or origin is dict:
        return {"type": "object"}
    if origin is typing.Literal:
        kinds = {_json_type(a) for a in args}
        return {**({"type": kinds.pop()} if len(kinds) == 1 else {}), "enum": list(args)}
    raise TypeError(f"unsupported annotation {annotation!r} for {where}; pass parameters=")


def _is_json(value: Any) -> bool:
    """Whether `value` can appear in a JSON Schema as it is."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The first paragraph, and parameter descriptions from `Args:` or `:param x:` lines."""
    lines = doc.splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or _SECTION.fullmatch(line) or _PARAM_LINE.match(line):
            break
        summary.append(line.strip())
    return " ".join(summary), {**_google_args(lines), **_sphinx_params(lines)}


def _google_args(lines: list[str]) -> dict[str, str]:
    """Descriptions from a Google-style `Args:` section; deeper lines continue an entry."""
    found: dict[str, str] = {}
    header = next((i for i, line in enumerate(lines) if _ARGS_HEADER.fullmatch(line)), None)
    if header is None:
        return found
    base, indent, current = _indent(lines[header]), None, None
    for line in lines[header + 1 :]:
        if not line.strip():
            continue
        if _indent(line) <= base:
            break  # the next section
        indent = _indent(line) if indent is None else indent
        entry = _ARG_LINE.fullmatch(line.strip())
        if _indent(line) == indent and entry:
            current = entry.group(1)
            found[current] = entry.group(2).strip()
        elif current:
            found[current] += " " + line.strip()
    return found


def _sphinx_params(lines: list[str]) -> dict[str, str]:
    """Descriptions from `:param name:` lines; indented lines after one continue it."""
    found: dict[str, str] = {}
    current = None
    for line in lines:
        match = _PARAM_LINE.match(line)
        if match:
            current = match.group(1)
            found[current] = match.group(2).strip()
        elif current and line.strip() and not line.strip().startswith(":"):
            found[current] = f"{found[current]} {line.strip()}".strip()
        else:
            current = None
    return found


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


# --- loading tools by name -------------------------------------------------------------------


def load_tool(spec: str, *, allowed_dirs: Iterable[str] = ()) -> Tool:
    """The tool named `module:function`, or a built-in `hermes:now` / `hermes:read_file`.

    The module is imported from sys.path as it is; the current directory is not added, so
    a module of your own goes on PYTHONPATH. Every failure is a one-line ConfigError.
    """
    if not isinstance(spec, str) or not _SPEC.fullmatch(spec):
        _fail(spec, "expected module:function, e.g. mytools:weather or hermes:now")
    module_name, attr = spec.split(":")
    if module_name == "hermes":
        if attr not in BUILTINS:
            _fail(spec, f"no such built-in tool; built-ins are {', '.join(sorted(BUILTINS))}")
        return BUILTINS[attr](allowed_dirs)
    target = _resolve(spec, _import(spec, module_name), attr)
    if isinstance(target, Tool):
        return target
    if not callable(target):
        _fail(spec, f"{attr} is a {type(target).__name__}, not a function")
    try:
        return tool(target, name=attr.rsplit(".", 1)[-1])
    except (TypeError, ValueError) as exc:
        _fail(spec, str(exc))


def _import(spec: str, module_name: str) -> Any:
    """Import the module of a spec, turning every way that fails into a ConfigError."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            _fail(spec, f"no module named {exc.name!r} (put its directory on PYTHONPATH)")
        _fail(spec, f"importing {module_name} failed: ModuleNotFoundError: {exc}")
    except Exception as exc:  # anything the module's own code raises while importing
        _fail(spec, f"importing {module_name} failed: {type(exc).__name__}: {exc}")


def _resolve(spec: str, module: Any, attr: str) -> Any:
    """Follow a dotted attribute path inside the module."""
    target = module
    for part in attr.split("."):
        if not hasattr(target, part):
            _fail(spec, f"{module.__name__} has no attribute {attr!r}")
        target = getattr(target, part)
    return target


def _fail(spec: Any, problem: str) -> typing.NoReturn:
    """Raise the one-line ConfigError for the `tools` key."""
    line = " ".join(f"tools: cannot load {spec!r}: {problem}".split())
    raise ConfigError(line, key="tools") from None


# --- built-in tools --------------------------------------------------------------------------

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def now() -> str:
    """Return the current local date and time (ISO 8601 with UTC offset) and the weekday."""
    moment = datetime.datetime.now().astimezone()
    # Weekday names from a table: strftime("%A") would follow the process locale.
    return f"{moment.isoformat(timespec='seconds')} ({_WEEKDAYS[moment.weekday()]})"


def make_read_file(allowed_dirs: Iterable[str]) -> Tool:
    """The read_file tool, limited to files whose real path is under `allowed_dirs`."""
    roots = [Path(d).expanduser().resolve() for d in allowed_dirs]

    def read_file(path: str, max_bytes: int = 100_000) -> str:
        """Read a UTF-8 text file from a directory the user allowed.

        Args:
            path: the file's path, absolute or relative to the current directory
            max_bytes: read at most this many bytes; a longer file is cut with a note
        """
        real = _allowed_path(path, roots)
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        with open(real, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            data = file.read(min(max_bytes, READ_LIMIT) + 1)
        return _text(path, data, min(max_bytes, READ_LIMIT), size)

    return tool(read_file)


def _allowed_path(path: str, roots: list[Path]) -> Path:
    """The real path of `path` (symlinks and `..` resolved) if it is under a root."""
    if not roots:
        raise PermissionError(
            "reading files is not allowed: no directories are configured "
            "(list them under agent.read_dirs in config.yaml)"
        )
    real = Path(path).expanduser().resolve()
    if not any(real == root or root in real.parents for root in roots):
        allowed = ", ".join(str(root) for root in roots)
        raise PermissionError(f"{path} is outside the allowed directories ({allowed})")
    if not real.is_file():
        raise FileNotFoundError(f"{path} is not a regular file")
    return real


def _text(path: str, data: bytes, limit: int, size: int) -> str:
    """Decode what was read, refusing binary files and noting a cut."""
    if b"\0" in data:
        raise ValueError(f"{path} is a binary file (it contains NUL bytes); only text is read")
    cut = len(data) > limit
    try:  # an incremental decoder leaves a character split by the cut out instead of failing
        text = codecs.getincrementaldecoder("utf-8")().decode(data[:limit], final=not cut)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if cut:
        text += f"\n[truncated: showed the first {limit} of {size} bytes]"
    return text


BUILTINS: dict[str, Callable[[Iterable[str]], Tool]] = {
    "now": lambda allowed_dirs: tool(now),
    "read_file": make_read_file,
}


# --- checking arguments ----------------------------------------------------------------------

_JSON_TYPES = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}


def _json_type(value: Any) -> str:
    """The JSON type name of a decoded JSON value."""
    if isinstance(value, bool):
        return "boolean"  # before int: bool is a subclass of int
    names = {str: "string", int: "integer", float: "number", list: "array", dict: "object"}
    return next((n for t, n in names.items() if isinstance(value, t)), "null")


def validate(value: Any, schema: dict, where: str = "") -> list[str]:
    """Problems of `value` against the JSON Schema subset tools use; empty when it fits.

    Checked: type, enum, properties, required, additionalProperties, items. Other keywords
    of an explicit schema are passed to the model but not checked here. `where` is the path
    of `value` inside the arguments ("" for the arguments themselves).
    """
    label = repr(where) if where else "the arguments"
    if not _type_fits(value, schema.get("type")):
        return [f"{label} must be {_type_words(schema['type'])}, not {_json_type(value)}"]
    if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
        choices = ", ".join(json.dumps(e, ensure_ascii=False) for e in schema["enum"])
        return [f"{label} must be one of {choices}, not {json.dumps(value, ensure_ascii=False)}"]
    if isinstance(value, dict):
        return _object_problems(value, schema, f"{where}." if where else "")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        items = [validate(v, schema["items"], f"{where}[{i}]") for i, v in enumerate(value)]
        return [problem for found in items for problem in found]
    return []


def _object_problems(value: dict, schema: dict, prefix: str) -> list[str]:
    """Missing, unknown and ill-typed keys of an object whose keys' paths start `prefix`."""
    properties = schema.get("properties", {})
    required = [k for k in schema.get("required", ()) if k not in value]
    problems = [f"missing required argument {prefix + k!r}" for k in required]
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if key in properties:
            problems += validate(item, properties[key], prefix + key)
        elif extra is False:
            known = ", ".join(properties) or "none"
            problems.append(f"unknown argument {prefix + key!r} (expected: {known})")
        elif isinstance(extra, dict):
            problems += validate(item, extra, prefix + key)
    return problems


def _type_fits(value: Any, expected: Any) -> bool:
    """Whether `value` has the JSON type (or one of the types) `expected` names."""
    if expected is None:
        return True
    names = [expected] if isinstance(expected, str) else list(expected)
    kind = _json_type(value)
    return any(kind == n or (n == "number" and kind == "integer") for n in names)


def _type_words(expected: Any) -> str:
    names = [expected] if isinstance(expected, str) else list(expected)
    return " or ".join(f"an {n}" if n[0] in "aeiou" else f"a {n}" for n in names)


def _same(value: Any, choice: Any) -> bool:
    """JSON equality: true is not 1 and 1 is not true."""
    return value == choice and isinstance(value, bool) == isinstance(choice, bool)


# --- running a call --------------------------------------------------------------------------


def run_tool(
    tool: Tool,
    arguments: str,
    *,
    timeout: float,
    cancel: threading.Event | None = None,
    max_chars: int = MAX_CHARS,
) -> ToolResult:
    """Check the model's JSON arguments and run the tool; never raises for the tool's faults.

    The call runs in a daemon thread. Python cannot kill a thread, so one that outlives
    `timeout` or `cancel` is abandoned: it keeps running, and its result is dropped.
    """
    kwargs = _check_arguments(tool, arguments)
    if isinstance(kwargs, str):
        return ToolResult(False, _cut(kwargs, max_chars))
    call = _Call(tool, {**_fill_optional(tool, kwargs), **kwargs})
    result = call.run(timeout, cancel) or call.result()
    return replace(result, content=_cut(result.content, max_chars))


def _check_arguments(tool: Tool, arguments: str) -> dict | str:
    """The keyword arguments for the call, or the error text that explains why not."""
    kwargs = _parse_arguments(arguments)
    if isinstance(kwargs, str):
        return kwargs
    kwargs = _drop_nulls(kwargs, tool.parameters)
    problems = validate(kwargs, tool.parameters)
    if problems:
        return f"error: the arguments do not fit {tool.name}: {'; '.join(problems)}"
    return kwargs


def _parse_arguments(arguments: str) -> dict | str:
    """The arguments as a dict, or the error text to report: never a repaired guess."""
    if arguments is None or not arguments.strip():
        return {}  # some servers send "" for a call without arguments
    try:
        value = json.loads(arguments)
    except ValueError as exc:
        return f"error: the arguments were not valid JSON ({exc}): {_excerpt(arguments)}"
    if not isinstance(value, dict):
        kind = _json_type(value)
        return f"error: the arguments must be a JSON object, not {kind}: {_excerpt(arguments)}"
    return value


def _excerpt(text: str, limit: int = 120) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _drop_nulls(kwargs: dict, schema: dict) -> dict:
    """Treat null for an optional parameter that does not take null as "not given"."""
    required, properties = schema.get("required", ()), schema.get("properties", {})

    def takes_null(key: str) -> bool:
        return _type_fits(None, properties.get(key, {}).get("type"))

    return {k: v for k, v in kwargs.items() if v is not None or k in required or takes_null(k)}


def _fill_optional(tool: Tool, kwargs: dict) -> dict:
    """None for each Optional parameter without a default that the model left out."""
    try:
        params = inspect.signature(tool.func).parameters.values()
    except (TypeError, ValueError):
        return {}
    optional = set(tool.parameters.get("properties", {})) - set(tool.parameters.get("required", ()))
    return {p.name: None for p in params if p.default is p.empty and p.name in optional}


class _Call:
    """One tool call on a daemon thread; `done` is set when it returns or raises."""

    def __init__(self, tool: Tool, kwargs: dict) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._thread = threading.Thread(
            target=self._target,
            args=(tool.func, kwargs),
            name=f"hermes-tool-{tool.name}",
            daemon=True,
        )
        self.name = tool.name

    def _target(self, func: Callable[..., Any], kwargs: dict) -> None:
        try:
            self.value = func(**kwargs)
        except BaseException as exc:  # a tool's SystemExit must not end the agent either
            self.error = exc
        finally:
            self.done.set()

    def run(self, timeout: float, cancel: threading.Event | None) -> ToolResult | None:
        """Start the call; None once it returned, else the result for a timeout or interrupt."""
        if cancel is not None and cancel.is_set():
            return ToolResult(False, "interrupted before the tool ran", interrupted=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        # No way to wait on two Events at once: wait on `done` (so completion wakes us at
        # once) in 10 ms slices, checking `cancel` between them.
        step = 0.01 if cancel is not None else None
        while not self.done.wait(_remaining(deadline, step)):
            if cancel is not None and cancel.is_set():
                log.debug("tool %s interrupted; its thread is abandoned", self.name)
                return ToolResult(False, "interrupted", interrupted=True)
            if time.monotonic() >= deadline:
                log.debug("tool %s timed out; its thread is abandoned", self.name)
                return ToolResult(False, f"error: {self.name} timed out after {timeout:g} s")
        return None

    def result(self) -> ToolResult:
        """What the finished call returned or raised, as text for the model."""
        if self.error is None:
            return ToolResult(True, _serialise(self.value))
        log.debug("tool %s raised", self.name, exc_info=self.error)
        detail = f": {self.error}" if str(self.error) else ""
        return ToolResult(False, f"error: {type(self.error).__name__}{detail}")


def _remaining(deadline: float, step: float | None) -> float:
    left = max(0.0, deadline - time.monotonic())
    return left if step is None else min(step, left)


def _serialise(value: Any) -> str:
    """A string as it is; anything else as JSON, falling back to str()."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):  # circular data or keys JSON cannot have
        return str(value)


def _cut(text: str, max_chars: int) -> str:
    """`text`, cut to `max_chars` with a note saying how much there was."""
    if len(text) <= max_chars:
        return text
    return f"{text[:max_chars]}\n[truncated: {len(text)} characters, showed the first {max_chars}]"
