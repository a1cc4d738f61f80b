"""Incident bundles on the agent (``GET /v1/bundle``): everything about this host for a time window, in one
redacted ``.tar.gz`` with a manifest (format: agents/bundle_files.py).

Two steps. :func:`gather` runs on the agent's loop and only copies references (the collector's snapshots
for the window, each engine's launch plan, state history, log tail, raw scrapes and stack captures): it
costs milliseconds however big the window. :func:`write_bundle` runs in a worker thread: it reads the
host (kernel log, process tree, driver, package versions, the audit log and its verification), derives the
alert and probe history, redacts every text file and compresses, under a byte budget and a deadline.
What it cannot collect, or leaves out when a cap is reached, is listed in the manifest's ``missing``.

Layout under ``hosts/<host>/``::

    host.json                 kernel (uname), CPU, RAM, boot time, GPU driver / CUDA / NVML versions
    gpu.json                  the latest GPU readings, per-process memory and owning engine
    processes.json            each engine's process tree (GPU memory per pid), GPU processes of no engine
    kernel-log.txt            NVRM / Xid / nvidia / OOM lines (dmesg, else kern.log), when readable
    audit-tail.jsonl          the last audit records;  audit-verify.json  the chain's verification
    alerts.jsonl              alert incidents: raised / cleared / active, with evidence
    snapshots.jsonl           one llmconsole.snapshot/1 per line, oldest first (``taken_at``: wall time)
    engines/<id>/engine.json  argv, allow-listed env, state, versions (package metadata or log)
    engines/<id>/events.jsonl       state history;   engines/<id>/log-tail.txt   output tail
    engines/<id>/probes.jsonl       health checks and canaries with timings
    engines/<id>/scrapes.json + metrics/scrape-N.txt   the last raw /metrics answers
    engines/<id>/stacks.json  + stacks/*.txt           py-spy dumps taken when the engine hung
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents import __version__, bundle_scrapes, stacks
from agents.bundle_engine import engine_versions
from agents.bundle_files import BundleError, BundleWriter, safe_component
from agents.bundle_history import alert_history, probe_history, window_facts
from agents.bundle_host import gpu_snapshot, host_facts, kernel_log, process_tree, running_process
from agents.bundle_redact import (
    RULES,
    allowed_env,
    drop_content_lines,
    drop_content_strings,
    mask_auth_headers,
)
from agents.schema import HostSnapshot, history_from_json, rfc3339, to_json

DEFAULT_SINCE_S = 1800.0
MAX_SINCE_S = 7 * 86400.0
MAX_BUNDLE_BYTES = 192 * 2**20  # uncompressed; the compressed bundle is several times smaller
MAX_SECONDS = 60.0
LOG_LINES = 1000
AUDIT_LINES = 1000
_LEVELS = (6, 5, 7, 4, 8, 3)  # another level gives another compressed stream (guard_clean)


@dataclass(frozen=True, slots=True)
class BundleRequest:
    """What was asked (``since_s``, one ``engine`` or all, ``reason``) and by whom (the token's name)."""

    since_s: float = DEFAULT_SINCE_S
    engine: str | None = None
    reason: str | None = None
    actor: str | None = None
    role: str | None = None
    request_id: str | None = None
    max_bytes: int = MAX_BUNDLE_BYTES
    max_seconds: float = MAX_SECONDS


@dataclass(frozen=True, slots=True)
class EngineInputs:
    """One engine as the loop saw it when the bundle was asked for (plain values and immutable objects)."""

    id: str
    kind: str
    model: str | None
    state: str | None
    reason: str | None
    pid: int | None
    pids: tuple[int, ...]
    restarts: int | None
    argv: tuple[str, ...]
    env: dict[str, str]
    events: list[dict[str, Any]]
    log_tail: list[str]
    log_version: str | None
    log_version_line: str | None
    scrapes: tuple[bundle_scrapes.RawScrape, ...]
    scrape_ring: bool
    captures: tuple[stacks.StackCapture, ...]


@dataclass(frozen=True, slots=True)
class Inputs:
    host: str
    boot_id: str | None
    history_s: float
    snapshots: list[tuple[HostSnapshot, str]]  # oldest first, with each snapshot's JSON
    engines: list[EngineInputs]
    gpu: Any
    redact: Callable[[str], str]
    gathered_at: str = field(default_factory=rfc3339)


@dataclass(frozen=True, slots=True)
class BundleResult:
    data: bytes
    manifest: dict[str, Any]
    filename: str


# --- step 1: on the agent's loop ---------------------------------------------------------------------------


def _window(collector: Any, seconds: float) -> list[tuple[HostSnapshot, str]]:
    """The collector's snapshots of the last ``seconds``, oldest first, each with its JSON. Reads the ring
    (``(monotonic, snapshot, json)`` entries) directly; any other shape falls back to ``history_json``."""
    ring = getattr(collector, "_ring", None)
    try:
        entries = list(ring) if ring is not None else []
        if entries and all(
            isinstance(e, tuple) and len(e) == 3 and isinstance(e[1], HostSnapshot) for e in entries[-1:]
        ):
            newest = entries[-1][0]
            return [(snap, text) for t, snap, text in entries if newest - t <= seconds]
    except (TypeError, ValueError):
        pass
    history = history_from_json(collector.history_json(seconds))
    return [(s, to_json(s)) for s in history.snapshots]


def _engine_inputs(watch: Any) -> EngineInputs:
    sup = watch.supervisor
    audit = getattr(getattr(watch, "exposure", None), "audit", getattr(watch, "exposure", None))
    plan = getattr(sup, "plan", None)
    return EngineInputs(
        id=watch.config.id,
        kind=watch.config.kind,
        model=getattr(watch.config, "model", None),
        state=getattr(sup, "state", None),
        reason=getattr(sup, "reason", None),
        pid=getattr(sup, "pid", None),
        pids=tuple(getattr(sup, "pids", ()) or ()),
        restarts=getattr(sup, "restarts", None),
        argv=tuple(getattr(plan, "argv", ()) or ()),
        env=dict(getattr(plan, "env", {}) or {}),
        events=list(getattr(sup, "events", []) or []),
        log_tail=list(sup.log_tail(LOG_LINES)),
        log_version=getattr(audit, "version", None),
        log_version_line=getattr(audit, "version_line", None),
        scrapes=bundle_scrapes.recent(watch),
        scrape_ring=bundle_scrapes.installed(watch),
        captures=stacks.captures(watch),
    )


def gather(runtime: Any, request: BundleRequest) -> Inputs:
    """Copy what the bundle needs from the runtime (run on the agent's loop; no I/O but the log tails)."""
    watches = [w for w in runtime.watches.values() if request.engine is None or w.config.id == request.engine]
    seconds = min(request.since_s, float(runtime.history_s))
    return Inputs(
        host=runtime.collector.host,
        boot_id=getattr(runtime.collector, "boot_id", None),
        history_s=float(runtime.history_s),
        snapshots=_window(runtime.collector, seconds),
        engines=[_engine_inputs(w) for w in watches],
        gpu=runtime.gpu,
        redact=runtime.redactor,
    )


# --- step 2: in a worker thread ----------------------------------------------------------------------------


class _Build:
    """One bundle being written: the writer, the redaction, the deadline and the host's folder."""

    def __init__(self, inputs: Inputs, request: BundleRequest) -> None:
        self.inputs, self.request = inputs, request
        self.w = BundleWriter(budget_bytes=request.max_bytes)
        self.deadline = time.monotonic() + request.max_seconds
        self.dir = f"hosts/{safe_component(inputs.host)}"
        self.content_dropped = 0

    def clean(self, text: str) -> str:
        return mask_auth_headers(self.inputs.redact(text))

    def out_of_time(self, what: str) -> bool:
        if time.monotonic() <= self.deadline:
            return False
        self.w.note_missing(
            what,
            f"skipped: the bundle's time cap of {self.request.max_seconds:g} s was reached",
            self.inputs.host,
        )
        return True

    def text(self, path: str, text: str, what: str | None = None) -> None:
        self.w.add_text(f"{self.dir}/{path}", self.clean(text), what=what or path, host=self.inputs.host)

    def json(self, path: str, obj: Any, what: str | None = None) -> None:
        self.text(path, json.dumps(obj, indent=1, ensure_ascii=False, default=str) + "\n", what)

    def jsonl(self, path: str, rows: Sequence[Any], what: str | None = None) -> None:
        self.text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows), what)

    def missing(self, what: str, why: str) -> None:
        self.w.note_missing(what, why, self.inputs.host)


