"""The recent past of some hosts, for the graphs, from a range matrix of the agents' series.

Pure: no I/O. :func:`read_history` turns the ``query_range`` answer of :func:`console.promnames.history_names`
into snapshots (one per distinct ``llmconsole_snapshot_seq``) whose engines carry only the graphed stats.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from agents.schema import SCHEMA, EngineSnapshot, EngineStats, HostSnapshot, rfc3339
from console.promnames import ENGINE_STATS, GRAPHED, family

Matrix = Sequence[tuple[Mapping[str, str], Sequence[tuple[float, float]]]]


def read_history(matrix: Matrix, wanted: set[str] | None = None) -> dict[str, list[HostSnapshot]]:
    """Per host, oldest first, one snapshot per distinct ``llmconsole_snapshot_seq`` in a range matrix of
    :func:`history_names` (engines carry only the graphed stats). ``wanted``: only these hosts."""
    seqs: dict[str, dict[float, float]] = {}
    taken: dict[str, dict[float, float]] = {}
    stats: dict[str, dict[tuple[str, str], dict[float, dict[str, float]]]] = {}
    for labels, points in matrix:
        host = labels.get("host")
        if not host or (wanted is not None and host not in wanted):
            continue
        fam = family(labels)
        if fam == "snapshot_seq":
            seqs.setdefault(host, {}).update((t, v) for t, v in points if math.isfinite(v))
        elif fam == "snapshot_timestamp_seconds":
            taken.setdefault(host, {}).update((t, v) for t, v in points if math.isfinite(v))
        elif fam is not None and fam.startswith("engine_") and fam[7:] in GRAPHED and labels.get("engine"):
            key = ENGINE_STATS[fam[7:]]
            eng = (labels.get("kind") or "unknown", labels["engine"])
            per_t = stats.setdefault(host, {}).setdefault(eng, {})
            for t, v in points:
                if math.isfinite(v):
                    per_t.setdefault(t, {})[key] = v
    out: dict[str, list[HostSnapshot]] = {}
    for host, by_t in seqs.items():
        snaps: dict[int, HostSnapshot] = {}
        for t in sorted(by_t):
            ts = taken.get(host, {}).get(t)
            if ts is None:
                continue
            engines = tuple(
                EngineSnapshot(id=eid, kind=kind, state="unknown", stats_age_s=0.0, stats=EngineStats(**vals))
                for (kind, eid), per_t in stats.get(host, {}).items()
                if (vals := per_t.get(t))
            )
            seq = int(by_t[t])
            snaps[seq] = HostSnapshot(
                schema=SCHEMA, host=host, seq=seq, taken_at=rfc3339(ts), engines=engines
            )
        out[host] = [snaps[k] for k in sorted(snaps)]
    return out


__all__ = ["Matrix", "read_history"]
