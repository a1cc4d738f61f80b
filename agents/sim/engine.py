"""The simulated engine's runtime: start-up, listeners, the scheduler tick, faults, worker, ledger, signals.

``run(cfg, dialect)`` is the whole life of one simulated engine process and returns its exit code.
Everything dialect-specific (log lines, metrics, health semantics) is asked of the dialect.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
import zlib
from pathlib import Path

import uvicorn

from agents.sim import ledger
from agents.sim import openai_api as openai
from agents.sim.config import SimConfig
from agents.sim.dialects import Dialect
from agents.sim.faults import Fault, FaultClock, start_fault
from agents.sim.model import PoissonLoad, QueueModel, SimRequest
from agents.sim.server import build_app, build_metrics_app

STATS_INTERVAL_S = 10.0
WORKER_GRACE_S = 1.0
WORKER_DEATH_GRACE_S = 0.5


class _Server(uvicorn.Server):
    """uvicorn without its own signal capture (the runtime handles SIGTERM/SIGINT itself)."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield


class _DropCancelNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Cancel ")


def _quiet_uvicorn() -> None:
    log = logging.getLogger("uvicorn.error")
    log.setLevel(logging.ERROR)
    log.addFilter(_DropCancelNoise())
    logging.getLogger("uvicorn.access").disabled = True


