"""Tools the agent can call: schemas from signatures, loading by name, running within limits.

A tool is a plain Python callable. `tool()` builds its JSON Schema from the signature, type
hints and docstring (or takes one given explicitly); `load_tool("module:function")` imports
one by name; `run_tool()` checks the model's arguments and runs the call in a worker thread
with a timeout and an interrupt, always returning a `ToolResult` instead of raising.
"""

from __future__ import annotations

from .builtins import BUILTINS, READ_LIMIT, make_read_file, now
from .loading import load_tool
from .run import MAX_CHARS, ToolResult, run_tool
from .schema import Tool, tool
from .validate import validate

__all__ = [
    "BUILTINS",
    "MAX_CHARS",
    "READ_LIMIT",
    "Tool",
    "ToolResult",
    "load_tool",
    "make_read_file",
    "now",
    "run_tool",
    "tool",
    "validate",
]
