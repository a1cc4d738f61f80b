"""``GET /v1/bundle?since=…&engine=…&reason=…``: this host's incident bundle (agents/bundle.py), operator only.

Query parameters: ``since`` (seconds, or a number with ``s``/``m``/``h``/``d``; default 30 min, the answer
holds what the agent keeps), ``engine`` (one engine's files; default all), ``reason`` (why, recorded in the
manifest and the audit log; at most 500 characters). Like an action, every attempt is authorized by the
bearer token's role and appended to the audit log before anything is collected (``action: "bundle"``); a
bundle holds logs and configuration, so viewers are refused. The answer is ``application/gzip`` with a
``Content-Disposition`` file name and ``X-Request-Id``; a bundle not built within its time cap is a 503,
one that cannot be written a 500, more than ``MAX_BUILDS`` at once a 503 with ``Retry-After``, each with a
one-line JSON message (and a ``failed: …`` audit record).
"""

from __future__ import annotations

import asyncio
import re
import threading
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from agents.apihandlers import AppState, _audit_attempt, _shown_id, json_error
from agents.bundle import DEFAULT_SINCE_S, MAX_SECONDS, MAX_SINCE_S, BundleRequest
from agents.bundle_files import BundleError

_SINCE_RE = re.compile(r"([0-9]{1,9})([smhd]?)")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
MAX_REASON_CHARS = 500
GRACE_S = 15.0  # on top of the builder's own time cap, for gathering and compressing
MAX_BUILDS = 2  # bundles built at once in this process; more get a 503 with Retry-After
_BUILDS = threading.BoundedSemaphore(MAX_BUILDS)


def parse_since(raw: str | None) -> float | str:
    """Seconds, or the one-line reason ``raw`` is not a duration."""
    if raw is None:
        return DEFAULT_SINCE_S
    m = _SINCE_RE.fullmatch(raw)
    if m is None:
        return f"query parameter 'since' must be seconds or a number with s, m, h or d (e.g. 30m), got {raw[:40]!r}"
    seconds = int(m[1]) * _UNIT_S[m[2]]
    if not 1 <= seconds <= MAX_SINCE_S:
        return f"query parameter 'since' must be between 1 s and {MAX_SINCE_S / 86400:g} days, got {raw[:40]}"
    return float(seconds)


def clean_reason(raw: str | None) -> str | None:
    if raw is None:
        return None
    text = " ".join(_CONTROL_RE.sub(" ", raw).split())
    return text[:MAX_REASON_CHARS] or None


def _decision(identity: Any, configured: bool) -> tuple[str, int | None, str]:
    if not configured:
        return (
            "denied: no tokens configured",
            403,
            "bundles are disabled: no operator token is configured on this agent (tokens_file)",
        )
    if identity.role is None:
        return "denied: unauthenticated", 401, "a valid operator bearer token is required"
    if identity.role != "operator":
        return (
            f"denied: role {identity.role}",
            403,
            f"token {identity.name!r} has role {identity.role!r}; operator needed",
        )
    return "allowed", None, ""


async def bundle(state: AppState, request: Request) -> Response:
    """Authorize, audit, then build the bundle off both loops; the archive or a one-line JSON error."""
    params = request.query_params
    since = parse_since(params.get("since"))
    if isinstance(since, str):
        return json_error(400, since)
    engine = params.get("engine")
    reason = clean_reason(params.get("reason"))
    store = state.tokens.current()
    identity = store.identify(request.headers.get("authorization"))
    decision, status, message = _decision(identity, store.configured)
    known = engine is None or engine in state.runtime.engine_ids()
    if status is None and not known:
        decision, status, message = (
            "denied: unknown engine",
            404,
            f"no engine {_shown_id(engine or '')!r} on this host",
        )
    record = {
        "request_id": uuid.uuid4().hex,
        "actor": identity.name,
        "role": identity.role,
        "auth": "bearer" if identity.role is not None else "none",
        "remote": request.client.host if request.client else None,
        "action": "bundle",
        "engine": engine if known else _shown_id(engine or ""),
        "since_s": since,
        "reason": reason,
    }
    rid = {"X-Request-Id": record["request_id"]}
    if not await _audit_attempt(state, record, decision, named=identity.role is not None):
        return json_error(
            503,
            "audit log unavailable: bundles are refused (the agent's log says why)",
            {**rid, "Retry-After": "30"},
        )
    if status is not None:
        extra = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
        return json_error(status, message, {**rid, **extra})
    ask = BundleRequest(
        since_s=since,
        engine=engine,
        reason=reason,
        actor=identity.name,
        role=identity.role,
        request_id=record["request_id"],
    )
    if not _BUILDS.acquire(blocking=False):
        why = f"{MAX_BUILDS} bundles are being built already: retry in a few seconds"
        await asyncio.to_thread(state.audit.try_append, **record, result=f"failed: {why}")
        return json_error(503, why, {**rid, "Retry-After": "5"})
    try:
        result = await asyncio.wait_for(state.runtime.bundle(ask, state.audit), MAX_SECONDS + GRACE_S)  # type: ignore[attr-defined]
    except TimeoutError:
        why = f"the bundle was not built within {MAX_SECONDS + GRACE_S:g} s (time cap): ask for a shorter since= or one engine="
        await asyncio.to_thread(state.audit.try_append, **record, result=f"failed: {why}")
        return json_error(503, why, rid)
    except BundleError as exc:
        await asyncio.to_thread(state.audit.try_append, **record, result=f"failed: {exc}")
        return json_error(500, f"bundle could not be written: {exc}", rid)
    finally:
        _BUILDS.release()
    headers = {
        **rid,
        "Content-Disposition": f'attachment; filename="{result.filename}"',
        "Cache-Control": "no-store",
    }
    return Response(result.data, media_type="application/gzip", headers=headers)
