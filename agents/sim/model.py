"""The simulated engine's queueing model: a continuous-batching scheduler, pure and deterministic.

No I/O and no clock of its own: the caller passes ``now`` (monotonic seconds) to every call, so a test
drives it with a fake clock. The model runs *iterations* (engine steps) back to back on its own engine
time line; ``step(now)`` completes every iteration whose end is ``<= now`` and starts the next one.

One iteration, as vLLM V1 schedules it (preemption = recompute, no swap):
1. every running request will produce one token, so the step needs one free KV slot per running
   request; while that does not fit, the most recently admitted running request is preempted: its KV
   is freed and it goes back to the *front* of the waiting queue (its generated tokens are kept and
   recomputed as prefill when it is admitted again);
2. waiting requests are admitted FIFO while ``max_num_seqs`` and the KV pool allow (no skipping);
3. the step lasts ``decode_s * (1 + decode_slowdown * batch) + prefill_s_per_token * prefill_tokens``
   (times the ``slow`` factor); at its end each running request gets one token.

Statistics go to a ``StatsSink`` as dialect-neutral events (see ``StatsSink``); each dialect maps them
onto its own metric names, and the neutral ``Totals`` here are kept for tests and log lines.
Gauges (``Gauges``) change only when an iteration is scheduled, so a model that is no longer stepped
keeps frozen gauges, exactly like an engine whose scheduler is stuck.

Fault switches (set by the runtime, agents/sim/faults.py): ``admission_stalled`` (no admission; one
running request, the one with the most tokens left, only trickles one token per ``stall_trickle_s``
while the others finish), ``wedged`` (the iteration in
flight never completes), ``prefill_factor`` (iterations that prefill take that many times as long) and
``slow`` (every iteration). ``resume(now)`` after a pause puts engine time at ``now`` without a burst
of catch-up iterations.
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from agents.sim.prefixcache import BLOCK_TOKENS, PrefixCache

FINISH_REASONS = ("stop", "length")


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Capacity and speed of the simulated engine."""

    max_num_seqs: int = 64
    kv_tokens: int = 131072
    max_model_len: int = 4096
    decode_s: float = 0.02  # one decode step with a batch of one
    decode_slowdown: float = 0.01  # relative slowdown per running request
    prefill_s_per_token: float = 0.00004
    prefix_hit_rate: float = 0.0  # a floor: at least this fraction of each prompt counts as cached
    prefix_caching: bool = True  # cache prompt blocks and serve repeated prefixes from the cache
    max_iterations_per_step: int = 10000

    def __post_init__(self) -> None:
        if self.max_num_seqs < 1:
            raise ValueError("max_num_seqs must be >= 1")
        if self.max_model_len < 2:
            raise ValueError("max_model_len must be >= 2")
        if self.kv_tokens < self.max_model_len:
            raise ValueError(
                f"kv_tokens ({self.kv_tokens}) must hold at least one max-length request ({self.max_model_len})"
            )
        if self.decode_s <= 0 or self.prefill_s_per_token < 0 or self.decode_slowdown < 0:
            raise ValueError("timings must be positive")
        if not 0.0 <= self.prefix_hit_rate < 1.0:
            raise ValueError("prefix_hit_rate must be in [0, 1)")


class StatsSink(Protocol):
    """Receives the model's events. Names are dialect-neutral.

    ``observe(name, value)`` names: ttft, itl, e2e, queue_time, tpot, inference_time, prefill_time,
    decode_time, prompt_len, gen_len, max_tokens, n, req_preemptions, iteration_tokens,
    prefill_computed.
    ``inc(name, amount)`` names: received (at submit), prompt_tokens / prompt_computed_tokens /
    prompt_cached_tokens (at the first token), generation_tokens, preemptions,
    preempted_input_tokens, preempted_output_tokens, prefix_queries, prefix_hits,
    finished_prompt_tokens / finished_generation_tokens / finished_cached_tokens (at finish),
    finished:<reason>, requests_finished, aborted.
    ``iteration(gauges, prefill_tokens, decode_tokens, now)``: once per scheduled iteration.
    ``idle(gauges, now)``: when the engine runs out of work.
    """

    def observe(self, name: str, value: float) -> None: ...

    def inc(self, name: str, amount: float = 1.0) -> None: ...

    def iteration(self, gauges: Gauges, prefill_tokens: int, decode_tokens: int, now: float) -> None: ...

    def idle(self, gauges: Gauges, now: float) -> None: ...


