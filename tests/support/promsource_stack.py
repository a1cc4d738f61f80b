"""Test helper: real agents (simulated engines) scraped by a real Prometheus or VictoriaMetrics, on loopback.

Builds on :mod:`tests.support.promstack` (its :class:`Server` runs a binary by PID in its own directory);
adds Debian's ``victoria-metrics`` (single node, scraping with ``-promscrape.config``),
:class:`ScrapedFleet` — agents from :mod:`tests.support.agentproc`, each naming its own host
(``[agent] host``) with a viewer token in its tokens file, and one server scraping them with that token
from a credentials file, the scrape config README recommends; everything under one directory, stopped by
PID — and :class:`PromLike`, a Prometheus look-alike that can turn hostile.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.auth import hash_token, new_token
from tests.support.agentproc import Agent, free_port, kill_everything, sim, write_config
from tests.support.promstack import Prometheus, Server, prometheus_binary

JOB = "llmconsole"
SCRAPE_INTERVAL_S = 1.0


def victoria_binary() -> str | None:
    found = shutil.which("victoria-metrics")
    return found or ("/usr/bin/victoria-metrics" if os.access("/usr/bin/victoria-metrics", os.X_OK) else None)


class VictoriaMetrics(Server):
    """Single-node ``victoria-metrics`` scraping with a Prometheus-style config; data visible at once
    (``-search.latencyOffset=0s``) so a test need not wait 30 s."""

    name = "victoria-metrics"
    ready_path = "/health"

    def __init__(self, binary: str, directory: Path, config: str, *, stop_grace_s: float = 10.0) -> None:
        super().__init__(binary, directory, stop_grace_s=stop_grace_s)
        self.config = self.dir / "scrape.yml"
        self.config.write_text(config)

    def argv(self) -> list[str]:
        return [
            self.binary,
            f"-storageDataPath={self.dir / 'data'}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-promscrape.config={self.config}",
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-loggerLevel=WARN",
        ]


@dataclass
class ScrapedFleet:
    """Agents with simulated engines plus one scraping server (``kind``: prometheus | victoria-metrics)."""

    root: Path
    kind: str
    engines_per_agent: Sequence[Sequence[dict[str, Any]]]
    agents: list[Agent] = field(default_factory=list)
    rule_files: Sequence[Path] = ()  # Prometheus only (VictoriaMetrics evaluates rules in vmalert)
    thresholds: Sequence[dict[str, Any]] = ()  # per agent: its [thresholds] (hung_after_s 3 s by default)
    server: Server | None = None
    viewer_token: str = ""

    def start(self) -> None:
        self.viewer_token = new_token()
        creds = self.root / "scrape.token"
        creds.write_text(self.viewer_token + "\n")
        creds.chmod(0o600)
        for i, engines in enumerate(self.engines_per_agent):
            home = self.root / f"agent{i}"
            home.mkdir(parents=True)
            tokens = home / "tokens"
            tokens.write_text(f"scraper viewer {hash_token(self.viewer_token)}\n")
            port = free_port()
            extra = dict(self.thresholds[i]) if i < len(self.thresholds) else None
            settings = {
                "tokens_file": str(tokens),
                "host": self.host(i),
            }  # every agent here shares one machine
            config = write_config(home, port, [dict(e) for e in engines], settings, extra)
            agent = Agent(config, port)
            agent.start()
            self.agents.append(agent)
        sub = self.root / self.kind
        rules = self.rule_files if self.kind == "prometheus" else ()
        text = scrape_config([f"127.0.0.1:{a.port}" for a in self.agents], creds, rules)
        if self.kind == "prometheus":
            binary = prometheus_binary()
            assert binary is not None
            self.server = Prometheus(binary, sub, text)
        else:
            binary = victoria_binary()
            assert binary is not None
            self.server = VictoriaMetrics(binary, sub, text)
        self.server.start()

    @staticmethod
    def host(i: int) -> str:
        """Agent ``i``'s host name (``[agent] host``: these agents share one machine and its hostname)."""
        return f"fleet-h{i}"

    def snapshot(self, agent: Agent) -> dict[str, Any] | None:
        import httpx

        try:
            r = httpx.get(
                agent.url + "/v1/snapshot",
                headers={"Authorization": f"Bearer {self.viewer_token}"},
                timeout=3,
                trust_env=False,
            )
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None

    def history(self, agent: Agent) -> dict[int, dict[str, Any]]:
        """The agent's ``/v1/history`` snapshots by seq."""
        import httpx

        r = httpx.get(
            agent.url + "/v1/history",
            headers={"Authorization": f"Bearer {self.viewer_token}"},
            timeout=5,
            trust_env=False,
        )
        r.raise_for_status()
        return {s["seq"]: s for s in r.json()["snapshots"]}

    def kill(self, i: int) -> None:
        """Agent ``i`` and its engines, at once (SIGKILL, by PID)."""
        kill_everything(self.agents[i], self.root / f"agent{i}" / "state")

    def stop(self) -> None:
        try:
            for i, a in enumerate(self.agents):
                with contextlib.suppress(Exception):
                    kill_everything(a, self.root / f"agent{i}" / "state")
        finally:
            if self.server is not None:
                self.server.stop()


