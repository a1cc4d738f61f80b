"""Exposure audit of one engine (reliability.md §5.5): what its process tree listens on, which dangerous
switches its effective argv/environment carries, and whether its version is inside a known advisory range.

Pure except :func:`load_advisories` (reads the packaged, dated ``advisories.json``). Each engine's watch
(``ExposureWatch``, agents/exposure_watch.py) runs the audit when the engine's process tree or state
changes and every ``LISTENER_AUDIT_S`` (30 s): listeners feed the ``EXPOSED_LISTENER`` rule
(agents/alerts.py) with a classification of each port; :class:`ExposureAudit` yields the
``DANGEROUS_FLAG`` and ``ENGINE_ADVISORY`` alerts (severity warning).

Engine version: read from the engine's own log, the last launch only (the line after the supervisor's
``=== llmconsole: launch`` marker), with the per-engine patterns stored in ``advisories.json`` (vLLM:
``vLLM API server version X``). No HTTP request is made for it; an engine whose log names no version
(SGLang and TGI print none we recognise) is not checked, which the evidence says.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from agents.schema import Alert

ADVISORY_FILE = "advisories.json"
LAUNCH_MARKER = "=== llmconsole: launch"
SECURITY_DOC = "vLLM docs/usage/security.md"

# Well-known ports that are unauthenticated by design (port heuristics: a port can be reused by anything).
KNOWN_PORTS: Mapping[int, str] = {
    29500: "torch.distributed TCPStore (default MASTER_PORT) — unauthenticated, see " + SECURITY_DOC,
    6379: "Ray GCS — unauthenticated",
    8265: "Ray dashboard / Jobs API — unauthenticated by default (ShadowRay, CVE-2023-48022)",
    10001: "Ray client server — unauthenticated",
}
UNKNOWN_PORT = "unknown internal port (ZMQ, NCCL bootstrap and KV-transfer ports look like this; all unauthenticated)"


def classify_port(port: int, *, api_port: int | None, metrics_port: int | None, process: str | None = None) -> str:
    """What a listening port of an engine's tree most likely is (by the engine's config, then heuristics)."""
    if port == api_port:
        return "the engine's HTTP API (an engine API key, where set, protects /v1 only; see " + SECURITY_DOC + ")"
    if port == metrics_port:
        return "the engine's Prometheus metrics port (unauthenticated)"
    what = KNOWN_PORTS.get(port, UNKNOWN_PORT)
    return f"{what}; process {process}" if process else what


def is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip.split("%")[0]).is_loopback
    except ValueError:
        return False


# --- dangerous switches ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Switch:
    switch: str
    reason: str
    source: str


_FLAG_RULES: tuple[tuple[str, str, str], ...] = (
    ("--trust-remote-code", "runs Python code shipped in the model directory (auto_map); CVE-2026-22807, CVE-2026-27893",
     "reliability.md 3.10"),
    ("--middleware", "imports an arbitrary Python path into the API server (code execution)", "reliability.md 3.10"),
    ("--enable-tokenizer-info-endpoint", "serves tokenizer internals on an unauthenticated endpoint", "reliability.md 3.10"),
    ("--enable-log-requests", "logs every request's prompt (PHI) into the engine log", "reliability.md 3.10"),
    ("--log-requests", "logs every request's prompt (PHI) into the engine log", "reliability.md 3.10"),
    ("--ngrok", "opens a public ngrok tunnel to the engine", "reliability.md 3.10 (TGI launcher)"),
)  # fmt: skip
_HOST_FLAGS = ("--host", "--hostname")
_ENV_RULES: tuple[tuple[str, str], ...] = (
    ("VLLM_SERVER_DEV_MODE", "enables /collective_rpc, /sleep, /reset_prefix_cache (\"never in production\")"),
    ("VLLM_ALLOW_INSECURE_SERIALIZATION", "allows pickle deserialization between processes"),
    ("VLLM_TORCH_PROFILER_DIR", "enables the profiler endpoints"),
    ("VLLM_PLUGINS", "loads plugin code into the engine"),
    ("LD_PRELOAD", "injects a shared library into every engine process"),
    ("PYTHONSTARTUP", "runs a Python file at interpreter start"),
)
_OFF = ("", "0", "false", "no", "off")
# Opt-outs the adapters inject (agents/engines/_launch.py TELEMETRY_OFF); a config that overrides them.
TELEMETRY_OPT_OUTS: Mapping[str, str] = {"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}


def _flag_value(argv: Sequence[str], i: int) -> str | None:
    token = argv[i]
    if "=" in token:
        return token.split("=", 1)[1]
    return argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("-") else None


def dangerous_switches(argv: Sequence[str], env: Mapping[str, str]) -> list[Switch]:
    """Dangerous dev/debug switches in an engine's effective argv and environment, with why and where from."""
    found: list[Switch] = []
    for i, token in enumerate(argv):
        name = token.split("=", 1)[0]
        for flag, reason, source in _FLAG_RULES:
            if name == flag or (flag == "--ngrok" and name.startswith("--ngrok")):
                found.append(Switch(name, reason, source))
        if name in _HOST_FLAGS:
            value = _flag_value(argv, i)
            if value is not None and not is_loopback(value) and value != "localhost":
                found.append(Switch(f"{name} {value}", "binds beyond loopback: anyone on the network reaches the engine",
                                    "reliability.md 5.5"))
    for var, reason in _ENV_RULES:
        value = env.get(var)
        if value is not None and value.strip().lower() not in _OFF:
            found.append(Switch(f"{var}={value}", reason, "reliability.md 3.10"))
    for var, want in TELEMETRY_OPT_OUTS.items():
        if var in env and env[var] != want:
            found.append(Switch(f"{var}={env[var]}", f"overrides the telemetry/hub opt-out ({var}={want}): the engine may "
                                "call out of the machine", "reliability.md 3.8"))
    return found


