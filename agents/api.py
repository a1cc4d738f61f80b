"""The agent's HTTP API (Starlette): read endpoints, engine actions, the Prometheus exposition.

Handlers only translate HTTP to calls on an ``AgentRuntime`` and back; nothing here touches engines,
NVML or the clock. Garbage requests get a 4xx with a one-line JSON message, never a 5xx.

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
=====================================  =========  ==============================================

Every mutation attempt, allowed or denied, is appended to the audit log before anything happens; if the
audit log cannot be written the mutation is refused (503). Identity is the bearer token's name, never the
address (through an SSH tunnel every caller is 127.0.0.1).

:class:`Guard` (outermost ASGI layer) enforces what is independent of routes: the Host header must name a
loopback address or a configured name (DNS-rebinding guard), bodies are capped, WebSocket upgrades are
refused, and every response body goes through ``redact`` (a :class:`agents.launchguard.Redactor`) so
the secrets the agent injected into engines never leave it, whatever an engine printed. At most
``max_in_flight`` requests are answered at once; past that the agent sheds load with 503 JSON and
``Retry-After``. Large bodies are redacted once (an LRU keyed by the body's digest) and off the loop;
``/v1/history`` is built once per snapshot and span.

Denied attempts without a valid token are audited through :class:`agents.denials.DenialLimiter` (the
first few per peer and minute in full, then one summary line). Error bodies never name a filesystem
path: the audit log's failure is only described, in the agent's log.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agents.audit import AuditLog, AuditUnavailable
from agents.auth import Identity, TokenSource, TokenStore
from agents.denials import DenialLimiter, Summary
from agents.exporter import make_registry, render
from agents.schema import HostSnapshot
from agents.supervisor.engine import ALIVE_STATES

log = logging.getLogger(__name__)

ACTIONS = ("start", "stop", "restart")
MAX_LOG_LINES = 5000
MAX_AUDIT_LINES = 1000
MAX_BODY_BYTES = 64 * 1024
MAX_HEADER_BYTES = 32 * 1024  # all header names and values together
MAX_HEADERS = 100
MAX_IN_FLIGHT = 256  # requests being answered at once; idle sockets never count (agents/connguard.py)
RETRY_AFTER_S = 1
REDACT_CACHE_MIN_BYTES = 16 * 1024  # bodies this large are redacted once per distinct body
REDACT_OFF_LOOP_BYTES = 256 * 1024  # and, when not cached yet, in a worker thread
_ENGINE_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_MAX_PARAM_DIGITS = 12
_PATH_RE = re.compile(r"(?<![\w.~/:-])(?:~|\.{1,2})?/[\w.@+-]+(?:/[\w.@+-]*)*")  # not URLs' paths
PUBLIC, VIEWER, OPERATOR = "public", "viewer", "operator"


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


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
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
        return _error(400, f"query parameter {name!r} must be an integer of ASCII digits 0-9, got {raw[:40]!r}")
    if len(raw.lstrip("0")) > _MAX_PARAM_DIGITS:
        return _error(400, f"query parameter {name!r} must be between {lo} and {hi}, got {raw[:40]}")
    value = int(raw)
    if not lo <= value <= hi:
        return _error(400, f"query parameter {name!r} must be between {lo} and {hi}, got {value}")
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


Handler = Callable[[Request], Awaitable[Response]]


def role(required: str) -> Callable[[Handler], Handler]:
    """Declare the role a route needs (``public``, ``viewer`` or ``operator``)."""

    def mark(handler: Handler) -> Handler:
        handler.role = required  # type: ignore[attr-defined]
        return handler

    return mark


def _shown_id(engine_id: str) -> str:
    return engine_id if _ENGINE_ID_RE.fullmatch(engine_id) else engine_id[:64].encode("unicode_escape").decode() + "…"


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
    scrub = redact or (lambda text: text)
    limiter = denials if denials is not None else DenialLimiter()
    audit_trouble = _OncePer(60.0)
    history_cache: OrderedDict[tuple[int | None, float], bytes] = OrderedDict()
    flush_timer: asyncio.TimerHandle | None = None

    def check_read(request: Request) -> Response | None:
        store = tokens.current()
        if not store.configured:
            return None  # no tokens file: reads are open (the API is loopback-only then)
        identity = store.identify(request.headers.get("authorization"))
        if identity.role is None:
            return _error(401, "a valid bearer token (viewer or operator) is required", {"WWW-Authenticate": "Bearer"})
        return None

    @role(PUBLIC)
    async def healthz(request: Request) -> Response:
        snap = runtime.latest()
        return JSONResponse({"ok": True, "seq": snap.seq if snap else None})

    @role(VIEWER)
    async def snapshot(request: Request) -> Response:
        body = runtime.latest_json()
        if body is None:
            return _error(503, "no snapshot yet: the agent is starting", {"Retry-After": str(RETRY_AFTER_S)})
        return Response(body, media_type="application/json")

    @role(VIEWER)
    async def history(request: Request) -> Response:
        # Up to a day may be asked for; the answer holds what the ring buffer has (history_s at most), so a
        # console asking for its 15 minutes gets everything a shorter-lived agent kept instead of an error.
        seconds = _int_param(request, "seconds", int(runtime.history_s), 1, 86400)
        if isinstance(seconds, Response):
            return seconds
        span = min(float(seconds), runtime.history_s)
        snap = runtime.latest()
        key = (snap.seq if snap else None, span)
        body = history_cache.get(key)
        if body is None:  # built once per snapshot and span, however many consoles ask
            body = (await runtime.history_json(span)).encode()
            history_cache[key] = body
            while len(history_cache) > 4:
                history_cache.popitem(last=False)
        return Response(body, media_type="application/json")

    def engine_lines(request: Request, default: int, cap: int) -> tuple[str, int] | Response:
        """The known engine id and a valid ``lines`` parameter, or the 4xx that says what is wrong."""
        engine_id = request.path_params["engine_id"]
        if engine_id not in runtime.engine_ids():
            return _error(404, f"no engine {_shown_id(engine_id)!r} on this host")
        lines = _int_param(request, "lines", default, 1, cap)
        return lines if isinstance(lines, Response) else (engine_id, lines)

    @role(VIEWER)
    async def logs(request: Request) -> Response:
        got = engine_lines(request, 200, MAX_LOG_LINES)
        if isinstance(got, Response):
            return got
        engine_id, lines = got
        return JSONResponse({"engine": engine_id, "lines": await runtime.logs(engine_id, lines)})

    @role(VIEWER)
    async def audit_tail(request: Request) -> Response:
        got = engine_lines(request, 50, MAX_AUDIT_LINES)
        if isinstance(got, Response):
            return got
        engine_id, lines = got
        records = await asyncio.to_thread(audit.tail, lines, engine_id)
        return JSONResponse({"engine": engine_id, "records": records})

    def write_summaries(summaries: list[Summary]) -> None:
        for s in summaries:
            audit.try_append(
                request_id=uuid.uuid4().hex, actor=None, role=None, auth="none", remote=s.peer,
                action="rate-limited", engine=None, suppressed=s.suppressed, window_s=s.window_s,
                result=f"denied: {s.suppressed} more attempt(s) without a valid token from this peer, counted, "
                       f"not recorded one by one (rate limit: {limiter.full} per {s.window_s:.0f} s)",
            )  # fmt: skip

    def schedule_flush() -> None:
        nonlocal flush_timer
        delay = limiter.next_due()
        if flush_timer is not None or delay is None:
            return

        def flush() -> None:
            nonlocal flush_timer
            flush_timer = None
            write_summaries(limiter.due())
            schedule_flush()

        flush_timer = asyncio.get_running_loop().call_later(delay + 0.01, flush)

    def close() -> None:
        if flush_timer is not None:
            flush_timer.cancel()
        write_summaries(limiter.flush())

    @role(OPERATOR)
    async def action(request: Request) -> Response:
        engine_id, verb = request.path_params["engine_id"], request.path_params["action"]
        if verb not in ACTIONS:
            return _error(404, f"unknown action {verb[:40]!r}; use one of {', '.join(ACTIONS)}")
        store = tokens.current()
        identity = store.identify(request.headers.get("authorization"))
        client = request.client.host if request.client else None
        known = engine_id in runtime.engine_ids()
        decision, status, message = _authorize(identity, store, known, engine_id)
        request_id = uuid.uuid4().hex
        record = {
            "request_id": request_id,
            "actor": identity.name,
            "role": identity.role,
            "auth": "bearer" if identity.role is not None else "none",
            "remote": client,
            "action": verb,
            "engine": engine_id if known else _shown_id(engine_id),
        }
        rid = {"X-Request-Id": request_id}
        in_full, due = (True, []) if identity.role is not None else limiter.admit(client)
        try:
            if due:
                await asyncio.to_thread(write_summaries, due)
            if in_full:
                await asyncio.to_thread(audit.append, **record, result=decision)
            else:
                schedule_flush()
        except AuditUnavailable as exc:
            if audit_trouble.due(str(exc)):
                log.error("audit log %s unavailable, mutations refused: %s", getattr(exc, "path", None) or audit.path, exc)
            return _error(503, "audit log unavailable: mutations are refused (the agent's log says why)",
                          {**rid, "Retry-After": "30"})  # fmt: skip
        if status is not None:
            extra = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
            return _error(status, message, {**rid, **extra})
        before = runtime.engine_state(engine_id)
        try:
            state = await runtime.act(engine_id, verb)
        except ActionError as exc:
            await asyncio.to_thread(audit.try_append, **record, result=f"failed: {exc}")
            return _error(409, without_paths(str(exc)), rid)
        return JSONResponse(
            {"engine": engine_id, "action": verb, "accepted": True, "state": accepted_state(verb, before, state),
             "request_id": request_id},
            status_code=202,
            headers=rid,
        )  # fmt: skip

    @role(VIEWER)
    async def metrics(request: Request) -> Response:
        return Response(render(registry), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(404, f"no such endpoint: {request.method[:16]} {request.url.path[:200]}")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return _error(405, f"method {request.method[:16]} not allowed on {request.url.path[:200]}")

    async def internal_error(request: Request, exc: Exception) -> Response:
        return _error(500, "internal error; the agent's log has the details")

    def guarded(handler: Handler) -> Handler:
        needed = getattr(handler, "role", None)
        if needed not in (PUBLIC, VIEWER, OPERATOR):
            raise TypeError(f"route handler {handler.__name__} declares no role: deny by default")

        async def run(request: Request) -> Response:
            if needed == VIEWER:
                refused = check_read(request)
                if refused is not None:
                    return refused
            return await handler(request)

        run.role = needed  # type: ignore[attr-defined]
        return run

    routes = [
        Route("/healthz", guarded(healthz)),
        Route("/v1/snapshot", guarded(snapshot)),
        Route("/v1/history", guarded(history)),
        Route("/v1/engines/{engine_id}/logs", guarded(logs)),
        Route("/v1/engines/{engine_id}/audit", guarded(audit_tail)),
        Route("/v1/engines/{engine_id}/{action}", guarded(action), methods=["POST"]),
        Route("/metrics", guarded(metrics)),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        404: not_found, 405: not_allowed, Exception: internal_error,
    }  # fmt: skip
    app = Starlette(routes=routes, exception_handlers=handlers)  # type: ignore[arg-type]
    guard = Guard(app, allowed_hosts=allowed_hosts, redact=scrub, max_in_flight=max_in_flight)
    guard.closers.append(close)
    return guard


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


def _authorize(identity: Identity, tokens: TokenStore, known: bool, engine_id: str) -> tuple[str, int | None, str]:
    if not tokens.configured:
        return "denied: no tokens configured", 403, "mutations are disabled: no operator token is configured on this agent"
    if identity.role is None:
        return "denied: unauthenticated", 401, "a valid operator bearer token is required"
    if identity.role != "operator":
        return f"denied: role {identity.role}", 403, f"token {identity.name!r} has role {identity.role!r}; operator needed"
    if not known:
        return "denied: unknown engine", 404, f"no engine {_shown_id(engine_id)!r} on this host"
    return "allowed", None, ""


# --- the outer guard -------------------------------------------------------------------------------------

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def host_of(header: str) -> str:
    """The host part of a Host header value, lower-cased: ``[::1]:9300`` -> ``::1``, ``a:1`` -> ``a``."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def is_loopback_host(host: str) -> bool:
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class Guard:
    """Pure ASGI middleware: header and body caps, Host-header allow-list, no WebSockets, a bound on requests
    in flight (503 JSON + Retry-After past it), redacted response bodies. (h11's own limit only bounds
    *incomplete* requests: a 70 KB header that arrives in one read passes it, hence the caps here; vLLM
    GHSA-rxc4-3w6r-4v47 was exactly that.) ``close()`` runs ``closers`` (the app's pending audit summaries)."""

    def __init__(
        self,
        app: Any,
        *,
        allowed_hosts: Iterable[str] = (),
        redact: Callable[[str], str] = lambda text: text,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.app = app
        self.allowed = frozenset(h.strip("[]").lower() for h in allowed_hosts)
        self.redact = redact
        self.max_body_bytes = max_body_bytes
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.shed = 0
        self.closers: list[Callable[[], None]] = []
        self._redacted: OrderedDict[bytes, bytes] = OrderedDict()

    def close(self) -> None:
        for closer in self.closers:
            closer()

    def host_allowed(self, header: str | None) -> bool:
        if header is None:
            return True  # HTTP/1.0 without Host: not a browser, so not a rebinding vector
        host = host_of(header)
        return is_loopback_host(host) or host in self.allowed

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            self.shed += 1
            await _send_error(send, 503, "agent busy: too many requests in flight; retry shortly",
                              [(b"retry-after", str(RETRY_AFTER_S).encode())])  # fmt: skip
            return
        self.in_flight += 1
        try:
            await self._guarded(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _guarded(self, scope: dict, receive: Callable, send: Callable) -> None:
        raw_headers = scope.get("headers") or ()
        if len(raw_headers) > MAX_HEADERS or sum(len(k) + len(v) for k, v in raw_headers) > MAX_HEADER_BYTES:
            await _send_error(send, 431, f"request headers too large (limit {MAX_HEADERS} headers, {MAX_HEADER_BYTES} bytes)")
            return
        headers: dict[bytes, bytes] = {}
        for k, v in raw_headers:
            if k in headers and k in (b"host", b"content-length"):
                await _send_error(send, 400, f"duplicate {k.decode()} header")
                return
            headers[k] = v
        host = headers.get(b"host")
        if not self.host_allowed(None if host is None else host.decode("latin-1")):
            shown = host.decode("latin-1")[:80] if host else ""
            await _send_error(
                send, 403, f"Host header {shown!r} is not allowed (DNS-rebinding guard); add the name to [agent] allowed_hosts"
            )
            return
        length = headers.get(b"content-length")
        if length is not None:
            if not length.strip().isdigit():
                await _send_error(send, 400, "invalid Content-Length header")
                return
            if int(length) > self.max_body_bytes:
                await _send_error(send, 413, f"request body too large (limit {self.max_body_bytes} bytes)")
                return
        await self.app(scope, self._capped(receive), self._redacting(send))

    def _capped(self, receive: Callable) -> Callable:
        seen = 0
        limit = self.max_body_bytes

        async def capped() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # a chunked body past the cap: drop the rest, the handler sees it ended
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        return capped

    async def redacted(self, body: bytes) -> bytes:
        """``body`` with secrets masked. Large bodies: computed once per distinct body (an LRU keyed by
        its BLAKE2 digest: the same history is served to every console) and in a worker thread."""
        if len(body) < REDACT_CACHE_MIN_BYTES:
            return self._redact_bytes(body)
        key = hashlib.blake2b(body, digest_size=20).digest()
        hit = self._redacted.get(key)
        if hit is not None:
            self._redacted.move_to_end(key)
            return hit
        if len(body) >= REDACT_OFF_LOOP_BYTES:
            cleaned = await asyncio.to_thread(self._redact_bytes, body)
        else:
            cleaned = self._redact_bytes(body)
        self._redacted[key] = cleaned
        while len(self._redacted) > 8:
            self._redacted.popitem(last=False)
        return cleaned

    def _redact_bytes(self, body: bytes) -> bytes:
        text = body.decode("utf-8", errors="surrogateescape")
        cleaned = self.redact(text)
        return body if cleaned == text else cleaned.encode("utf-8", errors="surrogateescape")

    def _redacting(self, send: Callable) -> Callable:
        start: dict | None = None
        chunks: list[bytes] = []

        async def redacting(message: dict) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                chunks.clear()
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            try:
                body = await self.redacted(b"".join(chunks))
            except Exception:  # fail closed: an unredacted body never leaves, and the answer is still JSON
                log.exception("redacting a response failed; answering 500 instead")
                await _send_error(send, 500, "internal error; the agent's log has the details")
                return
            heads = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            heads.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": heads})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        return redacting


async def _send_error(send: Callable, status: int, message: str, extra: Iterable[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"error": message}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})
