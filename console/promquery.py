"""The PromQL of the Prometheus fleet source (:mod:`console.promsource`): selectors for several families
in one query, the instant queries of one refresh, the identity tier's, and host filters."""

from __future__ import annotations

from collections.abc import Sequence

from console.promnames import (
    ALERTS,
    HOST_INFO,
    IDENT_ENGINE,
    IDENT_GPU,
    engine_value_names,
    gpu_names,
    host_names,
    name_regex,
)
from console.settings import parse_matchers


def selector(match: str, names: Sequence[str], *, also: str = "", extra: str = "") -> str:
    """``{__name__=~"llmconsole_(a|b)", <match>}``: several families in one query (``also``: another
    metric name, e.g. ``up``; ``extra``: one more matcher)."""
    regex = (also + "|" if also else "") + name_regex(names)
    parts = [f'__name__=~"{regex}"', *(f'{k}{op}"{v}"' for k, op, v in _matchers(match))]
    if extra:
        parts.append(extra)
    return "{" + ", ".join(parts) + "}"


def _matchers(match: str) -> list[tuple[str, str, str]]:
    got = parse_matchers(match)
    if isinstance(got, str):
        raise ValueError(got)
    return got


SEQ = "snapshot_seq"
"""Asked again with every changed-host part (``or`` beside the ``== 1`` families): a scrape that lands
between the host-level query and them is seen by them only, and a host whose parts saw another seq than its
host-level series waits for the next refresh (console.promsource.mixed_hosts), so no row pairs one scrape's
seq with the next one's states or values."""
VALUE_PARTS = ("values", "values2")
"""The engine values, the bulk of a refresh, in two queries: a server evaluates each query on one core, so
two halves answer in parallel (bench/bench_prometheus.py: 0.7-0.8x the wall time of one query on 2 cores)."""
CHANGED_PARTS = ("engines", *VALUE_PARTS, "gpus")
"""The parts read only for hosts whose snapshot changed; ``engines`` (every family there is 1 when present:
engine states ``== 1``, ``host_info``, the agents' active alerts, ``engine_info``) also carries what of the
host changes only with its snapshot, so that the host-level query every refresh makes stays small (the
console's: ``up``, seq and snapshot timestamp per host)."""


def fleet_queries(match: str, full: bool = True, only: str = "", ident: bool = True) -> dict[str, str]:
    """The instant queries of one refresh, by part (see the module docstring); ``full``: every exported
    family, else what the console shows of every host (see :data:`console.promnames.LEAN_ENGINE`);
    ``only``: a matcher restricting the engine and GPU parts to some hosts; ``ident``: with the identity
    tier (engine_info, GPU totals; always with ``full``)."""
    ident = ident or full
    values = engine_value_names(full)
    half = (len(values) + 1) // 2
    return {
        "hosts": selector(match, host_names(full, ident=False), also="up"),
        "engines": selector(
            match, ["engine_state", HOST_INFO, ALERTS, *(IDENT_ENGINE if ident else ())], extra=only
        )
        + " == 1 or "
        + selector(match, [SEQ], extra=only),
        "values": selector(match, [*values[:half], SEQ], extra=only),
        "values2": selector(match, [*values[half:], SEQ], extra=only),
        "gpus": selector(match, [*gpu_names(full, ident), SEQ], extra=only),
    }


def ident_query(match: str, only: str = "") -> str:
    """The identity tier alone (engine_info, GPU totals), for hosts whose fast series say it changed."""
    return selector(match, [*IDENT_ENGINE, *(f"gpu_{s}" for s in IDENT_GPU)], extra=only)


def host_matcher(hosts: Sequence[str]) -> str:
    """``host=~"a|b"`` matching exactly these host names."""
    return 'host=~"' + "|".join(promql_regex_literal(h) for h in hosts) + '"'


def promql_regex_literal(text: str) -> str:
    """``text`` matched literally inside a PromQL regex string (RE2 escapes, then the string's own)."""
    special = set(r"\.+*?()|[]{}^$-")
    escaped = "".join("\\" + c if c in special else c for c in text)
    return escaped.replace("\\", "\\\\").replace('"', '\\"')


def promql_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


__all__ = [
    "CHANGED_PARTS",
    "SEQ",
    "VALUE_PARTS",
    "fleet_queries",
    "host_matcher",
    "ident_query",
    "promql_string",
    "selector",
]
