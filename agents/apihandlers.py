"""The agent API's handlers: each a module-level ``async (AppState, Request) -> Response``.

:class:`AppState` is what the handlers of one app share: the runtime (an :class:`ApiRuntime`), the tokens,
the audit log, the denial limiter, the /metrics registry and the caches. Handlers only translate HTTP to
calls on the runtime and back; a bad request is a 4xx with a one-line JSON message. Which role each
handler needs is declared in ``agents.api.ROUTES``; the action handler checks the operator token itself,
because every attempt, allowed or denied, is audited before anything happens.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from agents.apiguard import RETRY_AFTER_S
from agents.audit import AuditLog, AuditUnavailable
from agents.auth import Identity, TokenSource, TokenStore
from agents.denials import DenialLimiter, Summary, summary_record
from agents.exporter import render
from agents.schema import ACTIONS, ALIVE_STATES, HostSnapshot
from agents.supervisor.actions import OUTCOME_REPORTER

log = logging.getLogger(__name__)

MAX_LOG_LINES = 5000
MAX_AUDIT_LINES = 1000
HISTORY_CACHE_SIZE = 4  # (snapshot, span) answers kept: consoles ask for a handful of spans
_ENGINE_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_MAX_PARAM_DIGITS = 12
_PATH_RE = re.compile(r"(?<![\w.~/:-])(?:~|\.{1,2})?/[\w.@+-]+(?:/[\w.@+-]*)*")  # not URLs' paths


class ActionError(Exception):
    """An action the runtime refused; the message is shown to the operator."""


class ApiRuntime(Protocol):
    """What the API needs of the agent (``agents.apithread.LoopBridge`` adapts an ``AgentRuntime``)."""

    history_s: float

    def latest(self) -> HostSnapshot | None: ...

    def latest_json(self) -> str | None: ...

    def engine_ids(self) -> list[str]: ...

    def engine_state(self, engine_id: str) -> str | None: ...

    async def history_json(self, seconds: float) -> str: ...

    async def logs(self, engine_id: str, lines: int) -> list[str]: ...

    async def act(self, engine_id: str, action: str) -> str: ...


class _OncePer:
    """True for a message not seen in the last ``period_s`` (so a flood logs one line per cause)."""

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self._last: dict[str, float] = {}

    def due(self, message: str) -> bool:
        now = time.monotonic()
        if now - self._last.get(message, -float("inf")) < self.period_s:
            return False
        if len(self._last) > 64:
            self._last.clear()
        self._last[message] = now
        return True


@dataclass(slots=True, eq=False)
class AppState:
    """What the handlers of one app share. ``tokens``: a TokenStore or a re-reading TokenFile."""

    runtime: ApiRuntime
    tokens: TokenSource
    audit: AuditLog
    limiter: DenialLimiter
    registry: Any  # the /metrics collector registry (agents.exporter.make_registry)
    history_cache: OrderedDict[tuple[int | None, float], bytes] = field(default_factory=OrderedDict)
    audit_trouble: _OncePer = field(default_factory=lambda: _OncePer(60.0))
    flush_timer: asyncio.TimerHandle | None = None


StateHandler = Callable[[AppState, Request], Awaitable[Response]]


# --- small pure helpers -----------------------------------------------------------------------------------


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def without_paths(text: str) -> str:
    """``text`` with every absolute or relative filesystem path cut to ``…/<last part>``."""
    return _PATH_RE.sub(lambda m: "…/" + m.group().rstrip("/").rsplit("/", 1)[-1], text)


def _int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int | JSONResponse:
    """A query parameter of ASCII digits only (no sign, ``_``, spaces or other scripts' digits)."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()):
        return json_error(
            400, f"query parameter {name!r} must be an integer of ASCII digits 0-9, got {raw[:40]!r}"
        )
    if len(raw.lstrip("0")) > _MAX_PARAM_DIGITS:
        return json_error(400, f"query parameter {name!r} must be between {lo} and {hi}, got {raw[:40]}")
    value = int(raw)
    if not lo <= value <= hi:
        return json_error(400, f"query parameter {name!r} must be between {lo} and {hi}, got {value}")
    return value


def accepted_state(action: str, before: str | None, reported: str) -> str:
    """The state an accepted action leaves the engine in: what the runtime reported if the action already
    moved it, else the state its first step enters (``stopping`` for a stop of a live engine)."""
    if before is None or reported != before:
        return reported
    if action == "start":
        return "starting"
    if before in ALIVE_STATES:
        return "stopping"
    return "stopped" if action == "stop" else "starting"


def _shown_id(engine_id: str) -> str:
    return (
        engine_id
        if _ENGINE_ID_RE.fullmatch(engine_id)
        else engine_id[:64].encode("unicode_escape").decode() + "…"
    )


def _authorize(
    identity: Identity, tokens: TokenStore, known: bool, engine_id: str
) -> tuple[str, int | None, str]:
    """The audit decision, and the refusal's status and message (None and "" when allowed)."""
    if not tokens.configured:
        return (
            "denied: no tokens configured",
            403,
            "mutations are disabled: no operator token is configured on this agent",
        )
    if identity.role is None:
        return "denied: unauthenticated", 401, "a valid operator bearer token is required"
    if identity.role != "operator":
        return (
            f"denied: role {identity.role}",
            403,
            f"token {identity.name!r} has role {identity.role!r}; operator needed",
        )
    if not known:
        return "denied: unknown engine", 404, f"no engine {_shown_id(engine_id)!r} on this host"
    return "allowed", None, ""


# --- read handlers ----------------------------------------------------------------------------------------


async def healthz(state: AppState, request: Request) -> Response:
    snap = state.runtime.latest()
    return JSONResponse({"ok": True, "seq": snap.seq if snap else None})


async def snapshot(state: AppState, request: Request) -> Response:
    body = state.runtime.latest_json()
    if body is None:
        return json_error(503, "no snapshot yet: the agent is starting", {"Retry-After": str(RETRY_AFTER_S)})
    return Response(body, media_type="application/json")


async def history(state: AppState, request: Request) -> Response:
    # Up to a day may be asked for; the answer holds what the ring buffer has (history_s at most), so a
    # console asking for its 15 minutes gets everything a shorter-lived agent kept instead of an error.
    runtime, cache = state.runtime, state.history_cache
    seconds = _int_param(request, "seconds", int(runtime.history_s), 1, 86400)
    if isinstance(seconds, Response):
        return seconds
    span = min(float(seconds), runtime.history_s)
    snap = runtime.latest()
    key = (snap.seq if snap else None, span)
    body = cache.get(key)
    if body is None:  # built once per snapshot and span, however many consoles ask
        body = (await runtime.history_json(span)).encode()
        cache[key] = body
        while len(cache) > HISTORY_CACHE_SIZE:
            cache.popitem(last=False)
    return Response(body, media_type="application/json")


def _engine_lines(state: AppState, request: Request, default: int, cap: int) -> tuple[str, int] | Response:
    """The known engine id and a valid ``lines`` parameter, or the 4xx that says what is wrong."""
    engine_id = request.path_params["engine_id"]
    if engine_id not in state.runtime.engine_ids():
        return json_error(404, f"no engine {_shown_id(engine_id)!r} on this host")
    lines = _int_param(request, "lines", default, 1, cap)
    return lines if isinstance(lines, Response) else (engine_id, lines)


async def logs(state: AppState, request: Request) -> Response:
    got = _engine_lines(state, request, 200, MAX_LOG_LINES)
    if isinstance(got, Response):
        return got
    engine_id, lines = got
    return JSONResponse({"engine": engine_id, "lines": await state.runtime.logs(engine_id, lines)})


async def audit_tail(state: AppState, request: Request) -> Response:
    got = _engine_lines(state, request, 50, MAX_AUDIT_LINES)
    if isinstance(got, Response):
        return got
    engine_id, lines = got
    records = await asyncio.to_thread(state.audit.tail, lines, engine_id)
    return JSONResponse({"engine": engine_id, "records": records})


async def metrics(state: AppState, request: Request) -> Response:
    return Response(render(state.registry), media_type="text/plain; version=0.0.4; charset=utf-8")


# --- the action handler -----------------------------------------------------------------------------------


async def action(state: AppState, request: Request) -> Response:
    """Authorize, audit (before anything happens), then ask the runtime; 202 with the accepted state."""
    engine_id, verb = request.path_params["engine_id"], request.path_params["action"]
    if verb not in ACTIONS:
        return json_error(404, f"unknown action {verb[:40]!r}; use one of {', '.join(ACTIONS)}")
    store = state.tokens.current()
    identity = store.identify(request.headers.get("authorization"))
    known = engine_id in state.runtime.engine_ids()
    decision, status, message = _authorize(identity, store, known, engine_id)
    record = {
        "request_id": uuid.uuid4().hex,
        "actor": identity.name,
        "role": identity.role,
        "auth": "bearer" if identity.role is not None else "none",
        "remote": request.client.host if request.client else None,
        "action": verb,
        "engine": engine_id if known else _shown_id(engine_id),
    }
    rid = {"X-Request-Id": record["request_id"]}
    if not await _audit_attempt(state, record, decision, named=identity.role is not None):
        return json_error(
            503,
            "audit log unavailable: mutations are refused (the agent's log says why)",
            {**rid, "Retry-After": "30"},
        )
    if status is not None:
        extra = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
        return json_error(status, message, {**rid, **extra})
    before = state.runtime.engine_state(engine_id)
    # A watched engine's action command finishes after this answer: its outcome (exit status, output tail) is
    # audited under this request's actor and id through the reporter (agents/supervisor/actions.py).
    reporter = OUTCOME_REPORTER.set(functools.partial(_audit_outcome, state, dict(record)))
    try:
        reported = await state.runtime.act(engine_id, verb)
    except ActionError as exc:
        await asyncio.to_thread(state.audit.try_append, **record, result=f"failed: {exc}")
        return json_error(409, without_paths(str(exc)), rid)
    finally:
        OUTCOME_REPORTER.reset(reporter)
    body = {
        "engine": engine_id,
        "action": verb,
        "accepted": True,
        "state": accepted_state(verb, before, reported),
        "request_id": record["request_id"],
    }
    return JSONResponse(body, status_code=202, headers=rid)


def _audit_outcome(state: AppState, record: dict[str, Any], outcome: str) -> None:
    """The outcome of an accepted action, as a second record of its request (blocking: a worker thread)."""
    if not state.audit.try_append(**record, result=outcome):
        log.error(
            "audit log unavailable: the outcome of request %s was not recorded: %s",
            record["request_id"],
            outcome,
        )


async def _audit_attempt(state: AppState, record: dict[str, Any], decision: str, *, named: bool) -> bool:
    """Append the attempt to the audit log (unnamed denials through the limiter); False if it cannot be."""
    in_full, due = (True, []) if named else state.limiter.admit(record["remote"])
    try:
        if due:
            await asyncio.to_thread(write_summaries, state, due)
        if in_full:
            await asyncio.to_thread(state.audit.append, **record, result=decision)
        else:
            schedule_flush(state)
    except AuditUnavailable as exc:
        if state.audit_trouble.due(str(exc)):
            log.error(
                "audit log %s unavailable, mutations refused: %s",
                getattr(exc, "path", None) or state.audit.path,
                exc,
            )
        return False
    return True


# --- summaries of rate-limited denials --------------------------------------------------------------------


def write_summaries(state: AppState, summaries: list[Summary]) -> None:
    for s in summaries:
        state.audit.try_append(request_id=uuid.uuid4().hex, **summary_record(s, state.limiter.full))


def schedule_flush(state: AppState) -> None:
    """Write the pending summaries when the earliest window ends (one timer at a time, on this loop)."""
    delay = state.limiter.next_due()
    if state.flush_timer is not None or delay is None:
        return
    state.flush_timer = asyncio.get_running_loop().call_later(delay + 0.01, _flush, state)


def _flush(state: AppState) -> None:
    state.flush_timer = None
    write_summaries(state, state.limiter.due())
    schedule_flush(state)


def close(state: AppState) -> None:
    """Cancel the timer and write every pending summary (the agent is stopping)."""
    if state.flush_timer is not None:
        state.flush_timer.cancel()
    write_summaries(state, state.limiter.flush())
