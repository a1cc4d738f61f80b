"""docs/design.md stays true of the code: every public name the code defines (config keys, alert codes,
HTTP routes, CLI verbs and options, engine states, wire keys, exported families) is in it, and its
generated tables equal what docs/reference.py renders from the code now.

A failure names what is missing; fix it by adding a line to docs/design.md or by running
``python docs/reference.py --write`` for the generated tables.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import fields
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_PATH = ROOT / "docs" / "design.md"


def _reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location("llmconsole_docs_reference", ROOT / "docs" / "reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


REF = _reference()


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC_PATH.read_text(encoding="utf-8")


def _missing(doc: str, names: list[str]) -> list[str]:
    return [n for n in names if f"`{n}`" not in doc and f"`{n}*`" not in doc and f"{n}*" not in doc]


def test_every_config_key_is_documented(doc: str) -> None:
    missing = []
    for header, cls in REF.config_tables():
        section = doc.split(f"#### `{header}`", 1)[-1] if f"#### `{header}`" in doc else doc
        missing += [f"{header} {key}" for key, *_ in REF.config_rows(cls) if f"`{key}`" not in section]
    assert missing == [], f"config keys missing from docs/design.md: {missing}"


def test_every_alert_code_is_documented(doc: str) -> None:
    from agents.schema import ALERT_CODES

    rules = doc.split("## 5. Alert codes", 1)[1]
    missing = _missing(rules, list(ALERT_CODES))
    assert missing == [], f"alert codes missing from docs/design.md §5: {missing}"


def test_every_api_route_is_documented(doc: str) -> None:
    from agents.api import ROUTES
    from agents.schema import ACTIONS

    api = doc.split("## 6. Agent HTTP API", 1)[1].split("## 7.", 1)[0]
    assert _missing(api, [e.path for e in ROUTES]) == []
    described = [e.path for e in ROUTES if f"{'/'.join(e.methods or ('GET',))} {e.path}" not in api]
    assert described == [], f"routes without a row in the parameters table: {described}"
    assert _missing(api, list(ACTIONS)) == []


def test_every_cli_verb_and_option_is_documented(doc: str) -> None:
    from console.cli import DELEGATED_VERBS, PARSED_VERBS

    cli = doc.split("## 7. CLI", 1)[1].split("## 8.", 1)[0]
    assert [v for v in [*PARSED_VERBS, *DELEGATED_VERBS] if f"#### `llmconsole {v}`" not in cli] == []
    missing = []
    for command, parser in REF.cli_parsers():
        section = cli.split(f"#### `{command}`", 1)[-1]
        for action in parser._actions:  # noqa: SLF001 - argparse has no public accessor
            missing += [
                f"{command} {o}"
                for o in action.option_strings
                if o not in ("-h", "--help") and o not in section
            ]
    assert missing == [], f"CLI options missing from docs/design.md: {missing}"


def test_every_engine_state_and_wire_key_is_documented(doc: str) -> None:
    from agents.schema import ENGINE_STATES, WIRE_TYPES

    states = doc.split("## 4. Engine states", 1)[1].split("## 5.", 1)[0]
    assert _missing(states, list(ENGINE_STATES)) == []
    schema = doc.split("## 3. Wire schema", 1)[1].split("## 4.", 1)[0]
    missing = [cls.__name__ for cls in WIRE_TYPES if f"`{cls.__name__}" not in schema]
    for cls in WIRE_TYPES:
        row = next((line for line in schema.splitlines() if line.startswith(f"| `{cls.__name__}")), "")
        missing += [f"{cls.__name__}.{f.name}" for f in fields(cls) if f"`{f.name}" not in row]
    assert missing == [], f"wire types/keys missing from the schema table: {missing}"


def test_every_exported_family_is_documented(doc: str) -> None:
    from agents import exporter

    export = doc.split("## 11. Prometheus export", 1)[1]
    names = [n for n, *_ in (*exporter.ENGINE_GAUGES, *exporter.ENGINE_COUNTERS, *exporter.ENGINE_HISTOGRAMS)]
    names += [n for n, *_ in exporter.GPU_GAUGES]
    assert _missing(export, names) == []


def test_generated_tables_are_current(doc: str) -> None:
    stale = []
    for name, render in REF.BLOCKS.items():
        match = REF.block_pattern(name).search(doc)
        assert match is not None, f"docs/design.md lost its <!-- generated:{name} --> block"
        if match[2] != render():
            stale.append(name)
    assert stale == [], f"out of date: {stale}; run `python docs/reference.py --write`"


def test_the_checks_can_fail() -> None:
    """A name absent from a text is reported; a present one is not (the helper is not vacuous)."""
    assert _missing("| `kv_pressure` |", ["kv_pressure", "no_such_key"]) == ["no_such_key"]
    assert REF.describe_check(None) == ""
    assert REF.describe_check(lambda v: None) != "> 0"
