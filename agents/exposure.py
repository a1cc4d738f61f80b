"""Exposure audit of one engine: what its process tree listens on, which dangerous switches its effective
argv/environment carries, and whether its version is inside a known advisory range.

Pure except :func:`load_advisories` (reads the packaged, dated ``advisories.json``). Each engine's watch
(``ExposureWatch``, agents/exposure_watch.py) runs the audit when the engine's process tree or state
changes and every ``LISTENER_AUDIT_S`` (30 s): listeners feed the ``EXPOSED_LISTENER`` rule
(agents/alerts/checks.py) with a classification of each port; :class:`ExposureAudit` yields the
``DANGEROUS_FLAG`` and ``ENGINE_ADVISORY`` alerts (severity warning).

What is engine-specific comes from the engine's adapter (agents/engines/): its dangerous flags and
variables (``dangerous_switches()``), the flag naming its bind address, its package and display name,
and how its log announces its version (``version_from_log``). This module adds the switches that are
dangerous for any engine (code injection through the environment, the hub opt-outs).

Engine version: read from the engine's own log, the last launch only (the lines after the supervisor's
``=== llmconsole: launch`` marker). No HTTP request is made for it; an engine whose adapter recognises no
version line in its log is not checked against the advisories.
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

from agents.engines import ADAPTERS, get_adapter
from agents.engines.base import DangerousSwitch, EngineAdapter
from agents.schema import Alert

ADVISORY_FILE = "advisories.json"
LAUNCH_MARKER = "=== llmconsole: launch"
SECURITY_DOC = "https://docs.vllm.ai/en/stable/usage/security/"

# Well-known ports that are unauthenticated by design (port heuristics: a port can be reused by anything).
KNOWN_PORTS: Mapping[int, str] = {
    29500: "torch.distributed TCPStore (default MASTER_PORT) — unauthenticated, see " + SECURITY_DOC,
    6379: "Ray GCS — unauthenticated",
    8265: "Ray dashboard / Jobs API — unauthenticated by default (ShadowRay, CVE-2023-48022)",
    10001: "Ray client server — unauthenticated",
}
UNKNOWN_PORT = (
    "unknown internal port (ZMQ, NCCL bootstrap and KV-transfer ports look like this; all unauthenticated)"
)


def classify_port(
    port: int, *, api_port: int | None, metrics_port: int | None, process: str | None = None
) -> str:
    """What a listening port of an engine's tree most likely is (by the engine's config, then heuristics)."""
    if port == api_port:
        return (
            "the engine's HTTP API (an engine API key, where set, protects /v1 only; see "
            + SECURITY_DOC
            + ")"
        )
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
    """One dangerous switch found in a launch: as written (``--host 0.0.0.0``, ``VAR=value``), and why."""

    switch: str
    reason: str
    source: str | None = None  # a public page documenting it; None when there is none

    def evidence(self) -> dict[str, str]:
        out = {"switch": self.switch, "reason": self.reason}
        return {**out, "source": self.source} if self.source else out


HF_ENV_DOC = "https://huggingface.co/docs/huggingface_hub/package_reference/environment_variables"
_INJECTION = "https://man7.org/linux/man-pages/man8/ld.so.8.html"
_PYTHON_ENV = "https://docs.python.org/3/using/cmdline.html#envvar-PYTHONSTARTUP"
# Dangerous whatever the engine: code injected through the environment, and the opt-outs every launch
# sets (agents/engines/_launch.py TELEMETRY_OFF) overridden by a config.
COMMON_SWITCHES: tuple[DangerousSwitch, ...] = (
    DangerousSwitch("LD_PRELOAD", "injects a shared library into every engine process", _INJECTION),
    DangerousSwitch("PYTHONSTARTUP", "runs a Python file at interpreter start", _PYTHON_ENV),
    DangerousSwitch(
        "HF_HUB_OFFLINE",
        "overrides the telemetry/hub opt-out (HF_HUB_OFFLINE=1): the engine may call out of the machine",
        HF_ENV_DOC,
        expect="1",
    ),
    DangerousSwitch(
        "DO_NOT_TRACK",
        "overrides the telemetry/hub opt-out (DO_NOT_TRACK=1): the engine may call out of the machine",
        expect="1",
    ),
)
BIND_REASON = "binds beyond loopback: anyone on the network reaches the engine"
_OFF = ("", "0", "false", "no", "off")


def _flag_value(argv: Sequence[str], i: int) -> str | None:
    token = argv[i]
    if "=" in token:
        return token.split("=", 1)[1]
    return argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("-") else None


def _set(switch: DangerousSwitch, env: Mapping[str, str]) -> str | None:
    """The value of a dangerous variable when it is set dangerously, else None."""
    value = env.get(switch.name)
    if value is None:
        return None
    if switch.expect is not None:
        return value if value != switch.expect else None
    return value if value.strip().lower() not in _OFF else None


def dangerous_switches(adapter: EngineAdapter, argv: Sequence[str], env: Mapping[str, str]) -> list[Switch]:
    """Dangerous switches in an engine's effective argv and environment (the adapter's and the common
    ones), with why and where documented."""
    rules = (*adapter.dangerous_switches(), *COMMON_SWITCHES)
    flags = [s for s in rules if s.is_flag]
    found: list[Switch] = []
    for i, token in enumerate(argv):
        name = token.split("=", 1)[0]
        for rule in flags:
            if name == rule.name or (rule.prefix and name.startswith(rule.name)):
                found.append(Switch(name, rule.reason, rule.source))
        if name in adapter.bind_flags:
            value = _flag_value(argv, i)
            if value is not None and not is_loopback(value) and value != "localhost":
                found.append(Switch(f"{name} {value}", BIND_REASON))
    # variables that must be off first, then the opt-outs that must keep their value
    for rule in sorted((s for s in rules if not s.is_flag), key=lambda s: s.expect is not None):
        value = _set(rule, env)
        if value is not None:
            found.append(Switch(f"{rule.name}={value}", rule.reason, rule.source))
    return found


# --- advisories --------------------------------------------------------------------------------------

_VERSION_RE = re.compile(
    r"v?(\d+(?:\.\d+)*)(?:[-_.]?(a|b|rc|alpha|beta|c|pre|preview)[-_.]?(\d*))?"
    r"(?:[-_.]?(post|rev|r)[-_.]?(\d*))?(?:[-_.]?(dev)[-_.]?(\d*))?(?:\+.*)?",
    re.IGNORECASE,
)
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
    """What the advisories need of an engine kind (from its adapter): its package and display name."""

    package: str
    display: str


def engine_infos() -> dict[str, EngineInfo]:
    return {kind: EngineInfo(a.package, a.display) for kind, a in ADAPTERS.items()}


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


def version_in_log(adapter: EngineAdapter, lines: Sequence[str]) -> tuple[str | None, str | None]:
    """(version, the line it came from) from the last launch in ``lines``; (None, None) if not found."""
    start = max((i for i, line in enumerate(lines) if line.startswith(LAUNCH_MARKER)), default=-1)
    for line in lines[start + 1 :]:
        version = adapter.version_from_log(line)
        if version is not None and parse_version(version) is not None:
            return version, line.strip()[-160:]
    return None, None


def advisories_from_dict(data: Mapping[str, Any]) -> Advisories:
    """The advisories of a parsed file; the engine kinds come from the adapters (an ``engines`` table in
    the file, from older exports, is ignored)."""
    if data.get("format") != "llmconsole.advisories/1":
        raise ValueError(f"unknown advisory file format {data.get('format')!r}")
    engines = engine_infos()
    advisories = tuple(
        Advisory(
            a.get("id"),
            a.get("ghsa"),
            a["package"],
            tuple(a.get("ranges", ())),
            a["summary"],
            a.get("precondition"),
            a["source"],
        )
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
    adapter: EngineAdapter = field(init=False)  # the kind's
    version: str | None = None
    version_line: str | None = None
    _since: dict[str, str] = field(default_factory=dict)
    _switches: list[Switch] = field(default_factory=list)
    _found: list[tuple[str, str, dict[str, Any]]] | None = None
    _found_for: str | None = None

    def __post_init__(self) -> None:
        self.adapter = get_adapter(self.kind)
        self._switches = dangerous_switches(self.adapter, self.argv, self.env)
        if self.advisories is None:
            try:
                self.advisories = load_advisories()
            except (OSError, ValueError, KeyError) as exc:  # a broken file must not stop the agent
                self.advisories = Advisories(f"unreadable: {exc}", engine_infos(), ())

    def refresh(self, log_lines: Sequence[str]) -> None:
        """Look for the engine's version in its log (keeps the last one found when the tail has none)."""
        version, line = version_in_log(self.adapter, log_lines)
        if version is not None:
            self.version, self.version_line = version, line

    def alerts(self, wall: str) -> tuple[Alert, ...]:
        """DANGEROUS_FLAG / ENGINE_ADVISORY alerts as of now (``since`` kept while they persist)."""
        if self._found is None or self._found_for != self.version:
            self._found, self._found_for = self._findings(), self.version
            codes = {code for code, _, _ in self._found}
            self._since = {c: s for c, s in self._since.items() if c in codes}
        return tuple(
            Alert(
                code=code,
                severity="warning",
                since=self._since.setdefault(code, wall),
                summary=summary,
                evidence=evidence,
            )
            for code, summary, evidence in self._found
        )

    def _findings(self) -> list[tuple[str, str, dict[str, Any]]]:
        assert self.advisories is not None
        found: list[tuple[str, str, dict[str, Any]]] = []
        if self._switches:
            names = ", ".join(s.switch for s in self._switches)
            evidence = {"switches": [s.evidence() for s in self._switches]}
            found.append(("DANGEROUS_FLAG", f"dangerous switch(es): {names}", evidence))
        if self.version is not None:
            hits = self.advisories.matching(self.kind, self.version)
            if hits:
                listed = ", ".join(a.describe() for a in hits[:4]) + (
                    f" and {len(hits) - 4} more" if len(hits) > 4 else ""
                )
                summary = f"{self.adapter.display} {self.version}: affected by {listed}"
                found.append(
                    (
                        "ENGINE_ADVISORY",
                        summary,
                        {
                            "version": self.version,
                            "version_source": f"engine log: {self.version_line}",
                            "advisory_file_as_of": self.advisories.as_of,
                            "advisories": [
                                {
                                    "id": a.id,
                                    "ghsa": a.ghsa,
                                    "summary": a.summary,
                                    "precondition": a.precondition,
                                    "ranges": [dict(r) for r in a.ranges],
                                    "source": a.source,
                                }
                                for a in hits
                            ],
                        },
                    )
                )
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
        what = (
            ""
            if is_loopback(ip)
            else classify_port(port, api_port=api_port, metrics_port=metrics_port, process=process_name(pid))
        )
        out.append((pid, ip, port, what))
    return tuple(out)
