"""The simulated engine's HTTP app (Starlette): OpenAI-compatible completions, health, models, metrics.

Handlers talk to a ``Runtime`` (agents/sim/engine.py) and to its dialect; they never branch on the
dialect's name. Bad requests get a 4xx JSON body in the dialect's error format.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from agents.sim import openai_api as openai
from agents.sim.openai_api import BadRequest

if TYPE_CHECKING:
    from agents.sim.engine import Runtime

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
CHUNK = 64 * 1024


def build_app(rt: Runtime) -> Starlette:
    """The engine's main listener."""
    h = _Handlers(rt)
    routes = [
        Route("/health", h.health, methods=["GET"]),
        Route("/ping", h.health, methods=["GET", "POST"]),
        Route("/v1/models", h.models, methods=["GET"]),
        Route("/v1/completions", h.completions, methods=["POST"]),
        Route("/v1/chat/completions", h.chat_completions, methods=["POST"]),
        Route("/metrics", h.metrics, methods=["GET"]),
    ]
    if rt.dialect.has_health_generate:
        routes.append(Route("/health_generate", h.health_generate, methods=["GET"]))
    if rt.dialect.has_tokenize:
        routes.append(Route("/tokenize", h.tokenize, methods=["POST"]))
    if rt.dialect.info(rt.cfg) is not None:
        routes.append(Route("/info", h.info, methods=["GET"]))
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error})


