"""The dependency rule of DESIGN.md, proven in a fresh interpreter by inspecting sys.modules.

- agents never imports textual, console or widgets (an agent host may not have them);
- widgets never imports agents, console, httpx, pynvml or psutil (data in only);
- console imports from agents only the wire contract and pure helpers, and never pynvml or psutil; agent-side
  programs it runs (`agent`, `probe`, `sim-engine`) are imported only when invoked, never by the console.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# agents modules the console may import: the wire contract and pure helpers (the package itself only as the
# parent of these; a prefix below allows that module and its submodules). Nothing here does I/O at import
# (test_console_allowed_modules_are_pure). Not here: the agent's own tables, HTTP clients, tokens, programs.
CONSOLE_MAY_IMPORT_FROM_AGENTS = (
    "agents.schema",  # the wire schema: snapshot/history types, codec, vocabulary, units
    "agents.tomltables",  # the strict-TOML machinery each side builds its own tables with (stdlib only)
    "agents.thresholds",  # [thresholds], the one config table both sides read (on agents.tomltables)
    "agents.metrics",  # pure stats: the exposition parser and window math (bench's engine view)
    "agents.engines",  # the adapters' pure reading of an exposition into logical names (bench's engine view)
    "agents.bundle_files",  # the incident-bundle format (manifest, sha256, safe extraction; stdlib only)
    "agents.bundle_redact",  # the bundle's redaction rules, applied again by the console
    "agents.redact",  # the redactor (stdlib only)
)
# What would mean a pure helper does I/O or runs machinery: none of these may load with the allowed modules.
IMPURE = ("socket", "ssl", "subprocess", "asyncio", "http", "threading", "selectors", "multiprocessing")

PROBE = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys
    pkg = importlib.import_module(sys.argv[1])
    skip = set(sys.argv[2].split(",")) if sys.argv[2] else set()
    names = [pkg.__name__]
    if hasattr(pkg, "__path__"):
        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            if info.name.endswith("__main__") or any(info.name.startswith(s) for s in skip):
                continue
            names.append(info.name)
    for name in names:
        importlib.import_module(name)
    print(json.dumps({"imported": names, "modules": sorted(sys.modules)}))
    """
)


def _import_all(package: str, skip: tuple[str, ...] = ()) -> tuple[list[str], set[str]]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, package, ",".join(skip)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return data["imported"], set(data["modules"])


def _top(modules: set[str], forbidden: tuple[str, ...]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in forbidden}


def test_agents_never_import_ui_or_console() -> None:
    imported, modules = _import_all("agents")
    assert len(imported) > 5, imported  # the walk really covered the package
    assert _top(modules, ("textual", "console", "widgets")) == set()  # (httpx pulls in rich for its CLI)


def test_widgets_are_data_in_only() -> None:
    _, modules = _import_all("widgets")
    assert _top(modules, ("agents", "console", "httpx", "pynvml", "psutil")) == set()


def test_console_imports_only_schema_and_pure_helpers_from_agents() -> None:
    _, modules = _import_all("console")
    agent_modules = {m for m in modules if m.startswith("agents.")}
    allowed = {
        m
        for m in agent_modules
        if any(m == a or m.startswith(a + ".") for a in CONSOLE_MAY_IMPORT_FROM_AGENTS)
    }
    assert agent_modules - allowed == set()
    # the walk really imported the console's users of the schema, the shared table and the adapters
    assert {"agents.schema", "agents.thresholds", "agents.engines"} <= agent_modules
    assert _top(modules, ("pynvml", "psutil", "uvicorn", "starlette")) == set()


def test_console_allowed_modules_are_pure() -> None:
    code = (
        "import importlib, json, sys; [importlib.import_module(m) for m in sys.argv[1:]]; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    argv = [sys.executable, "-c", code, *CONSOLE_MAY_IMPORT_FROM_AGENTS]
    out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    modules = set(json.loads(out.stdout))
    assert set(CONSOLE_MAY_IMPORT_FROM_AGENTS) <= modules  # each really imported
    assert _top(modules, IMPURE) == set()


def test_rule_checker_sees_a_violation() -> None:
    """The probe can fail: a forbidden import really shows up in the child's sys.modules."""
    code = "import json, sys; import textual; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert "textual" in _top(set(json.loads(out.stdout)), ("textual",))
