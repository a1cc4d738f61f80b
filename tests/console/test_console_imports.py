"""The console's own import graph: screens never import the App, and no console module imports itself
back through others (no cycle, TYPE_CHECKING and function-level imports included).

Read from the source with ``ast`` (every import statement anywhere in a file counts), and checked once
at run time in a fresh interpreter: importing every screen leaves ``console.app`` unimported.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = ROOT / "console"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def console_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(CONSOLE.rglob("*.py")) if "__pycache__" not in p.parts}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every console module ``path`` imports: ``import a.b``, ``from a import b`` (b a module or a
    name), relative imports; at any level of the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in out if m in known}


def import_graph() -> dict[str, set[str]]:
    modules = console_modules()
    known = set(modules)
    return {name: imports_of(path, known) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path [a, b, …, a], or None (depth-first search, white/grey/black)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if state.get(nxt) is None and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None and (found := visit(node)) is not None:
            return found
    return None


def test_the_graph_is_read_from_the_source() -> None:
    graph = import_graph()
    assert {
        "console.app",
        "console.commands",
        "console.screens",
        "console.screens.fleet",
        "console.views",
    } <= set(graph)
    assert "console.screens" in graph["console.screens.fleet"]  # a real edge is seen
    assert "console.commands" in graph["console.app"]


def test_no_screen_imports_the_app() -> None:
    graph = import_graph()
    screens = {m for m in graph if m == "console.screens" or m.startswith("console.screens.")}
    assert len(screens) >= 6
    offenders = {m: sorted(graph[m] & {"console.app", "console.commands", "console.launch"}) for m in screens}
    assert {m: v for m, v in offenders.items() if v} == {}


def test_no_import_cycle_among_console_modules() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_relative_and_type_checking_imports_count(tmp_path: Path) -> None:
    pkg = tmp_path / "console" / "screens"
    pkg.mkdir(parents=True)
    (pkg / "x.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from console.app import App\n"
        "def f():\n    from .. import commands\n"
    )
    known = {"console.app", "console.commands", "console"}
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        assert imports_of(pkg / "x.py", known) == {"console.app", "console.commands", "console"}
    finally:
        ROOT = saved


def test_importing_every_screen_does_not_load_the_app() -> None:
    code = (
        "import importlib, json, pkgutil, sys\n"
        "import console.screens as s\n"
        "for info in pkgutil.iter_modules(s.__path__):\n"
        "    importlib.import_module('console.screens.' + info.name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('console.'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "console.screens.fleet" in loaded and "console.screens.engine" in loaded
    assert loaded.isdisjoint({"console.app", "console.commands", "console.launch"})
