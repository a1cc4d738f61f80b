"""Strict ``config.toml`` loading: TOML → frozen dataclasses, every mistake one clear line.

Pure. The strict-table machinery (:func:`~agents.tomltables.build_table`, ``Where``, ``setting``,
``check_top_level``, ``find_config``) lives in :mod:`agents.tomltables`; this module declares the agent's
tables — ``[agent]``, ``[[agent.engines]]`` and ``[slo]``; ``[thresholds]``, the one table the console
reads too, is :mod:`agents.thresholds` (re-exported here).

Rules
    * Unknown keys, wrong types and missing required keys raise :class:`ConfigError` naming the file,
      the table and the key, with the closest valid key for typos::

          config.toml: [[agent.engines]] #2 (id "llama"): unknown key "prot" (did you mean "port"?)
          config.toml: [agent] interval_s: expected a number, got "fast"

    * Integers are accepted where numbers are expected; booleans are never numbers; NaN/inf are refused.
    * Relative paths are resolved against the config file's directory; ``~`` is expanded.
    * Each side validates its own tables in depth (agent: ``[agent]`` + ``[thresholds]``; console:
      ``[console]`` + ``[thresholds]``) and both reject unknown top-level tables. ``[calculator]`` is
      validated by the calculator itself (``console.calc.settings``) when it is used.

Search order (:func:`find_config`, as DESIGN.md lists it): ``--config PATH``; ``./config.toml``;
``$LLMCONSOLE_CONFIG``; ``$XDG_CONFIG_HOME/llmconsole/config.toml`` (``~/.config/...`` when unset).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from agents.schema import ENGINE_KINDS
from agents.thresholds import Thresholds, thresholds_from_dict
from agents.tomltables import (
    ENV_NAME_RE,
    ConfigError,
    Where,
    at_least,
    build_table,
    build_tables,
    check_top_level,
    entry_label,
    load_config,
    matches,
    non_empty,
    non_negative,
    port_number,
    positive,
    setting,
    show,
    suggest,
    table_keys,
)

if TYPE_CHECKING:
    from agents.engines.base import LaunchSpec

T = TypeVar("T")
MiB = 1024 * 1024


ENGINE_ID_RE = r"[A-Za-z0-9_.-]+"


def parse_listen(text: str) -> tuple[str, int]:
    """``"127.0.0.1:9300"`` / ``"[::1]:9300"`` / ``"localhost:9300"`` → (host, port); ValueError if bad."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})|([^\s:\[\]]+):([0-9]{1,5})", text)
    if not m:
        raise ValueError(f'expected "HOST:PORT" (e.g. "127.0.0.1:9300"), got {show(text)}')
    host, port = (m[1], int(m[2])) if m[1] else (m[3], int(m[4]))
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be between 1 and 65535, got {port}")
    return host, port


def _listen_check(text: str) -> str | None:
    try:
        parse_listen(text)
    except ValueError as e:
        return str(e)
    return None


def _unique_ints(v: tuple[int, ...]) -> str | None:
    dupes = sorted({x for x in v if v.count(x) > 1})
    return f"duplicate GPU index {dupes[0]}" if dupes else None


def _host_header_name(v: str) -> str | None:
    ok = re.fullmatch(r"[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:.]+", v)
    return None if ok else f"{show(v)} is not a host name or IP address (no port, no scheme)"


def _no_secret(argv: tuple[str, ...]) -> str | None:
    """Secrets never go in argv (agents/launchguard.py; imported here only when an engine is checked)."""
    from agents.launchguard import secret_in_argv

    return secret_in_argv(argv)


def _action_argv(argv: tuple[str, ...]) -> str | None:
    """A watched engine's action command: a non-empty argv without control characters or secrets."""
    from agents.launchguard import ENV_HINT, control_chars
    from agents.supervisor.actions import SECRET_HINT

    secret = _no_secret(argv)
    return (
        non_empty(argv)
        or control_chars(argv, "command")
        or (secret and secret.replace(ENV_HINT, SECRET_HINT))
    )


# Keys of an engine entry that mean nothing for a watched engine (managed = false): the agent never launches
# it, so it has no command line, environment or restart policy of the agent's. stop_timeout_s (bounds its
# action commands), startup_timeout_s (how long it may take to answer after a start/restart command) apply.
WATCHED_NOT_APPLICABLE = (
    "command",
    "args",
    "env",
    "autostart",
    "backoff_initial_s",
    "backoff_max_s",
    "backoff_reset_s",
    "start_retries",
    "gpu_release_timeout_s",
)
ACTION_COMMAND_KEYS = ("start_command", "stop_command", "restart_command")