def write_bundle(inputs: Inputs, request: BundleRequest, audit: Any | None = None) -> BundleResult:
    """Write the bundle (blocking: run in a worker thread). BundleError when no archive can be produced."""
    b = _Build(inputs, request)
    snaps = [s for s, _ in inputs.snapshots]
    latest = snaps[-1] if snaps else None
    if latest is None:
        b.missing("snapshots", "the agent has taken no snapshot yet")
    if not b.out_of_time("host facts"):
        facts, missing = host_facts(latest, inputs.gpu)
        facts.update(
            host=inputs.host, boot_id=inputs.boot_id, agent_version=__version__, history_s=inputs.history_s
        )
        b.json("host.json", facts)
        for what, why in missing:
            b.missing(what, why)
        b.json("gpu.json", gpu_snapshot(latest))
    if not b.out_of_time("process tree"):
        b.json("processes.json", process_tree({e.id: e.pids for e in inputs.engines}, latest))
    if not b.out_of_time("kernel log"):
        lines, source, missing = kernel_log()
        for what, why in missing:
            b.missing(what, why)
        if lines is not None:
            b.text(
                "kernel-log.txt",
                f"# source: {source}; lines about NVRM, Xid, nvidia and OOM only\n"
                + "".join(line + "\n" for line in lines),
            )
    _audit(b, audit)
    for e in inputs.engines:
        if not b.out_of_time(f"engine {e.id}"):
            _engine(b, e, snaps)
    if not b.out_of_time("alert history"):
        b.jsonl("alerts.jsonl", alert_history(snaps, request.engine))
    if not b.out_of_time("snapshots"):
        _snapshots(b, inputs.snapshots)
    return _finish(b, snaps)


