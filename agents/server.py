"""Run the agent: the runtime (supervision + collection) and its HTTP API (uvicorn) in one asyncio loop.

Transport rules (reliability.md §3.3, §3.5, §3.11):

* Loopback by default. Any other bind needs TLS (``tls_cert``/``tls_key``) *and* a tokens file, or the
  agent refuses to start (:func:`bind_problem`, one line, exit 2).
* TLS through uvicorn with TLS 1.2 as the floor; ``tls_client_ca`` requires and verifies client
  certificates (mTLS) against that CA. Identity still comes from the bearer token (uvicorn does not hand
  the peer certificate to the app).
* Hardening: h11 only (its header-size limit applies; httptools would ignore it), headers at most 64 KiB,
  at most 64 concurrent connections, a request must arrive in full within ``RECEIPT_DEADLINE_S`` (uvicorn's
  keep-alive timer resets on every byte, so a slowloris would otherwise hold a connection forever),
  ``X-Forwarded-For`` is never trusted (it would let a local caller forge the audit log's address), and
  no ``Server`` header.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import ssl
from collections.abc import Callable
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from agents import __version__
from agents.api import Guard, create_app, is_loopback_host
from agents.audit import AuditLog
from agents.auth import TokenFile, TokenStore, loose_permissions
from agents.config import AgentConfig
from agents.launchguard import LaunchPolicy, Redactor, secret_values
from agents.runtime import AgentRuntime

log = logging.getLogger(__name__)

RECEIPT_DEADLINE_S = 10.0
LIMIT_CONCURRENCY = 64
MAX_HEADER_BYTES = 64 * 1024


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
    out = LaunchPolicy.of(config).warnings()
    for path in (config.tokens_file, config.tls_key):
        if path is not None:
            warning = loose_permissions(path)
            if warning:
                out.append(warning)
    short = Redactor(v for e in config.engines for v in secret_values(e.env)).too_short
    if short:
        out.append(f"{short} secret value(s) in engine env are shorter than 8 characters and are not redacted")
    return out


def deadline_protocol(deadline_s: float = RECEIPT_DEADLINE_S) -> type[H11Protocol]:
    """An h11 protocol that closes a connection whose request has not fully arrived ``deadline_s`` after
    its first byte (or after the connection opened, for a silent client)."""

    class DeadlineH11(H11Protocol):
        _started: float | None = None
        _timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._started = self.loop.time()
            self._arm(deadline_s)

        def data_received(self, data: bytes) -> None:
            if self._started is None:
                self._started = self.loop.time()
            super().data_received(data)
            if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
                self._started = None  # the request is in; the response is ours to deliver

        def connection_lost(self, exc: Exception | None) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            super().connection_lost(exc)

        def _arm(self, delay: float) -> None:
            self._timer = self.loop.call_later(max(0.05, delay), self._check)

        def _check(self) -> None:
            self._timer = None
            if self.transport.is_closing():
                return
            if self._started is None:
                self._arm(deadline_s)
                return
            left = self._started + deadline_s - self.loop.time()
            if left <= 0:
                self.transport.close()
            else:
                self._arm(left)

    return DeadlineH11


def uvicorn_config(config: AgentConfig, app: Any, *, deadline_s: float = RECEIPT_DEADLINE_S):
    """The uvicorn configuration for ``config`` (loaded, TLS floor applied)."""
    import uvicorn

    tls: dict[str, Any] = {}
    if config.tls_cert is not None:
        tls = {"ssl_certfile": str(config.tls_cert), "ssl_keyfile": str(config.tls_key)}
        if config.tls_client_ca is not None:
            tls.update(ssl_ca_certs=str(config.tls_client_ca), ssl_cert_reqs=ssl.CERT_REQUIRED)
    ucfg = uvicorn.Config(
        app,
        host=config.listen_host,
        port=config.listen_port,
        http=deadline_protocol(deadline_s),
        ws="none",
        log_level="warning",
        lifespan="off",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        limit_concurrency=LIMIT_CONCURRENCY,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        timeout_keep_alive=5,
        **tls,
    )
    ucfg.load()
    if ucfg.ssl is not None:
        ucfg.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
    return ucfg


def build_app(config: AgentConfig, runtime: AgentRuntime) -> Guard:
    tokens = TokenFile(config.tokens_file) if config.tokens_file is not None else TokenStore()
    audit = AuditLog(runtime.state_dir / "audit.log", host=runtime.collector.host, agent_version=__version__)
    allowed = {*config.allowed_hosts, _hostname()}
    if not is_loopback_host(config.listen_host.lower()):
        allowed.add(config.listen_host)
    redact = Redactor(v for e in config.engines for v in secret_values(e.env))
    return create_app(runtime, tokens, audit, allowed_hosts=allowed, redact=redact)


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port; OSError with one clear line when that is impossible."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart over TIME_WAIT, never SO_REUSEPORT
        sock.bind(addr)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        why = "address already in use (another agent?)" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
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

    problem = startup_problems(config)
    if problem:
        raise ValueError(problem)
    # Bind before anything else: a taken port is one clear error, and no engine is started or adopted by an
    # agent that cannot serve. uvicorn then serves on this very socket (no window for another process).
    sock = listen_socket(config.listen_host, config.listen_port)
    if on_listening is not None:
        on_listening()
    runtime = AgentRuntime(config)
    try:
        app = build_app(config, runtime)
        server = uvicorn.Server(uvicorn_config(config, app))
    except BaseException:
        sock.close()
        await runtime.shutdown(False)
        raise
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # the CLI owns signals
    for warning in startup_warnings(config):
        log.warning("%s", warning)
    await runtime.start()
    server_task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started and not server_task.done():
            await asyncio.sleep(0.05)
        if server_task.done():
            server_task.result()  # raises the bind error
            raise OSError(f"cannot listen on {config.listen}")
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await server_task
        await runtime.shutdown(stop_engines)