def _check_managed_keys(engine: EngineConfig, raw: Mapping[str, Any], at: Where) -> None:
    """A watched engine names no launch keys; a managed one no action commands (each an error naming them)."""
    if not engine.managed:
        wrong = [k for k in WATCHED_NOT_APPLICABLE if k in raw]
        if wrong:
            raise at.error(
                None,
                f"{', '.join(wrong)} {'does' if len(wrong) == 1 else 'do'} not apply to a watched engine (managed = false): "
                "the agent never launches it; remove them (restart_command, stop_command and start_command "
                "make the console's actions available for it)",
            )
        return
    wrong = [k for k in ACTION_COMMAND_KEYS if k in raw]
    if wrong:
        raise at.error(
            None,
            f"{', '.join(wrong)} {'applies' if len(wrong) == 1 else 'apply'} only to a watched engine (managed = false); "
            "the agent starts and stops a managed engine itself",
        )


def _python_module(v: str) -> str | None:
    ok = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", v)
    return (
        None if ok else f'{show(v)} is not a Python module name (e.g. "vllm.entrypoints.openai.api_server")'
    )


def _guarded_env(v: str) -> str | None:
    """allowed_env_overrides names only the variables the launch guard refuses (agents/launchguard.py)."""
    from agents.launchguard import GUARDED_ENV

    if v in GUARDED_ENV:
        return None
    return f"{show(v)} is not a guarded variable (one of {', '.join(GUARDED_ENV)}){suggest(v, GUARDED_ENV)}"


def _env_table(v: Mapping[str, str]) -> str | None:
    bad = next((k for k in v if not re.fullmatch(ENV_NAME_RE, k)), None)
    return f"{show(bad)} is not a valid environment variable name" if bad is not None else None


# --- the agent's tables -------------------------------------------------------------------------

_KW = {"frozen": True, "slots": True, "kw_only": True}


@dataclass(**_KW)
class Golden:
    """An engine's ``golden = { prompt = "...", expect = "..." }``: the correctness canary. Without
    ``expect`` the first answer after ready becomes the reference."""

    prompt: str = setting(check=non_empty)
    expect: str | None = setting(None)
    max_tokens: int = setting(16, check=at_least(1))


@dataclass(**_KW)
class Slo:
    """``[slo]``: the TTFT objective the agent burns an error budget against (SLO_BURN). ``ttft_s`` must
    be a bucket boundary of the engine's TTFT histogram (checked when the engine's buckets are known)."""

    ttft_s: float = setting(check=positive)
    objective: float = setting(
        0.99, check=lambda v: None if 0 < v < 1 else "must be between 0 and 1 (exclusive)"
    )


@dataclass(**_KW)
class Supervision:
    """Restart and timeout policy: ``[agent]`` sets the defaults, each engine may override any."""

    backoff_initial_s: float = setting(10.0, check=positive)
    backoff_max_s: float = setting(300.0, check=positive)
    backoff_reset_s: float = setting(600.0, check=positive)
    start_retries: int = setting(3, check=at_least(0))
    startup_timeout_s: float = setting(1800.0, check=positive)
    stop_timeout_s: float = setting(30.0, check=positive)
    gpu_release_timeout_s: float = setting(120.0, check=non_negative)


@dataclass(**_KW)
class EngineConfig:
    """One ``[[agent.engines]]`` entry."""

    id: str = setting(check=matches(ENGINE_ID_RE, "a valid id (letters, digits, '_', '.', '-')"))
    kind: str = setting(choices=ENGINE_KINDS)
    model: str = setting(check=non_empty)
    served_model_name: str | None = setting(None, check=non_empty)
    port: int = setting(check=port_number)
    host: str = setting("127.0.0.1", check=non_empty)
    gpus: tuple[int, ...] = setting((), item_check=non_negative, check=_unique_ints)
    command: tuple[str, ...] | None = setting(
        None, check=lambda v: non_empty(v) or _no_secret(v), item_check=non_empty
    )
    args: tuple[str, ...] = setting((), check=_no_secret)
    env: dict[str, str] = setting(factory=dict, check=_env_table)
    canary: bool = setting(True)
    golden: Golden | None = setting(None)
    golden_interval_s: float = setting(60.0, check=positive)
    metrics_port: int | None = setting(None, check=port_number)
    autostart: bool = setting(True)
    supervision: Supervision = setting(factory=Supervision, flatten=True)
    # managed = false: the agent never launches or signals this engine; it finds and watches whatever serves
    # host:port (agents/supervisor/watched.py). The *_command argv lists make the console's actions available
    # for it (run by the agent under the action-command policy, audited); they apply only to such engines.
    managed: bool = setting(True)
    start_command: tuple[str, ...] | None = setting(None, check=_action_argv, item_check=non_empty)
    stop_command: tuple[str, ...] | None = setting(None, check=_action_argv, item_check=non_empty)
    restart_command: tuple[str, ...] | None = setting(None, check=_action_argv, item_check=non_empty)

    def action_command(self, action: str) -> tuple[str, ...] | None:
        """The configured command of ``action`` ("start", "stop", "restart") for a watched engine."""
        return {"start": self.start_command, "stop": self.stop_command, "restart": self.restart_command}.get(
            action
        )

    def launch_spec(self) -> LaunchSpec:
        """What the engine's adapter needs to build its command line."""
        from agents.engines.base import LaunchSpec  # imported here: config stays loadable on its own

        return LaunchSpec(
            id=self.id,
            model=self.model,
            port=self.port,
            host=self.host,
            served_model_name=self.served_model_name,
            gpus=self.gpus,
            command=self.command,
            args=self.args,
            env=dict(self.env),
            metrics_port=self.metrics_port,
        )


