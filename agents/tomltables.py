"""The strict-table machinery of ``config.toml``: TOML → frozen dataclasses, every mistake one clear line.

Pure (stdlib ``tomllib`` + dataclasses), with no knowledge of any one side's tables: the agent's tables live
in :mod:`agents.config`, the console's in ``console/settings.py``, the calculator's in
``console/calc/settings.py``; each builds them with :func:`build_table` from fields declared with
:func:`setting`, and names positions with :class:`Where`.

Rules
    * Unknown keys, wrong types and missing required keys raise :class:`ConfigError` naming the file,
      the table and the key, with the closest valid key for typos::

          config.toml: [[agent.engines]] #2 (id "llama"): unknown key "prot" (did you mean "port"?)
          config.toml: [agent] interval_s: expected a number, got "fast"

    * Integers are accepted where numbers are expected; booleans are never numbers; NaN/inf are refused.
    * Relative paths are resolved against the config file's directory; ``~`` is expanded.
    * A field may hold one nested table (a dataclass), a list of tables, or a flattened dataclass whose
      keys sit in the same table.

Search order (:func:`find_config`): ``--config PATH``; ``./config.toml``; ``$LLMCONSOLE_CONFIG``;
``$XDG_CONFIG_HOME/llmconsole/config.toml`` (``~/.config/...`` when unset).
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import os
import re
import tomllib
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass
from datetime import date, datetime, time
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
Check = Callable[[Any], "str | None"]  # returns an error message, or None when the value is fine

KNOWN_TABLES = ("agent", "thresholds", "slo", "console", "calculator")  # the file's top-level tables
ENV_CONFIG = "LLMCONSOLE_CONFIG"


class ConfigError(ValueError):
    """A bad config: the message is one line naming the file and the key."""


# --- the strict-table machinery -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Where:
    """Where a table lives, for messages: the file as the user named it and the table's label."""

    file: str
    table: str = ""  # "[agent]", '[[agent.engines]] #2 (id "llama")', "" for the top level
    base_dir: Path | None = None  # relative paths resolve against this (the config file's folder)

    def error(self, key: str | None, message: str) -> ConfigError:
        where = " ".join(part for part in (self.table, key) if part)
        return ConfigError(f"{self.file}: {where}: {message}" if where else f"{self.file}: {message}")

    def at(self, table: str) -> Where:
        return Where(self.file, table, self.base_dir)


