"""Runs one tool call: arguments checked, a worker thread, a timeout and an interrupt."""

from __future__ import annotations

import inspect
import json
import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

from ..redact import redact
from .schema import Tool
from .validate import json_type, type_fits, validate

log = logging.getLogger(__name__)

MAX_CHARS = 50_000  # a tool result longer than this is cut before it reaches the model


@dataclass(frozen=True)
class ToolResult:
    """What a tool call produced: the text for the model, and whether it worked."""

    ok: bool
    content: str
    interrupted: bool = False


def run_tool(
    tool: Tool,
    arguments: str,
    *,
    timeout: float,
    cancel: threading.Event | None = None,
    max_chars: int = MAX_CHARS,
    secrets: tuple[str, ...] = (),
) -> ToolResult:
    """Check the model's JSON arguments and run the tool; never raises for the tool's faults.

    The call runs in a daemon thread. Python cannot kill a thread, so one that outlives
    `timeout` or `cancel` is abandoned: it keeps running, and its result is dropped. What
    the model gets has `secrets` (and anything shaped like a key) masked: it goes to the
    provider, into the chat and into the store.
    """
    kwargs = _check_arguments(tool, arguments)
    if isinstance(kwargs, str):
        return ToolResult(False, _cut(redact(kwargs, secrets), max_chars))
    call = _Call(tool, {**_fill_optional(tool, kwargs), **kwargs})
    result = call.run(timeout, cancel) or call.result()
    # Masked before the cut, so a cut cannot leave part of a secret unmasked.
    return replace(result, content=_cut(redact(result.content, secrets), max_chars))


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
        kind = json_type(value)
        return f"error: the arguments must be a JSON object, not {kind}: {_excerpt(arguments)}"
    return value


def _excerpt(text: str, limit: int = 120) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _drop_nulls(kwargs: dict, schema: dict) -> dict:
    """Treat null for an optional parameter that does not take null as "not given"."""
    required, properties = schema.get("required", ()), schema.get("properties", {})

    def takes_null(key: str) -> bool:
        return type_fits(None, properties.get(key, {}).get("type"))

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
