"""Fleet sources over HTTP and recordings: adapters behind the protocol of :mod:`console.fleet`.

``FleetSource`` (the protocol the App polls) and its result types live in :mod:`console.fleet` and are
re-exported here for compatibility; :func:`build_fleet_source` picks the sources a config asks for
(direct hosts, ``[[console.prometheus]]`` servers — :mod:`console.promsource`). ``HttpFleetSource`` talks to agents over HTTP (one
``httpx.AsyncClient``, every host concurrently, a total deadline per host, so a slow or dead host never
delays the others beyond its own deadline). ``FixtureFleetSource`` replays recorded JSON (tests, snapshot
images, offline review) on a clock of its own that advances one step per poll round.

Errors are values, never exceptions: a poll returns one ``HostResult`` per host, with either a decoded
snapshot or a ``HostError`` (kind: unreachable | http | unauthorized | incompatible | bad_payload). One
host's answer can never break another's: every body is read by ``decode_snapshot`` / ``decode_history``
(size cap, strict UTF-8, nesting bound, finite numbers, the schema's types), whose only exception is
``PayloadError``, and a round turns any other surprise in one host's poll into that host's error.

Tokens: a ``token_file`` is re-read when it changes (no restart), and one that group or others may read
gets a warning (as ssh does for keys). A 401/403 is ``unauthorized``, never ``unreachable``.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import math
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from agents.schema import (
    History,
    HostSnapshot,
    SchemaError,
    SchemaMismatch,
    from_dict,
    history_from_dict,
    parse_rfc3339,
)
from console.combined import CombinedFleetSource
from console.fleet import (
    ACTIONS,
    ActionResult,
    FleetSource,
    HostError,
    HostResult,
    one_line,
)
from console.netutil import connect_reason as _connect_reason
from console.netutil import token_file_warning
from console.settings import ConsoleConfig, HostConfig

MAX_BODY_BYTES = 64 * 1024 * 1024  # one /v1/history of a big host is a few MiB
MAX_SNAPSHOT_BYTES = 8 * 1024 * 1024  # one snapshot of a big host is tens of KiB
MAX_SMALL_BYTES = 1024 * 1024  # error bodies, action answers
MAX_DEPTH = 32  # JSON nesting: a snapshot needs 6 levels, alert evidence a few more
INT_LIMIT = 2**63  # integers beyond int64 are no counter, pid or byte count: refused
UrlFor = Callable[[HostConfig], Awaitable[str]]


# --- HTTP -------------------------------------------------------------------------------------------


def read_token(host: HostConfig, environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(token, None) or (None, reason actions are disabled) for one host."""
    got = TokenState.read(host, environ)
    return got.value, got.block


_TOKEN = re.compile(r"[\x21-\x7e]+")  # what can go in an Authorization header as it is
_NOT_A_TOKEN = "does not hold one token (printable ASCII without spaces)"


@dataclass(frozen=True, slots=True)
class TokenState:
    """One host's token as last read: ``value`` or ``block`` (why actions are disabled), a permission
    ``warning``, and ``stamp`` (the token file's identity, size and times) to notice a change."""

    value: str | None
    block: str | None
    warning: str | None = None
    stamp: tuple[int, ...] | None = None

    @classmethod
    def read(cls, host: HostConfig, environ: Mapping[str, str], known: TokenState | None = None) -> TokenState:
        """Read the host's token; with ``known``, a token file whose stamp has not changed is not re-read."""
        if host.token_env is not None:
            value = environ.get(host.token_env, "").strip()
            if not value:
                return cls(None, f"actions disabled on {host.name}: ${host.token_env} is not set")
            if not _TOKEN.fullmatch(value):
                return cls(None, f"actions disabled on {host.name}: ${host.token_env} {_NOT_A_TOKEN}")
            return cls(value, None)
        if host.token_file is None:
            return cls(None, f"actions disabled on {host.name}: no token configured (token_env or token_file)")
        path = Path(host.token_file).expanduser()
        try:
            st = path.stat()
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
            return cls(None, f"actions disabled on {host.name}: cannot read {path}: {getattr(exc, 'strerror', None) or exc}")
        stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)
        if known is not None and known.stamp == stamp:
            return known
        warning = token_file_warning(path, st.st_mode)
        try:
            value = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            return cls(None, f"actions disabled on {host.name}: cannot read {path}: {reason}", warning, stamp)
        if not value:
            return cls(None, f"actions disabled on {host.name}: {path} is empty", warning, stamp)
        if not _TOKEN.fullmatch(value):
            return cls(None, f"actions disabled on {host.name}: {path} {_NOT_A_TOKEN}", warning, stamp)
        return cls(value, None, warning, stamp)

    def hint(self, host: HostConfig) -> str:
        """What to check when the agent refuses this host's token (the tail of an "unauthorized" message)."""
        if self.value is not None:
            env, path = host.token_env, Path(host.token_file or "").expanduser()
            return f"check ${env}" if env is not None else f"check token_file {path}"
        if host.token_env is None and host.token_file is None:
            return "no token configured for this host (set token_env or token_file)"
        why = (self.block or "").split(": ", 1)[-1]  # "$X is not set", "cannot read …", "… is empty"
        return f"no token configured for this host: {why}"