def scrape_config(targets: Sequence[str], credentials_file: Path, rule_files: Sequence[Path] = ()) -> str:
    """The README's scrape job (bearer token from a file; the agents name their own ``host``), every second."""
    job = {
        "job_name": JOB,
        "metrics_path": "/metrics",
        "authorization": {"type": "Bearer", "credentials_file": str(credentials_file)},
        "static_configs": [{"targets": list(targets)}],
    }
    interval = f"{SCRAPE_INTERVAL_S:g}s"
    doc: dict[str, Any] = {
        "global": {"scrape_interval": interval, "scrape_timeout": interval},
        "scrape_configs": [job],
    }
    if rule_files:
        doc["global"]["evaluation_interval"] = interval
        doc["rule_files"] = [str(p) for p in rule_files]
    return json.dumps(doc, indent=2) + "\n"


def engine(eid: str, dialect: str, *args: str, gpus: Sequence[int] = (0,)) -> dict[str, Any]:
    """A simulated engine entry for :func:`tests.support.agentproc.write_config`."""
    return {
        "id": eid,
        "kind": dialect,
        "model": f"sim-{eid}",
        "port": free_port(),
        "gpus": list(gpus),
        "command": sim(dialect),
        "args": list(args),
        "canary": False,
    }


# --- a Prometheus look-alike that can turn hostile --------------------------------------------------------

HOSTILE_MODES = (
    "ok",
    "html",
    "unauthorized",
    "slow",
    "server_timeout",
    "warnings",
    "nan",
    "no_labels",
    "malformed",
)


def exposition(
    snapshots: Sequence[Any], instance_of: Callable[[str], str] | None = None
) -> list[tuple[dict[str, str], float]]:
    """The series Prometheus would hold for these snapshots: the agent's own exporter's samples, with the
    scrape's ``job`` and ``instance`` labels added."""
    from agents.exporter import make_registry

    out = []
    for i, snap in enumerate(snapshots):
        instance = instance_of(snap.host) if instance_of else f"10.0.0.{i + 1}:9300"
        for metric in make_registry(lambda snap=snap: snap).collect():
            for s in metric.samples:
                out.append(
                    ({"__name__": s.name, **s.labels, "job": JOB, "instance": instance}, float(s.value))
                )
    return out


