"""What to benchmark: an engine URL, or ``HOST/ENGINE`` of the fleet, checked to speak the OpenAI API.

- ``http(s)://host:port`` (a trailing ``/v1`` is accepted; a path before it is kept as a prefix);
- ``HOST/ENGINE``: the host from ``[[console.hosts]]`` (read-only use of the console config), its agent's
  ``/v1/snapshot`` (with the host's viewer token, when one is configured) names the engine's port, kind,
  served model and GPUs. A host reached directly gives ``http://<agent's host>:<engine port>``; a host with
  ``ssh = "user@host"`` gets two tunnels from the console's tunnel manager, one to the agent and one to
  the engine's port on the remote loopback, both closed when the benchmark ends.

The target must answer ``GET /v1/models`` with an OpenAI model list; otherwise the benchmark does not
start (one line, exit 2). Where the engine offers vLLM's ``POST /tokenize``, :func:`chars_per_token`
measures how many characters of the generator's text make one of the engine's tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from agents.tomltables import ConfigError
from console.bench.http import Client, HttpError, Origin, split_url
from console.launch import resolve_config
from console.payload import PayloadError, decode_snapshot
from console.settings import HostConfig
from console.tokens import TokenState
from console.tunnels import TunnelError, TunnelManager

CHECK_TIMEOUT_S = 10.0
MAX_MODELS_BYTES = 4 * 1024 * 1024
MAX_SNAPSHOT_BYTES = 8 * 1024 * 1024


class TargetError(Exception):
    """The target cannot be benchmarked; the message is one line."""


@dataclass(slots=True)
class Target:
    label: str  # as given on the command line
    origin: Origin
    prefix: str  # path before /v1 ("" for most engines)
    metrics_url: str
    headers: dict[str, str] = field(default_factory=dict)  # Authorization for the engine's API key
    kind: str | None = None  # vllm | sglang | tgi, when the fleet says so (else detected from /metrics)
    gpus: int | None = None
    model: str | None = None
    models: tuple[str, ...] = ()
    max_model_len: int | None = None
    fleet: dict[str, Any] | None = None  # {"host", "engine", "route", "agent_url", "simulated"}
    tunnels: TunnelManager | None = None
    agent_route: str | None = None  # the agent's URL as reached from here (a tunnel's local URL over ssh)
    agent_token: str | None = None  # never written to the result

    @property
    def base_url(self) -> str:
        return self.origin.url + self.prefix

    def describe(self) -> dict[str, Any]:
        return {
            "target": self.label,
            "base_url": self.base_url,
            "metrics_url": self.metrics_url,
            "engine": self.kind,
            "gpus": self.gpus,
            "max_model_len": self.max_model_len,
            "fleet": self.fleet,
        }

    async def aclose(self) -> None:
        if self.tunnels is not None:
            await self.tunnels.aclose()


def is_url(text: str) -> bool:
    return "://" in text


def _url_target(text: str, label: str) -> Target:
    try:
        origin, path = split_url(text)
    except ValueError as exc:
        raise TargetError(str(exc)) from None
    path = path.split("?", 1)[0].rstrip("/")
    if path.endswith("/v1"):
        path = path[:-3]
    return Target(label, origin, path, f"{origin.url}{path}/metrics")


def parse_fleet_name(text: str) -> tuple[str, str]:
    host, sep, engine = text.partition("/")
    if not sep or not host or not engine or "/" in engine:
        raise TargetError(f"target {text!r} is neither a URL (http://host:port) nor HOST/ENGINE of the fleet")
    return host, engine


async def resolve(
    text: str,
    config_path: str | None,
    metrics_url: str | None = None,
    api_key: str | None = None,
    *,
    ssh: str | None = None,
) -> Target:
    """The target named by ``text``; TargetError (one line) when it cannot be reached or used."""
    if is_url(text):
        target = _url_target(text, text)
    else:
        target = await _fleet_target(text, config_path, ssh)
    if metrics_url is not None:
        try:
            split_url(metrics_url)
        except ValueError as exc:
            await target.aclose()
            raise TargetError(f"--metrics-url: {exc}") from None
        target.metrics_url = metrics_url
    if api_key:
        target.headers["Authorization"] = f"Bearer {api_key}"
    return target


async def _get_json(client: Client, path: str, what: str, limit: int) -> tuple[int, Any]:
    try:
        async with (
            asyncio.timeout(CHECK_TIMEOUT_S),
            client.request("GET", path, accept="application/json") as resp,
        ):
            body = await resp.read(limit)
    except TimeoutError:
        raise TargetError(f"{what}: no answer within {CHECK_TIMEOUT_S:g} s") from None
    except HttpError as exc:
        prefix = "cannot reach" if exc.kind == "connect" else "no usable answer from"
        raise TargetError(f"{prefix} {what}: {exc}") from None
    try:
        return resp.status, json.loads(body)
    except ValueError:
        return resp.status, None


async def check_openai(target: Target, requested_model: str | None) -> None:
    """GET /v1/models: the served models (and max_model_len where the engine says); TargetError if the
    target is unreachable or not an OpenAI-compatible server, or does not serve ``requested_model``."""
    client = Client(target.origin, target.headers)
    try:
        status, doc = await _get_json(client, target.prefix + "/v1/models", target.base_url, MAX_MODELS_BYTES)
    finally:
        await client.aclose()
    where = f"{target.base_url} is not an OpenAI-compatible server"
    if status in (401, 403):
        raise TargetError(
            f"{target.base_url}: GET /v1/models answered HTTP {status}: give the engine's API key "
            "with --api-key-env NAME"
        )
    if status != 200:
        raise TargetError(f"{where}: GET /v1/models answered HTTP {status}")
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list) or not all(
        isinstance(m, dict) and isinstance(m.get("id"), str) for m in data
    ):
        raise TargetError(f"{where}: GET /v1/models is not an OpenAI model list")
    target.models = tuple(m["id"] for m in data)
    if not target.models:
        raise TargetError(f"{target.base_url} serves no model (GET /v1/models is empty)")
    model = requested_model or target.model or target.models[0]
    if model not in target.models:
        raise TargetError(
            f"{target.base_url} does not serve model {model!r} (it serves: {', '.join(target.models)})"
        )
    target.model = model
    entry = next(m for m in data if m["id"] == model)
    mlen = entry.get("max_model_len")
    if isinstance(mlen, int) and not isinstance(mlen, bool) and mlen > 0:
        target.max_model_len = mlen


async def chars_per_token(target: Target, sample: str) -> float | None:
    """Characters per token of ``sample`` by the engine's own tokenizer (vLLM's POST /tokenize), or None."""
    client = Client(target.origin, target.headers)
    body = json.dumps({"model": target.model, "prompt": sample}).encode()
    try:
        async with (
            asyncio.timeout(CHECK_TIMEOUT_S),
            client.request("POST", target.prefix + "/tokenize", body, "application/json") as resp,
        ):
            raw = await resp.read(MAX_MODELS_BYTES)
        doc = json.loads(raw) if resp.status == 200 else None
    except (TimeoutError, HttpError, ValueError):
        return None
    finally:
        await client.aclose()
    count = doc.get("count") if isinstance(doc, dict) else None
    if not isinstance(count, int) or isinstance(count, bool) or count <= 0:
        return None
    return len(sample) / count


# --- HOST/ENGINE --------------------------------------------------------------------------------------------
async def _fleet_target(text: str, config_path: str | None, ssh: str | None = None) -> Target:
    host_name, engine_id = parse_fleet_name(text)
    try:
        config = resolve_config(config_path, ssh)
    except ConfigError as exc:
        raise TargetError(str(exc)) from None
    host = config.host(host_name)
    if host is None:
        known = ", ".join(h.name for h in config.hosts) or "none configured"
        raise TargetError(f"no host {host_name!r} in [[console.hosts]] (hosts: {known})")
    tunnels = TunnelManager([host]) if host.ssh is not None else None
    try:
        return await _engine_of(text, host, engine_id, tunnels)
    except BaseException:
        if tunnels is not None:
            await tunnels.aclose()
        raise


async def _engine_of(text: str, host: HostConfig, engine_id: str, tunnels: TunnelManager | None) -> Target:
    try:
        agent_url = await tunnels.url_for(host) if tunnels is not None else host.url
    except TunnelError as exc:
        raise TargetError(str(exc)) from None
    token = TokenState.read(host, os.environ).value
    origin, path = split_url(agent_url)
    client = Client(origin, {"Authorization": f"Bearer {token}"} if token else None)
    base = path.rstrip("/")
    try:
        status = 0
        async with (
            asyncio.timeout(CHECK_TIMEOUT_S),
            client.request("GET", base + "/v1/snapshot", accept="application/json") as resp,
        ):
            raw = await resp.read(MAX_SNAPSHOT_BYTES)
            status = resp.status
    except TimeoutError:
        raise TargetError(f"{host.name}: the agent gave no snapshot within {CHECK_TIMEOUT_S:g} s") from None
    except HttpError as exc:
        raise TargetError(f"{host.name}: cannot reach the agent at {host.url}: {exc}") from None
    finally:
        await client.aclose()
    if status in (401, 403):
        raise TargetError(
            f"{host.name}: not authorized (HTTP {status}): check the host's token_env or token_file"
        )
    if status != 200:
        raise TargetError(f"{host.name}: the agent answered HTTP {status} for /v1/snapshot")
    try:
        snap = decode_snapshot(raw)
    except PayloadError as exc:
        raise TargetError(f"{host.name}: {' '.join(str(exc).split())}") from None
    engine = snap.engine(engine_id)
    if engine is None:
        known = ", ".join(e.id for e in snap.engines) or "none"
        raise TargetError(f"no engine {engine_id!r} on {host.name} (engines: {known})")
    if engine.state != "ready":
        raise TargetError(f"{host.name}/{engine_id} is {engine.state}, not ready")
    if engine.port is None:
        raise TargetError(f"{host.name}/{engine_id}: the agent does not report the engine's port")
    if tunnels is not None:
        try:
            engine_url = await tunnels.url_for(engine_tunnel_host(host, engine_id, engine.port))
        except TunnelError as exc:
            raise TargetError(str(exc)) from None
    else:
        hostname = urlsplit(host.url).hostname or "127.0.0.1"
        engine_url = f"http://{f'[{hostname}]' if ':' in hostname else hostname}:{engine.port}"
    target = _url_target(engine_url, text)
    target.kind = engine.kind
    target.gpus = len(engine.gpus) or None
    target.model = engine.served_model_name or engine.model
    target.fleet = {
        "host": host.name,
        "engine": engine_id,
        "route": "ssh" if tunnels is not None else "http",
        "agent_url": host.url,
        "simulated": engine.simulated,
    }
    target.tunnels = tunnels
    target.agent_route, target.agent_token = agent_url, token
    return target


def engine_tunnel_host(host: HostConfig, engine_id: str, port: int) -> HostConfig:
    """The tunnel to an engine's port on the remote host's loopback, through the host's own ssh settings."""
    return replace(
        host,
        name=f"{host.name}/{engine_id}",
        url=f"http://127.0.0.1:{port}",
        remote_port=None,
        token_env=None,
        token_file=None,
    )


async def close_quietly(target: Target | None) -> None:
    if target is not None:
        with contextlib.suppress(Exception):
            await target.aclose()