class _Failure(Exception):
    def __init__(self, error: HostError) -> None:
        super().__init__(error.message)
        self.error = error


def _error_text(body: bytes) -> str:
    """The one-line reason in an error answer: its JSON ``error``, else the start of its text."""
    try:
        data = load_json(body, limit=MAX_SMALL_BYTES)
    except PayloadError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return one_line(data["error"], 200)
    text = body[:200].decode("utf-8", "replace").strip().splitlines()
    return one_line(text[0], 200) if text else ""


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
                raise _Failure(HostError("connecting" if getattr(exc, "starting", False) else "unreachable", text)) from None
        return host.url.rstrip("/")

    async def _request(self, method: str, host: HostConfig, path: str, params: dict[str, Any] | None = None,
                       limit: int = MAX_BODY_BYTES, base: str | None = None) -> bytes:  # fmt: skip
        """The body of a 2xx answer of at most ``limit`` bytes; _Failure otherwise (unreachable, http,
        unauthorized, or bad_payload for a body over the limit). ``base``: the URL already resolved."""
        url = (base if base is not None else await self._base(host)) + path
        try:
            async with self._client.stream(method, url, params=params, headers=self._headers(host.name)) as resp:
                chunks, size = [], 0
                cap = limit if 200 <= resp.status_code < 300 else MAX_SMALL_BYTES
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > cap:
                        if cap != limit:  # an error answer: its start says enough
                            break
                        raise _Failure(_too_big(limit))
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
            raise _Failure(self._unauthorized(host, resp.status_code, _error_text(body)))
        if not 200 <= resp.status_code < 300:
            text = _error_text(body)
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
            body = await self._deadline(self._request("GET", host, "/v1/snapshot", limit=MAX_SNAPSHOT_BYTES, base=base))
            rtt = self._clock() - start
            snap = decode_snapshot(body)
        except _Failure as f:
            self._contact.discard(host.name)
            now = self._clock()
            rtt = now - start if f.error.kind != "unreachable" else None
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
            return await asyncio.to_thread(decode_history, body)  # big: decode off the UI loop
        except _Failure as f:
            return f.error

    async def logs(self, host: str, engine: str, lines: int = 200) -> list[str] | HostError:
        cfg = self._host(host)
        if cfg is None:
            return HostError("unreachable", f"unknown host {host!r}")
        try:
            body = await self._deadline(self._request("GET", cfg, f"/v1/engines/{engine}/logs", {"lines": lines}))
            data = load_json(body)
        except _Failure as f:
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
                data = load_json(resp.content, limit=MAX_SMALL_BYTES)
            except PayloadError:
                data = None
            state = data.get("state") if isinstance(data, dict) else None
            state = one_line(state, 40) if isinstance(state, str) else None
            return ActionResult(host, engine, verb, "accepted", f"{verb} accepted", state, 202)
        text = _error_text(resp.content) or resp.reason_phrase
        return ActionResult(host, engine, verb, "refused", f"HTTP {resp.status_code}: {text}", status=resp.status_code)

    def _host(self, name: str) -> HostConfig | None:
        return self.config.host(name)

    async def aclose(self) -> None:
        await self._client.aclose()
        if self.tunnels is not None:
            await self.tunnels.aclose()


