"""The Prometheus HTTP query API as the console uses it (Prometheus, Thanos Querier, VictoriaMetrics).

:class:`PromClient`: one ``httpx.AsyncClient`` with an entry's credentials (bearer token file, or basic auth
with a password file; re-read at each request, so a fixed file needs no restart) and CA; answers are read
under a size cap and their envelope checked. Answers are asked for gzipped (httpx's default) except from a
loopback URL, where compressing the ~8 MB of a 1,000-host refresh costs the server more than the copy.
Every failure is a :class:`PromError` whose text is one line naming what failed: cannot connect, not
authorized (with what to check), not a Prometheus query API, no answer within the query timeout, the
server's own error (its ``errorType``), a malformed sample.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import msgspec

from console.netutil import connect_reason as _connect_reason
from console.netutil import token_file_warning
from console.promnames import Series
from console.settings import PrometheusConfig

MAX_ANSWER_BYTES = 256 * 1024 * 1024  # a 1,000-host refresh is a few tens of MiB at most


class _Sample(msgspec.Struct):
    metric: dict[str, str]
    value: tuple[float, str]  # [evaluation time, "value"]: the value a string, as the general reader wants


class _Vector(msgspec.Struct):
    resultType: Literal["vector"]
    result: list[_Sample]


class _VectorAnswer(msgspec.Struct):
    status: Literal["success"]
    data: _Vector
    warnings: list[str] = []


_VECTOR = msgspec.json.Decoder(_VectorAnswer, strict=False)
"""A successful instant-vector answer, decoded and type-checked in one C pass (bench/bench_prometheus.py:
2-3x cheaper than ``json.loads`` plus a Python loop over the samples); anything it refuses (an error,
another result type, a malformed sample) goes the general way, which names what is wrong: both accept and
refuse the same answers (tests/console/test_promapi_decode.py)."""


class PromError(Exception):
    """One request to the server failed; ``str()`` is one line naming what failed."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A successful answer: ``data``, the server's ``warnings`` (a partial response), its wall time.
    :meth:`PromClient.vector` and :meth:`PromClient.matrix` return it without ``data`` (None): the decoded
    document (tens of thousands of containers at fleet scale) is dropped as soon as it is read."""

    data: Any
    warnings: tuple[str, ...]
    seconds: float


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
        headers = {"User-Agent": "llmconsole"}
        if _loopback(
            cfg.url
        ):  # no gzip on loopback: compressing ~8 MB per refresh costs the server more than it saves
            headers["Accept-Encoding"] = "identity"
        self._client = httpx.AsyncClient(
            base_url=cfg.url.rstrip("/"),
            transport=transport,
            verify=verify,
            trust_env=False,
            timeout=httpx.Timeout(cfg.query_timeout_s + 1.0),
            headers=headers,
        )

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
        body, resp, seconds = await self._fetch(path, params, post)
        return self._envelope(path, resp, body, seconds)

    async def _fetch(
        self, path: str, params: Mapping[str, str] | None, post: bool
    ) -> tuple[bytes, httpx.Response, float]:
        """One API call's body, response and wall time; PromError when no answer came."""
        if self.setup_error is not None:
            raise PromError(self.setup_error)
        headers, auth, _ = self.credentials()
        started = time.monotonic()
        self.requests += 1
        try:
            async with asyncio.timeout(self.cfg.query_timeout_s + 2.0):
                body, resp = await self._send(path, params, headers, auth, post)
        except (TimeoutError, httpx.TimeoutException):
            raise PromError(
                f"{path}: no answer within {self.cfg.query_timeout_s:g}s (query timeout)"
            ) from None
        except httpx.ConnectError as exc:
            raise PromError(f"cannot connect: {_connect_reason(exc)}") from None
        except httpx.HTTPError as exc:
            raise PromError(f"{path}: connection broken: {_connect_reason(exc)}") from None
        return body, resp, time.monotonic() - started

    async def _send(
        self,
        path: str,
        params: Mapping[str, str] | None,
        headers: dict[str, str],
        auth: httpx.BasicAuth | None,
        post: bool,
    ) -> tuple[bytes, httpx.Response]:
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
        path = "/api/v1/query"
        body, resp, seconds = await self._fetch(path, params, True)
        if 200 <= resp.status_code < 300:
            fast = _fast_vector(body)
            if fast is not None:
                out, at, warnings = fast
                return at, out, Answer(None, warnings, seconds)
        got = self._envelope(path, resp, body, seconds)
        data = got.data
        if (
            not isinstance(data, dict)
            or data.get("resultType") != "vector"
            or not isinstance(data.get("result"), list)
        ):
            found = data.get("resultType") if isinstance(data, dict) else type(data).__name__
            raise PromError(f"not a Prometheus query API: /api/v1/query gave {found!r}, not a vector")
        try:
            out, at = _samples(data["result"])
        except (TypeError, ValueError, KeyError, IndexError, AttributeError):
            raise PromError("not a Prometheus query API: /api/v1/query gave a malformed sample") from None
        return at, out, Answer(None, got.warnings, got.seconds)  # the document, read, goes at once

    async def matrix(self, expr: str, start: float, end: float, step: float) -> tuple[list[Any], Answer]:
        params = {
            "query": expr,
            "start": f"{start:.3f}",
            "end": f"{end:.3f}",
            "step": f"{step:g}",
            "timeout": f"{self.cfg.query_timeout_s:g}s",
        }
        got = await self.get("/api/v1/query_range", params, post=True)
        data = got.data
        if (
            not isinstance(data, dict)
            or data.get("resultType") != "matrix"
            or not isinstance(data.get("result"), list)
        ):
            raise PromError("not a Prometheus query API: /api/v1/query_range gave no matrix")
        out = []
        for item in data["result"]:
            labels = item.get("metric") if isinstance(item, dict) else None
            values = item.get("values") if isinstance(item, dict) else None
            if not isinstance(labels, dict) or not isinstance(values, list):
                continue
            points = [p for p in (_point(v) for v in values) if p is not None]
            out.append(({str(k): str(v) for k, v in labels.items()}, points))
        return out, Answer(None, got.warnings, got.seconds)

    async def aclose(self) -> None:
        await self._client.aclose()