# --- advisories --------------------------------------------------------------------------------------

_VERSION_RE = re.compile(r"v?(\d+(?:\.\d+)*)(?:[-_.]?(a|b|rc|alpha|beta|c|pre|preview)[-_.]?(\d*))?"
                         r"(?:[-_.]?(post|rev|r)[-_.]?(\d*))?(?:[-_.]?(dev)[-_.]?(\d*))?(?:\+.*)?", re.IGNORECASE)
_PRE = {"a": -3, "alpha": -3, "b": -2, "beta": -2, "c": -1, "rc": -1, "pre": -1, "preview": -1}


def parse_version(text: str) -> tuple | None:
    """A comparable key for a PEP 440-style version ("0.10.1.1", "0.11.0rc1", "0.8.5.post1", "0.32.0+cpu"),
    or None when ``text`` is not a version."""
    m = _VERSION_RE.fullmatch(text.strip())
    if not m:
        return None
    release = tuple(int(x) for x in m.group(1).split("."))
    release = release + (0,) * (6 - len(release)) if len(release) < 6 else release
    if m.group(2):
        phase = (_PRE[m.group(2).lower()], int(m.group(3) or 0))
    elif m.group(4):
        phase = (1, int(m.group(5) or 0))
    else:
        phase = (0, 0)
    dev = (-1, int(m.group(7) or 0)) if m.group(6) else (0, 0)
    if m.group(6) and not (m.group(2) or m.group(4)):
        phase = (-4, 0)  # 1.0.dev1 sorts before 1.0a1
    return (release, phase, dev)


@dataclass(frozen=True, slots=True)
class Advisory:
    id: str | None
    ghsa: str | None
    package: str
    ranges: tuple[Mapping[str, str], ...]
    summary: str
    precondition: str | None
    source: str

    @property
    def name(self) -> str:
        return self.id or self.ghsa or "?"

    def affects(self, version: str) -> bool:
        v = parse_version(version)
        if v is None:
            return False
        for r in self.ranges:
            lo = parse_version(r.get("introduced", "0")) or parse_version("0")
            if v < lo:  # type: ignore[operator]
                continue
            if "fixed" in r and v < parse_version(r["fixed"]):  # type: ignore[operator]
                return True
            if "last_affected" in r and v <= parse_version(r["last_affected"]):  # type: ignore[operator]
                return True
        return False

    def describe(self) -> str:
        return f"{self.name} ({self.precondition} only)" if self.precondition else self.name


@dataclass(frozen=True, slots=True)
class EngineInfo:
    package: str
    display: str
    version_log_patterns: tuple[re.Pattern[str], ...]


@dataclass(frozen=True, slots=True)
class Advisories:
    as_of: str
    engines: Mapping[str, EngineInfo]
    advisories: tuple[Advisory, ...]

    def matching(self, kind: str, version: str) -> list[Advisory]:
        info = self.engines.get(kind)
        if info is None:
            return []
        return [a for a in self.advisories if a.package == info.package and a.affects(version)]

    def version_from_log(self, kind: str, lines: Sequence[str]) -> tuple[str | None, str | None]:
        """(version, the line it came from) from the last launch in ``lines``; (None, None) if not found."""
        info = self.engines.get(kind)
        if info is None or not info.version_log_patterns:
            return None, None
        start = max((i for i, line in enumerate(lines) if line.startswith(LAUNCH_MARKER)), default=-1)
        for line in lines[start + 1 :]:
            for pattern in info.version_log_patterns:
                m = pattern.search(line)
                if m and parse_version(m.group(1)) is not None:
                    return m.group(1), line.strip()[-160:]
        return None, None


