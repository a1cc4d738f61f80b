"""The fleet source over HTTP: every configured agent polled with one ``httpx.AsyncClient``.

An adapter behind :class:`console.fleet.FleetSource`. Every host is polled concurrently under a total
deadline of its own, so a slow or dead host never delays the others beyond its own deadline; hosts
reached over SSH get their tunnels from :mod:`console.tunnels`. Errors are values, never exceptions: a
poll returns one ``HostResult`` per host, with either a decoded snapshot or a ``HostError`` (kind:
unreachable | connecting | http | unauthorized | incompatible | bad_payload). Every body is read by
:mod:`console.payload`, and a round turns any other surprise in one host's poll into that host's error.
A 401/403 is ``unauthorized`` (with what to check, from :mod:`console.tokens`), never ``unreachable``.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

import httpx

from agents.schema import History, HostSnapshot
from console.fleet import ACTIONS, ActionResult, HostError, HostResult, one_line
from console.netutil import connect_reason as _connect_reason
from console.payload import (
    MAX_BODY_BYTES,
    MAX_SMALL_BYTES,
    MAX_SNAPSHOT_BYTES,
    PayloadError,
    decode_history,
    decode_snapshot,
    error_text,
    load_json,
    too_big,
)
from console.settings import ConsoleConfig, HostConfig
from console.tokens import TokenState

UrlFor = Callable[[HostConfig], Awaitable[str]]


class _Failure(Exception):
    """One request's failure as the host's HostError (raised inside the source, returned as a value)."""

    def __init__(self, error: HostError) -> None:
        super().__init__(error.message)
        self.error = error


_FAILED = (_Failure, PayloadError)  # both carry the host's HostError in ``error``


class HttpFleetSource:
    """Polls every configured agent over HTTP; see the module docstring."""

    def __init__(
        self,
        config: ConsoleConfig,
        *,
        url_for: UrlFor | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        environ: Mapping[str, str] | None = None,
        fetch_history: bool = True,
        one_shot: bool = False,
    ) -> None:
        self.config = config
        self.fetch_history = fetch_history
        self.tunnels = None
        if url_for is None and any(h.ssh for h in config.hosts):
            from console.tunnels import TunnelManager  # only when some host is reached over SSH

            self.tunnels = TunnelManager(config.hosts, wait=one_shot)
            url_for = self.tunnels.url_for
        self._url_for = url_for
        self._clock = clock
        self._timeout = config.request_timeout_s
        self._environ = os.environ if environ is None else environ
        self._token_states = {h.name: TokenState.read(h, self._environ) for h in config.hosts}
        n = max(10, len(config.hosts))
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(self._timeout),
            limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
            trust_env=False,  # loopback/tunnel URLs must never go through a proxy from the environment
            headers={"User-Agent": "llmconsole"},
        )
        self._contact: set[str] = set()  # hosts whose last poll succeeded
        self._lock = asyncio.Lock()

    # -- helpers
    def token(self, host: str) -> TokenState | None:
        """The host's token, re-read first if its token file changed (None for an unknown host)."""
        known = self._token_states.get(host)
        cfg = self._host(host)
        if known is None or cfg is None:
            return None
        if cfg.token_file is not None:
            known = self._token_states[host] = TokenState.read(cfg, self._environ, known)
        return known

    def _headers(self, host: str) -> dict[str, str]:
        got = self.token(host)
        return {"Authorization": f"Bearer {got.value}"} if got is not None and got.value else {}

    async def _base(self, host: HostConfig) -> str:
        if self._url_for is not None:
            try:
                return (await self._url_for(host)).rstrip("/")
            except Exception as exc:  # a tunnel that cannot be opened: the host is unreachable
                text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise _Failure(
                    HostError("connecting" if getattr(exc, "starting", False) else "unreachable", text)
                ) from None
        return host.url.rstrip("/")

    async def _request(
        self,
        method: str,
        host: HostConfig,
        path: str,
        params: dict[str, Any] | None = None,
        limit: int = MAX_BODY_BYTES,
        base: str | None = None,
    ) -> bytes:
        """The body of a 2xx answer of at most ``limit`` bytes; _Failure otherwise (unreachable, http,
        unauthorized, or bad_payload for a body over the limit). ``base``: the URL already resolved."""
        url = (base if base is not None else await self._base(host)) + path
        try:
            async with self._client.stream(
                method, url, params=params, headers=self._headers(host.name)
            ) as resp:
                chunks, size = [], 0
                cap = limit if 200 <= resp.status_code < 300 else MAX_SMALL_BYTES
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > cap:
                        if cap != limit:  # an error answer: its start says enough
                            break
                        raise _Failure(too_big(limit))
                    chunks.append(chunk)
                body = b"".join(chunks)
        except httpx.TimeoutException:
            raise _Failure(HostError("unreachable", f"timed out after {self._timeout:g}s")) from None
        except httpx.ConnectError as exc:
            raise _Failure(HostError("unreachable", _connect_reason(exc))) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            if host.ssh is not None:  # ssh accepted locally, then found nothing listening on the far side
                far = f"the ssh tunnel is up but agent port {host.tunnel_port} on {host.ssh.rsplit('@', 1)[-1]} did not answer"
                raise _Failure(HostError("unreachable", f"{far} ({_connect_reason(exc)})")) from None
            raise _Failure(HostError("unreachable", f"connection broken: {_connect_reason(exc)}")) from None
        except httpx.HTTPError as exc:
            raise _Failure(HostError("unreachable", _connect_reason(exc))) from None
        if resp.status_code in (401, 403):
            raise _Failure(self._unauthorized(host, resp.status_code, error_text(body)))
        if not 200 <= resp.status_code < 300:
            text = error_text(body)
            msg = f"HTTP {resp.status_code}" + (f": {text}" if text else "")
            raise _Failure(HostError("http", msg, status=resp.status_code))
        return body

    def _unauthorized(self, host: HostConfig, status: int, text: str) -> HostError:
        """A 401/403: an authorization failure with what to check, never "unreachable"."""
        got = self.token(host.name) or TokenState(None, None)
        msg = f"not authorized (HTTP {status}): {got.hint(host)}" + (f"; agent: {text}" if text else "")
        return HostError("unauthorized", msg, status=status)

    async def _deadline(self, coro: Awaitable[Any]) -> Any:
        try:
            async with asyncio.timeout(self._timeout):
                return await coro
        except TimeoutError:
            raise _Failure(HostError("unreachable", f"timed out after {self._timeout:g}s")) from None

    # -- polling
    async def poll(self) -> list[HostResult]:
        """One round: every host concurrently, each under its own total deadline. One result per host,
        whatever happens to the others."""
        async with self._lock:  # rounds never overlap, even if a caller forgets to await the last one
            return list(await asyncio.gather(*(self._poll_guarded(h) for h in self.config.hosts)))

    async def _poll_guarded(self, host: HostConfig) -> HostResult:
        try:
            return await self._poll_host(host)
        except Exception as exc:  # a console bug for one host's answer: that host's error, never the round's
            self._contact.discard(host.name)
            reason = f"console could not read this answer: {type(exc).__name__}: {exc}"
            return HostResult(host.name, None, HostError("bad_payload", reason), None, self._clock())

    def _route(self, host: HostConfig) -> str | None:
        if self.tunnels is None or host.ssh is None:
            return None
        t = self.tunnels.state(host.name)
        if t is None:
            return None
        again = f", {t.restarts} restart{'s' if t.restarts != 1 else ''}" if t.restarts else ""
        status = "failed" if self.tunnels.wait and t.status == "backoff" else t.status  # one shot: no retry
        if t.status == "backoff" and not self.tunnels.wait and t.retry_in_s is not None:
            status = f"backoff, retrying in {t.retry_in_s:.0f}s"
        return f"ssh {host.ssh}: {status}{again}"

    async def _poll_host(self, host: HostConfig) -> HostResult:
        result = await self._poll_host_direct(host)
        route = self._route(host)
        got = self.token(host.name)
        warnings = (got.warning,) if got is not None and got.warning else ()
        return replace(result, route=route, warnings=warnings) if route or warnings else result

    async def _poll_host_direct(self, host: HostConfig) -> HostResult:
        try:  # the tunnel has its own deadline: a slow ProxyJump is not the agent's 2 s poll deadline
            base = await self._base(host)
        except _Failure as f:
            self._contact.discard(host.name)
            return HostResult(host.name, None, f.error, None, self._clock())
        start = self._clock()
        try:
            body = await self._deadline(
                self._request("GET", host, "/v1/snapshot", limit=MAX_SNAPSHOT_BYTES, base=base)
            )
            rtt = self._clock() - start
            snap = decode_snapshot(body)
        except _FAILED as f:
            self._contact.discard(host.name)
            now = self._clock()
            rtt = now - start if f.error.kind != "unreachable" else None
            return HostResult(host.name, None, f.error, rtt, now)
        received = self._clock()
        history: tuple[HostSnapshot, ...] = ()
        if (
            self.fetch_history and host.name not in self._contact
        ):  # first contact, or back after an outage: fetch the gap
            got = await self.history(host.name)
            if isinstance(got, History):
                history = got.snapshots
        self._contact.add(host.name)
        return HostResult(host.name, snap, None, rtt, received, history)

    async def history(self, host: str) -> History | HostError:
        cfg = self._host(host)
        if cfg is None:
            return HostError("unreachable", f"unknown host {host!r}")
        try:  # no ?seconds: the agent answers all it keeps (its history_s, 900 s by default)
            body = await self._deadline(self._request("GET", cfg, "/v1/history"))
            return await asyncio.to_thread(decode_history, body)  # big: decode off the UI loop
        except _FAILED as f:
            return f.error

    async def logs(self, host: str, engine: str, lines: int = 200) -> list[str] | HostError:
        cfg = self._host(host)
        if cfg is None:
            return HostError("unreachable", f"unknown host {host!r}")
        try:
            body = await self._deadline(
                self._request("GET", cfg, f"/v1/engines/{engine}/logs", {"lines": lines})
            )
            data = load_json(body)
        except _FAILED as f:
            return f.error
        got = data.get("lines") if isinstance(data, dict) else None
        if not isinstance(got, list) or not all(isinstance(x, str) for x in got):
            return HostError("bad_payload", 'logs: expected {"lines": ["...", ...]}')
        return got

    def action_block(self, host: str) -> str | None:
        got = self.token(host)
        return f"unknown host {host!r}" if got is None else got.block

    def problems(self) -> list[str]:
        return []  # every failure here is one host's: its HostResult says it

    async def action(self, host: str, engine: str, verb: str) -> ActionResult:
        """POST one action, once. A timeout is reported as outcome "unknown", never retried."""
        cfg = self._host(host)
        block = self.action_block(host)
        if verb not in ACTIONS:
            return ActionResult(host, engine, verb, "refused", f"unknown action {verb!r}")
        if cfg is None or block is not None:
            return ActionResult(host, engine, verb, "refused", block or f"unknown host {host!r}")
        headers = {**self._headers(host), "Idempotency-Key": uuid.uuid4().hex}
        try:
            async with asyncio.timeout(self._timeout):
                url = await self._base(cfg) + f"/v1/engines/{engine}/{verb}"
                resp = await self._client.post(url, headers=headers)
        except (TimeoutError, httpx.TimeoutException):
            return ActionResult(
                host,
                engine,
                verb,
                "unknown",
                f"no answer within {self._timeout:g}s: outcome unknown, re-check",
            )
        except _Failure as f:
            return ActionResult(host, engine, verb, "refused", f.error.message)
        except httpx.HTTPError as exc:
            # the request may have reached the agent before the connection broke
            sent = not isinstance(exc, httpx.ConnectError)
            return ActionResult(
                host,
                engine,
                verb,
                "unknown" if sent else "refused",
                _connect_reason(exc) + (": outcome unknown, re-check" if sent else ""),
            )
        if resp.status_code == 202:
            try:
                data = load_json(resp.content, limit=MAX_SMALL_BYTES)
            except PayloadError:
                data = None
            state = data.get("state") if isinstance(data, dict) else None
            state = one_line(state, 40) if isinstance(state, str) else None
            return ActionResult(host, engine, verb, "accepted", f"{verb} accepted", state, 202)
        text = error_text(resp.content) or resp.reason_phrase
        return ActionResult(
            host, engine, verb, "refused", f"HTTP {resp.status_code}: {text}", status=resp.status_code
        )

    def _host(self, name: str) -> HostConfig | None:
        return self.config.host(name)

    async def aclose(self) -> None:
        await self._client.aclose()
        if self.tunnels is not None:
            await self.tunnels.aclose()
