"""Building a watched engine (``managed = false``) from its config entry: its plan, its action commands
under the action-command policy, and the two HTTP questions its watcher asks.

The watcher itself (:mod:`agents.supervisor.watched`) stays engine-agnostic: it gets the health check and
the identity check as plain async callables from :class:`HttpProbes`, whose engine differences come from
the adapters (URLs, metric-name tables); nothing here branches on a kind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from agents.config import AgentConfig, EngineConfig
from agents.engines import ADAPTERS, all_wanted, detect_kind
from agents.engines.base import EngineAdapter, LaunchSpec
from agents.http1 import Http1Client
from agents.metrics.parse import parse
from agents.schema import ACTIONS
from agents.scrape import fetch
from agents.supervisor import watchedstate
from agents.supervisor.actions import action_refusal, command_env, resolve
from agents.supervisor.options import EventSink
from agents.supervisor.watched import HealthAnswer, Identity, WatchedEngine, WatchPlan

HEALTH_DEADLINE_S = 2.0
HEALTH_MAX_BYTES = 64 * 1024


class HttpProbes:
    """A watched engine's health check and identity check (its /metrics names against the adapters')."""

    def __init__(
        self,
        adapter: EngineAdapter,
        spec: LaunchSpec,
        http: Http1Client,
        *,
        metrics_deadline_s: float = 5.0,
        metrics_max_bytes: int = 16 * 2**20,
    ) -> None:
        self.adapter, self.spec, self.http = adapter, spec, http
        self.metrics_deadline_s, self.metrics_max_bytes = metrics_deadline_s, metrics_max_bytes
        self._wanted = all_wanted()

    async def health(self) -> HealthAnswer:
        got = await fetch(
            self.http,
            self.adapter.health_url(self.spec),
            deadline_s=HEALTH_DEADLINE_S,
            max_bytes=HEALTH_MAX_BYTES,
        )
        return HealthAnswer(got.status, None if got.status == 200 else got.error or f"HTTP {got.status}")

    async def identify(self) -> Identity | None:
        """None when ``/metrics`` could not be read (the watch's METRICS_* alerts say why)."""
        got = await fetch(
            self.http,
            self.adapter.metrics_url(self.spec),
            deadline_s=self.metrics_deadline_s,
            max_bytes=self.metrics_max_bytes,
        )
        configured = self.adapter.kind
        if (
            got.status == 404
        ):  # metrics switched off (SGLang without --enable-metrics), or not an engine at all
            return Identity(
                None,
                f"cannot confirm a {configured} engine: GET /metrics answers HTTP 404 "
                "(its metrics are off, or it is not an LLM engine)",
            )
        if not got.ok:
            return None
        kind = detect_kind(parse(got.body or b"", self._wanted))
        if kind == configured:
            return Identity(kind, None)
        if kind is None:
            known = ", ".join(ADAPTERS)
            return Identity(
                None, f"not a {configured} engine: its /metrics has none of the metric names of {known}"
            )
        return Identity(
            kind, f"serves {kind} metrics, not {configured}: check kind in its [[agent.engines]] entry"
        )


def watch_plan(
    engine: EngineConfig,
    agent: AgentConfig,
    base_env: Mapping[str, str],
    environ: Mapping[str, str] | None = None,
) -> WatchPlan:
    """The plan of a watched engine: each action's command when it is configured and the policy allows it,
    else the reason it is refused (naming the key to set)."""
    commands: dict[str, tuple[str, ...]] = {}
    refusals: dict[str, str] = {}
    for action in ACTIONS:
        key = f"{action}_command"
        argv = engine.action_command(action)
        if argv is None:
            refusals[action] = (
                f"engine {engine.id} is watched, not started by this agent (managed = false): set {key} in its "
                "[[agent.engines]] entry to let the agent run one"
            )
            continue
        argv = resolve(argv, base_env.get("PATH"))
        why = action_refusal(argv, agent.allowed_action_commands, key)
        if why:
            refusals[action] = f"refused by the action-command policy: {why}"
        else:
            commands[action] = argv
    sup = engine.supervision
    return WatchPlan(
        engine.id,
        engine.host,
        engine.port,
        commands,
        refusals,
        command_env(base_env, environ),
        stop_timeout_s=sup.stop_timeout_s,
        startup_timeout_s=sup.startup_timeout_s,
        allowed_commands=agent.allowed_action_commands,
    )


def build_watched(
    engine: EngineConfig,
    agent: AgentConfig,
    adapter: EngineAdapter,
    spec: LaunchSpec,
    http: Http1Client,
    base_env: Mapping[str, str],
    *,
    on_event: EventSink | None = None,
    redact: Callable[[str], str] | None = None,
) -> WatchedEngine:
    """The WatchedEngine of a ``managed = false`` entry, with its HTTP probes."""
    probes = HttpProbes(
        adapter,
        spec,
        http,
        metrics_deadline_s=agent.scrape_timeout_s or 5.0,
        metrics_max_bytes=agent.metrics_max_bytes,
    )
    return WatchedEngine(
        watch_plan(engine, agent, base_env),
        health=probes.health,
        identify=probes.identify,
        on_event=on_event,
        redact=redact,
        tick_s=min(0.5, agent.interval_s),
        state_path=watchedstate.path_for(agent.state_dir, engine.id),
    )