def setting(
    default: Any = MISSING,
    *,
    factory: Callable[[], Any] | Any = MISSING,
    check: Check | None = None,
    item_check: Check | None = None,
    choices: tuple[str, ...] | None = None,
    flatten: bool = False,
    external: bool = False,
    label: str | None = None,
    name_key: str | None = None,
) -> Any:
    """A config field. ``check`` validates the converted value, ``item_check`` each list item;
    ``choices`` restricts a string; ``flatten``: a nested dataclass whose keys sit in this same table;
    ``external``: not read from this table (filled by the loader, e.g. thresholds);
    ``label``/``name_key``: for a list of tables, its TOML label and the key naming each entry."""
    meta = {
        "check": check,
        "item_check": item_check,
        "choices": choices,
        "flatten": flatten,
        "external": external,
        "label": label,
        "name_key": name_key,
    }
    if factory is not MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def show(value: Any, limit: int = 60) -> str:
    """A value as TOML would spell it, on one line: "fast", 3, true, [1, 2], a table."""
    if isinstance(value, str):
        text = json.dumps(value)
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, dict):
        return "a table"
    elif isinstance(value, list):
        text = "[" + ", ".join(show(v, limit) for v in value) + "]"
    elif isinstance(value, datetime | date | time):
        text = value.isoformat()
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def key_name(key: str) -> str:
    """A key as TOML writes it: bare when it can be, else quoted (so a message stays on one line)."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def suggest(word: str, candidates: Iterable[str], fmt: str = '"{}"') -> str:
    """' (did you mean "port"?)' for the closest candidate, or ''."""
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {fmt.format(match[0])}?)" if match else ""


@dataclass(frozen=True, slots=True)
class _Spec:
    name: str
    shape: str  # str|int|float|bool|path|list|tables|strmap|any|flatten
    item: str | type | None  # list item shape, or the dataclass of tables/flatten
    required: bool
    field: Field[Any]


_SIMPLE = {str: "str", int: "int", float: "float", bool: "bool", Path: "path"}


@functools.cache
def _specs(cls: type) -> tuple[_Spec, ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        hint = hints[f.name]
        if isinstance(hint, UnionType) or typing.get_origin(hint) is typing.Union:
            args = [a for a in typing.get_args(hint) if a is not NoneType]
            hint = args[0] if len(args) == 1 else Any
        origin = typing.get_origin(hint)
        item: str | type | None = None
        if f.metadata.get("flatten"):
            shape, item = "flatten", hint
        elif hint in _SIMPLE:
            shape = _SIMPLE[hint]
        elif is_dataclass(hint):
            shape, item = "table", hint
        elif origin is tuple:
            inner = typing.get_args(hint)[0]
            shape, item = ("tables", inner) if is_dataclass(inner) else ("list", _SIMPLE[inner])
        elif origin in (dict, Mapping) and typing.get_args(hint)[1] is str:
            shape = "strmap"
        else:
            shape = "any"
        required = f.default is MISSING and f.default_factory is MISSING and not f.metadata.get("external")
        out.append(_Spec(f.name, shape, item, required, f))
    return tuple(out)


def table_keys(cls: type) -> tuple[str, ...]:
    """Every key a table of ``cls`` accepts (flattened dataclasses contribute their keys)."""
    keys: list[str] = []
    for s in _specs(cls):
        if s.shape == "flatten":
            keys += table_keys(s.item)  # type: ignore[arg-type]
        elif not s.field.metadata.get("external"):
            keys.append(s.name)
    return tuple(keys)


_EXPECTED = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "path": "a path string",
}
_PLURAL = {
    "str": "strings",
    "int": "integers",
    "float": "numbers",
    "bool": "booleans",
    "path": "path strings",
}


def _scalar(shape: str, value: Any, where: Where, key: str) -> Any:
    if shape == "str" and isinstance(value, str):
        return value
    if shape == "bool" and isinstance(value, bool):
        return value
    if shape == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if shape == "float" and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise where.error(key, f"expected a finite number, got {show(value)}")
        return float(value)
    if shape == "path" and isinstance(value, str):
        if not value:
            raise where.error(key, "expected a path, got an empty string")
        path = Path(value).expanduser()
        return where.base_dir / path if where.base_dir is not None and not path.is_absolute() else path
    raise where.error(key, f"expected {_EXPECTED[shape]}, got {show(value)}")


def _convert(spec: _Spec, value: Any, where: Where) -> Any:
    key, meta = spec.name, spec.field.metadata
    if spec.shape in _EXPECTED:
        out = _scalar(spec.shape, value, where, key)
        choices = meta.get("choices")
        if choices and out not in choices:
            options = ", ".join(json.dumps(c) for c in choices)
            hint = suggest(out, choices) if isinstance(out, str) else ""
            raise where.error(key, f"expected one of {options}, got {show(value)}{hint}")
    elif spec.shape == "list":
        if not isinstance(value, list):
            raise where.error(key, f"expected a list of {_PLURAL[spec.item]}, got {show(value)}")  # type: ignore[index]
        out = tuple(_scalar(spec.item, v, where, f"{key}[{i}]") for i, v in enumerate(value))  # type: ignore[arg-type]
        item_check = meta.get("item_check")
        for i, v in enumerate(out):
            problem = item_check(v) if item_check else None
            if problem:
                raise where.error(f"{key}[{i}]", problem)
    elif spec.shape == "strmap":
        if not isinstance(value, dict):
            raise where.error(key, f"expected a table of strings, got {show(value)}")
        for k, v in value.items():
            if not isinstance(v, str):
                raise where.error(f"{key}.{key_name(k)}", f"expected a string, got {show(v)}")
        out = dict(value)
    elif spec.shape == "table":
        out = build_table(spec.item, value, where.at(f"{where.table} {key}".strip()))  # type: ignore[arg-type]
    elif spec.shape == "tables":
        out = build_tables(spec.item, value, where, key, meta.get("label") or key, meta.get("name_key"))  # type: ignore[arg-type]
    else:  # any: free-form
        out = value
    check = meta.get("check")
    problem = check(out) if check else None
    if problem:
        raise where.error(key, problem)
    return out


def build_table(cls: type[T], table: Any, where: Where, *, defaults: Mapping[str, Any] | None = None) -> T:
    """Validate one TOML table into ``cls``. ``defaults`` override the dataclass defaults (a flattened
    field takes an instance of its dataclass there, e.g. the agent-wide supervision for an engine)."""
    if not isinstance(table, dict):
        raise where.error(None, f"expected a table, got {show(table)}")
    known = table_keys(cls)
    for key in table:
        if key not in known:
            raise where.error(None, f"unknown key {show(key)}{suggest(key, known)}")
    defaults = defaults or {}
    values: dict[str, Any] = {}
    for spec in _specs(cls):
        name = spec.name
        if spec.shape == "flatten":
            sub_cls: type = spec.item  # type: ignore[assignment]
            sub = {k: table[k] for k in table_keys(sub_cls) if k in table}
            base = defaults.get(name)
            sub_defaults = (
                {f.name: getattr(base, f.name) for f in fields(sub_cls)} if base is not None else None
            )
            values[name] = build_table(sub_cls, sub, where, defaults=sub_defaults)
        elif spec.field.metadata.get("external"):
            if name in defaults:
                values[name] = defaults[name]
        elif name in table:
            values[name] = _convert(spec, table[name], where)
        elif name in defaults:
            values[name] = defaults[name]
        elif spec.required:
            raise where.error(None, f"missing required key {show(name)}")
    return cls(**values)


def build_tables(
    cls: type[T],
    value: Any,
    where: Where,
    key: str,
    label: str,
    name_key: str | None,
    defaults: Mapping[str, Any] | None = None,
) -> tuple[T, ...]:
    """An array of tables (``[[agent.engines]]``): each entry labelled ``[[label]] #N (id "x")``."""
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise where.error(key, f"expected an array of tables ([[{label}]]), got {show(value)}")
    return tuple(
        build_table(cls, item, where.at(entry_label(label, i, item, name_key)), defaults=defaults)
        for i, item in enumerate(value)
    )


