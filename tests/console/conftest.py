"""Shared helpers for the console tests: real snapshot files, configs, results."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from agents.schema import HostSnapshot, from_dict, rfc3339
from console.fleet import HostError, HostResult
from console.settings import ConsoleConfig, HostConfig

DATA = Path(__file__).resolve().parents[1] / "data"
SNAPSHOTS = DATA / "snapshots" / "v1"
FLEET = DATA / "fleet"
T0 = 1_750_000_000.0  # agent wall clock of seq 1 in these tests


def load_snapshot(name: str = "full") -> HostSnapshot:
    return from_dict(json.loads((SNAPSHOTS / f"{name}.json").read_text()))


def snap_at(
    seq: int, *, base: HostSnapshot | None = None, wall: float | None = None, host: str | None = None
) -> HostSnapshot:
    """The golden full snapshot renumbered: seq ``seq`` taken at T0 + seq (agent wall clock)."""
    s = base or load_snapshot()
    return replace(s, seq=seq, taken_at=rfc3339(T0 + seq if wall is None else wall), host=host or s.host)


def cfg(*names: str, **kw: float) -> ConsoleConfig:
    hosts = tuple(
        HostConfig(name=n, url=f"http://127.0.0.1:{9300 + i}") for i, n in enumerate(names or ("gpu01",))
    )
    return ConsoleConfig(hosts=hosts, **kw)


def ok(host: str, snap: HostSnapshot, at: float, history: tuple[HostSnapshot, ...] = ()) -> HostResult:
    return HostResult(host, snap, None, 0.01, at, history)


def down(host: str, at: float, message: str = "connection refused", kind: str = "unreachable") -> HostResult:
    return HostResult(host, None, HostError(kind, message), None, at)


@pytest.fixture
def full() -> HostSnapshot:
    return load_snapshot()
