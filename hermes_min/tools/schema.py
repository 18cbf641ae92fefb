"""A tool: a Python callable and the JSON Schema the model sees, built from its signature."""

from __future__ import annotations

import inspect
import json
import re
import sys
import typing
from dataclasses import dataclass, replace
from typing import Any, Callable

from .docstrings import parse_docstring
from .validate import json_type

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what the chat-completions API accepts
_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}


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
    summary, param_docs = parse_docstring(inspect.getdoc(func) or "")
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
        kinds = {json_type(a) for a in args}
        return {**({"type": kinds.pop()} if len(kinds) == 1 else {}), "enum": list(args)}
    raise TypeError(f"unsupported annotation {annotation!r} for {where}; pass parameters=")


def _is_json(value: Any) -> bool:
    """Whether `value` can appear in a JSON Schema as it is."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