def build_metrics_app(rt: Runtime) -> Starlette:
    """A second listener that serves only /metrics (TGI's --prometheus-port)."""
    h = _Handlers(rt)
    return Starlette(
        routes=[Route("/metrics", h.metrics, methods=["GET"])],
        exception_handlers={HTTPException: _http_error},
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 400
    detail = exc.detail if isinstance(exc, HTTPException) else "Bad Request"
    return JSONResponse({"detail": detail}, status_code=status)


class _Handlers:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    # --- health -------------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        return Response(status_code=200 if self.rt.serving else 503)

    async def health_generate(self, request: Request) -> Response:
        if not self.rt.serving:
            return Response(status_code=503)
        ok = await self.rt.health_generate()
        return Response(status_code=200 if ok else 503)

    async def info(self, request: Request) -> Response:
        return JSONResponse(self.rt.dialect.info(self.rt.cfg))

    async def models(self, request: Request) -> Response:
        cfg = self.rt.cfg
        entry = {
            "id": cfg.served_name,
            "object": "model",
            "created": int(self.rt.created_wall),
            "owned_by": "llmconsole-sim",
            "root": cfg.model,
            "parent": None,
            "max_model_len": cfg.model_config.max_model_len,
        }
        return JSONResponse({"object": "list", "data": [entry]})

    # --- metrics ------------------------------------------------------------------------------
    async def metrics(self, request: Request) -> Response:
        rt = self.rt
        if not rt.cfg.metrics_enabled:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        fault = rt.metrics_fault
        if fault is not None and fault.kind == "metrics-garbage":
            return Response(_garbage(), media_type=METRICS_CONTENT_TYPE)
        if fault is not None and fault.kind == "metrics-huge":
            size = int(fault.param("mb") * 1024 * 1024)
            return StreamingResponse(_huge(rt.metrics_text(), size), media_type=METRICS_CONTENT_TYPE)
        if fault is not None and fault.kind == "metrics-slow":
            body = rt.metrics_text().encode()
            return StreamingResponse(_trickle(body, fault.param("bps")), media_type=METRICS_CONTENT_TYPE)
        return Response(rt.metrics_text(), media_type=METRICS_CONTENT_TYPE)

    async def tokenize(self, request: Request) -> Response:
        cfg = self.rt.cfg
        try:
            body = openai.parse_tokenize(
                await request.body(), cfg.served_name, cfg.model_config.max_model_len
            )
        except BadRequest as exc:
            return self._error(exc)
        return JSONResponse(body)

    # --- completions --------------------------------------------------------------------------
    async def completions(self, request: Request) -> Response:
        return await self._complete(request, chat=False)

    async def chat_completions(self, request: Request) -> Response:
        return await self._complete(request, chat=True)

    def _error(self, exc: BadRequest) -> Response:
        status = exc.status
        if exc.kind == "validation" and status in (400, 422):
            status = self.rt.dialect.validation_status()
            self.rt.sink.inc("rejected:validation")
        return JSONResponse(self.rt.dialect.error_body(status, exc.message, exc.kind), status_code=status)

    async def _complete(self, request: Request, chat: bool) -> Response:
        rt = self.rt
        try:
            raw = await request.body()
            req = openai.parse_completion(raw, chat, rt.cfg.served_name, rt.cfg.model_config.max_model_len)
        except BadRequest as exc:
            return self._error(exc)
        if not rt.serving:
            return JSONResponse(
                rt.dialect.error_body(503, "the engine is still starting", "overloaded"), status_code=503
            )
        if not await rt.front_door():  # frontend-hang: read, then held here (no response) while it lasts
            return JSONResponse(
                rt.dialect.error_body(503, "the engine is shutting down", "overloaded"), status_code=503
            )
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        seed = rt.answer_seed(req.text_seed, rid)
        sim = rt.submit(
            req.prompt_tokens,
            req.max_tokens,
            req.ignore_eos,
            rid,
            prefix_blocks=req.prefix_blocks,
            eos_seed=req.text_seed,
        )
        created = int(time.time())
        if req.stream:
            return StreamingResponse(
                self._stream(req, sim, rid, seed, created), media_type="text/event-stream"
            )
        try:
            await rt.wait_done(sim)
        finally:
            rt.release(sim)
        if not sim.done:
            return JSONResponse(
                rt.dialect.error_body(503, "the engine is shutting down", "overloaded"), status_code=503
            )
        text = openai.text_of(seed, 0, sim.generated)
        body = openai.full_response(
            req, rid, created, text, sim.finish_reason, sim.generated, sim.prompt_tokens
        )
        return JSONResponse(body)

    async def _stream(
        self, req: openai.CompletionRequest, sim, rid: str, seed: int, created: int
    ) -> AsyncIterator[bytes]:
        rt = self.rt
        sent = 0
        try:
            while True:
                await rt.wait_progress(sim)
                upto = sim.generated
                for i in range(sent, upto):
                    finish = sim.finish_reason if (sim.done and i == upto - 1) else None
                    yield openai.sse(
                        openai.chunk(req, rid, created, openai.token_text(seed, i), finish, i == 0)
                    )
                sent = max(sent, upto)
                if sim.done or rt.closing:
                    break
            if sim.done:
                if req.include_usage:
                    yield openai.sse(openai.usage_chunk(req, rid, created, sim.prompt_tokens, sim.generated))
                yield openai.sse("[DONE]")
        finally:
            rt.release(sim)


def _garbage() -> bytes:
    rng = random.Random()
    return b"\xff\xfe\x00{{garbage " + bytes(rng.getrandbits(8) for _ in range(4096))


async def _huge(head: str, size: int) -> AsyncIterator[bytes]:
    """A valid-looking exposition of ``size`` bytes: the real text, then padding series."""
    first = head.encode()
    yield first
    sent = len(first)
    i = 0
    yield b"# HELP llmconsole_sim_padding Padding series (metrics-huge fault).\n"
    yield b"# TYPE llmconsole_sim_padding gauge\n"
    while sent < size:
        lines = []
        length = 0
        while length < CHUNK:
            line = f'llmconsole_sim_padding{{i="{i}"}} 0\n'
            lines.append(line)
            length += len(line)
            i += 1
        data = "".join(lines).encode()
        yield data
        sent += len(data)
        await asyncio.sleep(0)


async def _trickle(body: bytes, bps: float) -> AsyncIterator[bytes]:
    """``body`` at about ``bps`` bytes per second (slowloris)."""
    period = 0.1
    step = max(1, int(bps * period))
    delay = step / bps
    for start in range(0, len(body), step):
        yield body[start : start + step]
        await asyncio.sleep(delay)
