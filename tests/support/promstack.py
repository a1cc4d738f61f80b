"""Test helper: a real Prometheus, a real Alertmanager and a webhook receiver, all on loopback.

Debian's binaries (``apt-get install prometheus prometheus-alertmanager``: ``/usr/bin/prometheus``,
``/usr/bin/prometheus-alertmanager``) run as child processes of the test, each in its own session, with
its storage, config and log in a directory of the caller's, on a free ``127.0.0.1`` port. They are
started and stopped by PID (SIGTERM, a grace period, then SIGKILL) and given ``PR_SET_PDEATHSIG`` so
that a test runner killed outright does not leave them behind. Alertmanager runs with clustering off
(``--cluster.listen-address=``).

- :func:`skip_reason` — why these tests cannot run here (a binary is missing), else None;
- :func:`prometheus_config` / :func:`alertmanager_config` — config text (JSON, which both read as YAML);
- :class:`Prometheus`, :class:`Alertmanager` — ``start()``, ``wait_ready()``, ``stop()``, ``api()``;
- :class:`WebhookReceiver` — an HTTP server in this process that records every JSON body posted to it;
- :func:`wait_until` — poll a condition with a deadline, failing with what was last seen;
- :func:`free_ports`, :func:`descendants`, :func:`alive`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil

from console.demo_fleet import free_ports

T = TypeVar("T")

PROMETHEUS_PATHS = ("/usr/bin/prometheus",)
ALERTMANAGER_PATHS = ("/usr/bin/prometheus-alertmanager", "/usr/bin/alertmanager")
PR_SET_PDEATHSIG = 1
START_ATTEMPTS = 3  # a pre-chosen free port can be taken by someone else before the binary binds it


def _binary(names: Sequence[str], paths: Sequence[str]) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return next((p for p in paths if os.access(p, os.X_OK)), None)


def prometheus_binary() -> str | None:
    return _binary(("prometheus",), PROMETHEUS_PATHS)


def alertmanager_binary() -> str | None:
    return _binary(("prometheus-alertmanager", "alertmanager"), ALERTMANAGER_PATHS)


def skip_reason() -> str | None:
    """Why a Prometheus + Alertmanager test cannot run here (a missing binary), else None."""
    missing = []
    if prometheus_binary() is None:
        missing.append("prometheus (apt-get install prometheus)")
    if alertmanager_binary() is None:
        missing.append("prometheus-alertmanager (apt-get install prometheus-alertmanager)")
    return "not installed: " + ", ".join(missing) if missing else None


# --- waiting ------------------------------------------------------------------------------------------


def wait_until(
    check: Callable[[], T | None],
    timeout_s: float,
    what: str,
    *,
    interval_s: float = 0.25,
    describe: Callable[[], str] | None = None,
    abort: Callable[[], str | None] | None = None,
) -> T:
    """Call ``check`` until it returns something truthy (returned) or ``timeout_s`` passes
    (AssertionError naming ``what``, the last value or exception, and ``describe()``). ``abort`` returning
    a message ends the wait at once with that message (e.g. the process waited for has exited)."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        reason = abort() if abort is not None else None
        if reason:
            raise AssertionError(f"gave up waiting for {what}: {reason}")
        try:
            value = check()
        except Exception as exc:  # noqa: BLE001 - a failing probe is "not yet"; reported on timeout
            value, last = None, exc
        else:
            last = value
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f"\n{describe()}" if describe is not None else ""
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}; last: {last!r}{extra}")
        time.sleep(interval_s)


# --- processes ----------------------------------------------------------------------------------------


def _pdeathsig() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _clean_env(home: Path) -> dict[str, str]:
    """No proxy variables (everything here is loopback), a private HOME."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def descendants() -> set[int]:
    """PIDs of this process's live (non-zombie) descendants."""
    out = set()
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            if child.status() != psutil.STATUS_ZOMBIE:
                out.add(child.pid)
    return out