class NullSink:
    """A sink that drops everything."""

    def observe(self, name: str, value: float) -> None:
        pass

    def inc(self, name: str, amount: float = 1.0) -> None:
        pass

    def iteration(self, gauges: Gauges, prefill_tokens: int, decode_tokens: int, now: float) -> None:
        pass

    def idle(self, gauges: Gauges, now: float) -> None:
        pass


@dataclass(frozen=True, slots=True)
class Gauges:
    running: int = 0
    waiting: int = 0
    kv_used: int = 0
    kv_capacity: int = 1
    deferred: int = 0  # waiting requests held back by the scheduler itself (not by capacity)

    @property
    def kv_usage(self) -> float:
        return self.kv_used / self.kv_capacity if self.kv_capacity else 0.0


@dataclass(slots=True)
class Totals:
    """Cumulative, dialect-neutral counters (monotonic)."""

    prompt_tokens: int = 0
    generation_tokens: int = 0
    preemptions: int = 0
    finished: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FINISH_REASONS, 0))
    aborted: int = 0
    prefix_queries: int = 0
    prefix_hits: int = 0
    iterations: int = 0


@dataclass(eq=False, slots=True)
class SimRequest:
    """One request inside the model. ``stop_at`` is its natural EOS length (None = ignore_eos)."""

    id: str
    prompt_tokens: int
    max_tokens: int
    stop_at: int | None
    arrival: float
    source: str = "http"  # "http" | "load" | "health"
    state: str = "inbox"  # inbox | waiting | running | finished | aborted
    generated: int = 0
    held: int = 0  # KV tokens held while running
    cached: int = 0  # prompt tokens served from the prefix cache at first admission
    prefix_blocks: tuple[int, ...] = ()  # chained block hashes of the prompt (agents/sim/prefixcache.py)
    first_scheduled: float | None = None
    first_token_at: float | None = None
    last_token_at: float | None = None
    finished_at: float | None = None
    finish_reason: str | None = None
    num_preemptions: int = 0
    seq: int = 0

    @property
    def done(self) -> bool:
        return self.state in ("finished", "aborted")


@dataclass(slots=True)
class _Iteration:
    start: float
    end: float
    batch: list[SimRequest]
    prefill_tokens: int


