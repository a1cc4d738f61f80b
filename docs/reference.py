"""Generate the reference tables of docs/design.md from the code: config keys, CLI verbs and options,
HTTP routes and alert codes.

``python docs/reference.py`` prints every generated block; ``python docs/reference.py --write`` replaces the
blocks between ``<!-- generated:NAME -->`` and ``<!-- end:NAME -->`` in docs/design.md.
tests/test_design_doc.py fails while a block is out of date.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "design.md"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# --- config tables ------------------------------------------------------------------------------------------

_CHECKS = {
    "positive": "> 0",
    "non_negative": "≥ 0",
    "_non_negative": "≥ 0",
    "fraction": "0 < x ≤ 1",
    "_fraction": "0 < x ≤ 1",
    "_share": "0 ≤ x ≤ 1",
    "port_number": "1–65535",
    "non_empty": "non-empty",
    "_no_secret": "no secrets in argv",
    "_action_argv": "non-empty argv, no control characters, no secrets",
    "_listen_check": '"HOST:PORT"',
    "_unique_ints": "no duplicates",
    "_host_header_name": "host name or IP (no port, no scheme)",
    "_python_module": "Python module name",
    "_guarded_env": "a guarded variable (LD_PRELOAD, PYTHONPATH, …)",
    "_env_table": "keys are environment variable names",
    "_http_url": "http:// or https:// URL with a host",
    "_ssh_destination": '"user@host" or "host", not starting with "-"',
    "_host_name": "non-empty, no spaces",
    "_matchers": "PromQL label matchers, not `__name__`",
    "_user": "non-empty, no spaces, control characters or ':'",
    "_slug": "lower-case slug (a–z, 0–9, '.', '-')",
}


def describe_check(check: Callable[..., Any] | None) -> str:
    """A short human description of a ``setting(check=...)`` function."""
    if check is None:
        return ""
    name = getattr(check, "__name__", "")
    if name in _CHECKS:
        return _CHECKS[name]
    code = getattr(check, "__code__", None)
    cells = (
        dict(zip(code.co_freevars, (c.cell_contents for c in check.__closure__ or ()), strict=False))
        if code
        else {}
    )
    if "low" in cells:
        return f"≥ {cells['low']}"
    if "what" in cells:
        return str(cells["what"])
    if code is not None:  # a lambda combining named checks
        parts = [_CHECKS[n] for n in code.co_names if n in _CHECKS]
        if parts:
            return "; ".join(parts)
    return name.lstrip("_").replace("_", " ")


def _type_name(spec: Any) -> str:
    shape, item = spec.shape, spec.item
    if shape == "list":
        return f"list of {item}"
    if shape == "tables":
        return "array of tables"
    if shape == "strmap":
        return "table of strings"
    if shape == "any":
        return "table"
    return str(shape)


def _toml(value: Any) -> str:
    home = str(Path.home())
    if isinstance(value, Path):
        text = str(value)
        return '"' + ("~" + text[len(home) :] if text.startswith(home) else text) + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, float) and value.is_integer() and abs(value) >= 2**20:
        return str(int(value))
    return repr(value)


def _default(spec: Any) -> str:
    f = spec.field
    if spec.required:
        return "required"
    if f.default is not MISSING:
        return "—" if f.default is None else _toml(f.default)
    value = f.default_factory()  # type: ignore[misc]
    return _toml(value)


def config_rows(cls: type, skip: tuple[str, ...] = ()) -> Iterator[tuple[str, str, str, str]]:
    """(key, type, default, check) for every key a table of ``cls`` accepts (flattened ones inline)."""
    from agents.tomltables import _specs

    for spec in _specs(cls):
        meta = spec.field.metadata
        if meta.get("external") or spec.name in skip:
            continue
        if spec.shape == "flatten":
            yield from config_rows(spec.item)
            continue
        if spec.shape == "tables":
            continue  # documented as its own table
        check = describe_check(meta.get("check"))
        if meta.get("choices"):
            check = "one of " + ", ".join(f"`{c}`" for c in meta["choices"])
        if meta.get("item_check"):
            item = describe_check(meta["item_check"])
            check = f"{check}; each item {item}" if check else f"each item {item}"
        yield spec.name, _type_name(spec), _default(spec), check


def config_tables() -> list[tuple[str, type]]:
    """Every config table: its TOML header and its dataclass (read at call time, so additions show)."""
    from agents.config import AgentConfig, EngineConfig, Golden, Slo, Supervision, Thresholds
    from console.calc.settings import ApiPrice, CalculatorConfig, CustomApi
    from console.settings import ConsoleConfig, HostConfig, PrometheusConfig

    return [
        ("[agent]", AgentConfig),
        ("[[agent.engines]]", EngineConfig),
        ("[agent] / [[agent.engines]] supervision", Supervision),
        ("[[agent.engines]] golden = { … }", Golden),
        ("[thresholds]", Thresholds),
        ("[slo]", Slo),
        ("[console]", ConsoleConfig),
        ("[[console.hosts]]", HostConfig),
        ("[[console.prometheus]]", PrometheusConfig),
        ("[calculator]", CalculatorConfig),
        ("[calculator.api_prices] entry", ApiPrice),
        ("[[calculator.apis]]", CustomApi),
    ]


def render_config() -> str:
    from agents.config import Supervision

    out: list[str] = []
    for header, cls in config_tables():
        if cls is Supervision:
            out.append(f"#### {header}\n")
            out.append(
                "Set in `[agent]` as the default for every engine; any `[[agent.engines]]` entry may override it.\n"
            )
            rows = list(config_rows(cls))
        else:
            sup = {f.name for f in fields(cls) if f.metadata.get("flatten")}
            rows = [r for r in config_rows(cls) if not (sup and r[0] in _supervision_keys())]
            out.append(f"#### `{header}`\n")
            tables = [f.metadata.get("label") for f in fields(cls) if f.metadata.get("label")]
            if sup:
                out.append("Plus every supervision key below.\n")
            if tables:
                out.append("Sub-tables: " + ", ".join(f"`[[{t}]]`" for t in tables) + ".\n")
        out.append("| key | type | default | check |")
        out.append("|---|---|---|---|")
        out += [
            f"| `{k}` | {t} | `{d}` | {c} |" if d not in ("required", "—") else f"| `{k}` | {t} | {d} | {c} |"
            for k, t, d, c in rows
        ]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _supervision_keys() -> set[str]:
    from agents.config import Supervision

    return {f.name for f in fields(Supervision)}


# --- CLI --------------------------------------------------------------------------------------------------


def _option_rows(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str, str]]:
    for action in parser._actions:  # noqa: SLF001 - argparse has no public accessor
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):  # noqa: SLF001
            continue
        if action.option_strings:
            name = ", ".join(action.option_strings)
            if action.nargs != 0:
                meta = action.metavar or action.dest.upper()
                name += " " + (" ".join(meta) if isinstance(meta, tuple) else meta)
        else:
            name = action.metavar or action.dest
            if name == "sim_argv":
                continue
        if action.choices and not isinstance(action.choices, dict):
            name += " {" + "|".join(str(c) for c in action.choices) + "}"
        default = action.default
        empty = (
            default is None
            or default is False
            or default is argparse.SUPPRESS
            or default == []
            or default == ()
        )
        shown = "" if empty else str(default)
        if action.required:
            shown = "required"
        help_text = (action.help or "").replace("|", "\\|").replace("\n", " ")
        help_text = help_text % vars(action) if "%(" in help_text else help_text.replace("%%", "%")
        yield name.replace("|", "\\|"), shown, help_text


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return dict(action.choices)
    return {}


def cli_parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    """Every (command line, parser) of ``llmconsole``, the delegated agent-side verbs included."""
    from agents import audit_cli, probe_cli
    from agents import cli as agent_cli
    from agents.sim import cli as sim_cli
    from console import cli

    root = cli.build_parser()
    out: list[tuple[str, argparse.ArgumentParser]] = [("llmconsole", root)]

    def walk(prefix: str, parser: argparse.ArgumentParser) -> None:
        for name, sub in _subparsers(parser).items():
            if name in cli.DELEGATED_VERBS and prefix == "llmconsole":
                if name == "probe":  # one parser, listed in its place (agent and sim-engine come last)
                    out.append(("llmconsole probe", probe_cli.build_parser()))
                continue
            out.append((f"{prefix} {name}", sub))
            walk(f"{prefix} {name}", sub)

    walk("llmconsole", root)
    out.append(("llmconsole agent", agent_cli.build_parser()))
    token = agent_cli.build_token_parser()
    for name, sub in _subparsers(token).items():
        out.append((f"llmconsole agent token {name}", sub))
    for name, sub in _subparsers(audit_cli.build_parser()).items():
        out.append((f"llmconsole agent audit {name}", sub))
    out.append(("llmconsole sim-engine", sim_cli.build_parser(None)))
    return out


def render_cli() -> str:
    out: list[str] = []
    for command, parser in cli_parsers():
        rows = list(_option_rows(parser))
        subs = _subparsers(parser)
        out.append(f"#### `{command}`\n")
        if parser.description:
            out.append(" ".join(parser.description.split()) + "\n")
        if subs:
            out.append("Subcommands: " + ", ".join(f"`{s}`" for s in subs) + ".\n")
        if rows:
            out.append("| option | default | meaning |")
            out.append("|---|---|---|")
            out += [f"| `{n}` | {d} | {h} |" for n, d, h in rows]
            out.append("")
    return "\n".join(out).rstrip() + "\n"


# --- HTTP routes and alert codes ------------------------------------------------------------------------------


def render_routes() -> str:
    from agents.api import ROUTES

    out = ["| method | path | role |", "|---|---|---|"]
    for e in ROUTES:
        methods = "/".join(e.methods) if e.methods else "GET"
        out.append(f"| {methods} | `{e.path}` | {e.role} |")
    return "\n".join(out) + "\n"


def render_alerts() -> str:
    from agents.schema import ALERT_CODES, CONSOLE_ALERT_CODES

    out = ["| code | raised by | meaning |", "|---|---|---|"]
    for code, meaning in ALERT_CODES.items():
        side = "console" if code in CONSOLE_ALERT_CODES else "agent"
        out.append(f"| `{code}` | {side} | {meaning} |")
    return "\n".join(out) + "\n"


BLOCKS: dict[str, Callable[[], str]] = {
    "alerts": render_alerts,
    "routes": render_routes,
    "config": render_config,
    "cli": render_cli,
}


def block_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- generated:{name} -->\n)(.*?)(<!-- end:{name} -->)", re.S)


def write(doc: Path = DOC) -> list[str]:
    """Replace every generated block in ``doc``; the names of the blocks that changed."""
    text = doc.read_text(encoding="utf-8")
    changed = []
    for name, render in BLOCKS.items():
        pattern = block_pattern(name)
        if not pattern.search(text):
            raise SystemExit(f"{doc}: no <!-- generated:{name} --> block")
        body = render()
        new = pattern.sub(lambda m, body=body: m[1] + body + m[3], text)
        if new != text:
            changed.append(name)
        text = new
    doc.write_text(text, encoding="utf-8")
    return changed


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--write"]:
        changed = write()
        print("updated: " + (", ".join(changed) if changed else "nothing"))
        return 0
    for name, render in BLOCKS.items():
        print(f"<!-- generated:{name} -->\n{render()}<!-- end:{name} -->\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["BLOCKS", "cli_parsers", "config_rows", "config_tables", "describe_check", "is_dataclass", "write"]
