"""Run the agent: the runtime (supervision + collection) and its HTTP API (uvicorn) in one asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib

from agents.api import create_app
from agents.audit import AuditLog
from agents.auth import TokenStore
from agents.config import AgentConfig
from agents.runtime import AgentRuntime


async def serve(config: AgentConfig, *, stop: asyncio.Event, stop_engines: bool | None = None, ready: asyncio.Event | None = None) -> None:
    """Run the agent (supervision, collection, API) until ``stop`` is set."""
    import uvicorn  # imported here: only the running agent needs the server

    runtime = AgentRuntime(config)
    tokens = TokenStore.load(config.tokens_file)
    audit = AuditLog(runtime.state_dir / "audit.log")
    app = create_app(runtime, tokens, audit)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.listen_host,
            port=config.listen_port,
            log_level="warning",
            lifespan="off",
            access_log=False,
            limit_concurrency=64,
            h11_max_incomplete_event_size=64 * 1024,
        )
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # the CLI owns signals
    await runtime.start()
    server_task = asyncio.create_task(server.serve())
    try:
        while not server.started and not server_task.done():
            await asyncio.sleep(0.05)
        if server_task.done():
            server_task.result()  # raises the bind error
            raise OSError(f"cannot listen on {config.listen}")
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await server_task
        await runtime.shutdown(stop_engines)
