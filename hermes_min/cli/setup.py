"""`hermes config init|path|show`: write the documented config, say where it is, show what
is in effect and where each setting came from."""

from __future__ import annotations

import argparse
import errno
import json
import os
import pkgutil
import sys
from pathlib import Path

from ..config import config_path, describe
from ..errors import HermesError, UsageError
from ..visible import printable
from .console import EXIT_OK, isatty, print_json, say
from .settings import load

TEMPLATE = "config_template.yaml"  # the repository's config.yaml, shipped in the package


def config(args: argparse.Namespace) -> int:
    """`hermes config init|path|show`."""
    if args.action == "init":
        return _init(args)
    if args.action == "path":
        path, _ = config_path(args.config, os.environ)
        print(path)
        if not path.exists():
            say("it does not exist yet: hermes config init writes the documented one there")
        return EXIT_OK
    return _show(args)


def template() -> bytes:
    """The documented config, read from the package (a directory or hermes.pyz alike)."""
    data = pkgutil.get_data("hermes_min", TEMPLATE)
    if data is None:  # a loader that cannot read data files: a broken install
        raise HermesError(f"the package has no {TEMPLATE}: reinstall hermes")
    return data


def _init(args: argparse.Namespace) -> int:
    """Write the template to the config path: 0600, in a 0700 folder, never over a file."""
    path, _ = config_path(args.config, os.environ)
    text = template()
    try:
        _folders(path.parent)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise UsageError(
            f"{path} already exists; hermes config init never overwrites it "
            "(hermes config show says what it sets)"
        ) from None
    except OSError as exc:
        raise HermesError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(text)
    except OSError as exc:
        _remove(path)  # half a template is worse than none: the next init may try again
        raise HermesError(f"cannot write {path}: {exc.strerror}") from None
    say(f"wrote {path}: set provider.base_url (and a key) there, or pass them as flags")
    return EXIT_OK


def _folders(folder: Path) -> None:
    """Missing parent folders, 0700 (the config will hold key file paths, maybe keys)."""
    for parent in reversed([folder, *folder.parents]):
        if not parent.is_dir():
            try:
                parent.mkdir(mode=0o700)
            except FileExistsError:
                pass  # made meanwhile (or a file: the open below says so)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            say(f"could not remove the partial {path}: {exc.strerror}")


def _show(args: argparse.Namespace) -> int:
    """The settings in effect, secrets masked, each with where it came from."""
    settings = load(args)
    rows = describe(settings)
    path, _ = config_path(args.config, os.environ)
    if args.json:
        print_json(
            {
                "config_file": str(path),
                "config_file_read": settings.source is not None,
                "settings": [{"key": k, "value": v, "from": o} for k, v, o in rows],
            }
        )
        return EXIT_OK
    show = printable if isatty(sys.stdout) else str
    state = "read" if settings.source is not None else "does not exist: defaults apply"
    print(show(f"# config file: {path} ({state})"))
    shown = [json.dumps(value, ensure_ascii=False) for _, value, _ in rows]
    width = max(len(key) for key, _, _ in rows)
    column = min(max(len(text) for text in shown), 30)  # a long value pushes only its origin
    for (key, _, origin), text in zip(rows, shown):
        if settings.source is not None:  # the header names the file once
            origin = origin.replace(f"file {settings.source}", "file")
        print(show(f"{key:<{width}}  {text:<{column}}  # {origin}"))
    return EXIT_OK
