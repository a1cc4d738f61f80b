"""The agent's HTTP API (Starlette): the route table, access by role, and the app it builds.

:data:`ROUTES` is the one table of paths, handlers and the role each needs; :func:`create_app` binds every
handler (module-level ``async (AppState, Request) -> Response`` functions in :mod:`agents.apihandlers`)
to one :class:`AppState` (the runtime, tokens, audit log, denial limiter, metrics registry and caches)
and wraps the app in :class:`agents.apiguard.Guard` (Host-header allow-list, request caps, no
WebSockets, load shedding, redaction of every response body). Garbage requests get a 4xx with a
one-line JSON message, never a 5xx.

Access (deny by default: every route declares its role, and building the app fails if one does not):

=====================================  =========  ==============================================
route                                  role       notes
=====================================  =========  ==============================================
GET /healthz                           public     liveness only: ``{"ok", "seq"}``
GET /v1/snapshot, /v1/history          viewer     open when no tokens file is configured
GET /v1/engines/{id}/logs              viewer     engine output, passed through the redactor
GET /v1/engines/{id}/audit?lines=N     viewer     recent audit records for that engine
GET /metrics                           viewer     Prometheus scrapers send ``authorization`` too
POST /v1/engines/{id}/start|stop|restart  operator  refused (403) until a tokens file is configured
GET /v1/bundle?since=&engine=&reason=  operator  incident bundle (.tar.gz), audited (agents/bundle_api.py)
=====================================  =========  ==============================================

Every mutation attempt, allowed or denied, is appended to the audit log before anything happens; if the
audit log cannot be written the mutation is refused (503). Identity is the bearer token's name, never the
address (through an SSH tunnel every caller is 127.0.0.1). Denied attempts without a valid token are
audited through :class:`agents.denials.DenialLimiter` (the first few per peer and minute in full, then one
summary line). Error bodies never name a filesystem path: the audit log's failure is only described, in
the agent's log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agents.apiguard import MAX_IN_FLIGHT, Guard, host_of, is_loopback_host
from agents.apihandlers import (
    ActionError,
    ApiRuntime,
    AppState,
    StateHandler,
    accepted_state,
    action,
    audit_tail,
    close,
    healthz,
    history,
    json_error,
    logs,
    metrics,
    snapshot,
    without_paths,
)
from agents.audit import AuditLog
from agents.auth import TokenSource
from agents.bench_api import bench
from agents.bundle_api import bundle
from agents.denials import DenialLimiter
from agents.exporter import make_registry

PUBLIC, VIEWER, OPERATOR = "public", "viewer", "operator"
ROLES = (PUBLIC, VIEWER, OPERATOR)
Handler = Callable[[Request], Awaitable[Response]]


# --- routes -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One row of the route table: the path, its handler, the role it needs and its methods."""

    path: str
    handler: StateHandler
    role: str
    methods: tuple[str, ...] | None = None  # None: GET (and HEAD)


ROUTES: tuple[Endpoint, ...] = (
    Endpoint("/healthz", healthz, PUBLIC),
    Endpoint("/v1/snapshot", snapshot, VIEWER),
    Endpoint("/v1/history", history, VIEWER),
    Endpoint("/v1/engines/{engine_id}/logs", logs, VIEWER),
    Endpoint("/v1/engines/{engine_id}/audit", audit_tail, VIEWER),
    Endpoint("/v1/engines/{engine_id}/bench", bench, OPERATOR, ("POST",)),
    Endpoint("/v1/engines/{engine_id}/{action}", action, OPERATOR, ("POST",)),
    Endpoint("/metrics", metrics, VIEWER),
    Endpoint("/v1/bundle", bundle, OPERATOR),
)


def check_read(state: AppState, request: Request) -> Response | None:
    """None if ``request`` may read (a viewer or operator token, or no tokens file), else the 401."""
    store = state.tokens.current()
    if not store.configured:
        return None  # no tokens file: reads are open (the API is loopback-only then)
    identity = store.identify(request.headers.get("authorization"))
    if identity.role is None:
        return json_error(
            401, "a valid bearer token (viewer or operator) is required", {"WWW-Authenticate": "Bearer"}
        )
    return None


def bind(state: AppState, endpoint: Endpoint) -> Handler:
    """``endpoint``'s handler as a Starlette endpoint over ``state``, reads checked; it carries ``.role``.
    Operator routes check their token themselves, because every attempt is audited."""
    if endpoint.role not in ROLES:
        raise TypeError(f"route {endpoint.path} declares no known role ({endpoint.role!r}): deny by default")
    handler, needs_read = endpoint.handler, endpoint.role == VIEWER

    async def run(request: Request) -> Response:
        if needs_read:
            refused = check_read(state, request)
            if refused is not None:
                return refused
        return await handler(state, request)

    run.role = endpoint.role  # type: ignore[attr-defined]
    run.__name__ = run.__qualname__ = getattr(handler, "__name__", "endpoint")
    return run


async def not_found(request: Request, exc: Exception) -> Response:
    return json_error(404, f"no such endpoint: {request.method[:16]} {request.url.path[:200]}")


async def not_allowed(request: Request, exc: Exception) -> Response:
    return json_error(405, f"method {request.method[:16]} not allowed on {request.url.path[:200]}")


async def internal_error(request: Request, exc: Exception) -> Response:
    return json_error(500, "internal error; the agent's log has the details")


EXCEPTION_HANDLERS: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
    404: not_found,
    405: not_allowed,
    Exception: internal_error,
}


def _unchanged(text: str) -> str:
    return text


def create_app(
    runtime: ApiRuntime,
    tokens: TokenSource,
    audit: AuditLog,
    *,
    allowed_hosts: Iterable[str] = (),
    redact: Callable[[str], str] | None = None,
    denials: DenialLimiter | None = None,
    max_in_flight: int = MAX_IN_FLIGHT,
) -> Guard:
    """The API app, wrapped in :class:`Guard`. ``tokens``: a TokenStore or a re-reading TokenFile."""
    registry = make_registry(runtime.latest, getattr(runtime, "engine_exports", None))
    limiter = denials if denials is not None else DenialLimiter()
    state = AppState(runtime, tokens, audit, limiter, registry)
    routes = [Route(e.path, bind(state, e), methods=list(e.methods) if e.methods else None) for e in ROUTES]
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)  # type: ignore[arg-type]
    app.state.api = state
    guard = Guard(app, allowed_hosts=allowed_hosts, redact=redact or _unchanged, max_in_flight=max_in_flight)
    guard.closers.append(partial(close, state))
    return guard


__all__ = [
    "OPERATOR",
    "PUBLIC",
    "ROUTES",
    "VIEWER",
    "ActionError",
    "ApiRuntime",
    "AppState",
    "Endpoint",
    "Guard",
    "accepted_state",
    "bind",
    "check_read",
    "create_app",
    "host_of",
    "is_loopback_host",
    "without_paths",
]
