"""The console's side of ``config.toml``: ``[console]``, ``[[console.hosts]]``, ``[[console.prometheus]]``
and ``[thresholds]``.

Built on the strict-table machinery of :mod:`agents.tomltables` (pure), so mistakes read the same on both
sides: one line naming the file, the table, the key, and the closest valid key for typos. ``[thresholds]``
is :mod:`agents.thresholds`, shared with the agent; the agent's own tables are the agent's to validate.
A config with no ``[[console.hosts]]`` is valid: the console then says so and points to the demo.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agents.thresholds import Thresholds, thresholds_from_dict
from agents.tomltables import (
    Where,
    build_table,
    check_top_level,
    entry_label,
    env_name,
    port_number,
    positive,
    read_toml,
    setting,
    show,
    table_keys,
)


def _http_url(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        return f"{show(url)} is not a valid URL ({e})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"expected an http:// or https:// URL, got {show(url)}"
    return None


def http_url_problem(url: str) -> str | None:
    """Why ``url`` is not an http(s) URL with a host (one line), or None."""
    return _http_url(url)


def _ssh_destination(dest: str) -> str | None:
    if dest.startswith("-"):
        return f"must not start with '-' (it would be read as an ssh option), got {show(dest)}"
    if not re.fullmatch(r"[^\s@]+@[^\s@]+|[^\s@]+", dest):
        return f'expected "user@host" or "host", got {show(dest)}'
    return None


def _host_name(name: str) -> str | None:
    if not name or any(c.isspace() for c in name):
        return f"must be non-empty without spaces, got {show(name)}"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class HostConfig:
    """One ``[[console.hosts]]`` entry: an agent to poll, directly or through an SSH tunnel."""

    name: str = setting(check=_host_name)
    url: str = setting(check=_http_url)  # the agent's URL (as seen from the ssh host when ssh is set)
    ssh: str | None = setting(None, check=_ssh_destination)
    ssh_options: tuple[str, ...] = setting(())
    remote_port: int | None = setting(None, check=port_number)  # default: the url's port
    token_env: str | None = setting(None, check=env_name)
    token_file: Path | None = setting(None)

    @property
    def tunnel_port(self) -> int:
        """The agent's port on the remote host (what an SSH tunnel forwards to)."""
        if self.remote_port is not None:
            return self.remote_port
        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)


_MATCHER = r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\\n]|\\.)*)"\s*'
_MATCHER_RE = re.compile(_MATCHER)
DEFAULT_MATCH = 'job="llmconsole"'  # the scrape job name of the README's scrape config


def parse_matchers(text: str) -> list[tuple[str, str, str]] | str:
    """``job="llmconsole", env=~"prod.*"`` as (label, op, quoted value) triples, or the reason it is not
    a list of PromQL label matchers (double-quoted values; ``__name__`` is the console's to choose)."""
    out: list[tuple[str, str, str]] = []
    rest = text.strip()
    while rest:
        m = _MATCHER_RE.match(rest)
        if m is None:
            return (
                f'expected label matchers such as job="llmconsole" (double-quoted values), got {show(text)}'
            )
        if m[1] == "__name__":
            return "must not match __name__ (the console chooses the metric names)"
        out.append((m[1], m[2], m[3]))
        rest = rest[m.end() :]
        if rest and not rest.startswith(","):
            return f"expected a comma between label matchers, got {show(text)}"
        rest = rest[1:].lstrip()
    return out


def _matchers(text: str) -> str | None:
    got = parse_matchers(text)
    return got if isinstance(got, str) else None


def _user(name: str) -> str | None:
    if not name or ":" in name or any(c.isspace() or not c.isprintable() for c in name):
        return f"must be non-empty, without spaces, control characters or ':', got {show(name)}"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class PrometheusConfig:
    """One ``[[console.prometheus]]`` entry: a Prometheus-compatible query API (Prometheus, Thanos Querier,
    VictoriaMetrics) whose ``llmconsole_*`` series are a fleet source. Its hosts are read-only."""

    name: str = setting(check=_host_name)
    url: str = setting(check=_http_url)  # the server's base URL (VictoriaMetrics: also .../prometheus)
    match: str = setting(DEFAULT_MATCH, check=_matchers)  # which series are the agents' (the scrape job)
    token_file: Path | None = setting(None)  # bearer token (Authorization: Bearer ...)
    basic_auth_user: str | None = setting(None, check=_user)
    basic_auth_password_file: Path | None = setting(None)
    tls_ca: Path | None = setting(None)  # CA bundle for an https:// url
    refresh_s: float = setting(2.0, check=positive)  # how often to query (each finds the hosts scraped since)
    stale_after_s: float = setting(45.0, check=positive)  # > scrape interval + ingestion delay + refresh_s
    query_timeout_s: float = setting(10.0, check=positive)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleConfig:
    """``[console]`` (+ ``[thresholds]``)."""

    refresh_s: float = setting(1.0, check=positive)
    request_timeout_s: float = setting(2.0, check=positive)
    stale_after_s: float = setting(5.0, check=positive)
    hosts: tuple[HostConfig, ...] = setting((), label="console.hosts", name_key="name")
    prometheus: tuple[PrometheusConfig, ...] = setting((), label="console.prometheus", name_key="name")
    thresholds: Thresholds = setting(factory=Thresholds, external=True)
    source: Path | None = setting(None, external=True)

    def host(self, name: str) -> HostConfig | None:
        return next((h for h in self.hosts if h.name == name), None)