class QueueModel:
    """The scheduler. Not thread-safe; the server calls it from one event loop."""

    def __init__(self, config: ModelConfig, seed: int = 0, sink: StatsSink | None = None) -> None:
        self.config = config
        self.rng = random.Random(seed)
        self.sink: StatsSink = sink or NullSink()
        self.slow = 1.0
        self.prefill_factor = 1.0
        self.admission_stalled = False
        self.stall_trickle_s = 2.0
        self.wedged = False
        self._held: SimRequest | None = None  # the request that trickles while admission is stalled
        self.totals = Totals()
        self.gauges = Gauges(kv_capacity=config.kv_tokens)
        self.prefix_cache = PrefixCache(max(1, config.kv_tokens // BLOCK_TOKENS))
        self.last_receive: float | None = None  # engine time of the last token produced
        self._inbox: list[SimRequest] = []
        self._waiting: deque[SimRequest] = deque()
        self._running: list[SimRequest] = []
        self._kv_used = 0
        self._t: float | None = None
        self._inflight: _Iteration | None = None
        self._seq = itertools.count()
        self._ids = itertools.count(1)

    # --- requests -----------------------------------------------------------------------------
    def new_request(
        self,
        prompt_tokens: int,
        max_tokens: int,
        now: float,
        ignore_eos: bool = False,
        source: str = "http",
        request_id: str | None = None,
        prefix_blocks: tuple[int, ...] = (),
        eos_seed: int | None = None,
    ) -> SimRequest:
        """A request (not yet submitted); its natural EOS length is drawn from the model's RNG, or from
        ``eos_seed`` when given (a temperature-0 request: the same prompt ends at the same length).

        ``prefix_blocks``: the prompt's chained block hashes, for the prefix cache (none: never a hit).
        """
        if prompt_tokens < 1 or max_tokens < 1:
            raise ValueError("prompt_tokens and max_tokens must be >= 1")
        if prompt_tokens + max_tokens > self.config.max_model_len:
            raise ValueError("prompt_tokens + max_tokens exceeds max_model_len")
        rng = self.rng if eos_seed is None else random.Random(eos_seed)
        stop_at = None if ignore_eos else rng.randint(8, 160)
        rid = request_id or f"sim-{next(self._ids)}"
        return SimRequest(
            rid,
            prompt_tokens,
            max_tokens,
            stop_at,
            now,
            source=source,
            seq=next(self._seq),
            prefix_blocks=prefix_blocks,
        )

    def submit(self, req: SimRequest) -> None:
        """Hand a request to the engine; the scheduler sees it at its next iteration."""
        req.state = "inbox"
        self._inbox.append(req)
        self.sink.inc("received")

    def abort(self, req: SimRequest) -> None:
        """Drop a request wherever it is (client went away); frees its KV."""
        if req.done:
            return
        if req.state == "inbox":
            self._inbox.remove(req)
        elif req.state == "waiting":
            self._waiting.remove(req)
        elif req.state == "running":
            self._running.remove(req)
            if self._inflight is not None and req in self._inflight.batch:
                self._inflight.batch.remove(req)
            self._kv_used -= req.held
            req.held = 0
        req.state = "aborted"
        self.totals.aborted += 1
        self.sink.inc("aborted")

    @property
    def wedge_struck(self) -> bool:
        """Wedged with an iteration in flight (a kernel that never returns)."""
        return self.wedged and self._inflight is not None

    @property
    def pending(self) -> int:
        """Requests not finished (inbox + waiting + running)."""
        return len(self._inbox) + len(self._waiting) + len(self._running)

    # --- stepping -----------------------------------------------------------------------------
    def resume(self, now: float) -> None:
        """After a pause (nothing stepped, or a wedged iteration): engine time jumps to ``now``; the
        iteration in flight ends no earlier than ``now`` (it spanned the pause)."""
        if self._t is None:
            return
        if self._inflight is not None:
            self._inflight.end = max(self._inflight.end, now)
        else:
            self._t = max(self._t, now)

    def step(self, now: float) -> list[SimRequest]:
        """Advance engine time to ``now``; returns the requests that got tokens or finished."""
        if self._t is None:
            self._t = now
        progressed: dict[int, SimRequest] = {}
        for _ in range(self.config.max_iterations_per_step):
            if self._inflight is None:
                self._drain_inbox(self._t)
                if not self._running and not self._waiting:
                    if self._inbox:  # future arrivals only: jump to the earliest one
                        earliest = min(r.arrival for r in self._inbox)
                        if earliest <= now:
                            self._t = max(self._t, earliest)
                            continue
                    was_busy = self.gauges.running or self.gauges.waiting or self.gauges.kv_used
                    self._t = max(self._t, now)
                    self.gauges = Gauges(0, 0, self._kv_used, self.config.kv_tokens)
                    if was_busy:
                        self.sink.idle(self.gauges, now)
                    break
                self._inflight = self._schedule(self._t)
            if self.wedged or self._inflight.end > now:
                break
            for req in self._complete(self._inflight):
                progressed[id(req)] = req
            self._t = self._inflight.end
            self._inflight = None
        return list(progressed.values())

    def _drain_inbox(self, t: float) -> None:
        ready = [r for r in self._inbox if r.arrival <= t]
        if not ready:
            return
        ready.sort(key=lambda r: (r.arrival, r.seq))
        for req in ready:
            self._inbox.remove(req)
            req.state = "waiting"
            self._waiting.append(req)

    def _schedule(self, t: float) -> _Iteration:
        cap = self.config.kv_tokens
        # 1. the next step needs one KV slot per running request: preempt the newest until it fits.
        while len(self._running) > 1 and self._kv_used + len(self._running) > cap:
            self._preempt(self._running.pop())
        # 2. admit FIFO (nothing while admission is stalled).
        prefill_tokens = 0
        while not self.admission_stalled and self._waiting and len(self._running) < self.config.max_num_seqs:
            req = self._waiting[0]
            need = req.prompt_tokens + req.generated
            if self._kv_used + need + len(self._running) + 1 > cap:
                break
            self._waiting.popleft()
            prefill_tokens += self._admit(req, need, t)
        batch = list(self._running)
        self._pick_held()
        deferred = len(self._waiting) if self.admission_stalled else 0
        self.gauges = Gauges(len(batch), len(self._waiting), self._kv_used, cap, deferred)
        decode_tokens = sum(1 for r in batch if r.first_token_at is not None and r.held > 0)
        cfg = self.config
        duration = self.slow * (
            cfg.decode_s * (1.0 + cfg.decode_slowdown * len(batch)) + cfg.prefill_s_per_token * prefill_tokens
        )
        if prefill_tokens:
            duration *= self.prefill_factor
        if self._held is not None and batch == [self._held]:
            duration = max(duration, self.stall_trickle_s)  # alone, the held request only trickles
        self.sink.iteration(self.gauges, prefill_tokens, decode_tokens, t)
        return _Iteration(t, t + duration, batch, prefill_tokens)

    def _admit(self, req: SimRequest, need: int, t: float) -> int:
        """Admit ``req`` holding ``need`` KV tokens; returns the prefill tokens to compute."""
        req.state = "running"
        req.held = need
        self._kv_used += need
        self._running.append(req)
        if req.first_scheduled is None:
            req.first_scheduled = t
            req.cached = self._cached_tokens(req)
            self.sink.observe("queue_time", t - req.arrival)
            self.totals.prefix_queries += req.prompt_tokens
            self.totals.prefix_hits += req.cached
            self.sink.inc("prefix_queries", req.prompt_tokens)
            self.sink.inc("prefix_hits", req.cached)
            return need - req.cached
        return need  # recompute after preemption

    def _cached_tokens(self, req: SimRequest) -> int:
        """Prompt tokens served from the prefix cache: the leading blocks already cached (at least one
        prompt token is always computed, as in vLLM), or the configured floor fraction if larger."""
        floor = int(req.prompt_tokens * self.config.prefix_hit_rate)
        if not self.config.prefix_caching or not req.prefix_blocks:
            return floor
        hit = self.prefix_cache.lookup_and_insert(req.prefix_blocks) * BLOCK_TOKENS
        return max(floor, min(hit, req.prompt_tokens - 1))

    def _preempt(self, req: SimRequest) -> None:
        self._kv_used -= req.held
        req.held = 0
        req.state = "waiting"
        req.num_preemptions += 1
        self._waiting.appendleft(req)
        self.totals.preemptions += 1
        self.sink.inc("preemptions")
        self.sink.inc("preempted_input_tokens", req.prompt_tokens)
        self.sink.inc("preempted_output_tokens", req.generated)

    def _complete(self, it: _Iteration) -> list[SimRequest]:
        t = it.end
        self.totals.iterations += 1
        if not it.batch:
            return []  # an admission-stalled step with nothing running: no tokens, no output
        batch = [r for r in it.batch if not self._trickle_wait(r, t)]
        self.sink.observe("iteration_tokens", it.prefill_tokens + len(batch))
        done: list[SimRequest] = []
        for req in batch:
            req.generated += 1
            req.held += 1
            self._kv_used += 1
            self.totals.generation_tokens += 1
            self.sink.inc("generation_tokens")
            if req.first_token_at is None:
                req.first_token_at = t
                self.sink.observe("ttft", t - req.arrival)
                self.sink.observe("prefill_time", t - (req.first_scheduled or t))
                self.sink.observe("prefill_computed", req.prompt_tokens - req.cached)
                self.totals.prompt_tokens += req.prompt_tokens
                self.sink.inc("prompt_tokens", req.prompt_tokens)
                self.sink.inc("prompt_computed_tokens", req.prompt_tokens - req.cached)
                self.sink.inc("prompt_cached_tokens", req.cached)
            else:
                self.sink.observe("itl", t - (req.last_token_at or t))
            req.last_token_at = t
            reason = self._finish_reason(req)
            if reason is not None:
                self._finish(req, reason, t)
                done.append(req)
        if done:
            self._running = [r for r in self._running if not r.done]
        if batch:
            self.last_receive = t
        return batch

    def _pick_held(self) -> None:
        """While admission is stalled, hold one running request (the one with most tokens left)."""
        if not self.admission_stalled:
            self._held = None
        elif (self._held is None or self._held.state != "running") and self._running:
            self._held = max(self._running, key=lambda r: (r.max_tokens - r.generated, -r.seq))
        elif not self._running:
            self._held = None

    def _trickle_wait(self, req: SimRequest, t: float) -> bool:
        """The held request gets a token only once per ``stall_trickle_s``."""
        if req is not self._held or not self.admission_stalled:
            return False
        last = req.last_token_at if req.last_token_at is not None else req.first_scheduled
        return last is not None and t - last < self.stall_trickle_s - 1e-9

    @staticmethod
    def _finish_reason(req: SimRequest) -> str | None:
        if req.stop_at is not None and req.generated >= req.stop_at and req.stop_at <= req.max_tokens:
            return "stop"
        if req.generated >= req.max_tokens:
            return "length"
        return None

    def _finish(self, req: SimRequest, reason: str, t: float) -> None:
        req.state = "finished"
        req.finish_reason = reason
        req.finished_at = t
        self._kv_used -= req.held
        req.held = 0
        first = req.first_token_at or t
        sched = req.first_scheduled or t
        s = self.sink
        s.observe("e2e", t - req.arrival)
        s.observe("inference_time", t - sched)
        s.observe("decode_time", t - first)
        if req.generated > 1:
            s.observe("tpot", (t - first) / (req.generated - 1))
        s.observe("prompt_len", req.prompt_tokens)
        s.observe("gen_len", req.generated)
        s.observe("max_tokens", req.max_tokens)
        s.observe("n", 1)
        s.observe("req_preemptions", req.num_preemptions)
        s.inc(f"finished:{reason}")
        s.inc("requests_finished")
        s.inc("finished_prompt_tokens", req.prompt_tokens)
        s.inc("finished_generation_tokens", req.generated)
        s.inc("finished_cached_tokens", req.cached)
        self.totals.finished[reason] += 1


class PoissonLoad:
    """Internal load generator: SIMULATED requests arriving as a Poisson process (no HTTP)."""

    def __init__(
        self,
        rate: float,
        rng: random.Random,
        max_model_len: int,
        prompt_range: tuple[int, int] = (32, 512),
        gen_range: tuple[int, int] = (16, 256),
        max_per_call: int = 1000,
    ) -> None:
        if rate < 0:
            raise ValueError("rate must be >= 0")
        self.rate = rate
        self.rng = rng
        self.max_model_len = max_model_len
        self.prompt_range = prompt_range
        self.gen_range = gen_range
        self.max_per_call = max_per_call
        self._next: float | None = None

    def reset(self) -> None:
        """Forget the schedule (after a pause, arrivals restart from the next call)."""
        self._next = None

    def arrivals(self, now: float) -> Iterable[tuple[float, int, int]]:
        """``(arrival_time, prompt_tokens, max_tokens)`` for every arrival in ``(last call, now]``."""
        if self.rate <= 0:
            return []
        if self._next is None:
            self._next = now + self.rng.expovariate(self.rate)
        out: list[tuple[float, int, int]] = []
        while self._next <= now and len(out) < self.max_per_call:
            prompt = self.rng.randint(*self.prompt_range)
            gen = self.rng.randint(*self.gen_range)
            prompt = max(1, min(prompt, self.max_model_len - 1))
            gen = max(1, min(gen, self.max_model_len - prompt))
            out.append((self._next, prompt, gen))
            self._next += self.rng.expovariate(self.rate)
        if len(out) >= self.max_per_call:
            self._next = now + self.rng.expovariate(self.rate)
        return out
