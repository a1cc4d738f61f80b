"""The identity tier of a Prometheus fleet refresh: each host's ``llmconsole_engine_info`` and GPU totals.

These series are a fifth of a refresh's and its fattest (``engine_info`` carries seven more labels), yet
they change only when an engine is relaunched or a GPU changes. :class:`IdentityCache` keeps each host's as
last read; :mod:`console.promsource` reads them for the hosts with news every :data:`IDENT_EVERY`
refreshes and at once for a host whose fast series disagree with what is kept: an engine (id, kind, model)
that its ``llmconsole_engine_state`` series name but the kept info does not (or the reverse), a GPU with
values but no kept total, a snapshot seq that went back (the agent restarted), no kept identity at all, or
:data:`IDENT_OVERDUE` snapshots with news since its identity was read. What is left can lag by that many
of the host's snapshots (usually fewer: about IDENT_EVERY): an engine relaunched with the same kind and
model on another port, GPU ids or version; a GPU's total memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from console.promnames import Series

K = TypeVar("K")

IDENT_EVERY = 4  # refreshes with news between two identity reads of the whole fleet
IDENT_OVERDUE = 2 * IDENT_EVERY
"""A host's news without its identity read before it is read anyway: the tier above reads only the hosts
with news in that refresh, and a host whose scrapes keep landing between identity refreshes (refreshes per
scrape interval a multiple of IDENT_EVERY: 2 s and 16 s, 5 s and 20 s) would otherwise never be read."""

EngineKey = tuple[
    str | None, str | None, str | None
]  # engine, kind, model: the labels of every engine series


def _by_host(series: Iterable[Series], key: Callable[[Mapping[str, str]], K]) -> dict[str, set[K]]:
    """Host -> the set of ``key(labels)`` over these series (series without a host are left out)."""
    out: dict[str, set[K]] = {}
    for labels, _ in series:
        host = labels.get("host")
        if host:
            keys = out.get(host)
            if keys is None:
                keys = out[host] = set()
            keys.add(key(labels))
    return out


def engine_keys(series: Iterable[Series]) -> dict[str, set[EngineKey]]:
    """Host -> the (engine, kind, model) that these engine series name."""
    return _by_host(series, lambda labels: (labels.get("engine"), labels.get("kind"), labels.get("model")))


def gpu_keys(series: Iterable[Series]) -> dict[str, set[str | None]]:
    """Host -> the ``gpu`` labels of these GPU series."""
    return _by_host(series, lambda labels: labels.get("gpu"))


@dataclass(frozen=True, slots=True)
class Identity:
    """One host's identity series as last read, with the keys they name."""

    engines: tuple[Series, ...]
    gpus: tuple[Series, ...]
    engine_keys: frozenset[EngineKey]
    gpu_keys: frozenset[str | None]


_NONE = Identity((), (), frozenset(), frozenset())


class IdentityCache:
    """Each host's identity series as last read (see the module docstring)."""

    def __init__(self) -> None:
        self._hosts: dict[str, Identity] = {}
        self._news: dict[str, int] = {}  # host -> snapshots with news since its identity was read

    def __contains__(self, host: object) -> bool:
        return host in self._hosts

    def remember(self, hosts: Iterable[str], engines: Sequence[Series], gpus: Sequence[Series]) -> None:
        """Keep these hosts' identity from a fresh read (``engines``: engine_info series, ``gpus``: GPU
        totals); a host without any is kept as having none."""
        by_engine: dict[str, list[Series]] = {}
        by_gpu: dict[str, list[Series]] = {}
        for series, into in ((engines, by_engine), (gpus, by_gpu)):
            for sv in series:
                host = sv[0].get("host")
                if host:
                    into.setdefault(host, []).append(sv)
        for host in hosts:
            e, g = tuple(by_engine.get(host, ())), tuple(by_gpu.get(host, ()))
            ek = engine_keys(e).get(host, set())
            gk = gpu_keys(g).get(host, set())
            self._hosts[host] = Identity(e, g, frozenset(ek), frozenset(gk))
            self._news[host] = 0

    def saw(self, hosts: Iterable[str]) -> None:
        """Count a snapshot with news for each of these hosts, read without their identity."""
        news = self._news
        for host in hosts:
            news[host] = news.get(host, 0) + 1

    def outdated(
        self, hosts: Iterable[str], engines: Mapping[str, set[EngineKey]], gpus: Mapping[str, set[str | None]]
    ) -> list[str]:
        """Of ``hosts``, those whose kept identity disagrees with the keys their fast series name, that
        have none kept, or whose identity is overdue (:data:`IDENT_OVERDUE` news counted by :meth:`saw`)."""
        out = []
        news = self._news
        for host in hosts:
            kept = self._hosts.get(host)
            if (
                kept is None
                or kept.engine_keys != engines.get(host, set())
                or not gpus.get(host, set()) <= kept.gpu_keys
                or news.get(host, 0) >= IDENT_OVERDUE
            ):
                out.append(host)
        return out

    def forget(self, hosts: Iterable[str]) -> None:
        for host in hosts:
            self._hosts.pop(host, None)
            self._news.pop(host, None)

    def series(self, hosts: Iterable[str]) -> tuple[list[Series], list[Series]]:
        """The kept (engine_info, GPU total) series of these hosts."""
        engines: list[Series] = []
        gpus: list[Series] = []
        for host in hosts:
            kept = self._hosts.get(host, _NONE)
            engines.extend(kept.engines)
            gpus.extend(kept.gpus)
        return engines, gpus


__all__ = ["IDENT_EVERY", "IDENT_OVERDUE", "Identity", "IdentityCache", "engine_keys", "gpu_keys"]