def _loopback(url: str) -> bool:
    """Whether ``url`` names this machine (a console beside its Prometheus); a bad URL is not."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _secret(path: Path, key: str) -> tuple[str, str | None]:
    p = Path(path).expanduser()
    try:
        st = p.stat()
        value = p.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise PromError(
            f"cannot read {key} {p}: {getattr(exc, 'strerror', None) or 'not UTF-8 text'}"
        ) from None
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


def _fast_vector(body: bytes) -> tuple[list[Series], float | None, tuple[str, ...]] | None:
    """(samples, evaluation time, warnings) of a well-formed successful vector answer; None otherwise."""
    try:
        got = _VECTOR.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    result = got.data.result
    at = result[0].value[0] if result else None
    if at is not None and not math.isfinite(at):
        return None
    try:
        return [(s.metric, float(s.value[1])) for s in result], at, tuple(got.warnings)
    except ValueError:
        return None


def _samples(result: list[Any]) -> tuple[list[Series], float | None]:
    """A vector's samples as (labels, value) and its evaluation time. Hot at fleet scale (tens of thousands
    per refresh): no copies; every label value is checked to be a string in one C call each; the time is
    read from the first sample (an instant vector has one evaluation time: every sample carries it); any
    malformed item raises (TypeError, ValueError, KeyError, IndexError, AttributeError)."""
    if not result:
        return [], None
    out: list[Series] = []
    append = out.append
    join = "".join
    dict_, str_ = dict, str
    for item in result:
        labels = item["metric"]
        _t, v = item["value"]
        join(labels.values())  # TypeError unless every label value is a string
        if type(labels) is not dict_ or type(v) is not str_:
            raise TypeError("malformed sample")
        append((labels, float(v)))
    at = float(result[0]["value"][0])
    if not math.isfinite(at):
        raise ValueError("malformed sample time")
    return out, at


__all__ = ["MAX_ANSWER_BYTES", "Answer", "PromClient", "PromError"]
