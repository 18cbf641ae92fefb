"""The import graph: one direction (entry points -> features -> core), no cycle, every lazy
import listed with its reason. Read from the source with ast, function-level imports too."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hermes_min"

# The layers, lowest first. A module may import its own layer and the ones below it.
CORE, FEATURES, COMMANDS = 0, 1, 2
FEATURE_PACKAGES = ("hermes_min.telegram", "hermes_min.transports")
COMMAND_PACKAGES = ("hermes_min.cli", "hermes_min.__main__")

# Imports inside functions, each with why it is not at the top of its module. An import
# that moves into a function must be added here, with a reason a reviewer accepts.
LAZY = {
    ("hermes_min.cli.dispatch", "hermes_min.cli.ask"): "start-up: -h and --version load no "
    "requests, yaml or sqlite; each command loads only its own module",
    ("hermes_min.cli.dispatch", "hermes_min.cli.telegram"): "start-up: only the telegram "
    "commands load the Bot API client",
    ("hermes_min.cli.dispatch", "hermes_min.cli.history"): "start-up: `hermes history` "
    "loads no requests",
    ("hermes_min.cli.dispatch", "hermes_min.cli.repl"): "start-up: only `hermes chat` "
    "loads the REPL",
    ("hermes_min.cli.dispatch", "hermes_min.cli.setup"): "start-up: only `hermes config` "
    "loads the template and the settings table",
    ("hermes_min.cli.parser", "hermes_min._bundled"): "exists only inside hermes.pyz",
    ("hermes_min.cli.repl", "readline"): "not on every platform, and only for a terminal",
    ("hermes_min.cli.telegram", "hermes_min.telegram.streamer"): "start-up: a quiet "
    "`telegram poll --once` from cron never renders or streams anything",
    ("hermes_min.telegram.handler", "hermes_min.telegram.streamer"): "start-up: the bot "
    "loads the streamer at the first message it answers",
    ("hermes_min.config", "yaml"): "start-up: --version and -h read no config",
    ("hermes_min.connection", "certifi"): "only when no CA file is found (inside hermes.pyz)",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, inside a function) for every import in the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lazy = {
        id(node)
        for function in ast.walk(tree)
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
        for node in ast.walk(function)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in lazy) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found += [(target, id(node) in lazy) for target in _targets(node, package)]
    return found


def _targets(node: ast.ImportFrom, package: str) -> list[str]:
    """The modules a `from X import a, b` names: X itself, or X.a where a is a submodule."""
    if node.level:
        base = package.split(".")
        base = base[: len(base) - node.level + 1]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    named = [f"{source}.{alias.name}" for alias in node.names]
    submodules = [target for target in named if target in modules]
    return submodules or [source]


def graph() -> dict[str, list[tuple[str, bool]]]:
    return {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def inside(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def layer(module: str) -> int:
    if inside(module, COMMAND_PACKAGES):
        return COMMANDS
    if inside(module, FEATURE_PACKAGES):
        return FEATURES
    return CORE


def ours(module: str) -> bool:
    return module == "hermes_min" or module.startswith("hermes_min.")


def test_no_module_imports_a_higher_layer():
    wrong = [
        f"{module} imports {target}"
        for module, found in graph().items()
        for target, _ in found
        if ours(target) and layer(target) > layer(module)
    ]
    assert wrong == []


def test_nothing_outside_the_command_line_imports_it():
    wrong = [
        f"{module} imports {target}"
        for module, found in graph().items()
        for target, _ in found
        if inside(target, ("hermes_min.cli",)) and layer(module) != COMMANDS
    ]
    assert wrong == []


def test_the_two_features_stay_apart():
    """The terminal outputs know nothing of Telegram, and Telegram nothing of them."""
    wrong = [
        f"{module} imports {target}"
        for module, found in graph().items()
        for target, _ in found
        if layer(module) == FEATURES
        and layer(target) == FEATURES
        and module.split(".")[1] != target.split(".")[1]
    ]
    assert wrong == []


def test_there_is_no_cycle_function_level_imports_included():
    edges = {m: {t for t, _ in found if ours(t) and t != m} for m, found in graph().items()}
    cycle = _find_cycle(edges)
    assert cycle is None, " -> ".join(cycle or [])


def test_every_lazy_import_is_listed_with_its_reason():
    lazy = {
        (module, target)
        for module, found in graph().items()
        for target, inside in found
        if inside and target != "__future__"
    }
    assert lazy == set(LAZY)
    assert all(len(reason) > 20 for reason in LAZY.values())


def _find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle in the directed graph, as a path that ends where it starts; None if none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


@pytest.mark.parametrize(
    "edges, cyclic",
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, False),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
        ({"a": {"a2"}, "a2": {"b"}, "b": {"a2"}}, True),
    ],
)
def test_the_cycle_finder_finds_cycles(edges, cyclic):
    assert (_find_cycle(edges) is not None) is cyclic


def test_the_import_reader_sees_relative_and_lazy_imports(tmp_path):
    """The checks above are only as good as the reader: it must see these forms."""
    found = dict(imports(PACKAGE / "cli" / "dispatch.py"))
    assert found["hermes_min.cli.parser"] is False  # from .parser import ...
    assert found["hermes_min.cli.ask"] is True  # from . import ask, inside a function
    assert dict(imports(PACKAGE / "telegram" / "handler.py"))["hermes_min.errors"] is False


@pytest.mark.parametrize(
    "argv, unwanted",
    [
        (["--version"], ("requests", "yaml", "sqlite3", "hermes_min.config")),
        (["history"], ("requests", "urllib3", "hermes_min.client", "hermes_min.agent")),
    ],
)
def test_light_commands_load_nothing_heavy(tmp_path, argv, unwanted):
    """Start-up: these commands must not pay for what they do not use."""
    script = (
        "import sys\n"
        "from hermes_min.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted(m for m in {unwanted!r} if m in sys.modules))\n"
    )
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