def _audit(b: _Build, audit: Any | None) -> None:
    if audit is None:
        b.missing("audit log", "no audit log is configured for this API")
        return
    if b.out_of_time("audit log"):
        return
    from agents.audit_verify import verify_log  # the whole log is read: only when a bundle asks

    try:
        b.jsonl("audit-tail.jsonl", audit.tail(AUDIT_LINES))
    except OSError as exc:
        b.missing("audit log tail", f"cannot read: {exc.strerror or exc}")
    try:
        v = verify_log(
            audit.path, key_path=getattr(audit, "key_path", None), head_path=getattr(audit, "head_path", None)
        )
        b.json(
            "audit-verify.json",
            {
                "ok": v.ok,
                "summary": v.summary(),
                "records": v.records,
                "legacy": v.legacy,
                "first_seq": v.first_seq,
                "last_seq": v.last_seq,
                "last_at": v.last_at,
                "bad_line": v.bad_line,
                "problem": v.problem,
                "notes": list(v.notes),
            },
        )
    except OSError as exc:
        b.missing("audit log verification", f"cannot read: {exc.strerror or exc}")


def _engine(b: _Build, e: EngineInputs, snaps: Sequence[HostSnapshot]) -> None:
    base = f"engines/{safe_component(e.id)}"
    package = _package(e.kind)
    env, withheld = allowed_env(e.env)
    running = running_process(e.pid)
    launch = (e.argv, e.env)
    if running is not None and running["cmdline"] and not (e.argv and os.path.isfile(e.argv[0])):
        launch = (tuple(running["cmdline"]), running.pop("_environ"))  # a watched engine: what really runs
    versions = engine_versions(*launch, package, e.log_version, e.log_version_line)
    if running is not None:
        running.pop("_environ", None)
    b.json(
        f"{base}/engine.json",
        {
            "id": e.id,
            "kind": e.kind,
            "model": e.model,
            "state": e.state,
            "reason": e.reason,
            "pid": e.pid,
            "pids": list(e.pids),
            "restarts": e.restarts,
            "argv": list(e.argv),
            "env": env,
            "env_withheld": withheld,
            "process": running,
            "versions": versions,
        },
    )
    b.jsonl(f"{base}/events.jsonl", [{k: v for k, v in ev.items() if k != "mono"} for ev in e.events])
    tail, dropped = drop_content_lines(e.log_tail)
    b.content_dropped += dropped
    b.text(f"{base}/log-tail.txt", "".join(line + "\n" for line in tail), f"engine {e.id} log tail")
    b.jsonl(f"{base}/probes.jsonl", probe_history(snaps, e.id))
    _scrapes(b, e, base)
    _stacks(b, e, base, snaps[-1] if snaps else None)


