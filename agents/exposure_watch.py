"""One engine's exposure audit on its own cadence, owned by the engine's watch (agents/watch.py).

The findings come from agents/exposure.py: the listening sockets of the engine's process tree, classified
(``EXPOSED_LISTENER``, agents/alerts.py), the dangerous switches of its launch and the advisories that
match the version in its log (``DANGEROUS_FLAG``, ``ENGINE_ADVISORY``). The listener read is blocking; the
collector runs it in its per-tick worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from agents.config import EngineConfig
from agents.exposure import ExposureAudit, describe_listeners
from agents.host import listening_sockets, process_brief
from agents.schema import Alert
from agents.supervisor.plan import ProcessPlan

LISTENER_AUDIT_S = 30.0  # the longest a listener audit is reused while the engine's tree and state stay the same


class ExposureWatch:
    """One engine's exposure audit on its own cadence.

    Listening sockets of the process tree are costly to read (/proc scans), so they are re-read only when
    the audit is due: every ``LISTENER_AUDIT_S``, or sooner when the tree's PIDs or the engine's state
    changed (e.g. it starts listening once ready). Each audit also looks for the engine's version in its
    log. The DANGEROUS_FLAG / ENGINE_ADVISORY alerts come from :class:`agents.exposure.ExposureAudit`.
    """

    @classmethod
    def of(cls, config: EngineConfig, plan: ProcessPlan, metrics_url: str) -> ExposureWatch:
        """The audit of an engine launched (or watched) with ``plan`` whose metrics are at ``metrics_url``."""
        return cls(ExposureAudit(config.kind, plan.argv, plan.env), api_port=config.port, metrics_port=_url_port(metrics_url))

    def __init__(
        self, audit: ExposureAudit, *, api_port: int | None, metrics_port: int | None, every_s: float = LISTENER_AUDIT_S
    ) -> None:
        self.audit = audit
        self.api_port, self.metrics_port, self.every_s = api_port, metrics_port, every_s
        self.listeners: tuple[tuple[int, str, int, str], ...] = ()  # (pid, ip, port, what) as of the last audit
        self._key: tuple[tuple[int, ...], str] | None = None  # (tree PIDs, state) the listeners were read for
        self._at = -float("inf")  # monotonic time of the last audit

    @property
    def version(self) -> str | None:
        """The engine version found in its log (None until one is found)."""
        return self.audit.version

    def due(self, now: float, pids: tuple[int, ...], state: str) -> bool:
        return now - self._at >= self.every_s or self._key != (pids, state)

    def refresh_version(self, log_lines: Sequence[str]) -> None:
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

    def alerts(self, wall: str) -> tuple[Alert, ...]:
        return self.audit.alerts(wall)


def _process_name(pid: int) -> str | None:
    brief = process_brief(pid)
    return None if brief is None else brief.split(":", 1)[0]


def _url_port(url: str) -> int | None:
    try:
        return urlsplit(url).port
    except ValueError:
        return None
