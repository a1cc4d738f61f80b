"""Per-engine state files, so that an agent restarted on the same boot can re-adopt running engines.

``<state_dir>/engines/<engine_id>.json`` is written atomically (temp file in the same directory,
fsync, rename, fsync of the directory): a crash or a full disk leaves the previous good file intact.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SCHEMA = "llmconsole.engine-state/1"


@dataclass(frozen=True, slots=True)
class EngineRecord:
    """Everything needed to positively identify a launched engine after the agent restarts."""

    engine_id: str
    boot_id: str | None
    pid: int
    starttime: int  # /proc/<pid>/stat field 22 (clock ticks after boot)
    create_time: float | None  # psutil's wall-clock create time, for display
    cmdline_sha256: str | None
    marker: str
    host: str
    port: int
    log_path: str
    launched_at: str  # RFC 3339 wall time, display only
    restarts: int = 0  # automatic restarts so far (crash-loop history survives an agent restart)
    schema: str = SCHEMA

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> EngineRecord:
        """Validate and build; raises ValueError naming the first bad field."""
        kinds: dict[str, tuple[type, ...]] = {
            "engine_id": (str,),
            "boot_id": (str, type(None)),
            "pid": (int,),
            "starttime": (int,),
            "create_time": (float, int, type(None)),
            "cmdline_sha256": (str, type(None)),
            "marker": (str,),
            "host": (str,),
            "port": (int,),
            "log_path": (str,),
            "launched_at": (str,),
            "restarts": (int,),
            "schema": (str,),
        }
        values = checked_fields(data, SCHEMA, kinds, optional={"restarts": 0})  # restarts: newer agents only
        if values["pid"] <= 1 or not values["marker"]:
            raise ValueError("field 'pid' or 'marker' invalid")
        if values["restarts"] < 0:
            raise ValueError("field 'restarts' is negative")
        return cls(**values)


def checked_fields(
    data: Any, schema: str, kinds: Mapping[str, tuple[type, ...]], optional: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The fields ``kinds`` names, read from a state file's JSON ``data`` of ``schema`` and type-checked (a
    bool is never an int); ValueError naming the first bad field. ``optional``: defaults for absent keys."""
    if not isinstance(data, Mapping):
        raise ValueError("not a JSON object")
    if data.get("schema") != schema:
        raise ValueError(f"unknown schema {data.get('schema')!r}")
    values = {}
    for name, types in kinds.items():
        value = data.get(name, (optional or {}).get(name))
        if not isinstance(value, types) or isinstance(value, bool):
            raise ValueError(f"field {name!r} missing or of the wrong type")
        values[name] = value
    return values


def write_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON to ``path`` atomically; raises OSError (the old file, if any, stays intact)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def read_record(path: Path) -> tuple[EngineRecord | None, str | None]:
    """(record, None) when valid; (None, None) when absent; (None, error) when unreadable or corrupt."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot read {path}: {exc}"
    try:
        return EngineRecord.from_json(json.loads(text)), None
    except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
        return None, f"corrupt state file {path}: {exc}"


def remove(path: Path) -> None:
    """Delete the state file; a missing file is fine, other errors propagate (OSError)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
