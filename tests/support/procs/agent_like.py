"""An agent-like process for the re-adoption test: supervises one fake engine, then idles.

argv: STATE_DIR LOG_DIR PORT ENGINE_ARG...  Prints "READY <engine pid>" once the engine is ready;
the test then SIGKILLs this process (an agent crash) and adopts the engine from its state file.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from agents.supervisor import EngineSupervisor, Policy, ProcessPlan


async def main() -> None:
    state_dir, log_dir, port = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    argv = (sys.executable, str(Path(__file__).parent / "fake_engine.py"), *sys.argv[4:])

    async def is_ready() -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.close()
        return True

    plan = ProcessPlan("eng", argv, {"PATH": "/usr/bin:/bin"}, "127.0.0.1", port)
    sup = EngineSupervisor(
        plan,
        Policy(stop_timeout_s=1.0),
        state_dir,
        log_dir,
        is_ready=is_ready,
        tick_s=0.05,
        ready_poll_s=0.05,
    )
    await sup.start()
    while sup.state != "ready":
        if sup.state == "failed":
            print(f"FAILED {sup.reason}", flush=True)
            return
        await asyncio.sleep(0.05)
    print(f"READY {sup.pid}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
