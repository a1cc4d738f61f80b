"""Read an incident bundle back as recorded hosts: what a replay source (``llmconsole replay``) needs.

:func:`load_bundle` verifies the archive first (agents/bundle_files.py: safe reading, schema major version,
every file's SHA-256), so a truncated or tampered bundle, or one of another major version, is refused with
one line (:class:`BundleError`). Each host's ``snapshots.jsonl`` is decoded with the console's own reader
(console/payload.py: size caps, strict UTF-8, the wire schema's types), oldest first, each carrying its
wall time in ``taken_at``; the engines' log tails and the alert transitions come with them. A host the
bundle could not collect is kept with its ``error``, as the manifest gives it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from agents.bundle_files import BundleError, ReadLimits, verify_bundle
from agents.schema import HostSnapshot
from console.payload import PayloadError, decode_snapshot


@dataclass(frozen=True)
class RecordedHost:
    """One host of a bundle: its snapshots in time order, engine log tails, alert transitions."""

    name: str
    status: str  # "collected" | "missing"
    snapshots: tuple[HostSnapshot, ...] = ()
    logs: dict[str, list[str]] = field(default_factory=dict)
    alerts: tuple[dict[str, Any], ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class LoadedBundle:
    manifest: dict[str, Any]
    hosts: tuple[RecordedHost, ...]


def _lines(members: dict[str, bytes], path: str) -> list[str]:
    data = members.get(path)
    return data.decode("utf-8", "replace").splitlines() if data is not None else []


def _host(entry: dict[str, Any], members: dict[str, bytes]) -> RecordedHost:
    name, status, base = str(entry.get("name")), str(entry.get("status", "collected")), entry.get("dir")
    if not isinstance(base, str) or status != "collected":
        return RecordedHost(name, "missing", error=str(entry.get("error") or "not collected"))
    snaps = []
    for n, line in enumerate(_lines(members, f"{base}/snapshots.jsonl"), 1):
        try:
            snaps.append(decode_snapshot(line))
        except PayloadError as exc:
            raise BundleError(f"{base}/snapshots.jsonl line {n}: {exc.error.message}") from None
    alerts = []
    for line in _lines(members, f"{base}/alerts.jsonl"):
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            alerts.append(row)
    prefix, suffix = f"{base}/engines/", "/log-tail.txt"
    logs = {
        p[len(prefix) : -len(suffix)]: _lines(members, p)
        for p in members
        if p.startswith(prefix) and p.endswith(suffix)
    }
    return RecordedHost(name, "collected", tuple(snaps), logs, tuple(alerts))


def load_bundle(path: str | os.PathLike[str] | bytes, limits: ReadLimits | None = None) -> LoadedBundle:
    """The bundle's hosts, verified and decoded; BundleError (one line) for anything that cannot be replayed."""
    verdict = verify_bundle(path, limits) if limits is not None else verify_bundle(path)
    if not verdict.ok or verdict.manifest is None or verdict.members is None:
        raise BundleError(verdict.problem or "not a verifiable bundle")
    entries = [h for h in verdict.manifest.get("hosts", []) if isinstance(h, dict)]
    return LoadedBundle(verdict.manifest, tuple(_host(h, verdict.members) for h in entries))


__all__ = ["LoadedBundle", "RecordedHost", "load_bundle"]
