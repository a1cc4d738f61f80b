"""A watched engine's state file: its observed restarts survive an agent restart.

A watched engine (``managed = false``) has no launch record (``statefile.EngineRecord`` names a launched
process and its marker), so its history lives beside those records in a file of its own schema,
``<state_dir>/engines/<engine_id>.watched.json`` — a managed supervisor never reads it, and a watched
engine never reads a launch record:

    {"schema": "llmconsole.watched-state/1", "engine_id": …, "boot_id": …, "restarts": N,
     "owner_pid": …, "owner_starttime": …, "updated_at": "<RFC 3339>"}

Written atomically (``statefile.write_atomic``) whenever the count or the owner process changes. Read once
when the watcher is built: a file from this boot gives the restarts so far and the owner last seen (so an
engine restarted while the agent was down counts, by the new owner's PID and start time); a file from
another boot (a reboot starts the history over, as for launched engines), a missing one or a corrupt one
gives nothing (a corrupt one is reported, never fatal).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agents.supervisor import statefile

SCHEMA = "llmconsole.watched-state/1"
SUFFIX = ".watched.json"


@dataclass(frozen=True, slots=True)
class WatchedRecord:
    """What a watched engine's watcher keeps over an agent restart."""

    engine_id: str
    boot_id: str | None
    restarts: int
    owner_pid: int | None
    owner_starttime: int | None
    updated_at: str
    schema: str = SCHEMA

    @property
    def owner_key(self) -> tuple[int, int] | None:
        return (
            (self.owner_pid, self.owner_starttime)
            if self.owner_pid is not None and self.owner_starttime is not None
            else None
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> WatchedRecord:
        """Validate and build; ValueError naming the first bad field."""
        kinds: dict[str, tuple[type, ...]] = {
            "engine_id": (str,),
            "boot_id": (str, type(None)),
            "restarts": (int,),
            "owner_pid": (int, type(None)),
            "owner_starttime": (int, type(None)),
            "updated_at": (str,),
            "schema": (str,),
        }
        values = statefile.checked_fields(data, SCHEMA, kinds)
        if values["restarts"] < 0:
            raise ValueError("field 'restarts' is negative")
        return cls(**values)


def path_for(state_dir: Path, engine_id: str) -> Path:
    return Path(state_dir).expanduser() / "engines" / f"{engine_id}{SUFFIX}"


def read(path: Path, engine_id: str, boot: str | None) -> tuple[WatchedRecord | None, str | None]:
    """(the record, None) when it is valid, of this engine and this boot; (None, None) when absent or of
    another boot; (None, why) when unreadable or corrupt."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot read {path.name}: {getattr(exc, 'strerror', None) or exc}"
    try:
        rec = WatchedRecord.from_json(json.loads(text))
    except (ValueError, TypeError) as exc:
        return None, f"corrupt state file {path.name}: {exc}"
    if rec.engine_id != engine_id:
        return None, f"state file {path.name} names engine {rec.engine_id!r}"
    if boot is None or rec.boot_id != boot:
        return None, None  # another boot: its PIDs and counts belong to a machine that has restarted since
    return rec, None


def write(path: Path, rec: WatchedRecord) -> None:
    """Atomic write; OSError propagates (the previous file, if any, stays intact)."""
    statefile.write_atomic(path, rec.to_json())