class Runtime:
    """State shared by the HTTP handlers and the scheduler loop of one simulated engine."""

    def __init__(self, cfg: SimConfig, dialect: Dialect, err=None) -> None:
        self.cfg = cfg
        self.dialect = dialect
        self.err = err or sys.stderr
        self.created_wall = time.time()
        self.sink = dialect.make_metrics(cfg, self.created_wall, self.log)
        self.sink.mark_simulated(dialect.name)
        self.model = QueueModel(cfg.model_config, seed=cfg.seed, sink=self.sink)
        self.load = PoissonLoad(cfg.load_rps, self.model.rng, cfg.model_config.max_model_len)
        self.serving = False
        self.closing = False
        self.hung = False
        self.wrong_answers = False
        self.metrics_fault: Fault | None = None
        self.gpu_fault: Fault | None = None  # gpu-wedge / rank-diverge while active
        self._front_door = asyncio.Event()  # cleared while the front end hangs (frontend-hang)
        self._front_door.set()
        self._wrong = itertools.count()
        self._paused = False
        self._ledger_util: tuple[float | None, tuple[tuple[int, float], ...] | None] = (None, None)
        self._faults = FaultClock(cfg.faults)
        self._ready_at: float | None = None
        self._events: dict[int, asyncio.Event] = {}
        self._stop = asyncio.Event()
        self._worker: subprocess.Popen[bytes] | None = None
        self._worker_dead_at: float | None = None
        self._ledger: Path | None = None
        self._servers: list[_Server] = []
        self._serve_tasks: list[asyncio.Task[None]] = []
        self._stats_at = time.monotonic()
        self._stats_totals = (0, 0, 0, 0, 0)

    # --- logging ------------------------------------------------------------------------------
    def log(self, line: str) -> None:
        try:
            self.err.write(line + "\n")
            self.err.flush()
        except (OSError, ValueError):
            pass

    def log_all(self, lines: list[str]) -> None:
        for line in lines:
            self.log(line)

    # --- requests (called by handlers) --------------------------------------------------------
    def submit(
        self,
        prompt_tokens: int,
        max_tokens: int,
        ignore_eos: bool,
        rid: str,
        source: str = "http",
        prefix_blocks: tuple[int, ...] = (),
        eos_seed: int | None = None,
    ) -> SimRequest:
        req = self.model.new_request(
            prompt_tokens, max_tokens, time.monotonic(), ignore_eos, source, rid, prefix_blocks, eos_seed
        )
        self._events[id(req)] = asyncio.Event()
        self.model.submit(req)
        return req

    @property
    def frontend_hung(self) -> bool:
        return not self._front_door.is_set()

    async def front_door(self) -> bool:
        """Wait while the front end hangs (requests never reach the scheduler); False when closing."""
        await self._front_door.wait()
        return not self.closing

    def answer_seed(self, text_seed: int | None, rid: str) -> int:
        """The seed of a request's generated text: the prompt's for temperature 0 (deterministic), else
        the request id's; under ``wrong-answers`` another seed for every temperature-0 request."""
        if text_seed is None:
            return zlib.crc32(rid.encode())
        if self.wrong_answers:
            return openai.wrong_seed(text_seed, next(self._wrong))
        return text_seed

    async def wait_progress(self, req: SimRequest) -> None:
        """Return once ``req`` got tokens or finished since the last call (or the engine is closing)."""
        if req.done or self.closing:
            return
        event = self._events.get(id(req))
        if event is None:
            return
        await event.wait()
        event.clear()

    async def wait_done(self, req: SimRequest) -> None:
        while not req.done and not self.closing:
            await self.wait_progress(req)

    def release(self, req: SimRequest) -> None:
        """The handler is done with ``req``: forget its wake-up event; abort it if it is unfinished."""
        if not req.done:
            self.model.abort(req)
        self._events.pop(id(req), None)

    async def health_generate(self) -> bool:
        """SGLang's /health_generate: a 1-token probe; OK as soon as *any* output arrives."""
        tic = time.monotonic()
        deadline = tic + self.cfg.health_generate_timeout_s
        with contextlib.suppress(TimeoutError):  # the probe goes through the (maybe hung) front end too
            await asyncio.wait_for(self._front_door.wait(), timeout=self.cfg.health_generate_timeout_s)
        if self.closing:
            return False
        if not self.frontend_hung:
            probe = self.submit(1, 1, True, f"health-{tic}", source="health")
            try:
                while time.monotonic() < deadline and not self.closing:
                    last = self.model.last_receive
                    if probe.done or (last is not None and last > tic):
                        return True
                    await asyncio.sleep(0.05)
            finally:
                self.release(probe)
        self.log(
            f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] Health check failed. Server couldn't get a "
            f"response from detokenizer for last {self.cfg.health_generate_timeout_s:g} seconds."
        )
        return False

    def metrics_text(self) -> str:
        return self.dialect.extra_metrics_text() + self.sink.render()

    # --- life ---------------------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        _quiet_uvicorn()
        cfg, dialect = self.cfg, self.dialect
        self.log_all(dialect.boot_lines(cfg))
        fail = start_fault(cfg.faults, "start-fail")
        if fail is not None:
            self.log_all(dialect.start_fail_lines(cfg))
            return int(fail.param("code"))
        self._write_ledger()
        self._spawn_worker()
        try:
            if dialect.listens_while_loading and not await self._listen():
                return 1
            if not await self._load():
                return await self._shutdown()
            if not dialect.listens_while_loading and not await self._listen():
                return 1
            self.serving = True
            self._ready_at = time.monotonic()
            self.log_all(dialect.ready_lines(cfg))
            ticker = asyncio.create_task(self._tick_loop())
            stop = asyncio.create_task(self._stop.wait())
            await asyncio.wait([ticker, stop, *self._serve_tasks], return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            failed = ticker.done() and not ticker.cancelled() and ticker.exception() is not None
            if failed:
                self.log(f"llmconsole sim-engine: scheduler loop failed: {ticker.exception()!r}")
            ticker.cancel()
            code = await self._shutdown()
            return 1 if failed else code
        finally:
            self._terminate_worker()
            ledger.remove(self._ledger)

    async def _load(self) -> bool:
        """The loading phase (``startup-delay``); False if a stop was requested meanwhile."""
        delay = start_fault(self.cfg.faults, "startup-delay")
        seconds = delay.param("s") if delay is not None else 0.0
        start = time.monotonic()
        shards = min(64, max(4, math.ceil(seconds / 2)))  # a progress line at least every 2 s
        period = max(seconds / shards, 0.0)
        for done in range(shards + 1):
            self.log(self.dialect.loading_line(self.cfg, done, shards, time.monotonic() - start))
            if done == shards:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=period)
            if self._stop.is_set():
                return False
        self.log_all(self.dialect.loaded_lines(self.cfg, time.monotonic() - start))
        return True

    async def _listen(self) -> bool:
        """Bind every listener and start serving; False (after the dialect's error lines) if a bind fails."""
        cfg = self.cfg
        apps = [(cfg.port, build_app(self))]
        if cfg.metrics_port is not None:
            apps.append((cfg.metrics_port, build_metrics_app(self)))
        sockets = []
        for port, _ in apps:
            try:
                sockets.append(_bind(cfg.host, port))
            except OSError as exc:
                for s in sockets:
                    s.close()
                self.log_all(self.dialect.bind_error_lines(cfg, port, exc.strerror or str(exc)))
                return False
        self._adopt_ports([s.getsockname()[1] for s in sockets])
        for sock, (_, app) in zip(sockets, apps, strict=True):
            config = uvicorn.Config(
                app,
                log_config=None,
                access_log=False,
                lifespan="off",
                http="h11",
                ws="none",
                timeout_graceful_shutdown=1,
                timeout_keep_alive=5,
            )
            server = _Server(config)
            self._servers.append(server)
            self._serve_tasks.append(asyncio.create_task(server.serve(sockets=[sock])))
        while not all(s.started for s in self._servers):
            if any(t.done() for t in self._serve_tasks):
                self.log(f"could not start the HTTP listener on {cfg.url}")
                return False
            await asyncio.sleep(0.01)
        self.log_all(self.dialect.listening_lines(cfg))
        return True

    def _adopt_ports(self, ports: list[int]) -> None:
        """With port 0 the kernel chose: log and serve the real port numbers."""
        changes: dict[str, int] = {}
        if self.cfg.port == 0:
            changes["port"] = ports[0]
        if self.cfg.metrics_port == 0 and len(ports) > 1:
            changes["metrics_port"] = ports[1]
        if changes:
            self.cfg = dataclasses.replace(self.cfg, **changes)

    async def _shutdown(self) -> int:
        self.closing = True
        self.serving = False
        self.log_all(self.dialect.shutdown_lines(self.cfg))
        self._front_door.set()  # requests held by a hung front end answer 503 now
        for event in self._events.values():
            event.set()
        for server in self._servers:
            server.should_exit = True
        if self._serve_tasks:
            await asyncio.wait(self._serve_tasks, timeout=2.0)
        self._terminate_worker()
        ledger.remove(self._ledger)
        self._ledger = None
        return 0

    # --- the scheduler loop -------------------------------------------------------------------
    async def _tick_loop(self) -> None:
        while not self.closing:
            now = time.monotonic()
            self._apply_faults(now)
            self._watch_worker(now)
            paused = self.hung or self._worker_stopped()
            if not paused:
                if self._paused:
                    self.model.resume(now)  # no burst of catch-up iterations after a pause
                if self.frontend_hung:
                    self.load.reset()  # the internal load comes through the front end too
                else:
                    for at, prompt, gen in self.load.arrivals(now):
                        self.model.submit(self.model.new_request(prompt, gen, at, source="load"))
                for req in self.model.step(now):
                    event = self._events.get(id(req))
                    if event is not None:
                        event.set()
                self._log_stats(now)
            else:
                self.load.reset()
            self._paused = paused
            self._update_ledger_util(paused)
            await asyncio.sleep(self.cfg.tick_s)

    def _apply_faults(self, now: float) -> None:
        if self._ready_at is None:
            return
        elapsed = now - self._ready_at
        for fault in self._faults.due(elapsed):
            self._start_fault(fault)
        for fault in self._faults.ended(elapsed):
            self._end_fault(fault, now)

    def _start_fault(self, fault: Fault) -> None:
        kind, model = fault.kind, self.model
        if kind == "hang":
            self.hung = True
        elif kind == "slow":
            model.slow = fault.param("factor")
        elif kind == "crash":
            self._crash(int(fault.param("code")), orphan=bool(fault.param("orphan")))
        elif kind.startswith("metrics-"):
            self.metrics_fault = fault
        elif kind == "admission-stall":
            model.admission_stalled = True
            model.stall_trickle_s = fault.param("trickle")
        elif kind in ("gpu-wedge", "rank-diverge"):
            model.wedged = True
            self.gpu_fault = fault
        elif kind == "frontend-hang":
            self._front_door.clear()
        elif kind == "wrong-answers":
            self.wrong_answers = True
        elif kind == "drift":
            model.prefill_factor = fault.param("factor")

    def _end_fault(self, fault: Fault, now: float) -> None:
        """A fault with ``for=D`` ran out: the engine behaves normally again."""
        kind, model = fault.kind, self.model
        if kind == "hang":
            self.hung = False
        elif kind == "admission-stall":
            model.admission_stalled = False
        elif kind in ("gpu-wedge", "rank-diverge"):
            model.wedged = False
            model.resume(now)
            self.gpu_fault = None
        elif kind == "frontend-hang":
            self._front_door.set()
        elif kind == "wrong-answers":
            self.wrong_answers = False
        elif kind == "drift":
            model.prefill_factor = 1.0

    def _crash(self, code: int, orphan: bool = False) -> None:
        """Die like the real engine: its last log lines, then exit ``code`` (no graceful shutdown)."""
        self.log_all(self.dialect.crash_lines(self.cfg))
        if not orphan:
            self._terminate_worker()
        ledger.remove(self._ledger)
        with contextlib.suppress(OSError, ValueError):
            self.err.flush()
            sys.stdout.flush()
        os._exit(code)

    def _log_stats(self, now: float) -> None:
        if not self.cfg.log_stats or now - self._stats_at < STATS_INTERVAL_S:
            return
        t = self.model.totals
        current = (t.prompt_tokens, t.generation_tokens, t.preemptions, t.prefix_queries, t.prefix_hits)
        prev = self._stats_totals
        dt = now - self._stats_at
        self._stats_at, self._stats_totals = now, current
        g = self.model.gauges
        if current[:2] == prev[:2] and not g.running and not g.waiting:
            return  # idle: vLLM drops the line to DEBUG
        queries = current[3] - prev[3]
        hit_rate = (current[4] - prev[4]) / queries if queries else 0.0
        line = self.dialect.stats_line(
            (current[0] - prev[0]) / dt, (current[1] - prev[1]) / dt, g, current[2] - prev[2], hit_rate
        )
        if line is not None:
            self.log(line)

    # --- worker and ledger --------------------------------------------------------------------
    def _memory(self) -> tuple[int, int]:
        return ledger.split_memory(self.cfg.gpu_mem_gib, self.cfg.worker)

    def _gpu_util(self, paused: bool) -> tuple[float | None, tuple[tuple[int, float], ...] | None]:
        """(util_pct, per-GPU util) the ledger should say now; (None, None) leaves the reader's default."""
        fault = self.gpu_fault
        if fault is not None and self.model.wedge_struck:
            if (
                fault.kind == "rank-diverge"
            ):  # one rank still in its kernel, the others idle in the collective
                return 100.0, tuple((gpu, 100.0 if i == 0 else 0.0) for i, gpu in enumerate(self.cfg.gpus))
            return 100.0, None
        if paused:
            return 0.0, None  # a hung scheduler or a stopped worker launches no kernels
        return None, None

    def _update_ledger_util(self, paused: bool) -> None:
        util = self._gpu_util(paused)
        if util != self._ledger_util and self._ledger is not None:
            self._ledger_util = util
            self._write_ledger()

    def _write_ledger(self) -> None:
        folder = os.environ.get(ledger.ENV_DIR)
        if not folder:
            return
        util, by_gpu = self._ledger_util
        entry = ledger.record(
            os.getpid(),
            list(self.cfg.gpus),
            self._memory()[0],
            "engine",
            self.cfg.dialect,
            self.cfg.served_name,
            util,
            dict(by_gpu) if by_gpu else None,
        )
        try:
            self._ledger = ledger.write(folder, entry)
        except OSError as exc:
            self.log(f"llmconsole sim-engine: warning: cannot write the GPU ledger in {folder}: {exc}")

    def _spawn_worker(self) -> None:
        if not self.cfg.worker:
            return
        argv = [
            sys.executable,
            "-m",
            "agents.sim.worker",
            "--dialect",
            self.cfg.dialect,
            "--model",
            self.cfg.served_name,
            "--mem-bytes",
            str(self._memory()[1]),
            "--max-s",
            str(self.cfg.worker_max_s),
        ]
        if self.cfg.worker_setsid:
            argv.append("--setsid")
        self._worker = subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=dict(os.environ))

    @property
    def worker_pid(self) -> int | None:
        return self._worker.pid if self._worker is not None else None

    def _worker_stopped(self) -> bool:
        """The worker is SIGSTOPped (state T): the engine cannot make progress, as vLLM's cannot."""
        if self._worker is None:
            return False
        try:
            with open(f"/proc/{self._worker.pid}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state in (b"T", b"t")

    def _watch_worker(self, now: float) -> None:
        """A worker that died while serving kills the engine (after a grace for a group-wide SIGTERM)."""
        if self._worker is None or self.closing or self._worker.poll() is None:
            return
        if self._worker_dead_at is None:
            self._worker_dead_at = now
        elif now - self._worker_dead_at >= WORKER_DEATH_GRACE_S and not self._stop.is_set():
            self.log(
                f"llmconsole sim-engine: worker pid {self._worker.pid} exited with "
                f"{self._worker.returncode}; the engine dies with it"
            )
            self._crash(1)

    def _terminate_worker(self) -> None:
        proc = self._worker
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout=WORKER_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=WORKER_GRACE_S)


def _bind(host: str, port: int) -> socket.socket:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, socktype, proto, _, addr = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(2048)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def run(cfg: SimConfig, dialect: Dialect) -> int:
    """Run one simulated engine to its end; returns the process exit code."""
    return asyncio.run(_main(cfg, dialect))


async def _main(cfg: SimConfig, dialect: Dialect) -> int:
    return await Runtime(cfg, dialect).run()