def advisories_from_dict(data: Mapping[str, Any]) -> Advisories:
    if data.get("format") != "llmconsole.advisories/1":
        raise ValueError(f"unknown advisory file format {data.get('format')!r}")
    engines = {
        kind: EngineInfo(e["package"], e.get("display", kind), tuple(re.compile(p) for p in e.get("version_log_patterns", ())))
        for kind, e in data["engines"].items()
    }
    advisories = tuple(
        Advisory(a.get("id"), a.get("ghsa"), a["package"], tuple(a.get("ranges", ())), a["summary"], a.get("precondition"), a["source"])
        for a in data["advisories"]
    )
    return Advisories(str(data["as_of"]), engines, advisories)


@functools.cache
def load_advisories() -> Advisories:
    """The packaged advisory file (``agents/advisories.json``), parsed once."""
    text = resources.files("agents").joinpath(ADVISORY_FILE).read_text(encoding="utf-8")
    return advisories_from_dict(json.loads(text))


# --- the per-engine audit ----------------------------------------------------------------------------


@dataclass(slots=True)
class ExposureAudit:
    """Static findings (switches) from the launch plan; the version is re-read at each audit."""

    kind: str
    argv: Sequence[str]
    env: Mapping[str, str]
    advisories: Advisories | None = None
    version: str | None = None
    version_line: str | None = None
    _since: dict[str, str] = field(default_factory=dict)
    _switches: list[Switch] = field(default_factory=list)
    _found: list[tuple[str, str, dict[str, Any]]] | None = None
    _found_for: str | None = None

    def __post_init__(self) -> None:
        self._switches = dangerous_switches(self.argv, self.env)
        if self.advisories is None:
            try:
                self.advisories = load_advisories()
            except (OSError, ValueError, KeyError) as exc:  # a broken file must not stop the agent
                self.advisories = Advisories(f"unreadable: {exc}", {}, ())

    def refresh(self, log_lines: Sequence[str]) -> None:
        """Look for the engine's version in its log (keeps the last one found when the tail has none)."""
        assert self.advisories is not None
        version, line = self.advisories.version_from_log(self.kind, log_lines)
        if version is not None:
            self.version, self.version_line = version, line

    def alerts(self, wall: str) -> tuple[Alert, ...]:
        """DANGEROUS_FLAG / ENGINE_ADVISORY alerts as of now (``since`` kept while they persist)."""
        if self._found is None or self._found_for != self.version:
            self._found, self._found_for = self._findings(), self.version
            codes = {code for code, _, _ in self._found}
            self._since = {c: s for c, s in self._since.items() if c in codes}
        return tuple(
            Alert(code=code, severity="warning", since=self._since.setdefault(code, wall), summary=summary, evidence=evidence)
            for code, summary, evidence in self._found
        )

    def _findings(self) -> list[tuple[str, str, dict[str, Any]]]:
        assert self.advisories is not None
        found: list[tuple[str, str, dict[str, Any]]] = []
        if self._switches:
            names = ", ".join(s.switch for s in self._switches)
            found.append(("DANGEROUS_FLAG", f"dangerous switch(es): {names}",
                          {"switches": [{"switch": s.switch, "reason": s.reason, "source": s.source} for s in self._switches]}))
        if self.version is not None:
            hits = self.advisories.matching(self.kind, self.version)
            if hits:
                display = self.advisories.engines[self.kind].display
                listed = ", ".join(a.describe() for a in hits[:4]) + (f" and {len(hits) - 4} more" if len(hits) > 4 else "")
                found.append(("ENGINE_ADVISORY", f"{display} {self.version}: affected by {listed}", {
                    "version": self.version,
                    "version_source": f"engine log: {self.version_line}",
                    "advisory_file_as_of": self.advisories.as_of,
                    "advisories": [
                        {"id": a.id, "ghsa": a.ghsa, "summary": a.summary, "precondition": a.precondition,
                         "ranges": [dict(r) for r in a.ranges], "source": a.source}
                        for a in hits
                    ],
                }))  # fmt: skip
        return found


def describe_listeners(
    listeners: Iterable[tuple[int, str, int]],
    *,
    api_port: int | None,
    metrics_port: int | None,
    process_name=lambda pid: None,
) -> tuple[tuple[int, str, int, str], ...]:
    """(pid, ip, port, what) for each listener; ``what`` is looked up only for non-loopback ones."""
    out = []
    for pid, ip, port in listeners:
        what = "" if is_loopback(ip) else classify_port(port, api_port=api_port, metrics_port=metrics_port, process=process_name(pid))
        out.append((pid, ip, port, what))
    return tuple(out)
