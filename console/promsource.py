"""A Prometheus-compatible query API as a fleet source: ``[[console.prometheus]]`` (and ``status --prometheus``).

Prometheus, Thanos Querier and VictoriaMetrics serve the same ``/api/v1/query`` API; this source reads the
agents' own ``llmconsole_*`` series there (the scrape job chosen by ``match``), so a console can watch a
site of a thousand hosts with a few requests per refresh:

- one refresh is three instant queries for the whole fleet, whatever its size — host-level families with
  ``up``, GPUs and the agents' active alerts; engine identity and state (``== 1``); engine values — plus
  Prometheus's own firing alerts (``/api/v1/alerts``), merged with the agents' (:mod:`console.promseries`
  turns the series into the snapshots the reducer already reads);
- hosts seen for the first time come with their recent past, for the graphs, from one ``query_range``;
- a refresh happens every ``refresh_s`` (Prometheus has news only once per scrape); polls in between
  return nothing, and each host ages from ``llmconsole_snapshot_timestamp_seconds`` against the server's
  evaluation time, going stale after the entry's ``stale_after_s``;
- its hosts are read-only: actions and logs need a direct or SSH route to the agent.

Errors are values: a server that is not a Prometheus query API, refuses the credentials, times out or
answers garbage makes one line from :meth:`PrometheusFleetSource.problems`; the hosts it showed keep their
last values, which age and go stale (never shown as live). A partial response (``warnings``), NaN or
±Inf values and series without ``host``/``engine`` are reported in the same line, and what is usable is
used. A ``target down`` (``up == 0``) makes that host unreachable.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from agents.schema import History, HostSnapshot
from console.fleet import ActionResult, HostError, HostResult, one_line
from console.promseries import (
    ALERTS,
    Series,
    engine_value_names,
    gpu_names,
    history_names,
    host_names,
    name_regex,
    read_fleet,
    read_history,
    rule_alerts,
)
from console.settings import DEFAULT_MATCH, PrometheusConfig, http_url_problem, parse_matchers
from console.source import _connect_reason, token_file_warning

MAX_ANSWER_BYTES = 256 * 1024 * 1024  # a 1,000-host refresh is a few tens of MiB at most
WINDOW_S = 900.0  # the graphs' window (console.state.WINDOW_S)
HISTORY_POINTS = 60  # per series in a backfill: one point every 15 s of a 15-minute window
HOST_FILTER_MAX = 100  # backfill more new hosts than this without a host=~ filter (and pick them here)


class PromError(Exception):
    """One request to the server failed; ``str()`` is one line naming what failed."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A successful answer: ``data``, the server's ``warnings`` (a partial response), its wall time."""

    data: Any
    warnings: tuple[str, ...]
    seconds: float


def selector(match: str, names: Sequence[str], *, also: str = "", extra: str = "") -> str:
    """``{__name__=~"llmconsole_(a|b)", <match>}``: several families in one query (``also``: another
    metric name, e.g. ``up``; ``extra``: one more matcher)."""
    regex = (also + "|" if also else "") + name_regex(names)
    parts = [f'__name__=~"{regex}"', *(f'{k}{op}"{v}"' for k, op, v in _matchers(match))]
    if extra:
        parts.append(extra)
    return "{" + ", ".join(parts) + "}"


def _matchers(match: str) -> list[tuple[str, str, str]]:
    got = parse_matchers(match)
    if isinstance(got, str):
        raise ValueError(got)
    return got


def fleet_queries(match: str) -> dict[str, str]:
    """The instant queries of one refresh, by part (see the module docstring)."""
    return {
        "hosts": selector(match, [*host_names(), ALERTS, *gpu_names()], also="up"),
        "engines": selector(match, ["engine_info", "engine_state"]) + " == 1",
        "values": selector(match, engine_value_names()),
    }


def _promql_regex_literal(text: str) -> str:
    """``text`` matched literally inside a PromQL regex string (RE2 escapes, then the string's own)."""
    special = set(r"\.+*?()|[]{}^$-")
    escaped = "".join("\\" + c if c in special else c for c in text)
    return escaped.replace("\\", "\\\\").replace('"', '\\"')


