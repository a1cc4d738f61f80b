"""The console's fleet source for a config: direct hosts over HTTP, Prometheus servers, or both combined.

The protocol and its result types live in :mod:`console.fleet`; the sources are adapters behind it:
:mod:`console.httpsource` (agents over HTTP and SSH tunnels), :mod:`console.promsource` (Prometheus),
:mod:`console.fixturesource` (recordings) and :mod:`console.replay` (incident bundles), with
:mod:`console.combined` putting several side by side.
"""

from __future__ import annotations

from console.combined import CombinedFleetSource
from console.fleet import FleetSource
from console.httpsource import HttpFleetSource
from console.settings import ConsoleConfig


def build_fleet_source(
    config: ConsoleConfig, *, fetch_history: bool = True, full: bool = False, one_shot: bool = False
) -> FleetSource:
    """The source for ``config``: its direct hosts (``HttpFleetSource``) and one
    ``PrometheusFleetSource`` per ``[[console.prometheus]]`` entry; several are combined, direct hosts
    first (they keep their own route, for actions and logs, even when a Prometheus also sees them).
    ``full``: a Prometheus is asked for every exported family, not only what the console shows.
    ``one_shot``: a single poll (``status``): SSH tunnels are waited for, and nothing says "retrying"."""
    http = (
        HttpFleetSource(config, fetch_history=fetch_history, one_shot=one_shot)
        if config.hosts or not config.prometheus
        else None
    )
    if not config.prometheus and http is not None:
        return http
    from console.promsource import PrometheusFleetSource  # only when some Prometheus is configured

    proms: list[FleetSource] = [
        PrometheusFleetSource(p, fetch_history=fetch_history, full=full) for p in config.prometheus
    ]
    if http is None and len(proms) == 1:
        return proms[0]
    sources: list[FleetSource] = ([http] if http is not None else []) + proms
    pinned: dict[str, FleetSource] = {h.name: http for h in config.hosts} if http is not None else {}
    return CombinedFleetSource(sources, pinned)
