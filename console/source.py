"""Fleet sources: where the console's data comes from. All console I/O lives in this module.

``FleetSource`` is the protocol the App polls. ``HttpFleetSource`` talks to agents over HTTP (one
``httpx.AsyncClient``, every host concurrently, a total deadline per host, so a slow or dead host never
delays the others beyond its own deadline). ``FixtureFleetSource`` replays recorded JSON (tests, snapshot
images, offline review) on a clock of its own that advances one step per poll round.

Errors are values, never exceptions: a poll returns one ``HostResult`` per host, with either a decoded
snapshot or a ``HostError`` (kind: unreachable | http | incompatible | bad_payload).
"""

from __future__ import annotations

import asyncio
import errno
import gzip
import json
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import httpx

from agents.schema import (
    History,
    HostSnapshot,
    SchemaError,
    SchemaMismatch,
    from_dict,
    from_json,
    history_from_dict,
    history_from_json,
    parse_rfc3339,
)
from console.settings import ConsoleConfig, HostConfig

ACTIONS = ("start", "stop", "restart")
MAX_BODY_BYTES = 64 * 1024 * 1024  # one /v1/history of a big host is a few MiB
UrlFor = Callable[[HostConfig], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class HostError:
    """Why a host gave no snapshot: ``kind`` is unreachable | http | incompatible | bad_payload."""

    kind: str
    message: str  # one line for the operator
    found_schema: str | None = None  # incompatible: the schema string the agent sent
    status: int | None = None  # http: the status code


@dataclass(frozen=True, slots=True)
class HostResult:
    """One host's answer to one poll round."""

    host: str
    snapshot: HostSnapshot | None
    error: HostError | None
    rtt_s: float | None  # request round-trip (None when nothing came back)
    received_at: float  # console monotonic clock when the answer (or the failure) arrived
    history: tuple[HostSnapshot, ...] = ()  # on first contact / after an outage: the agent's recent past
    route: str | None = None  # how the host is reached when not directly, e.g. "ssh ops@gpu01: up"

    @property
    def ok(self) -> bool:
        return self.snapshot is not None


@dataclass(frozen=True, slots=True)
class ActionResult:
    """The outcome of start/stop/restart. ``outcome``: accepted | refused | unknown (timed out:
    the agent may or may not have acted — re-check; the console never replays it)."""

    host: str
    engine: str
    verb: str
    outcome: str
    message: str
    state: str | None = None
    status: int | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "accepted"


class FleetSource(Protocol):
    async def poll(self) -> list[HostResult]: ...

    async def history(self, host: str) -> History | HostError: ...

    async def logs(self, host: str, engine: str, lines: int = 200) -> list[str] | HostError: ...

    async def action(self, host: str, engine: str, verb: str) -> ActionResult: ...

    def action_block(self, host: str) -> str | None:
        """Why actions on this host are disabled (one line), or None when they are allowed."""
        ...

    async def aclose(self) -> None: ...


# --- HTTP -------------------------------------------------------------------------------------------


def read_token(host: HostConfig, environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(token, None) or (None, reason actions are disabled) for one host."""
    if host.token_env is not None:
        value = environ.get(host.token_env, "").strip()
        if not value:
            return None, f"actions disabled on {host.name}: ${host.token_env} is not set"
        return value, None
    if host.token_file is not None:
        path = Path(host.token_file).expanduser()
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            return None, f"actions disabled on {host.name}: cannot read {path}: {exc.strerror or exc}"
        if not value:
            return None, f"actions disabled on {host.name}: {path} is empty"
        return value, None
    return None, f"actions disabled on {host.name}: no token configured (token_env or token_file)"


class _Failure(Exception):
    def __init__(self, error: HostError) -> None:
        super().__init__(error.message)
        self.error = error


def _error_text(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return data["error"]
    text = body[:200].decode("utf-8", "replace").strip().splitlines()
    return text[0] if text else ""


def _connect_reason(exc: BaseException) -> str:
    """A short reason for a failed connection, from the exception and its causes (httpx wraps the
    OS error: "All connection attempts failed" hides "connection refused")."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for e in chain:
        if isinstance(e, socket.gaierror):
            return "DNS lookup failed"
        if isinstance(e, ConnectionRefusedError) or getattr(e, "errno", None) == errno.ECONNREFUSED:
            return "connection refused"
        if isinstance(e, OSError) and e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "no route to host"
    text = " ".join(str(e) for e in chain).lower()
    if "refused" in text:
        return "connection refused"
    if "name or service not known" in text or "name resolution" in text or "nodename nor servname" in text:
        return "DNS lookup failed"
    first = str(exc) or type(exc).__name__
    return first.splitlines()[0][:160]


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
    ) -> None:
        self.config = config
        self.fetch_history = fetch_history
        self.tunnels = None
        if url_for is None and any(h.ssh for h in config.hosts):
            from console.tunnels import TunnelManager  # only when some host is reached over SSH

            self.tunnels = TunnelManager(config.hosts)
            url_for = self.tunnels.url_for
        self._url_for = url_for
        self._clock = clock
        self._timeout = config.request_timeout_s
        env = os.environ if environ is None else environ
        self._tokens: dict[str, str | None] = {}
        self._blocks: dict[str, str | None] = {}
        for host in config.hosts:
            self._tokens[host.name], self._blocks[host.name] = read_token(host, env)
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
    def _headers(self, host: str) -> dict[str, str]:
        token = self._tokens.get(host)
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def _base(self, host: HostConfig) -> str:
        if self._url_for is not None:
            try:
                return (await self._url_for(host)).rstrip("/")
            except Exception as exc:  # a tunnel that cannot be opened: the host is unreachable
                raise _Failure(HostError("unreachable", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)) from None
        return host.url.rstrip("/")

    async def _request(self, method: str, host: HostConfig, path: str, params: dict[str, Any] | None = None) -> bytes:
        """The body of a 2xx answer; _Failure otherwise (unreachable or http)."""
        url = await self._base(host) + path
        try:
            async with self._client.stream(method, url, params=params, headers=self._headers(host.name)) as resp:
                chunks, size = [], 0
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_BODY_BYTES:
                        raise _Failure(HostError("bad_payload", f"answer larger than {MAX_BODY_BYTES >> 20} MiB"))
                    chunks.append(chunk)
                body = b"".join(chunks)
        except httpx.TimeoutException:
            raise _Failure(HostError("unreachable", f"timed out after {self._timeout:g}s")) from None
        except httpx.ConnectError as exc:
            raise _Failure(HostError("unreachable", _connect_reason(exc))) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise _Failure(HostError("unreachable", f"connection broken: {_connect_reason(exc)}")) from None
        except httpx.HTTPError as exc:
            raise _Failure(HostError("unreachable", _connect_reason(exc))) from None
        if not 200 <= resp.status_code < 300:
            text = _error_text(body)
            msg = f"HTTP {resp.status_code}" + (f": {text}" if text else "")
            raise _Failure(HostError("http", msg, status=resp.status_code))
        return body

    async def _deadline(self, coro: Awaitable[Any]) -> Any:
        try:
            async with asyncio.timeout(self._timeout):
                return await coro
        except TimeoutError:
            raise _Failure(HostError("unreachable", f"timed out after {self._timeout:g}s")) from None

    # -- polling
    async def poll(self) -> list[HostResult]:
        """One round: every host concurrently, each under its own total deadline."""
        async with self._lock:  # rounds never overlap, even if a caller forgets to await the last one
            return list(await asyncio.gather(*(self._poll_host(h) for h in self.config.hosts)))

    def _route(self, host: HostConfig) -> str | None:
        if self.tunnels is None or host.ssh is None:
            return None
        t = self.tunnels.state(host.name)
        if t is None:
            return None
        again = f", {t.restarts} restart{'s' if t.restarts != 1 else ''}" if t.restarts else ""
        return f"ssh {host.ssh}: {t.status}{again}"

    async def _poll_host(self, host: HostConfig) -> HostResult:
        result = await self._poll_host_direct(host)
        route = self._route(host)
        return replace(result, route=route) if route else result

    async def _poll_host_direct(self, host: HostConfig) -> HostResult:
        start = self._clock()
        try:
            body = await self._deadline(self._request("GET", host, "/v1/snapshot"))
            rtt = self._clock() - start
            snap = _decode(from_json, body)
        except _Failure as f:
            self._contact.discard(host.name)
            if f.error.status == 401 and self._tokens.get(host.name) is None:
                f = _Failure(replace(f.error, message=f.error.message + " (no token configured for this host)"))
            now = self._clock()
            rtt = now - start if f.error.kind in ("http", "incompatible", "bad_payload") else None
            return HostResult(host.name, None, f.error, rtt, now)
        received = self._clock()
        history: tuple[HostSnapshot, ...] = ()
        if self.fetch_history and host.name not in self._contact:  # first contact, or back after an outage: fetch the gap
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
            return await asyncio.to_thread(_decode, history_from_json, body)  # big: decode off the UI loop
        except _Failure as f:
            return f.error

    async def logs(self, host: str, engine: str, lines: int = 200) -> list[str] | HostError:
        cfg = self._host(host)
        if cfg is None:
            return HostError("unreachable", f"unknown host {host!r}")
        try:
            body = await self._deadline(self._request("GET", cfg, f"/v1/engines/{engine}/logs", {"lines": lines}))
        except _Failure as f:
            return f.error
        try:
            data = json.loads(body)
            got = data["lines"]
            if not isinstance(got, list):
                raise TypeError
            return [str(x) for x in got]
        except (ValueError, KeyError, TypeError):
            return HostError("bad_payload", "logs: expected {\"lines\": [...]}")

    def action_block(self, host: str) -> str | None:
        if host not in self._blocks:
            return f"unknown host {host!r}"
        return self._blocks[host]

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
            return ActionResult(host, engine, verb, "unknown", f"no answer within {self._timeout:g}s: outcome unknown, re-check")
        except _Failure as f:
            return ActionResult(host, engine, verb, "refused", f.error.message)
        except httpx.HTTPError as exc:
            # the request may have reached the agent before the connection broke
            sent = not isinstance(exc, httpx.ConnectError)
            return ActionResult(host, engine, verb, "unknown" if sent else "refused",
                                _connect_reason(exc) + (": outcome unknown, re-check" if sent else ""))  # fmt: skip
        if resp.status_code == 202:
            try:
                state = resp.json().get("state")
            except ValueError:
                state = None
            return ActionResult(host, engine, verb, "accepted", f"{verb} accepted", state if isinstance(state, str) else None, 202)
        text = _error_text(resp.content) or resp.reason_phrase
        return ActionResult(host, engine, verb, "refused", f"HTTP {resp.status_code}: {text}", status=resp.status_code)

    def _host(self, name: str) -> HostConfig | None:
        return self.config.host(name)

    async def aclose(self) -> None:
        await self._client.aclose()
        if self.tunnels is not None:
            await self.tunnels.aclose()


def _decode(decoder: Callable[[Any], Any], body: bytes | str | Any) -> Any:
    """Decode with the schema's rules, turning schema errors into host errors."""
    try:
        return decoder(body)
    except SchemaMismatch as exc:
        found = exc.found if isinstance(exc.found, str) else (None if exc.found is None else repr(exc.found)[:40])
        msg = f"agent speaks {found}, this console reads {exc.expected}.x" if found else str(exc)
        raise _Failure(HostError("incompatible", msg, found_schema=found)) from None
    except SchemaError as exc:
        raise _Failure(HostError("bad_payload", f"bad payload: {exc}"[:300])) from None


# --- fixtures --------------------------------------------------------------------------------------

FIXTURE_SCHEMA = "llmconsole.fleet-fixture/1"


@dataclass
class FixtureHost:
    """One host's recorded behaviour. Poll ``n`` (0-based) answers ``snapshots[start + n]`` (the last one
    again once they run out); the first answer also carries ``snapshots[:start]`` as history. After
    ``answers`` polls, ``then`` takes over: "repeat" (the agent keeps sending its last snapshot: it goes
    stale) or a HostError (it stops answering)."""

    name: str
    snapshots: list[HostSnapshot] = field(default_factory=list)
    start: int = 0
    answers: int | None = None
    then: str | HostError = "repeat"
    payload_error: HostError | None = None  # every poll fails decoding like this (e.g. a v2 agent)
    logs: dict[str, list[str]] = field(default_factory=dict)


class FrameClock:
    """A monotonic clock that only moves when told (one step per fixture poll round)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class FixtureFleetSource:
    """Replays recorded hosts; poll rounds advance ``clock`` by ``step_s``. After ``rounds`` rounds
    (if set) the recording has ended: polls return nothing new and the clock stops, so the picture
    holds still (snapshot tests). Actions are refused: a recording cannot be restarted."""

    def __init__(self, hosts: Sequence[FixtureHost | HostSnapshot | str | os.PathLike[str]], *, step_s: float = 1.0,
                 rounds: int | None = None, wall_start: float | None = None) -> None:  # fmt: skip
        self.hosts = [h for item in hosts for h in _fixture_hosts(item)]
        self.step_s = step_s
        self.rounds = rounds
        self.polls = 0
        self.clock = FrameClock()
        first = next((h.snapshots[h.start] for h in self.hosts if h.snapshots), None)
        if wall_start is None and first is not None:
            wall_start = _epoch(first.taken_at)
        self._wall0 = wall_start if wall_start is not None else 1_750_000_000.0
        self._mono0 = self.clock.now
        self.actions: list[tuple[str, str, str]] = []

    def wall(self) -> float:
        """Wall-clock time matching ``clock`` (for display timestamps)."""
        return self._wall0 + (self.clock.now - self._mono0)

    @classmethod
    def from_dir(cls, path: str | os.PathLike[str], **kwargs: Any) -> FixtureFleetSource:
        """Load ``fleet.json`` (see tests/data/fleet/README.md) and the files it names."""
        base = Path(path)
        manifest = json.loads((base / "fleet.json").read_text(encoding="utf-8"))
        if manifest.get("fixture") != FIXTURE_SCHEMA:
            raise ValueError(f"{base / 'fleet.json'}: expected fixture {FIXTURE_SCHEMA!r}")
        hosts = [_fixture_host(base, h) for h in manifest["hosts"]]
        for key in ("step_s", "rounds"):
            if key in manifest and key not in kwargs:
                kwargs[key] = manifest[key]
        return cls(hosts, **kwargs)

    @classmethod
    def from_snapshots(cls, snapshots: Iterable[HostSnapshot], **kwargs: Any) -> FixtureFleetSource:
        """One host per snapshot (named after it), each answering that snapshot forever."""
        return cls([FixtureHost(s.host, [s]) for s in snapshots], **kwargs)

    @property
    def ended(self) -> bool:
        return self.rounds is not None and self.polls >= self.rounds

    async def poll(self) -> list[HostResult]:
        if self.ended:
            await asyncio.sleep(0)
            return []
        if self.polls:
            self.clock.now += self.step_s
        n, now = self.polls, self.clock.now
        self.polls += 1
        return [self._answer(h, n, now) for h in self.hosts]

    def _answer(self, h: FixtureHost, n: int, now: float) -> HostResult:
        if h.payload_error is not None:
            return HostResult(h.name, None, h.payload_error, 0.004, now)
        if not h.snapshots:
            return HostResult(h.name, None, HostError("unreachable", "connection refused"), None, now)
        if h.answers is not None and n >= h.answers:
            if isinstance(h.then, HostError):
                return HostResult(h.name, None, h.then, None, now)
            n = h.answers - 1  # "repeat": the same snapshot again
        i = min(h.start + n, len(h.snapshots) - 1)
        history = tuple(h.snapshots[: h.start]) if n == 0 else ()
        return HostResult(h.name, h.snapshots[i], None, 0.003, now, history)

    def _find(self, host: str) -> FixtureHost | None:
        return next((h for h in self.hosts if h.name == host), None)

    async def history(self, host: str) -> History | HostError:
        h = self._find(host)
        if h is None or not h.snapshots:
            return HostError("unreachable", f"no recording for {host!r}")
        return History(host=host, snapshots=tuple(h.snapshots[: h.start + 1]))

    async def logs(self, host: str, engine: str, lines: int = 200) -> list[str] | HostError:
        h = self._find(host)
        if h is None or engine not in h.logs:
            return HostError("unreachable", f"no recorded log for {host}/{engine}")
        now = self._answer(h, max(0, self.polls - 1), self.clock.now)
        if now.error is not None:  # the host is down in the recording right now: so is its log
            return now.error
        return h.logs[engine][-lines:]

    def action_block(self, host: str) -> str | None:
        return "recorded fleet: actions are not available on a replay"

    async def action(self, host: str, engine: str, verb: str) -> ActionResult:
        self.actions.append((host, engine, verb))
        return ActionResult(host, engine, verb, "refused", self.action_block(host) or "")

    async def aclose(self) -> None:
        return None


def _fixture_hosts(item: FixtureHost | HostSnapshot | str | os.PathLike[str]) -> list[FixtureHost]:
    """A FixtureHost as is; a snapshot: a host answering it; a path: a fleet directory (fleet.json), a
    snapshot file, or a history file (replayed one snapshot per poll from its start)."""
    if isinstance(item, FixtureHost):
        return [item]
    if isinstance(item, HostSnapshot):
        return [FixtureHost(item.host, [item])]
    path = Path(item)
    if path.is_dir():
        manifest = json.loads((path / "fleet.json").read_text(encoding="utf-8"))
        return [_fixture_host(path, h) for h in manifest["hosts"]]
    data = read_json_file(path)
    if isinstance(data, dict) and "snapshots" in data:
        history = history_from_dict(data)
        return [FixtureHost(history.host, list(history.snapshots), start=0)]
    snap = from_dict(data)
    return [FixtureHost(snap.host, [snap])]


def _epoch(taken_at: str) -> float | None:
    try:
        return parse_rfc3339(taken_at)
    except ValueError:
        return None


def read_json_file(path: Path) -> Any:
    """JSON from a file, transparently gunzipping ``*.gz``."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    return json.loads(raw)


def _fixture_host(base: Path, spec: Mapping[str, Any]) -> FixtureHost:
    host = FixtureHost(str(spec["name"]))
    if "payload" in spec:
        try:
            _decode(from_dict, read_json_file(base / spec["payload"]))
        except _Failure as f:
            host.payload_error = f.error
        else:
            raise ValueError(f"{spec['payload']}: expected a payload this console cannot read")
    if "history" in spec:
        host.snapshots = list(history_from_dict(read_json_file(base / spec["history"])).snapshots)
        every = int(spec.get("every", 1))
        host.snapshots = host.snapshots[::-1][::every][::-1]  # thin out, keeping the newest
    if "snapshot" in spec:
        host.snapshots.append(from_dict(read_json_file(base / spec["snapshot"])))
    start = int(spec.get("start", -1))  # negative: counted from the end
    host.start = max(0, len(host.snapshots) + start if start < 0 else min(start, len(host.snapshots) - 1))
    host.answers = spec.get("answers")
    then = spec.get("then", "repeat")
    if isinstance(then, dict):
        then = HostError(str(then.get("kind", "unreachable")), str(then.get("message", "")))
    host.then = then
    if "logs" in spec:
        host.logs = {k: list(v) for k, v in read_json_file(base / spec["logs"]).items()}
    return host


__all__ = [
    "ACTIONS", "ActionResult", "FixtureFleetSource", "FixtureHost", "FleetSource", "FrameClock",
    "HostError", "HostResult", "HttpFleetSource", "read_json_file", "read_token",
]  # fmt: skip