def _check_console(cfg: ConsoleConfig, raw: Mapping[str, Any], where: Where) -> None:
    if cfg.stale_after_s < cfg.refresh_s:
        raise where.error(
            "stale_after_s",
            f"must be at least refresh_s ({show(cfg.refresh_s)}), got {show(cfg.stale_after_s)}",
        )
    names: dict[str, int] = {}
    for i, host in enumerate(cfg.hosts):
        at = where.at(entry_label("console.hosts", i, raw["hosts"][i], "name"))
        if host.name in names:
            raise at.error("name", f"duplicate name {show(host.name)} (also host #{names[host.name] + 1})")
        names[host.name] = i
        if host.token_env is not None and host.token_file is not None:
            raise at.error("token_file", "set either token_env or token_file, not both")
        if host.ssh is None:
            for key in ("ssh_options", "remote_port"):
                if key in raw["hosts"][i]:
                    raise at.error(key, 'only applies with ssh = "user@host"')
    _check_prometheus(cfg, raw, where)


def _check_prometheus(cfg: ConsoleConfig, raw: Mapping[str, Any], where: Where) -> None:
    seen: dict[str, int] = {}
    for i, p in enumerate(cfg.prometheus):
        at = where.at(entry_label("console.prometheus", i, raw["prometheus"][i], "name"))
        if p.name in seen:
            raise at.error("name", f"duplicate name {show(p.name)} (also entry #{seen[p.name] + 1})")
        seen[p.name] = i
        if p.token_file is not None and (
            p.basic_auth_user is not None or p.basic_auth_password_file is not None
        ):
            raise at.error(
                "token_file", "set either token_file or basic_auth_user + basic_auth_password_file, not both"
            )
        if (p.basic_auth_user is None) != (p.basic_auth_password_file is None):
            missing = "basic_auth_password_file" if p.basic_auth_password_file is None else "basic_auth_user"
            raise at.error(missing, "basic auth needs both basic_auth_user and basic_auth_password_file")
        if p.tls_ca is not None and not p.url.lower().startswith("https://"):
            raise at.error("tls_ca", "only applies to an https:// url")
        if p.stale_after_s < p.refresh_s:
            raise at.error(
                "stale_after_s",
                f"must be at least refresh_s ({show(p.refresh_s)}), got {show(p.stale_after_s)}",
            )


# The keys of the agent's [agent] table (agents/config.py AgentConfig, supervision keys included), only to say
# where a stray top-level key belongs; the console never validates [agent]. tests/console/test_settings.py
# pins this to the agent's table.
AGENT_KEYS = (
    "listen",
    "host",
    "interval_s",
    "history_s",
    "stats_window_s",
    "state_dir",
    "log_dir",
    "gpu_source",
    "canary_interval_s",
    "canary_timeout_s",
    "scrape_timeout_s",
    "metrics_max_bytes",
    "stop_engines_on_exit",
    "tokens_file",
    "tls_cert",
    "tls_key",
    "tls_client_ca",
    "allowed_hosts",
    "allowed_executables",
    "allowed_python_modules",
    "allowed_env_overrides",
    "allowed_action_commands",
    "model_roots",
    "allow_hub_ids",
    "backoff_initial_s",
    "backoff_max_s",
    "backoff_reset_s",
    "start_retries",
    "startup_timeout_s",
    "stop_timeout_s",
    "gpu_release_timeout_s",
    "engines",
)


def console_config_from_dict(
    data: Mapping[str, Any],
    *,
    file: str = "config.toml",
    base_dir: Path | None = None,
    source: Path | None = None,
) -> ConsoleConfig:
    """Validate parsed TOML (the whole document) into a ConsoleConfig."""
    hints = {
        "console": table_keys(ConsoleConfig),
        "agent": AGENT_KEYS,
        "thresholds": table_keys(Thresholds),
    }
    check_top_level(data, file, hints)
    where = Where(file, "", base_dir)
    thresholds = thresholds_from_dict(data, where)
    raw = data.get("console", {})
    at = where.at("[console]")
    cfg = build_table(ConsoleConfig, raw, at, defaults={"thresholds": thresholds, "source": source})
    _check_console(cfg, raw, at)
    return cfg


def load_console_config(path: str | os.PathLike[str]) -> ConsoleConfig:
    """Read ``path`` and validate ``[console]`` and ``[thresholds]``."""
    p = Path(path)
    data = read_toml(p)
    return console_config_from_dict(data, file=os.fspath(path), base_dir=p.resolve().parent, source=p)


__all__ = [
    "DEFAULT_MATCH",
    "ConsoleConfig",
    "HostConfig",
    "PrometheusConfig",
    "console_config_from_dict",
    "http_url_problem",
    "load_console_config",
    "parse_matchers",
]
