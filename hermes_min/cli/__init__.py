"""The `hermes` command line: parsing, dispatch, and one module per group of commands."""

from __future__ import annotations

from .dispatch import main

__all__ = ["main"]