class PromLike:
    """A real HTTP server on 127.0.0.1 (this process, one thread per request) answering ``/api/v1/query``,
    ``/api/v1/query_range`` and ``/api/v1/alerts`` the way Prometheus does, from the series of
    :func:`exposition` — or, per ``mode``, the way a broken or hostile server would (see HOSTILE_MODES).
    ``token``: the bearer token it requires (None: none). Records each request's path and headers."""

    def __init__(
        self,
        series: list[tuple[dict[str, str], float]],
        *,
        token: str | None = None,
        basic: tuple[str, str] | None = None,
    ) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.series = series
        self.mode = "ok"
        self.token, self.basic = token, basic
        self.slow_s = 3.0
        self.names_on_comparisons = (
            True  # False: a filter comparison (``== 1``) drops __name__, as some servers' do
        )
        self.alerts: list[dict[str, Any]] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.queries: list[str] = []  # the PromQL of each query request
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                owner._answer(self, b"")

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                owner._answer(self, self.rfile.read(length) if length else b"")

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> PromLike:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._thread.join(10)
        self._server.server_close()

    def _send(self, h: Any, status: int, body: bytes, kind: str = "application/json") -> None:
        with contextlib.suppress(
            BrokenPipeError, ConnectionResetError
        ):  # the client gave up (a timeout test)
            h.send_response(status)
            h.send_header("Content-Type", kind)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)

    def _answer(self, h: Any, raw: bytes) -> None:
        import base64
        import time as _time
        from urllib.parse import parse_qs, urlsplit

        parts = urlsplit(h.path)
        self.requests.append((parts.path, dict(h.headers.items())))
        params = {k: v[-1] for k, v in {**parse_qs(parts.query), **parse_qs(raw.decode())}.items()}
        if "query" in params:
            self.queries.append(params["query"])
        auth = h.headers.get("Authorization", "")
        wanted = (
            f"Bearer {self.token}"
            if self.token
            else "Basic " + base64.b64encode(":".join(self.basic).encode()).decode()
            if self.basic
            else None
        )
        if self.mode == "unauthorized" or (wanted is not None and auth != wanted):
            return self._send(h, 401, b"Unauthorized\n", "text/plain")
        if self.mode == "html":
            return self._send(
                h, 200, b"<!doctype html><html><title>Grafana</title></html>", "text/html; charset=utf-8"
            )
        if self.mode == "slow":
            _time.sleep(self.slow_s)
        if self.mode == "server_timeout":
            doc = {
                "status": "error",
                "errorType": "timeout",
                "error": "query timed out in expression evaluation",
            }
            return self._send(h, 503, json.dumps(doc).encode())
        if parts.path == "/api/v1/alerts":
            return self._send(
                h, 200, json.dumps({"status": "success", "data": {"alerts": self.alerts}}).encode()
            )
        if parts.path not in ("/api/v1/query", "/api/v1/query_range"):
            return self._send(h, 404, b"404 page not found\n", "text/plain")
        now = float(params.get("time") or params.get("end") or _time.time())
        chosen = self._select(params.get("query", ""))
        if parts.path == "/api/v1/query":
            result = [{"metric": m, "value": [now, v]} for m, v in chosen]
            data = {"resultType": "vector", "result": result}
        else:
            data = {
                "resultType": "matrix",
                "result": [{"metric": m, "values": [[now, v]]} for m, v in chosen],
            }
        if self.mode == "malformed":
            data = {"resultType": "vector", "result": [{"metric": "host", "value": "x"}]}
        doc: dict[str, Any] = {"status": "success", "data": data}
        if self.mode == "warnings":
            doc["warnings"] = ["partial response: store 10.0.0.3:10901 unavailable"]
        self._send(h, 200, json.dumps(doc).encode())

    def _select(
        self, query: str, series: list[tuple[dict[str, str], float]] | None = None
    ) -> list[tuple[dict[str, str], str]]:
        """The answer to ``query`` from ``series`` (default: the server's)."""
        import re

        if series is None:
            series = self.series

        if " or " in query:  # `a or b`: a, and b's series whose labels (less the name) none of a's have
            left, right = query.split(" or ", 1)
            first = self._select(left, series)

            def key(labels: dict[str, str]) -> frozenset[tuple[str, str]]:
                return frozenset(item for item in labels.items() if item[0] != "__name__")

            seen = {key(labels) for labels, _ in first}
            return first + [sv for sv in self._select(right, series) if key(sv[0]) not in seen]
        m = re.search(r'__name__=~"([^"]+)"', query)
        name = re.compile(m[1]) if m else None
        h = re.search(r'host=~"((?:[^"\\]|\\.)*)"', query)
        host = re.compile(h[1].replace("\\\\", "\\")) if h else None
        only_one = query.rstrip().endswith("== 1")
        out = []
        for labels, value in series:
            if name is not None and not name.fullmatch(labels["__name__"]):
                continue
            if host is not None and not host.fullmatch(labels.get("host", "")):
                continue
            if only_one and value != 1:
                continue
            labels = dict(labels)
            text = repr(float(value))
            if self.mode == "nan" and labels["__name__"].endswith("ttft_p95_seconds"):
                text = "NaN"
            if self.mode == "nan" and labels["__name__"].endswith("kv_cache_usage_ratio"):
                text = "+Inf"
            if self.mode == "no_labels" and labels["__name__"] == "llmconsole_engine_requests_running":
                labels.pop("engine", None)
            if self.mode == "no_labels" and labels["__name__"] == "llmconsole_gpu_memory_used_bytes":
                labels.pop("host", None)
            if only_one and not self.names_on_comparisons:
                labels.pop("__name__", None)
            out.append((labels, text))
        return out


__all__ = [
    "HOSTILE_MODES",
    "JOB",
    "SCRAPE_INTERVAL_S",
    "PromLike",
    "ScrapedFleet",
    "VictoriaMetrics",
    "engine",
    "exposition",
    "scrape_config",
    "victoria_binary",
]
