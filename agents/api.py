"""The agent's HTTP API (Starlette): read endpoints, engine actions, the Prometheus exposition.

Handlers only translate HTTP to calls on an ``AgentRuntime`` and back; nothing here touches engines,
NVML or the clock. Garbage requests get a 4xx with a one-line JSON message, never a 5xx.

Mutations (start/stop/restart) need an operator bearer token. Until a tokens file is configured they are
refused (403), and every mutation attempt, allowed or denied, is appended to the audit log first; if the
audit log cannot be written the mutation is refused (503).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agents.audit import AuditLog, AuditUnavailable
from agents.auth import Identity, TokenStore
from agents.exporter import make_registry, render
from agents.schema import HostSnapshot

ACTIONS = ("start", "stop", "restart")
MAX_LOG_LINES = 5000
MAX_BODY_BYTES = 64 * 1024


class ActionError(Exception):
    """An action the runtime refused; the message is shown to the operator."""


class AgentRuntime(Protocol):
    history_s: float

    def latest(self) -> HostSnapshot | None: ...

    def latest_json(self) -> str | None: ...

    def history_json(self, seconds: float) -> str: ...

    def engine_ids(self) -> list[str]: ...

    def logs(self, engine_id: str, lines: int) -> list[str]: ...

    async def act(self, engine_id: str, action: str) -> str: ...


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int | JSONResponse:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        return _error(400, f"query parameter {name!r} must be an integer, got {raw[:40]!r}")
    if not lo <= value <= hi:
        return _error(400, f"query parameter {name!r} must be between {lo} and {hi}, got {value}")
    return value


def create_app(runtime: AgentRuntime, tokens: TokenStore, audit: AuditLog) -> Starlette:
    registry = make_registry(runtime.latest)

    async def healthz(request: Request) -> Response:
        snap = runtime.latest()
        return JSONResponse({"ok": True, "seq": snap.seq if snap else None})

    async def snapshot(request: Request) -> Response:
        body = runtime.latest_json()
        if body is None:
            return _error(503, "no snapshot yet: the agent is starting")
        return Response(body, media_type="application/json")

    async def history(request: Request) -> Response:
        seconds = _int_param(request, "seconds", int(runtime.history_s), 1, max(1, int(runtime.history_s)))
        if isinstance(seconds, Response):
            return seconds
        return Response(runtime.history_json(seconds), media_type="application/json")

    async def logs(request: Request) -> Response:
        engine_id = request.path_params["engine_id"]
        if engine_id not in runtime.engine_ids():
            return _error(404, f"no engine {engine_id!r} on this host")
        lines = _int_param(request, "lines", 200, 1, MAX_LOG_LINES)
        if isinstance(lines, Response):
            return lines
        return JSONResponse({"engine": engine_id, "lines": runtime.logs(engine_id, lines)})

    async def action(request: Request) -> Response:
        engine_id, verb = request.path_params["engine_id"], request.path_params["action"]
        if verb not in ACTIONS:
            return _error(404, f"unknown action {verb!r}; use one of {', '.join(ACTIONS)}")
        if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
            return _error(413, "request body too large")
        identity = tokens.identify(request.headers.get("authorization"))
        client = request.client.host if request.client else None
        known = engine_id in runtime.engine_ids()
        decision, status, message = _authorize(identity, tokens, known, engine_id)
        try:
            audit.append(actor=identity.name, remote=client, action=verb, engine=engine_id, result=decision)
        except AuditUnavailable as exc:
            return _error(503, f"audit log unavailable, mutations refused: {exc}")
        if status is not None:
            return _error(status, message)
        try:
            state = await runtime.act(engine_id, verb)
        except ActionError as exc:
            audit.try_append(actor=identity.name, remote=client, action=verb, engine=engine_id, result=f"failed: {exc}")
            return _error(409, str(exc))
        return JSONResponse({"engine": engine_id, "action": verb, "accepted": True, "state": state}, status_code=202)

    async def metrics(request: Request) -> Response:
        return Response(render(registry), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(404, f"no such endpoint: {request.method} {request.url.path}")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return _error(405, f"method {request.method} not allowed on {request.url.path}")

    routes = [
        Route("/healthz", healthz),
        Route("/v1/snapshot", snapshot),
        Route("/v1/history", history),
        Route("/v1/engines/{engine_id}/logs", logs),
        Route("/v1/engines/{engine_id}/{action}", action, methods=["POST"]),
        Route("/metrics", metrics),
    ]
    handlers: dict[int, Callable[[Request, Exception], Awaitable[Response]]] = {404: not_found, 405: not_allowed}
    return Starlette(routes=routes, exception_handlers=handlers)  # type: ignore[arg-type]


def _authorize(identity: Identity, tokens: TokenStore, known: bool, engine_id: str) -> tuple[str, int | None, str]:
    if not tokens.configured:
        return "denied: no tokens configured", 403, "mutations are disabled: no operator token is configured on this agent"
    if identity.role is None:
        return "denied: unauthenticated", 401, "a valid operator bearer token is required"
    if identity.role != "operator":
        return f"denied: role {identity.role}", 403, f"token {identity.name!r} has role {identity.role!r}; operator needed"
    if not known:
        return "denied: unknown engine", 404, f"no engine {engine_id!r} on this host"
    return "allowed", None, ""