def entry_label(label: str, index: int, item: Mapping[str, Any], name_key: str | None) -> str:
    name = item.get(name_key) if name_key else None
    suffix = f" ({name_key} {show(name)})" if isinstance(name, str) else ""
    return f"[[{label}]] #{index + 1}{suffix}"


def check_top_level(
    data: Mapping[str, Any], file: str, extra_hints: Mapping[str, tuple[str, ...]] | None = None
) -> None:
    """Reject unknown top-level tables/keys (with suggestions) and known tables that are not tables.
    ``extra_hints`` maps a table name to its keys, to say where a stray top-level key belongs."""
    where = Where(file)
    for key, value in data.items():
        if key not in KNOWN_TABLES:
            if isinstance(value, dict | list):
                raise where.error(
                    None, f"unknown table [{key_name(key)}]{suggest(key, KNOWN_TABLES, '[{}]')}"
                )
            home = next((t for t, keys in (extra_hints or {}).items() if key in keys), None)
            hint = f" (did you mean to put it under [{home}]?)" if home else suggest(key, KNOWN_TABLES)
            raise where.error(None, f"unknown top-level key {show(key)}{hint}")
        if not isinstance(value, dict):
            raise where.at(f"[{key}]").error(None, f"expected a table, got {show(value)}")


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse a TOML file; every failure (missing, unreadable, not UTF-8, bad syntax) is a ConfigError."""
    name = os.fspath(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {name}") from None
    except OSError as e:
        raise ConfigError(f"{name}: cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(f"{name}: line {line}: not valid UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", msg)
        if m:
            raise ConfigError(
                f"{name}: line {m[1]}, column {m[2]}: invalid TOML: {msg[: m.start()]}"
            ) from None
        raise ConfigError(f"{name}: invalid TOML: {msg}") from None


# --- value checks -------------------------------------------------------------------------------


def positive(v: float) -> str | None:
    return None if v > 0 else f"must be greater than 0, got {show(v)}"


def non_negative(v: float) -> str | None:
    return None if v >= 0 else f"must be 0 or more, got {show(v)}"


def at_least(low: int) -> Check:
    return lambda v: None if v >= low else f"must be {low} or more, got {show(v)}"


def fraction(v: float) -> str | None:
    return None if 0 < v <= 1 else f"must be greater than 0 and at most 1, got {show(v)}"


def port_number(v: int) -> str | None:
    return None if 1 <= v <= 65535 else f"must be between 1 and 65535, got {show(v)}"


def non_empty(v: Any) -> str | None:
    return None if len(v) else "must not be empty"


def matches(pattern: str, what: str) -> Check:
    regex = re.compile(pattern)
    return lambda v: None if regex.fullmatch(v) else f"{show(v)} is not {what}"


ENV_NAME_RE = r"[A-Za-z_][A-Za-z0-9_]*"
env_name = matches(ENV_NAME_RE, "a valid environment variable name")


class DocumentBuilder(Protocol[T_co]):
    """Builds one side's config from a whole parsed document (``agent_config_from_dict`` and the console's)."""

    def __call__(
        self, data: Mapping[str, Any], *, file: str, base_dir: Path | None, source: Path | None
    ) -> T_co: ...


def load_config(path: str | os.PathLike[str], build: DocumentBuilder[T]) -> T:
    """Read ``path`` and ``build`` a config from it: ``file`` names it in errors, relative paths resolve
    against its directory, and ``source`` records it. Every failure is a one-line :class:`ConfigError`."""
    p = Path(path)
    return build(read_toml(p), file=os.fspath(path), base_dir=p.resolve().parent, source=p)


def find_config(
    explicit: str | os.PathLike[str] | None,
    *,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> Path | None:
    """The config file to use, or None when there is none (see the module docstring for the order).
    An explicit path (or ``$LLMCONSOLE_CONFIG``) that does not exist is a ConfigError."""
    env = os.environ if environ is None else environ
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file not found: {os.fspath(explicit)}")
        return path
    local = (cwd or Path.cwd()) / "config.toml"
    if local.is_file():
        return local
    from_env = env.get(ENV_CONFIG)
    if from_env:
        path = Path(from_env).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file not found: {from_env} (from ${ENV_CONFIG})")
        return path
    xdg = env.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg else (home or Path.home()) / ".config"
    user = base / "llmconsole" / "config.toml"
    return user if user.is_file() else None


__all__ = [
    "ENV_CONFIG",
    "ENV_NAME_RE",
    "KNOWN_TABLES",
    "Check",
    "ConfigError",
    "DocumentBuilder",
    "Where",
    "at_least",
    "build_table",
    "build_tables",
    "check_top_level",
    "entry_label",
    "env_name",
    "find_config",
    "fraction",
    "key_name",
    "load_config",
    "matches",
    "non_empty",
    "non_negative",
    "port_number",
    "positive",
    "read_toml",
    "setting",
    "show",
    "suggest",
    "table_keys",
]
