"""One engine's canary, owned by its watch (agents/watch.py): a 1-token streaming completion, hard timeout.

While the engine serves and ``canary`` is on, a canary starts every ``canary_interval_s``, at most one in
flight, as its own task. Its outcome (time to the first token, or why there was none) becomes the engine's
:class:`~agents.schema.Canary` and is handed to ``on_result`` (the watch's extras: silent rules, SLO burn).
The request goes through the agent's one keep-alive client with ``llmconsole-canary=1`` on its URL, so the
console can tell the agent's own lines in the engine's access log from a user's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable

from agents.config import AgentConfig, EngineConfig
from agents.engines.base import EngineAdapter, LaunchSpec
from agents.http1 import Http1Client, Http1Error, NoResponse
from agents.schema import CANARY_MARK, Canary, rfc3339
from agents.scrape import transport_reason

_JSON = {"Content-Type": "application/json"}


class CanaryProbe:
    """The canary's schedule, the one in flight and its latest result (None before the first, and after
    the engine stopped serving)."""

    def __init__(
        self,
        config: EngineConfig,
        agent: AgentConfig,
        adapter: EngineAdapter,
        spec: LaunchSpec,
        http: Http1Client,
        on_result: Callable[[float, Canary], None],
    ) -> None:
        self.config, self.agent, self.adapter, self.spec, self.http = config, agent, adapter, spec, http
        self.on_result = on_result  # called with (monotonic time, result) after every finished canary
        self.result: Canary | None = None
        self.timed_out_after_s: float | None = None  # the latest result's timeout, when it timed out
        self.started: float | None = None  # monotonic start of the canary in flight
        self.next_at = 0.0
        self.task: asyncio.Task[None] | None = None

    def drive(self, now: float, serving: bool) -> None:
        """Start a canary when one is due (none while the engine does not serve, or the canary is off)."""
        if not self.config.canary or not serving:
            self.cancel()
            return
        if self.task is None and now >= self.next_at:
            self.started = now
            self.next_at = now + self.agent.canary_interval_s
            self.task = asyncio.create_task(self._run())

    def cancel(self) -> None:
        """Stop the canary in flight and forget the latest result."""
        if self.task is not None:
            self.task.cancel()
        self.task, self.started, self.result, self.timed_out_after_s = None, None, None, None

    async def _run(self) -> None:
        started = time.monotonic()
        payload = {
            "model": self.spec.served_model_name or self.spec.model,
            "prompt": "ping",
            "max_tokens": 1,
            "temperature": 0,
            "stream": True,
        }
        body = json.dumps(payload, separators=(",", ":")).encode()
        ttft: float | None = None
        error: str | None = None
        timed_out_after: float | None = None
        try:
            async with asyncio.timeout(self.agent.canary_timeout_s):
                url = marked(self.adapter.completions_url(self.spec))
                async with self.http.stream("POST", url, body=body, headers=_JSON) as resp:
                    if resp.status != 200:
                        text = (await resp.read(200, truncate=True)).decode(errors="replace")
                        error = f"HTTP {resp.status}: {short_error(text)}"
                    else:
                        async for line in resp.lines():
                            if line.startswith("data:") and line.strip() != "data: [DONE]":
                                ttft = ttft if ttft is not None else time.monotonic() - started
                        if ttft is None:
                            error = "stream ended without a token"
        except TimeoutError:
            timed_out_after = self.agent.canary_timeout_s
            error = f"no completion within {timed_out_after:g}s"
        except Http1Error as exc:
            error = str(exc) if isinstance(exc, NoResponse) else f"bad HTTP response: {exc}"
        except OSError as exc:
            error = f"connection failed: {transport_reason(exc)}"
        except asyncio.CancelledError:
            self.task, self.started = None, None
            raise
        ttft_s = None if ttft is None else round(ttft, 4)
        self.result = Canary(ok=error is None, ttft_s=ttft_s, error=error, at=rfc3339())
        self.timed_out_after_s = timed_out_after
        self.task, self.started = None, None
        self.on_result(time.monotonic(), self.result)


def marked(url: str) -> str:
    """The canary's URL with ``llmconsole-canary=1``: engines ignore the parameter, and the console tells
    the agent's own canary lines in the engine's access log from a user's by it."""
    return url + ("&" if "?" in url else "?") + CANARY_MARK + "=1"


def short_error(body: str) -> str:
    """An error answer's message, at most 160 characters (its JSON ``error``/``message`` if it has one)."""
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        data = json.loads(body)
        msg = data.get("error") or data.get("message") or data
        if isinstance(msg, dict):
            msg = msg.get("message", msg)
        return str(msg)[:160]
    return body.strip().splitlines()[0][:160] if body.strip() else "(empty body)"