def _package(kind: str) -> str | None:
    """The engine's Python distribution name, as its adapter names it (None for an unknown kind)."""
    from agents.engines import UnknownEngine, get_adapter

    try:
        return get_adapter(kind).package
    except UnknownEngine:
        return None


def _scrapes(b: _Build, e: EngineInputs, base: str) -> None:
    if not e.scrape_ring:
        why = (
            "none recorded yet (the engine has not been scraped)"
            if e.state in ("ready", "degraded", "hung", "starting")
            else f"the engine is {e.state}"
        )
        b.missing(f"engine {e.id} raw /metrics scrapes", why)
    index = []
    for n, s in enumerate(e.scrapes, 1):
        row = {
            "at": s.at,
            "ok": s.ok,
            "http_status": s.status,
            "error": s.error,
            "elapsed_s": s.elapsed_s,
            "file": None,
        }
        if s.body is not None:
            row["file"] = f"metrics/scrape-{n}.txt"
            row["bytes"], row["truncated"] = len(s.body), s.truncated
            b.text(f"{base}/{row['file']}", s.body.decode("utf-8", "replace"), f"engine {e.id} scrape {n}")
        index.append(row)
    b.json(f"{base}/scrapes.json", index)


def _stacks(b: _Build, e: EngineInputs, base: str, latest: HostSnapshot | None) -> None:
    rows = []
    for n, cap in enumerate(e.captures, 1):
        row = cap.brief()
        for p, brief in zip(cap.processes, row["processes"], strict=True):
            brief["file"] = None
            if p.text is not None:
                brief["file"] = f"stacks/capture-{n}-pid-{p.pid}.txt"
                b.text(f"{base}/{brief['file']}", p.text, f"engine {e.id} stacks of pid {p.pid}")
        rows.append(row)
    if rows:
        b.json(f"{base}/stacks.json", rows)
        return
    snap = next((x for x in latest.engines if x.id == e.id), None) if latest else None
    if snap is not None and any(a.code in stacks.HANG_CODES for a in snap.alerts):
        path, why = stacks.find_py_spy()
        b.missing(f"engine {e.id} stacks", why or "the capture for the current hang is still running")


