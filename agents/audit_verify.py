"""Verification of an audit log (``llmconsole agent audit verify``): the whole chain against its key and
head, reporting the first problem found.

A keyed record must carry a valid HMAC, the next ``seq`` and the ``mac`` of the record before as its
``prev_mac``. Old-format lines (``prev_hash`` SHA-256 chain, no ``mac``) at the start of a log are checked
as that unkeyed chain, and the first keyed record's ``prev_mac`` must be the last one's ``line_hash``. An
``audit-continued`` record on line 1 (the log's earlier part was rotated out) may start at any ``seq``, which
is noted; ``audit-head-missing`` and ``audit-head-altered`` records are problems. A head is required beside
keyed records; it must be valid under the key, no further than the log's last record, and name that
record's ``mac``; a head behind the log is a note. Stdlib only.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from agents.audit_files import (
    CONTINUED,
    GENESIS,
    GENESIS_MAC,
    HEAD_ALTERED,
    HEAD_MISSING,
    Head,
    default_paths,
    is_seq,
    json_object,
    keyed_fields,
    line_hash,
    read_head,
    read_key,
)

_MAX_LINE = 1024 * 1024  # a longer line is not a record
_AT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})"
)


@dataclass(frozen=True)
class Verdict:
    """The result of :func:`verify_log`. ``problem`` (with ``bad_line`` when one line is to blame) is
    None when the log is intact."""

    path: Path
    records: int = 0  # keyed records
    legacy: int = 0  # old-format unkeyed lines before the keyed chain
    first_seq: int | None = None
    last_seq: int | None = None
    last_at: str | None = None
    bad_line: int | None = None
    problem: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.problem is None

    def summary(self) -> str:
        if self.problem is not None:
            where = f"line {self.bad_line}: " if self.bad_line is not None else ""
            return f"audit log {self.path}: {where}{self.problem}"
        if self.records == 0 and self.legacy == 0:
            return f"audit log {self.path}: no records yet"
        parts = [f"audit log {self.path}: {self.records} records intact"]
        if self.legacy:
            parts.append(f" (after {self.legacy} legacy unkeyed records on lines 1-{self.legacy})")
        if self.last_seq is not None:
            parts.append(f", last seq {self.last_seq} at {self.last_at or 'an unknown time'}")
        return "".join(parts)


class _Chain:
    """State of one pass over the log (see :func:`verify_log`)."""

    def __init__(self, key: bytes | None, key_path: Path) -> None:
        self.key, self.key_path = key, key_path
        self.records = self.legacy = 0
        self.first_seq: int | None = None
        self.seq = 0
        self.prev_mac = GENESIS_MAC
        self.prev_hash = GENESIS
        self.last_at: str | None = None
        self.want_seq: int | None = None  # the head's seq: its record's mac is kept in want_mac
        self.want_mac: str | None = None
        self.notes: list[str] = []

    def check(self, n: int, raw: bytes) -> str | None:
        """Why line ``n`` breaks the chain, or None."""
        if not raw.endswith(b"\n"):
            return "incomplete last line (cut mid-line or a partial write)"
        line = raw[:-1]
        if not line.strip():
            return "blank line (not a record)"
        rec = json_object(line)
        if rec is None:
            return "not a JSON object (junk or a damaged record)"
        if "mac" not in rec:
            if self.records:
                return "record without a MAC after keyed records (inserted, or written by an old agent)"
            if rec.get("prev_hash") != self.prev_hash:
                return (
                    "legacy unkeyed record does not chain to the line before (edited, removed or reordered)"
                )
            self.legacy += 1
            self.prev_hash = line_hash(line)
            self.prev_mac = self.prev_hash  # the first keyed record pins the last unkeyed line
            return None
        if self.key is None:
            return f"keyed record but the key {self.key_path} is missing: cannot verify"
        got = keyed_fields(line, self.key)
        if got is None:
            return "damaged record (its mac field is malformed)"
        rec, mac_ok = got
        if not mac_ok:
            return "edited (its HMAC does not match its content)"
        seq = rec.get("seq")
        if not is_seq(seq):
            return "record without a valid seq"
        if rec.get("actor") == "agent" and rec.get("action") in (HEAD_MISSING, HEAD_ALTERED):
            what = "missing" if rec["action"] == HEAD_MISSING else "altered"
            return f"the agent found the head file {what} when writing this record: lines before it may have been cut off"
        continued = n == 1 and rec.get("action") == CONTINUED and rec.get("actor") == "agent"
        if continued:
            self.notes.append(f"continues a rotated-out file that ended at seq {seq - 1}")
        elif seq != self.seq + 1:
            why = "records removed or reordered" if seq > self.seq + 1 else "reordered or duplicated"
            return f"out of sequence: seq {seq} after seq {self.seq} ({why})"
        elif rec.get("prev_mac") != self.prev_mac:
            if self.records == 0 and self.legacy:
                return "the legacy unkeyed records before it were changed (chain anchor does not match)"
            return "does not chain to the record before (prev_mac differs: spliced from elsewhere?)"
        self.records += 1
        self.first_seq = seq if self.first_seq is None else self.first_seq
        self.seq, self.prev_mac = seq, rec["mac"]
        at = rec.get("at")
        self.last_at = at if isinstance(at, str) and _AT.fullmatch(at) else None
        if seq == self.want_seq:
            self.want_mac = rec["mac"]
        return None


def verify_log(
    path: str | Path, *, key_path: str | Path | None = None, head_path: str | Path | None = None
) -> Verdict:
    """Check the whole log against its key and head; the first problem found is reported. Raises OSError
    when a file exists but cannot be read."""
    log = Path(path).expanduser()
    key_default, head_default = default_paths(log)
    kp = Path(key_path).expanduser() if key_path is not None else key_default
    hp = Path(head_path).expanduser() if head_path is not None else head_default
    try:
        key = read_key(kp)
    except ValueError as exc:
        return Verdict(log, problem=f"{exc}: {kp}")
    notes: list[str] = []
    mode = os.stat(kp).st_mode & 0o777 if key is not None else 0
    if mode & 0o077:
        notes.append(f"key file {kp} is readable by group or others (mode {mode:04o}): chmod 600 it")
    head_problem: str | None = None
    try:
        head = read_head(hp)
    except ValueError as exc:
        head, head_problem = None, f"{exc}: {hp}"
    chain = _Chain(key, kp)
    if head is not None:
        chain.want_seq = head.seq
    found, n, why = _scan(log, chain)
    if why is not None:
        return _verdict(log, chain, notes, bad_line=n, problem=why)
    if head_problem is not None:
        return _verdict(log, chain, notes, problem=head_problem)
    problem, bad_line = _head_problem(head, hp, chain, found, n, notes)
    return _verdict(log, chain, notes, bad_line=bad_line, problem=problem)


def _scan(log: Path, chain: _Chain) -> tuple[bool, int, str | None]:
    """Feed the log's lines to ``chain``: ``(the log exists, lines read, why the last one read breaks
    the chain or None)``."""
    try:
        f = open(log, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return False, 0, None
    n = 0
    with f:
        while True:
            raw = f.readline(_MAX_LINE + 1)
            if not raw:
                return True, n, None
            n += 1
            why = "longer than 1 MiB (not a record)" if len(raw) > _MAX_LINE else chain.check(n, raw)
            if why is not None:
                return True, n, why


def _head_problem(
    head: Head | None, hp: Path, chain: _Chain, found: bool, n: int, notes: list[str]
) -> tuple[str | None, int | None]:
    """``(problem, bad line)`` of an intact chain of ``n`` lines judged against the head (``found``: the
    log exists); ``(None, None)`` when they agree. Notes are appended to ``notes``."""
    if head is None:
        if chain.records:
            return f"head file {hp} is missing: truncation cannot be ruled out", None
        if chain.legacy:
            notes.append("unkeyed old-format log: an edit with recomputed hashes would pass")
        return None, None
    if chain.key is None:
        return f"key file {chain.key_path} is missing: the head cannot be verified", None
    if not head.valid(chain.key):
        return f"head file {hp} was altered (its HMAC does not match)", None
    if not found:
        return f"the log file is missing but the head says the last record is seq {head.seq}", None
    if head.seq > chain.seq:
        end = f"seq {chain.seq}" if chain.records else "no keyed record"
        return f"truncated: the head says the last record is seq {head.seq}, the file ends at {end}", n + 1
    if chain.want_mac != head.mac:
        return f"record seq {head.seq} is not the one the head recorded (replaced?)", None
    if head.seq < chain.seq:
        notes.append(f"head lags {chain.seq - head.seq} record(s) (agent stopped while writing?)")
    return None, None


def _verdict(log: Path, chain: _Chain, notes: list[str], **kw: object) -> Verdict:
    return Verdict(
        log,
        records=chain.records,
        legacy=chain.legacy,
        first_seq=chain.first_seq,
        last_seq=chain.seq if chain.records else None,
        last_at=chain.last_at,
        notes=tuple(notes + chain.notes),
        **kw,  # type: ignore[arg-type]
    )
