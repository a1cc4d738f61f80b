"""``POST /v1/engines/{engine_id}/bench``: a benchmark announces itself (agents/benchmarks.py), operator only.

Body (JSON, ≤ 64 KiB as every body): ``{"event": "start"|"heartbeat"|"end", "run_id": "...",
"workload": "one line", "params": {...}}``. A benchmark is load on production: like an action, ``start``
and ``end`` are authorized by the bearer token's role and appended to the audit log (with the workload and
parameters) before the marker changes; heartbeats are authorized but not audited. Answers 200 with the
engine's marker (``null`` after ``end``), or a one-line JSON error: 400 bad body, 401/403 role, 404 unknown
engine, 409 another benchmark runs (or none by that id), 503 audit log unavailable.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from agents.apihandlers import AppState, _audit_attempt, _authorize, json_error
from agents.benchmarks import EVENTS, MAX_WORKLOAD_CHARS, BenchmarkRefused
from agents.schema import to_dict

MAX_PARAMS_CHARS = 2000


def _body(raw: bytes) -> dict[str, Any] | str:
    try:
        doc = json.loads(raw)
    except ValueError:
        return "the body must be a JSON object"
    if not isinstance(doc, dict):
        return "the body must be a JSON object"
    if doc.get("event") not in EVENTS:
        return f"event must be one of {', '.join(EVENTS)}"
    if not isinstance(doc.get("run_id"), str):
        return "run_id must be a string"
    if doc.get("workload") is not None and not isinstance(doc["workload"], str):
        return "workload must be a string"
    params = doc.get("params")
    if params is not None and (not isinstance(params, dict) or len(json.dumps(params)) > MAX_PARAMS_CHARS):
        return f"params must be a JSON object of at most {MAX_PARAMS_CHARS} characters"
    return doc


def _one_line(text: str | None) -> str | None:
    """The workload as the audit log keeps it: one line, at most MAX_WORKLOAD_CHARS (as the marker)."""
    return None if text is None else " ".join(text.split())[:MAX_WORKLOAD_CHARS]


async def bench(state: AppState, request: Request) -> Response:
    engine_id = request.path_params["engine_id"]
    doc = _body(await request.body())
    if isinstance(doc, str):
        return json_error(400, doc)
    store = state.tokens.current()
    identity = store.identify(request.headers.get("authorization"))
    known = engine_id in state.runtime.engine_ids()
    decision, status, message = _authorize(identity, store, known, engine_id)
    event = doc["event"]
    remote = request.client.host if request.client else None
    record = {
        "request_id": uuid.uuid4().hex,
        "actor": identity.name,
        "role": identity.role,
        "auth": "bearer" if identity.role is not None else "none",
        "remote": remote,
        "action": f"bench-{event}",
        "engine": engine_id if known else engine_id[:64],
        "run_id": doc["run_id"][:64],
        "workload": _one_line(doc.get("workload")),
        "params": doc.get("params"),
    }
    rid = {"X-Request-Id": record["request_id"]}
    if (event != "heartbeat" or status is not None) and not await _audit_attempt(
        state, record, decision, named=identity.role is not None
    ):
        return json_error(
            503,
            "audit log unavailable: benchmarks are refused (the agent's log says why)",
            {**rid, "Retry-After": "30"},
        )
    if status is not None:
        extra = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
        return json_error(status, message, {**rid, **extra})
    try:
        marker = state.runtime.benchmarks.announce(  # type: ignore[attr-defined]
            engine_id,
            event,
            doc["run_id"],
            time.monotonic(),
            client=remote,
            workload=doc.get("workload"),
            wall=time.time(),
        )
    except BenchmarkRefused as exc:
        if event != "heartbeat":
            await asyncio.to_thread(state.audit.try_append, **record, result=f"failed: {exc}")
        return json_error(409 if "running" in str(exc) else 400, str(exc), rid)
    body = {"engine": engine_id, "event": event, "benchmark": None if marker is None else to_dict(marker)}
    return JSONResponse(body, headers=rid)


__all__ = ["bench"]
