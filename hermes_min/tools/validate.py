"""Checks the model's tool arguments against the JSON Schema subset tools use."""

from __future__ import annotations

import json
from typing import Any

_JSON_TYPES = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}


def json_type(value: Any) -> str:
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
    if not type_fits(value, schema.get("type")):
        return [f"{label} must be {_type_words(schema['type'])}, not {json_type(value)}"]
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


def type_fits(value: Any, expected: Any) -> bool:
    """Whether `value` has the JSON type (or one of the types) `expected` names."""
    if expected is None:
        return True
    names = [expected] if isinstance(expected, str) else list(expected)
    kind = json_type(value)
    return any(kind == n or (n == "number" and kind == "integer") for n in names)


def _type_words(expected: Any) -> str:
    names = [expected] if isinstance(expected, str) else list(expected)
    return " or ".join(f"an {n}" if n[0] in "aeiou" else f"a {n}" for n in names)


def _same(value: Any, choice: Any) -> bool:
    """JSON equality: true is not 1 and 1 is not true."""
    return value == choice and isinstance(value, bool) == isinstance(choice, bool)