class PromClient:
    """The HTTP side: one ``httpx.AsyncClient`` with the entry's credentials and CA; envelopes checked."""

    def __init__(self, cfg: PrometheusConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.cfg = cfg
        self.requests = 0
        verify: ssl.SSLContext | bool = True
        self.setup_error: str | None = None
        if cfg.tls_ca is not None:
            try:
                verify = ssl.create_default_context(cafile=str(cfg.tls_ca))
            except (OSError, ssl.SSLError) as exc:
                self.setup_error = f"tls_ca {cfg.tls_ca}: {getattr(exc, 'strerror', None) or exc}"
        self._client = httpx.AsyncClient(
            base_url=cfg.url.rstrip("/"), transport=transport, verify=verify, trust_env=False,
            timeout=httpx.Timeout(cfg.query_timeout_s + 1.0), headers={"User-Agent": "llmconsole"},
        )  # fmt: skip

    def credentials(self) -> tuple[dict[str, str], httpx.BasicAuth | None, str | None]:
        """(headers, basic auth, warning about a secret file others can read); PromError if unreadable."""
        cfg = self.cfg
        if cfg.token_file is not None:
            token, warning = _secret(cfg.token_file, "token_file")
            return {"Authorization": f"Bearer {token}"}, None, warning
        if cfg.basic_auth_user is not None and cfg.basic_auth_password_file is not None:
            password, warning = _secret(cfg.basic_auth_password_file, "basic_auth_password_file")
            return {}, httpx.BasicAuth(cfg.basic_auth_user, password), warning
        return {}, None, None

    def _auth_hint(self) -> str:
        cfg = self.cfg
        if cfg.token_file is not None:
            return f"check token_file {cfg.token_file}"
        if cfg.basic_auth_user is not None:
            return f"check basic_auth_user {cfg.basic_auth_user!r} and basic_auth_password_file"
        return "no credentials configured (token_file, or basic_auth_user + basic_auth_password_file)"

    async def get(self, path: str, params: Mapping[str, str] | None = None, *, post: bool = False) -> Answer:
        """One API call: the ``data`` of a ``"status": "success"`` envelope; PromError otherwise."""
        if self.setup_error is not None:
            raise PromError(self.setup_error)
        headers, auth, _ = self.credentials()
        started = time.monotonic()
        self.requests += 1
        try:
            async with asyncio.timeout(self.cfg.query_timeout_s + 2.0):
                body, resp = await self._send(path, params, headers, auth, post)
        except (TimeoutError, httpx.TimeoutException):
            raise PromError(f"{path}: no answer within {self.cfg.query_timeout_s:g}s (query timeout)") from None
        except httpx.ConnectError as exc:
            raise PromError(f"cannot connect: {_connect_reason(exc)}") from None
        except httpx.HTTPError as exc:
            raise PromError(f"{path}: connection broken: {_connect_reason(exc)}") from None
        return self._envelope(path, resp, body, time.monotonic() - started)

    async def _send(self, path: str, params: Mapping[str, str] | None, headers: dict[str, str],
                    auth: httpx.BasicAuth | None, post: bool) -> tuple[bytes, httpx.Response]:  # fmt: skip
        kwargs: dict[str, Any] = {"data": dict(params or {})} if post else {"params": dict(params or {})}
        request = self._client.build_request("POST" if post else "GET", path, headers=headers, **kwargs)
        resp = await self._client.send(request, auth=auth, stream=True)
        try:
            chunks, size = [], 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise PromError(f"{path}: answer larger than {MAX_ANSWER_BYTES >> 20} MiB")
                chunks.append(chunk)
        finally:
            await resp.aclose()
        return b"".join(chunks), resp

    def _envelope(self, path: str, resp: httpx.Response, body: bytes, seconds: float) -> Answer:
        status = resp.status_code
        if status in (401, 403):
            raise PromError(f"not authorized (HTTP {status}): {self._auth_hint()}")
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            doc = None
        if not isinstance(doc, dict) or doc.get("status") not in ("success", "error"):
            kind = resp.headers.get("content-type", "no content type").split(";")[0]
            first = body[:120].decode("utf-8", "replace").strip().splitlines()
            start = f": {first[0]!r}" if first else ""
            raise PromError(f"not a Prometheus query API: {path} answered HTTP {status} ({kind}){start}")
        if doc["status"] == "error" or not 200 <= status < 300:
            kind, error = str(doc.get("errorType") or f"HTTP {status}"), str(doc.get("error") or "")
            if kind == "timeout" or status == 503:
                raise PromError(f"query timed out on the server ({kind}): {error}")
            raise PromError(f"query failed ({kind}, HTTP {status}): {error}")
        warnings = doc.get("warnings")
        warned = tuple(str(w) for w in warnings) if isinstance(warnings, list) else ()
        return Answer(doc.get("data"), warned, seconds)

    async def vector(self, expr: str, at: float | None = None) -> tuple[float | None, list[Series], Answer]:
        """An instant query (at the server's now, or at ``at``): (evaluation time, series, answer);
        PromError for any other result type."""
        params = {"query": expr, "timeout": f"{self.cfg.query_timeout_s:g}s"}
        if at is not None:
            params["time"] = f"{at:.3f}"
        got = await self.get("/api/v1/query", params, post=True)
        data = got.data
        if not isinstance(data, dict) or data.get("resultType") != "vector" or not isinstance(data.get("result"), list):
            found = data.get("resultType") if isinstance(data, dict) else type(data).__name__
            raise PromError(f"not a Prometheus query API: /api/v1/query gave {found!r}, not a vector")
        at: float | None = None
        out: list[Series] = []
        for item in data["result"]:
            parsed = _sample(item)
            if parsed is None:
                raise PromError("not a Prometheus query API: /api/v1/query gave a malformed sample")
            labels, t, v = parsed
            at = t if at is None else max(at, t)
            out.append((labels, v))
        return at, out, got

    async def matrix(self, expr: str, start: float, end: float, step: float) -> tuple[list[Any], Answer]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}",
                  "timeout": f"{self.cfg.query_timeout_s:g}s"}  # fmt: skip
        got = await self.get("/api/v1/query_range", params, post=True)
        data = got.data
        if not isinstance(data, dict) or data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
            raise PromError("not a Prometheus query API: /api/v1/query_range gave no matrix")
        out = []
        for item in data["result"]:
            labels = item.get("metric") if isinstance(item, dict) else None
            values = item.get("values") if isinstance(item, dict) else None
            if not isinstance(labels, dict) or not isinstance(values, list):
                continue
            points = [p for p in (_point(v) for v in values) if p is not None]
            out.append(({str(k): str(v) for k, v in labels.items()}, points))
        return out, got

    async def aclose(self) -> None:
        await self._client.aclose()


