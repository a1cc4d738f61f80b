"""Live progress on stderr while a run goes: requests done and failed, the rate over the last interval and
overall, the running TTFT p95 (over the latest ``WINDOW`` completed requests), requests in flight, time.

On a terminal the line is rewritten in place every second; otherwise one line every ``plain_every_s``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO

from console.bench.load import Live
from console.bench.stats import percentile

WINDOW = 2000


def line(live: Live, prev_done: int, dt: float, label: str) -> str:
    records = live.records
    done = len(records)
    ok = [r for r in records[-WINDOW:] if r.ok and r.ttft is not None]
    failed = sum(1 for r in records if not r.ok and not r.incomplete)
    p95 = f"{percentile(sorted(r.ttft for r in ok), 95) * 1000:,.0f} ms" if ok else "—"  # type: ignore[misc]
    elapsed = time.perf_counter() - live.started
    now_rate = (done - prev_done) / dt if dt > 0 else 0.0
    avg = done / elapsed if elapsed > 0 else 0.0
    return (
        f"[{label}] {done:,} done, {failed:,} failed, {now_rate:,.1f} req/s now ({avg:,.1f} avg), "
        f"TTFT p95 {p95}, {live.in_flight} in flight, {elapsed:,.0f} s"
    )


class Progress:
    def __init__(
        self, label: str, out: TextIO | None = None, interval_s: float = 1.0, plain_every_s: float = 5.0
    ) -> None:
        self.label = label
        self.out = out or sys.stderr
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self.interval_s = interval_s if self.tty else plain_every_s
        self._shown = False

    def _write(self, text: str) -> None:
        try:
            if self.tty:
                self.out.write("\r\x1b[2K" + text)
            else:
                self.out.write(text + "\n")
            self.out.flush()
        except (OSError, ValueError):
            pass
        self._shown = True

    async def __call__(self, live: Live) -> None:
        prev, prev_t = 0, time.perf_counter()
        try:
            while True:
                await asyncio.sleep(self.interval_s)
                now = time.perf_counter()
                self._write(line(live, prev, now - prev_t, self.label))
                prev, prev_t = len(live.records), now
        finally:
            self._write(line(live, prev, time.perf_counter() - prev_t, self.label))
            if self.tty:
                try:
                    self.out.write("\n")
                    self.out.flush()
                except (OSError, ValueError):
                    pass