def _default_state_dir() -> Path:
    return Path("~/.local/state/llmconsole").expanduser()


@dataclass(**_KW)
class AgentConfig:
    """``[agent]`` (+ ``[thresholds]``). Derived defaults are filled on construction:
    ``log_dir`` = ``state_dir/logs``; ``scrape_timeout_s`` = min(0.8 × interval_s, 10)."""

    listen: str = setting("127.0.0.1:9300", check=_listen_check)
    # The name this agent reports as its host (snapshots, /metrics `host` label); None: the machine's hostname.
    # Set it when several agents share one machine, or the hostname is not the name operators use.
    host: str | None = setting(
        None, check=matches(r"[A-Za-z0-9_.-]{1,253}", "a host name (letters, digits, '.', '_', '-')")
    )
    interval_s: float = setting(1.0, check=positive)
    history_s: float = setting(900.0, check=positive)
    stats_window_s: float = setting(60.0, check=positive)
    state_dir: Path = setting(factory=_default_state_dir)
    log_dir: Path | None = setting(None)
    gpu_source: str = setting("nvml", choices=("nvml", "simulated", "none"))
    canary_interval_s: float = setting(10.0, check=positive)
    canary_timeout_s: float = setting(5.0, check=positive)
    scrape_timeout_s: float | None = setting(None, check=positive)
    metrics_max_bytes: int = setting(16 * MiB, check=at_least(1024))
    stop_engines_on_exit: bool = setting(False)
    tokens_file: Path | None = setting(None)
    # API transport security (see README "Security"): TLS via uvicorn, optional client certificates (mTLS);
    # names the Host header may carry besides loopback ones (DNS-rebinding guard).
    tls_cert: Path | None = setting(None)
    tls_key: Path | None = setting(None)
    tls_client_ca: Path | None = setting(None)
    allowed_hosts: tuple[str, ...] = setting((), item_check=_host_header_name)
    # Launch policy (agents/launchguard.py). allowed_executables None: the built-in engine launchers;
    # allowed_python_modules None: the built-in engine modules for `python -m`.
    allowed_executables: tuple[Path, ...] | None = setting(None)
    allowed_python_modules: tuple[str, ...] | None = setting(None, item_check=_python_module)
    allowed_env_overrides: tuple[str, ...] = setting((), item_check=_guarded_env)
    # Watched engines' action commands (agents/supervisor/actions.py). None: the built-in ones, matched by
    # name (systemctl, docker, podman); a list replaces them, compared by real path.
    allowed_action_commands: tuple[Path, ...] | None = setting(None)
    model_roots: tuple[Path, ...] | None = setting(None)
    allow_hub_ids: bool | None = setting(None)
    supervision: Supervision = setting(factory=Supervision, flatten=True)
    engines: tuple[EngineConfig, ...] = setting((), label="agent.engines", name_key="id")
    thresholds: Thresholds = setting(factory=Thresholds, external=True)
    slo: Slo | None = setting(None, external=True)
    source: Path | None = setting(None, external=True)  # the file this came from, if any

    def __post_init__(self) -> None:
        if self.log_dir is None:
            object.__setattr__(self, "log_dir", self.state_dir / "logs")
        if self.scrape_timeout_s is None:
            object.__setattr__(self, "scrape_timeout_s", min(0.8 * self.interval_s, 10.0))

    @property
    def listen_host(self) -> str:
        return parse_listen(self.listen)[0]

    @property
    def listen_port(self) -> int:
        return parse_listen(self.listen)[1]

    def engine(self, engine_id: str) -> EngineConfig | None:
        return next((e for e in self.engines if e.id == engine_id), None)


def _check_supervision(sup: Supervision, where: Where) -> None:
    if sup.backoff_max_s < sup.backoff_initial_s:
        raise where.error(
            "backoff_max_s",
            f"must be at least backoff_initial_s ({show(sup.backoff_initial_s)}), got {show(sup.backoff_max_s)}",
        )