# --- reading answers --------------------------------------------------------------------------------


class PayloadError(_Failure):
    """An answer this console cannot read: the only exception of ``load_json``, ``decode_snapshot`` and
    ``decode_history``. ``error`` is the host's HostError (bad_payload, or incompatible), one line."""


def _bad(reason: str) -> PayloadError:
    return PayloadError(HostError("bad_payload", f"bad payload: {reason}"))


def _too_big(limit: int) -> HostError:
    size = f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit >> 10} KiB" if limit >= 1 << 10 else f"{limit} bytes"
    return HostError("bad_payload", f"bad payload: answer larger than {size}")


class _OutOfRange(ValueError):
    pass


def _nonfinite(_literal: str) -> None:
    return None  # NaN, Infinity, -Infinity read as null (the schema's reading rule)


def _finite_float(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None  # 1e999 overflows to Infinity: null as well


def _bounded_int(text: str) -> int:
    if len(text) > 20 or not -INT_LIMIT <= (value := int(text)) < INT_LIMIT:
        raise _OutOfRange(f"integer out of range: {text[:24]}{'…' if len(text) > 24 else ''}")
    return value


def _shape(c: int) -> int:
    if 0x30 <= c <= 0x39:
        return 0x30  # digits: "0"
    if c in (0x45, 0x65):
        return 0x65  # e, E: "e"
    if c in (0x22, 0x2B):
        return c  # '"' and "+" as themselves
    return 0x78 if chr(c).isalpha() or c >= 0x80 else 0x20  # letters (and UTF-8 bytes): "x"; the rest: " "


_NUMBER_SHAPES = bytes(_shape(c) for c in range(256))
_LONG_DIGITS = b"0" * 19


_BIG_EXPONENT = re.compile(rb'0e\+?000+(?:[^0"ex]|\Z)')  # in shapes: 3+ exponent digits where a number ends


def _plain_numbers(raw: bytes) -> bool:
    """True when no number in ``raw`` can be out of range, so the C parser's own numbers are exact: no run
    of 19+ digits (an integer beyond int64, a float mantissa long enough to overflow) and no exponent of 3+
    digits ending where a number ends (a hex id such as "…9e442a…" goes on with a letter or a quote). A
    false alarm only costs the careful path; the answer is the same either way."""
    shapes = raw.translate(_NUMBER_SHAPES)
    return _LONG_DIGITS not in shapes and _BIG_EXPONENT.search(shapes) is None


def _parse(body: bytes | str, limit: int) -> Any:
    """JSON of at most ``limit`` bytes, strict UTF-8, integers within int64, NaN/Infinity (and
    overflowing floats) as null, no lone surrogates; nesting is bounded by the interpreter (callers bound
    what they keep). Raises PayloadError only."""
    if len(body) > limit:
        raise PayloadError(_too_big(limit))
    raw = bytes(body) if isinstance(body, bytes | bytearray) else None
    try:
        text = raw.decode("utf-8") if raw is not None else str(body)
    except UnicodeDecodeError as exc:
        raise _bad(f"invalid UTF-8 at byte {exc.start}") from None
    try:
        if raw is not None and _plain_numbers(raw):  # the common case: C speed for every number
            data = json.loads(text, parse_constant=_nonfinite)
        else:
            data = json.loads(text, parse_constant=_nonfinite, parse_float=_finite_float, parse_int=_bounded_int)
    except RecursionError:
        raise _bad("JSON nested too deeply") from None
    except _OutOfRange as exc:
        raise _bad(str(exc)) from None
    except ValueError as exc:  # JSONDecodeError
        raise _bad(f"invalid JSON: {exc}") from None
    if "\\ud" in text or "\\uD" in text:  # rare: every \uD800-\uDFFF escape must be half of a pair
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise _bad("a string holds a lone UTF-16 surrogate (\\uD800-\\uDFFF)") from None
        except (RecursionError, ValueError):
            raise _bad("JSON nested too deeply") from None
    return data


def _too_deep(value: Any, limit: int) -> bool:
    """Whether a decoded JSON value nests deeper than ``limit`` (iterative: no recursion to exhaust)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        items = v.values() if type(v) is dict else v if type(v) is list else None
        if items:
            if depth >= limit:
                return True
            stack.extend((x, depth + 1) for x in items if type(x) is dict or type(x) is list)
    return False


def load_json(body: bytes | str, *, limit: int = MAX_BODY_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """One answer's JSON (see ``_parse``), nested at most ``max_depth`` levels. Raises PayloadError only."""
    data = _parse(body, limit)
    if _too_deep(data, max_depth):
        raise _bad(f"JSON nested deeper than {max_depth} levels")
    return data


def _decode(decoder: Callable[[Any], Any], data: Any) -> Any:
    """Decode parsed JSON with the schema's rules, turning every failure into a PayloadError."""
    try:
        return decoder(data)
    except SchemaMismatch as exc:
        found = exc.found if isinstance(exc.found, str) else (None if exc.found is None else repr(exc.found)[:40])
        msg = f"agent speaks {found}, this console reads {exc.expected}.x" if found else str(exc)
        raise PayloadError(HostError("incompatible", msg, found_schema=found)) from None
    except SchemaError as exc:
        raise _bad(str(exc)) from None
    except (RecursionError, ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        raise _bad(f"{type(exc).__name__}: {exc}") from None


def _check_evidence(snap: HostSnapshot) -> HostSnapshot:
    """Alert evidence is the one place the schema keeps JSON as it came: bound its nesting (everything
    else has the schema's fixed shape)."""
    for alerts in (snap.alerts, *(e.alerts for e in snap.engines)):
        for a in alerts:
            if a.evidence and _too_deep(a.evidence, MAX_DEPTH - 4):  # 4 levels: host, engines, alerts, alert
                raise _bad(f"alert {a.code[:40]!r}: evidence nested deeper than {MAX_DEPTH - 4} levels")
    return snap


def decode_snapshot(body: bytes | str, *, limit: int = MAX_SNAPSHOT_BYTES) -> HostSnapshot:
    """``GET /v1/snapshot`` as a HostSnapshot; PayloadError for anything this console cannot read."""
    return _check_evidence(_decode(from_dict, _parse(body, limit)))


def decode_history(body: bytes | str, *, limit: int = MAX_BODY_BYTES) -> History:
    """``GET /v1/history`` as a History; PayloadError for anything this console cannot read."""
    history = _decode(history_from_dict, _parse(body, limit))
    for snap in history.snapshots:
        _check_evidence(snap)
    return history


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

    def problems(self) -> list[str]:
        return []

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
    except (ValueError, OverflowError):
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


def build_fleet_source(config: ConsoleConfig, *, fetch_history: bool = True, full: bool = False,
                       one_shot: bool = False) -> FleetSource:  # fmt: skip
    """The source for ``config``: its direct hosts (``HttpFleetSource``) and one
    ``PrometheusFleetSource`` per ``[[console.prometheus]]`` entry; several are combined, direct hosts
    first (they keep their own route, for actions and logs, even when a Prometheus also sees them).
    ``full``: a Prometheus is asked for every exported family, not only what the console shows.
    ``one_shot``: a single poll (``status``): SSH tunnels are waited for, and nothing says "retrying"."""
    http = HttpFleetSource(config, fetch_history=fetch_history, one_shot=one_shot) if config.hosts or not config.prometheus else None
    if not config.prometheus and http is not None:
        return http
    from console.promsource import PrometheusFleetSource  # only when some Prometheus is configured

    proms: list[FleetSource] = [PrometheusFleetSource(p, fetch_history=fetch_history, full=full) for p in config.prometheus]
    if http is None and len(proms) == 1:
        return proms[0]
    sources: list[FleetSource] = ([http] if http is not None else []) + proms
    pinned: dict[str, FleetSource] = {h.name: http for h in config.hosts} if http is not None else {}
    return CombinedFleetSource(sources, pinned)


__all__ = [
    "ACTIONS", "ActionResult", "CombinedFleetSource", "FixtureFleetSource", "FixtureHost", "FleetSource", "FrameClock",
    "HostError", "HostResult", "HttpFleetSource", "PayloadError", "TokenState", "build_fleet_source", "decode_history",
    "decode_snapshot", "load_json", "one_line", "read_json_file", "read_token", "token_file_warning",
]  # fmt: skip