class Server:
    """One binary on a loopback port: its own directory, log file and session; stopped by PID."""

    name = "server"
    ready_path = "/-/ready"

    def __init__(self, binary: str, directory: Path, *, stop_grace_s: float = 10.0) -> None:
        self.binary = binary
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = self.dir / f"{self.name}.log"
        self.stop_grace_s = stop_grace_s
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self, ready_timeout_s: float = 60.0) -> None:
        """Start on a free port and wait until ``/-/ready`` answers 200; retried on a new port when the
        chosen one was taken before the binary could bind it."""
        for attempt in range(START_ATTEMPTS):
            self.port = free_ports(1)[0]
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(
                    self.argv(),
                    cwd=self.dir,
                    env=_clean_env(self.dir),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_pdeathsig,
                )
            try:
                self.wait_ready(ready_timeout_s)
                return
            except AssertionError:
                exited = self.proc.poll() is not None
                self.stop()
                if (
                    not (exited and "address already in use" in self.log_tail())
                    or attempt == START_ATTEMPTS - 1
                ):
                    raise

    def wait_ready(self, timeout_s: float) -> None:
        def ready() -> bool:
            with httpx.Client(timeout=2.0, trust_env=False) as c:
                return c.get(self.url + self.ready_path).status_code == 200

        def exited() -> str | None:
            if self.proc is not None and self.proc.poll() is not None:
                return f"{self.name} exited with code {self.proc.returncode}: {self.log_tail()}"
            return None

        wait_until(
            ready, timeout_s, f"{self.name} on {self.url} to be ready", describe=self.log_tail, abort=exited
        )

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> int | None:
        """SIGTERM by PID, up to ``stop_grace_s``, then SIGKILL; reaped. Returns the exit status (None if
        never started). Idempotent."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(self.stop_grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10.0)
        return proc.returncode

    def api(self, path: str, params: Mapping[str, str] | None = None, timeout_s: float = 5.0) -> Any:
        """GET ``/api/v2``-or-``v1`` JSON; for Prometheus's envelope, its ``data`` (AssertionError on
        ``status != success``)."""
        with httpx.Client(timeout=timeout_s, trust_env=False) as c:
            r = c.get(self.url + path, params=params)
        r.raise_for_status()
        body = r.json()
        if isinstance(body, dict) and "status" in body and "data" in body:
            if body["status"] != "success":
                raise AssertionError(f"{self.name} {path}: {body}")
            return body["data"]
        return body


class Prometheus(Server):
    """``prometheus`` with the given config text, TSDB under its directory, on 127.0.0.1."""

    name = "prometheus"

    def __init__(self, binary: str, directory: Path, config: str, *, stop_grace_s: float = 10.0) -> None:
        super().__init__(binary, directory, stop_grace_s=stop_grace_s)
        self.config = self.dir / "prometheus.yml"
        self.config.write_text(config)

    def argv(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--web.external-url={self.url}/",
            "--log.level=info",
        ]

    def alerts(self) -> list[dict[str, Any]]:
        """``/api/v1/alerts``: every pending and firing alert."""
        return list(self.api("/api/v1/alerts")["alerts"])

    def targets(self) -> list[dict[str, Any]]:
        return list(self.api("/api/v1/targets")["activeTargets"])

    def rules(self) -> list[dict[str, Any]]:
        """``/api/v1/rules``: the loaded rule groups."""
        return list(self.api("/api/v1/rules")["groups"])

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("/api/v1/query", {"query": expr})
        return list(data["result"])


class Alertmanager(Server):
    """``prometheus-alertmanager`` with the given config text, storage under its directory, clustering off."""

    name = "alertmanager"

    def __init__(self, binary: str, directory: Path, config: str, *, stop_grace_s: float = 10.0) -> None:
        super().__init__(binary, directory, stop_grace_s=stop_grace_s)
        self.config = self.dir / "alertmanager.yml"
        self.config.write_text(config)

    def argv(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.config}",
            f"--storage.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--web.external-url={self.url}/",
            "--cluster.listen-address=",
            "--log.level=info",
        ]

    def alerts(self) -> list[dict[str, Any]]:
        """``/api/v2/alerts``: what Alertmanager holds."""
        return list(self.api("/api/v2/alerts"))


# --- configs ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScrapeJob:
    """One scrape job: static targets (``host:port``), optionally a bearer-token credentials file."""

    name: str
    targets: Sequence[str]
    credentials_file: Path | None = None
    metrics_path: str = "/metrics"
    labels: Mapping[str, str] = field(default_factory=dict)


def _duration(seconds: float) -> str:
    ms = round(seconds * 1000)
    if ms <= 0:
        raise ValueError(f"a Prometheus duration must be positive, got {seconds!r}")
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def prometheus_config(
    jobs: Sequence[ScrapeJob],
    *,
    scrape_interval_s: float,
    evaluation_interval_s: float,
    scrape_timeout_s: float | None = None,
    rule_files: Sequence[Path] = (),
    alertmanagers: Sequence[str] = (),
) -> str:
    """prometheus.yml text. ``alertmanagers``: ``host:port`` of Alertmanagers to send alerts to."""
    scrape_configs = []
    for job in jobs:
        entry: dict[str, Any] = {
            "job_name": job.name,
            "metrics_path": job.metrics_path,
            "static_configs": [
                {"targets": list(job.targets), **({"labels": dict(job.labels)} if job.labels else {})}
            ],
        }
        if job.credentials_file is not None:
            entry["authorization"] = {"type": "Bearer", "credentials_file": str(job.credentials_file)}
        scrape_configs.append(entry)
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": _duration(scrape_interval_s),
            "scrape_timeout": _duration(
                scrape_timeout_s if scrape_timeout_s is not None else scrape_interval_s
            ),
            "evaluation_interval": _duration(evaluation_interval_s),
        },
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": scrape_configs,
    }
    if alertmanagers:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]}
    return json.dumps(config, indent=2) + "\n"


def alertmanager_config(
    webhook_url: str,
    *,
    receiver: str = "test-webhook",
    group_by: Sequence[str] = ("alertname",),
    group_wait_s: float = 1.0,
    group_interval_s: float = 1.0,
    repeat_interval: str = "1h",
    send_resolved: bool = False,
) -> str:
    """alertmanager.yml text: every alert to one webhook receiver."""
    config = {
        "route": {
            "receiver": receiver,
            "group_by": list(group_by),
            "group_wait": _duration(group_wait_s),
            "group_interval": _duration(group_interval_s),
            "repeat_interval": repeat_interval,
        },
        "receivers": [
            {"name": receiver, "webhook_configs": [{"url": webhook_url, "send_resolved": send_resolved}]},
        ],
    }
    return json.dumps(config, indent=2) + "\n"


# --- webhook receiver ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    path: str
    body: Any  # the parsed JSON (None when the body was not JSON)
    raw: bytes
    received_at: float  # time.time()


class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 (kernel-chosen port) in a thread of this process; answers 200 to
    every POST and records it. ``with WebhookReceiver() as hook: ...`` or :meth:`start` / :meth:`stop`."""

    def __init__(self, path: str = "/hook") -> None:
        self.path = path
        self.deliveries: list[Delivery] = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length > 0 else b""
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                with receiver._cond:
                    receiver.deliveries.append(Delivery(self.path, body, raw, time.time()))
                    receiver._cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def start(self) -> WebhookReceiver:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(10.0)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def snapshot(self) -> list[Delivery]:
        with self._cond:
            return list(self.deliveries)

    def wait_for(self, match: Callable[[Delivery], T | None], timeout_s: float, what: str) -> T:
        """The first truthy ``match(delivery)`` over past and future deliveries, within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        seen = 0
        with self._cond:
            while True:
                for d in self.deliveries[seen:]:
                    found = match(d)
                    if found:
                        return found
                seen = len(self.deliveries)
                left = deadline - time.monotonic()
                if left <= 0:
                    bodies = [d.raw[:500] for d in self.deliveries[-3:]]
                    raise AssertionError(
                        f"timed out after {timeout_s:g} s waiting for {what}; {len(self.deliveries)} deliveries, "
                        f"last: {bodies!r}"
                    )
                self._cond.wait(min(left, 0.5))


__all__ = [
    "Alertmanager",
    "Delivery",
    "Prometheus",
    "ScrapeJob",
    "Server",
    "WebhookReceiver",
    "alertmanager_binary",
    "alertmanager_config",
    "alive",
    "descendants",
    "free_ports",
    "prometheus_binary",
    "prometheus_config",
    "skip_reason",
    "wait_until",
]