def _snapshots(b: _Build, pairs: Sequence[tuple[HostSnapshot, str]]) -> None:
    """snapshots.jsonl, oldest first; when the budget cannot hold them all, the newest that fit."""
    text = b.clean("\n".join(t for _, t in pairs))
    text, dropped = drop_content_strings(text)
    b.content_dropped += dropped
    lines = text.split("\n") if text else []
    room, keep = b.w.left() - 1024, len(lines)
    size = sum(len(line.encode()) + 1 for line in lines)
    while keep and size > room:
        keep -= 1
        size -= len(lines[len(lines) - keep - 1].encode()) + 1
    if keep < len(lines):
        first_kept = pairs[len(pairs) - keep][0].taken_at if keep else None
        b.missing(
            "snapshots",
            f"{len(lines) - keep} of {len(lines)} oldest snapshots left out: the bundle's size cap of "
            f"{b.request.max_bytes / 2**20:.0f} MiB was reached"
            + (f" (kept from {first_kept})" if first_kept else ""),
        )
    kept = lines[len(lines) - keep :]
    b.w.add_text(
        f"{b.dir}/snapshots.jsonl",
        "".join(line + "\n" for line in kept),
        what="snapshots",
        host=b.inputs.host,
    )


def _finish(b: _Build, snaps: Sequence[HostSnapshot]) -> BundleResult:
    inputs, request = b.inputs, b.request
    latest = snaps[-1] if snaps else None
    engines = []
    for e in inputs.engines:
        got = b.w.files.get(f"{b.dir}/engines/{safe_component(e.id)}/engine.json")
        versions = json.loads(got)["versions"] if got else {}
        engines.append(
            {
                "id": e.id,
                "kind": e.kind,
                "model": e.model,
                "state": e.state,
                "version": versions.get("version"),
                "version_source": versions.get("version_source"),
            }
        )
    py_spy, why = stacks.find_py_spy()
    created = time.time()
    fields = {
        "created_at": rfc3339(created),
        "created_by": {
            "tool": "llmconsole agent",
            "version": __version__,
            "actor": request.actor,
            "role": request.role,
            "request_id": request.request_id,
        },
        "reason": request.reason,
        "window": window_facts(snaps, request.since_s, inputs.history_s),
        "engine_filter": request.engine,
        "hosts": [
            {
                "name": inputs.host,
                "dir": b.dir,
                "agent_version": latest.agent_version if latest else __version__,
                "boot_id": inputs.boot_id,
                "engines": engines,
                "status": "collected",
                "missing": len(b.w.missing),
            }
        ],
        "redaction": {
            "rules": list(RULES),
            "content_lines_removed": b.content_dropped,
            "host_names_masked": False,
        },
        "stack_capture": {"tool": py_spy, "problem": why},
        "limits": {"max_bytes": request.max_bytes, "max_seconds": request.max_seconds},
    }
    fields = json.loads(b.clean(json.dumps(fields)))  # the reason is operator text: redacted like every file
    data = guard_clean(
        lambda attempt: b.w.build(fields, mtime=created + attempt, compresslevel=_LEVELS[attempt]),
        inputs.redact,
    )
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(created))
    return BundleResult(
        data, b.w.manifest(fields), f"llmconsole-bundle-{safe_component(inputs.host)}-{stamp}.tar.gz"
    )


def guard_clean(build: Callable[[int], bytes], redact: Callable[[str], str]) -> bytes:
    """An archive the API's response redaction (agents/apiguard.py, over every body) leaves byte for byte
    as it is: compressed bytes that happen to look like a credential would otherwise be rewritten and
    the archive broken. Another compression level gives another stream; a few tries suffice in practice."""
    for attempt in range(len(_LEVELS)):
        data = build(attempt)
        text = data.decode("utf-8", "surrogateescape")
        if redact(text) == text:
            return data
    raise BundleError("could not produce an archive that the API's redaction leaves intact")


__all__ = [
    "DEFAULT_SINCE_S",
    "MAX_SINCE_S",
    "BundleRequest",
    "BundleResult",
    "Inputs",
    "gather",
    "guard_clean",
    "write_bundle",
]
