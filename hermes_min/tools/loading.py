"""Loads a tool by name: `module:function` from sys.path, or a built-in `hermes:NAME`."""

from __future__ import annotations

import importlib
import re
import typing
from collections.abc import Iterable
from typing import Any

from ..errors import ConfigError
from .builtins import BUILTINS
from .schema import Tool, tool

_SPEC = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


def load_tool(spec: str, *, allowed_dirs: Iterable[str] = (), refused: Iterable[str] = ()) -> Tool:
    """The tool named `module:function`, or a built-in `hermes:now` / `hermes:read_file`.

    `allowed_dirs` and `refused` (glob patterns of files never read) are for read_file.

    The module is imported from sys.path as it is; the current directory is not added, so
    a module of your own goes on PYTHONPATH. Every failure is a one-line ConfigError.
    """
    if not isinstance(spec, str) or not _SPEC.fullmatch(spec):
        _fail(spec, "expected module:function, e.g. mytools:weather or hermes:now")
    module_name, attr = spec.split(":")
    if module_name == "hermes":
        if attr not in BUILTINS:
            _fail(spec, f"no such built-in tool; built-ins are {', '.join(sorted(BUILTINS))}")
        return BUILTINS[attr](allowed_dirs, refused)
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