def _secret(path: Path, key: str) -> tuple[str, str | None]:
    p = Path(path).expanduser()
    try:
        st = p.stat()
        value = p.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise PromError(f"cannot read {key} {p}: {getattr(exc, 'strerror', None) or 'not UTF-8 text'}") from None
    if not value or any(c.isspace() or not c.isprintable() for c in value):
        raise PromError(f"{key} {p} does not hold one secret (printable, without spaces)")
    return value, token_file_warning(p, st.st_mode)


def _point(raw: Any) -> tuple[float, float] | None:
    if not isinstance(raw, list) or len(raw) != 2:
        return None
    try:
        return float(raw[0]), float(raw[1])
    except (TypeError, ValueError):
        return None


def _sample(item: Any) -> tuple[dict[str, str], float, float] | None:
    if not isinstance(item, dict):
        return None
    labels, value = item.get("metric"), item.get("value")
    if not isinstance(labels, dict):
        return None
    point = _point(value)
    if point is None:
        return None
    return {str(k): str(v) for k, v in labels.items()}, point[0], point[1]


# --- the source ------------------------------------------------------------------------------------


class PrometheusFleetSource:
    """One ``[[console.prometheus]]`` entry as a FleetSource (see the module docstring)."""

    def __init__(
        self,
        prom: PrometheusConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        fetch_history: bool = True,
        history_step_s: float | None = None,
    ) -> None:
        """``history_step_s``: the graphs' backfill resolution (default: 15 s, or ``refresh_s`` if longer)."""
        self.prom = prom
        self.history_step_s = history_step_s or max(prom.refresh_s, WINDOW_S / HISTORY_POINTS)
        self.client = PromClient(prom, transport=transport)
        self.queries = fleet_queries(prom.match)
        self.fetch_history = fetch_history
        self._clock = clock
        self._next_due: float | None = None
        self._last: dict[str, HostResult] = {}  # the newest good result of each host this source showed
        self._instances: dict[str, str] = {}  # scrape target -> host, as last seen
        self._problem: str | None = None
        self._rule_alerts = True  # False once the server said it has no /api/v1/alerts (VictoriaMetrics)
        self.last_refresh: dict[str, float] = {}  # timings of the last refresh (seconds), for bench/
        self.query_time: Callable[[], float] | None = None  # evaluate at this Unix time (replays, bench/)

    @property
    def name(self) -> str:
        return self.prom.name

    @property
    def requests(self) -> int:
        """HTTP requests sent so far."""
        return self.client.requests

    def route(self) -> str:
        return f"via Prometheus {self.prom.name}"

    def problems(self) -> list[str]:
        return [self._problem] if self._problem else []

    def _line(self, what: Sequence[str]) -> str:
        return one_line(f"prometheus {self.prom.name} ({self.prom.url}): " + "; ".join(what), 400)

    async def poll(self) -> list[HostResult]:
        now = self._clock()
        if self._next_due is not None and now < self._next_due:
            await asyncio.sleep(0)
            return []
        self._next_due = now + self.prom.refresh_s
        try:
            return await self._refresh()
        except PromError as exc:
            self._problem = self._line([str(exc)])
        except Exception as exc:  # a console bug on an odd answer: this source's problem, never the round's
            self._problem = self._line([f"console could not read the answer: {type(exc).__name__}: {exc}"])
        return [replace(r, warnings=(self._problem,)) for r in self._last.values() if self._problem]

    async def _refresh(self) -> list[HostResult]:
        started = time.perf_counter()
        _, _, warning = self.client.credentials()
        names = list(self.queries)
        at_time = self.query_time() if self.query_time is not None else None
        gathered = await asyncio.gather(*(self.client.vector(self.queries[n], at_time) for n in names), self._alerts())
        answers = dict(zip(names, gathered[:-1], strict=True))
        queried = time.perf_counter()
        at = max((a[0] for a in answers.values() if a[0] is not None), default=None)
        up = [(lab, v) for lab, v in answers["hosts"][1] if lab.get("__name__") == "up"]
        host_level = [(lab, v) for lab, v in answers["hosts"][1] if lab.get("__name__") != "up"]
        hosts = [s for s in host_level if not s[0].get("__name__", "").startswith(("llmconsole_gpu_", "llmconsole_alerts"))]
        gpus = [s for s in host_level if s[0].get("__name__", "").startswith("llmconsole_gpu_")]
        alerts = [s for s in host_level if s[0].get("__name__") == "llmconsole_" + ALERTS and s[1] == 1]
        read = read_fleet(at, hosts, answers["engines"][1], answers["values"][1], gpus, alerts)
        self._instances.update(read.instances)
        what = [f"partial response: {w}" for a in answers.values() for w in a[2].warnings]
        what += read.notes
        snaps = read.snapshots
        rules, rule_problem = gathered[-1]
        if rule_problem:
            what.append(rule_problem)
        if rules is not None:
            snaps, notes = rule_alerts(snaps, rules, self._instances, self.prom.name)
            what += notes
        if warning:
            what.append(warning)
        history = await self._backfill(snaps, at, what)
        self._problem = self._line(what) if what else None
        done = self._clock()
        rtt = max(a[2].seconds for a in answers.values())
        warnings = (self._problem,) if self._problem else ()
        out: dict[str, HostResult] = {}
        for host, snap in snaps.items():
            received = done - read.ages.get(host, 0.0)
            out[host] = HostResult(host, snap, None, rtt, received, tuple(history.get(host, ())), self.route(),
                                   warnings, self.prom.stale_after_s)  # fmt: skip
        out.update(self._down(up, snaps, done, warnings))
        self._last = {h: replace(r, history=()) for h, r in out.items() if r.snapshot is not None} | {
            h: r for h, r in self._last.items() if h not in out and r.snapshot is not None
        }
        self.last_refresh = {"queries": queried - started, "read": time.perf_counter() - queried}
        return list(out.values())

    def _down(self, up: list[Series], snaps: Mapping[str, HostSnapshot], now: float,
              warnings: tuple[str, ...]) -> dict[str, HostResult]:  # fmt: skip
        """Hosts whose scrape target is down (``up == 0``) and that sent nothing this refresh."""
        out = {}
        for labels, v in up:  # a target label "host" names it at once; else the instance it was last seen at
            host = labels.get("host") or self._instances.get(labels.get("instance", ""))
            if v == 0 and host and host not in snaps:
                err = HostError("unreachable", f"Prometheus {self.prom.name} cannot scrape it: up == 0 for "
                                               f"{labels.get('instance')} (job {labels.get('job', '?')})")  # fmt: skip
                out[host] = HostResult(host, None, err, None, now, route=self.route(), warnings=warnings,
                                       stale_after_s=self.prom.stale_after_s)  # fmt: skip
        return out

    async def _alerts(self) -> tuple[list[Any] | None, str | None]:
        """Prometheus's firing alerts, or (None, why not). A server without the endpoint (VictoriaMetrics
        serves it only through vmalert) is asked once."""
        if not self._rule_alerts:
            return None, None
        try:
            got = await self.client.get("/api/v1/alerts")
        except PromError as exc:
            text = str(exc)
            if "HTTP 404" in text or "HTTP 400" in text or "not a Prometheus query API" in text:
                self._rule_alerts = False
                return None, None
            return None, f"rule alerts not read: {text}"
        alerts = got.data.get("alerts") if isinstance(got.data, dict) else None
        if not isinstance(alerts, list):
            return None, "rule alerts not read: /api/v1/alerts gave no alert list"
        return alerts, None

    async def _backfill(self, snaps: Mapping[str, HostSnapshot], at: float | None, what: list[str]) -> dict[str, list[HostSnapshot]]:
        """The recent past of hosts seen for the first time, in one range query (never one per host)."""
        new = [h for h in snaps if h not in self._last]
        if not self.fetch_history or not new or at is None:
            return {}
        extra = ""
        if len(new) <= HOST_FILTER_MAX and len(new) < len(snaps):
            extra = 'host=~"' + "|".join(_promql_regex_literal(h) for h in new) + '"'
        expr = selector(self.prom.match, history_names(), extra=extra)
        try:
            matrix, got = await self.client.matrix(expr, at - WINDOW_S, at, self.history_step_s)
        except PromError as exc:
            what.append(f"graphs not backfilled: {exc}")
            return {}
        what.extend(f"partial response: {w}" for w in got.warnings)
        past = read_history(matrix, set(new))
        return {h: [s for s in snaps_ if s.seq < snaps[h].seq] for h, snaps_ in past.items()}

    async def history(self, host: str) -> History | HostError:
        """The host's recent past from one range query (graphs' window, 15 s apart)."""
        end = time.time()
        expr = selector(self.prom.match, history_names(), extra=f'host="{_promql_string(host)}"')
        try:
            matrix, _ = await self.client.matrix(expr, end - WINDOW_S, end, self.history_step_s)
        except PromError as exc:
            return HostError("unreachable", f"Prometheus {self.prom.name}: {exc}")
        return History(host=host, snapshots=tuple(read_history(matrix, {host}).get(host, ())))

    def _read_only(self, host: str) -> str:
        return (f"read-only: {host} is seen only through Prometheus {self.prom.name}; actions and logs need a "
                "direct or SSH route to its agent ([[console.hosts]])")  # fmt: skip

    async def logs(self, host: str, engine: str, lines: int = 200) -> list[str] | HostError:
        return HostError("unreachable", self._read_only(host))

    def action_block(self, host: str) -> str | None:
        return self._read_only(host)

    async def action(self, host: str, engine: str, verb: str) -> ActionResult:
        return ActionResult(host, engine, verb, "refused", self._read_only(host))

    async def aclose(self) -> None:
        await self.client.aclose()


def _promql_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def config_for_url(url: str, match: str | None = None) -> PrometheusConfig:
    """The entry of ``llmconsole status --prometheus URL [--match M]``, named after the URL's host;
    ValueError (one line) for a URL or matcher that cannot be used."""
    problem = http_url_problem(url)
    if problem is not None:
        raise ValueError(problem)
    match = DEFAULT_MATCH if match is None else match
    bad = parse_matchers(match)
    if isinstance(bad, str):
        raise ValueError(f"--match: {bad}")
    return PrometheusConfig(name=urlsplit(url).hostname or "prometheus", url=url, match=match)


__all__ = ["Answer", "PromClient", "PromError", "PrometheusFleetSource", "config_for_url", "fleet_queries", "selector"]
