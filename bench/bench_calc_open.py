"""Calculator open time: the first ``c`` in the console, from the key press to the calculator's first frame.

Run: `python bench/bench_calc_open.py [--repeat 3]`

The console runs headless under App.run_test on the recorded fleet (tests/data/fleet), a few poll rounds
in, as an operator would have it. Each measurement is a fresh Python process (an imported module stays
imported), so the three ways of opening are compared in the same run:

- ``cold``: nothing prepared: ``c`` imports the calculator (Textual plots, catalogs) and builds its screen;
- ``imported`` (the reference, what the console did before): the calculator module imported in advance
  (the console's old preload), the screen built, styled and laid out on ``c``;
- ``prebuilt`` (what the console does now): the console's own preload, started by its timer
  (PRELOAD_AFTER_S after it is up), imports the module off the UI thread and then builds the calculator's
  screen in the calculator mode's hidden stack; ``c`` only switches to it and draws it.

"First frame" is the first time the App sends the calculator screen to the terminal (App._display) with
its verdict filled in: what the operator sees; "idle again" is when the App has processed everything the
key caused (Textual's footer recomposing its keys, focus styles, further frames). Wall time is what the target is about (TARGET_MS); the
CPU time of the process is printed next to it because other load on a shared machine inflates wall time.
Prints the median of each way, the ratio to the reference and to the target, and whether the target holds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FLEET = ROOT / "tests" / "data" / "fleet"
TARGET_MS = 300.0
MODES = ("cold", "imported", "prebuilt")
READY_TIMEOUT_S = 30.0


def _console(poll: bool) -> Any:
    from console.app import LlmConsole
    from console.settings import ConsoleConfig, HostConfig

    try:
        from console.source import FixtureFleetSource
    except ImportError:  # the fixture source has its own module in newer trees
        from console.fixturesource import FixtureFleetSource  # type: ignore[no-redef]

    src = FixtureFleetSource.from_dir(FLEET)
    hosts = tuple(
        HostConfig(name=h.name, url=f"http://127.0.0.1:{9300 + i}") for i, h in enumerate(src.hosts)
    )
    return LlmConsole(src, ConsoleConfig(hosts=hosts), clock=src.clock, wall=src.wall, poll=poll)


async def _measure(mode: str) -> dict[str, float]:
    app = _console(poll=mode == "prebuilt")
    frames: list[tuple[float, float, Any]] = []
    display = app._display

    def spy(screen: Any, renderable: Any) -> None:
        frames.append((time.monotonic(), time.process_time(), screen))
        display(screen, renderable)

    app._display = spy
    async with app.run_test(size=(160, 45)) as pilot:
        if mode == "prebuilt":  # the console's own preload (its timer) imports and builds the calculator
            started = time.monotonic()
            while not _prebuilt(app):
                if time.monotonic() - started > READY_TIMEOUT_S:
                    raise SystemExit("the console did not prebuild the calculator")
                await asyncio.sleep(0.05)
        else:
            for _ in range(3):
                await app.poll_once()
            if mode == "imported":
                import console.screens.calc  # noqa: F401  (the old preload: the module only)
        for _ in range(3):
            await pilot.pause()
        from console.screens.calc import CalcScreen

        frames.clear()
        started, cpu = time.monotonic(), time.process_time()
        await pilot.press("c")
        while not _drawn(frames, CalcScreen):
            if time.monotonic() - started > READY_TIMEOUT_S:
                raise SystemExit("the calculator was never drawn")
            await asyncio.sleep(0.001)
        wall, used = next((t - started, c - cpu) for t, c, s in frames if isinstance(s, CalcScreen))
        await pilot.pause()  # what follows the first frame (the footer's keys, focus styles) until idle
        settled = time.monotonic() - started
        return {"wall_ms": wall * 1000, "cpu_ms": used * 1000, "settled_ms": settled * 1000}


def _prebuilt(app: Any) -> bool:
    stack = app._screen_stacks.get("calc") or []
    return bool(stack) and bool(getattr(stack[0], "_more", False))


def _drawn(frames: list[tuple[float, float, Any]], cls: type) -> bool:
    for _, _, screen in frames:
        if isinstance(screen, cls) and screen.query("#verdict") and screen.query_one("#verdict").plain:
            return True
    return False


def _one(mode: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--one", mode], capture_output=True, text=True, timeout=120, check=False
    )
    if out.returncode != 0:
        raise SystemExit(
            f"{mode}: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}"
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="fresh processes per way of opening (default 3)")
    ap.add_argument("--one", choices=MODES, help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns.one:
        print(json.dumps(asyncio.run(_measure(ns.one))))
        return 0
    print(
        f"first `c` in the console on the recorded fleet, to the calculator's first frame ({ns.repeat} runs each)"
    )
    med: dict[str, dict[str, float]] = {}
    for mode in MODES:
        runs = [_one(mode) for _ in range(ns.repeat)]
        med[mode] = {k: statistics.median(r[k] for r in runs) for k in ("wall_ms", "cpu_ms", "settled_ms")}
        walls = ", ".join(f"{r['wall_ms']:.0f}" for r in runs)
        m = med[mode]
        print(
            f"  {mode:9} first frame {m['wall_ms']:6.0f} ms wall (runs: {walls}), {m['cpu_ms']:6.0f} ms CPU; "
            f"idle again after {m['settled_ms']:6.0f} ms"
        )
    now, ref = med["prebuilt"]["wall_ms"], med["imported"]["wall_ms"]
    print(
        f"prebuilt vs imported (the reference): {ref / now:.1f}x faster; vs cold: {med['cold']['wall_ms'] / now:.1f}x"
    )
    print(
        f"target: first frame < {TARGET_MS:.0f} ms wall: {now:.0f} ms = {now / TARGET_MS:.2f} of the target: "
        f"{'met' if now < TARGET_MS else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
