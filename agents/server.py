"""Run the agent: the runtime (supervision + collection) and its HTTP API (uvicorn) in one asyncio loop.

Transport rules:

* Loopback by default. Any other bind needs TLS (``tls_cert``/``tls_key``) *and* a tokens file, or the
  agent refuses to start (:func:`bind_problem`, one line, exit 2).
* TLS through uvicorn with TLS 1.2 as the floor; ``tls_client_ca`` requires and verifies client
  certificates (mTLS) against that CA. Identity still comes from the bearer token (uvicorn does not hand
  the peer certificate to the app).
* Hardening: h11 only (its header-size limit applies; httptools would ignore it), headers at most 64 KiB,
  ``X-Forwarded-For`` is never trusted (it would let a local caller forge the audit log's address), and
  no ``Server`` header. Idle sockets cannot starve real requests (agents/connguard.py: header and receipt
  deadlines that a trickle does not reset, connection caps that close the oldest *waiting* socket first,
  keep-alive limits, JSON 503 + Retry-After when load must be shed; uvicorn's ``limit_concurrency``,
  which counted idle sockets and answered text/plain, is off). The open-file limit is raised to the hard
  limit and the connection cap kept under it.
* The API runs on its own thread and event loop (agents/apithread.py), so however busy it is, the
  collection loop keeps its cadence.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import resource
import socket
import ssl
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from agents import __version__
from agents.api import Guard, create_app, is_loopback_host
from agents.apithread import ApiServer, LoopBridge
from agents.audit import AuditLog, AuditUnavailable
from agents.auth import TokenFile, TokenStore, loose_permissions
from agents.config import AgentConfig
from agents.connguard import ConnectionTable, Limits, limit_tls_handshake, limited_protocol, raise_fd_limit
from agents.launchguard import LaunchPolicy, Redactor, secret_values
from agents.runtime import AgentRuntime

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024
LISTEN_BACKLOG = 1024
HANDSHAKE_S = 5.0  # a TLS handshake must finish within this (asyncio's default is 60 s)


def bind_problem(config: AgentConfig) -> str | None:
    """Why the agent must not listen where ``config`` says (one line), or None."""
    host = config.listen_host
    if is_loopback_host(host.lower()):
        return None
    missing = []
    if config.tls_cert is None or config.tls_key is None:
        missing.append("TLS ([agent] tls_cert and tls_key)")
    if config.tokens_file is None:
        missing.append("bearer tokens ([agent] tokens_file)")
    if not missing:
        return None
    return (
        f"refusing to listen on {config.listen}: a non-loopback address needs {' and '.join(missing)}; "
        "listen on 127.0.0.1 and reach the agent through an SSH tunnel instead"
    )


def startup_problems(config: AgentConfig) -> str | None:
    """Everything that must stop the agent before it starts (bind policy, unreadable TLS files)."""
    problem = bind_problem(config)
    if problem:
        return problem
    for key in ("tls_cert", "tls_key", "tls_client_ca"):
        path = getattr(config, key)
        if path is not None and not os.access(path, os.R_OK):
            return f"[agent] {key}: cannot read {path}"
    return None


def startup_warnings(config: AgentConfig) -> list[str]:
    out = LaunchPolicy.of(config).warnings() + LaunchPolicy.engine_warnings(config.engines)
    for path in (config.tokens_file, config.tls_key):
        if path is not None:
            warning = loose_permissions(path)
            if warning:
                out.append(warning)
    short = Redactor(v for e in config.engines for v in secret_values(e.env)).too_short
    if short:
        out.append(
            f"{short} secret value(s) in engine env are shorter than 8 characters and are not redacted"
        )
    return out


def uvicorn_config(config: AgentConfig, app: Any, *, limits: Limits | None = None) -> Any:
    """The uvicorn configuration for ``config`` (loaded, TLS floor applied). ``limits``: connection limits
    and deadlines (default: sized to this process's open-file limit)."""
    import uvicorn

    limits = limits or Limits.for_fd_limit(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    tls: dict[str, Any] = {}
    if config.tls_cert is not None:
        tls = {"ssl_certfile": str(config.tls_cert), "ssl_keyfile": str(config.tls_key)}
        if config.tls_client_ca is not None:
            tls.update(ssl_ca_certs=str(config.tls_client_ca), ssl_cert_reqs=ssl.CERT_REQUIRED)
    ucfg = uvicorn.Config(
        app,
        host=config.listen_host,
        port=config.listen_port,
        http=limited_protocol(ConnectionTable(limits)),
        ws="none",
        log_level="warning",
        lifespan="off",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        limit_concurrency=None,  # it counted idle sockets and answered text/plain: see agents/connguard.py
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        timeout_keep_alive=max(1, round(limits.keep_alive_s)),
        timeout_graceful_shutdown=5,
        backlog=LISTEN_BACKLOG,
        **tls,
    )
    ucfg.load()
    if ucfg.ssl is not None:
        ucfg.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
    return ucfg


def build_app(
    config: AgentConfig, runtime: AgentRuntime, loop: asyncio.AbstractEventLoop | None = None
) -> Guard:
    """The API app over ``runtime``; ``loop``: the runtime's loop, when the API is served from another."""
    tokens = TokenFile(config.tokens_file) if config.tokens_file is not None else TokenStore()
    audit = AuditLog(runtime.state_dir / "audit.log", host=runtime.collector.host, agent_version=__version__)
    try:
        audit.prepare()  # the chain's key is created at first start, not at the first record
    except AuditUnavailable as exc:
        log.error("audit log unavailable, actions will be refused: %s", exc)
    # The agent's own decisions (automatic restarts, backoff, adoptions, refusals) go to the same chain,
    # written in order by one worker thread: an fsynced record never blocks the supervision loop.
    runtime.set_event_sink(_threaded_agent_records(audit))
    allowed = {*config.allowed_hosts, _hostname()}
    if not is_loopback_host(config.listen_host.lower()):
        allowed.add(config.listen_host)
    return create_app(
        LoopBridge(runtime, loop), tokens, audit, allowed_hosts=allowed, redact=runtime.redactor
    )


def _threaded_agent_records(audit: AuditLog) -> Callable[[str, str, str], None]:
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-agent")

    def written(done: Future[object]) -> None:
        if (exc := done.exception()) is not None:
            log.error("audit record of an agent decision not written: %s", exc)

    def sink(action: str, engine: str, result: str) -> None:
        writer.submit(audit.append_agent, action, result=result, engine=engine).add_done_callback(written)

    return sink


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port; OSError with one clear line when that is impossible."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_REUSEADDR, 1
        )  # restart over TIME_WAIT, never SO_REUSEPORT
        sock.bind(addr)
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        why = (
            "address already in use (another agent?)"
            if exc.errno == errno.EADDRINUSE
            else (exc.strerror or str(exc))
        )
        raise OSError(f"cannot listen on {host}:{port}: {why}") from None
    sock.setblocking(False)
    return sock


def _hostname() -> str:
    return socket.gethostname().lower()


async def serve(
    config: AgentConfig,
    *,
    stop: asyncio.Event,
    stop_engines: bool | None = None,
    ready: asyncio.Event | None = None,
    on_listening: Callable[[], None] | None = None,
) -> None:
    """Run the agent (supervision, collection, API) until ``stop`` is set."""
    import uvicorn  # imported here: only the running agent needs the server

    from agents.statedir import claim_state_dir

    # One agent per state_dir, held for its whole life, claimed before it binds, adopts or starts anything
    # (StateDirError: one line). Released when this task ends, or by the kernel if the process dies.
    state_lock = claim_state_dir(config.state_dir)
    if (task := asyncio.current_task()) is not None:
        task.add_done_callback(lambda _t: state_lock.release())

    problem = startup_problems(config)
    if problem:
        raise ValueError(problem)
    # Bind before anything else: a taken port is one clear error, and no engine is started or adopted by an
    # agent that cannot serve. uvicorn then serves on this very socket (no window for another process).
    sock = listen_socket(config.listen_host, config.listen_port)
    if on_listening is not None:
        on_listening()
    raise_fd_limit()  # before the connection cap is sized from it (uvicorn_config)
    runtime = AgentRuntime(config)
    try:
        app = build_app(config, runtime, asyncio.get_running_loop())
        ucfg = uvicorn_config(config, app)
        api = ApiServer(
            uvicorn.Server(ucfg), sock, prepare_loop=lambda loop: limit_tls_handshake(loop, HANDSHAKE_S)
        )
    except BaseException:
        sock.close()
        await runtime.shutdown(False)
        raise
    for warning in startup_warnings(config):
        log.warning("%s", warning)
    await runtime.start()
    try:
        await api.start()  # its own thread and loop: however busy the API is, collection keeps its cadence
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        await api.stop()
        with contextlib.suppress(Exception):
            app.close()  # pending audit summaries of rate-limited denials
        await runtime.shutdown(stop_engines)