def _check_agent(agent: AgentConfig, raw: Mapping[str, Any], where: Where) -> None:
    """Cross-field rules: durations against the interval, unique engine ids and ports."""
    if agent.history_s < agent.interval_s:
        raise where.error(
            "history_s",
            f"must be at least interval_s ({show(agent.interval_s)}), got {show(agent.history_s)}",
        )
    if agent.stats_window_s < agent.interval_s:
        raise where.error(
            "stats_window_s",
            f"must be at least interval_s ({show(agent.interval_s)}), got {show(agent.stats_window_s)}",
        )
    if agent.scrape_timeout_s is not None and agent.scrape_timeout_s > agent.interval_s:
        raise where.error(
            "scrape_timeout_s",
            f"must be at most interval_s ({show(agent.interval_s)}), got {show(agent.scrape_timeout_s)}",
        )
    _check_supervision(agent.supervision, where)
    if (agent.tls_cert is None) != (agent.tls_key is None):
        missing = "tls_key" if agent.tls_key is None else "tls_cert"
        raise where.error(missing, "tls_cert and tls_key must be set together")
    if agent.tls_client_ca is not None and agent.tls_cert is None:
        raise where.error("tls_client_ca", "client-certificate verification needs tls_cert and tls_key")
    raw_engines = raw.get("engines", [])
    ids: dict[str, int] = {}
    ports: dict[int, str] = {agent.listen_port: "the agent's listen port ([agent] listen)"}
    for i, engine in enumerate(agent.engines):
        at = where.at(entry_label("agent.engines", i, raw_engines[i], "id"))
        _check_supervision(engine.supervision, at)
        _check_managed_keys(engine, raw_engines[i], at)
        if engine.id in ids:
            raise at.error("id", f"duplicate id {show(engine.id)} (also engine #{ids[engine.id] + 1})")
        ids[engine.id] = i
        for key in ("port", "metrics_port"):
            port = getattr(engine, key)
            if port is None:
                continue
            if port in ports:
                raise at.error(key, f"port {port} is already {ports[port]}")
            ports[port] = f"used by engine #{i + 1} (id {show(engine.id)}) as {key}"


def _hints() -> dict[str, tuple[str, ...]]:
    from_console: tuple[str, ...] = ("refresh_s", "request_timeout_s", "stale_after_s", "hosts")
    return {
        "agent": table_keys(AgentConfig),
        "thresholds": table_keys(Thresholds),
        "slo": table_keys(Slo),
        "console": from_console,
    }


def agent_config_from_dict(
    data: Mapping[str, Any],
    *,
    file: str = "config.toml",
    base_dir: Path | None = None,
    source: Path | None = None,
) -> AgentConfig:
    """Validate parsed TOML (the whole document) into an AgentConfig."""
    check_top_level(data, file, _hints())
    where = Where(file, "", base_dir)
    thresholds = thresholds_from_dict(data, where)
    slo = build_table(Slo, data["slo"], where.at("[slo]")) if "slo" in data else None
    raw = data.get("agent", {})
    at = where.at("[agent]")
    # engines inherit the agent-wide supervision: build [agent] without them first
    base = build_table(AgentConfig, {k: v for k, v in raw.items() if k != "engines"}, at)
    sup = {"supervision": base.supervision}
    engines = build_tables(EngineConfig, raw.get("engines", []), at, "engines", "agent.engines", "id", sup)
    agent = replace(base, engines=engines, thresholds=thresholds, slo=slo, source=source)
    _check_agent(agent, raw, at)
    return agent


def _agent_document(
    data: Mapping[str, Any], *, file: str, base_dir: Path | None, source: Path | None
) -> AgentConfig:
    """An AgentConfig from a file, which must have an ``[agent]`` table."""
    config = agent_config_from_dict(data, file=file, base_dir=base_dir, source=source)
    if "agent" not in data:  # checked after the tables' own errors, which say more
        what = "is empty" if not data else "has no [agent] table"
        raise ConfigError(
            f"{file}: {what}; the agent needs an [agent] table (see the repository's config.toml)"
        )
    return config


def load_agent_config(path: str | os.PathLike[str]) -> AgentConfig:
    """Read ``path`` and validate ``[agent]`` and ``[thresholds]``. The file must have an ``[agent]``
    table: an empty file (or one written for the console only) is an error, never a start on defaults."""
    return load_config(path, _agent_document)


__all__ = [
    "ACTION_COMMAND_KEYS",
    "AgentConfig",
    "EngineConfig",
    "Golden",
    "Slo",
    "Supervision",
    "Thresholds",
    "agent_config_from_dict",
    "load_agent_config",
    "parse_listen",
    "thresholds_from_dict",
]
