"""The two benchmark tools the e2e stage compares, as the test drives them.

- :class:`VllmBench`: ``vllm bench serve`` from the e2e vLLM virtualenv, through ``vllm.benchmarks.serve``'s
  own ``add_cli_args`` and ``main`` (tests/e2e/support/vllm_bench_driver.py): one long-lived process (vLLM
  imports once), one run per :meth:`VllmBench.run`, so runs of the two tools can be interleaved.
- :func:`llmconsole_bench`: ``python -m console.cli bench URL ...`` (the operator's command) as a subprocess;
  returns its ``--output`` JSON document.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
DRIVER = Path(__file__).with_name("vllm_bench_driver.py")
TAG = "@@DRIVER "
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


def offline_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Our environment without proxies (aiohttp trusts them), offline for Hugging Face and vLLM."""
    env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    env.update(extra or {})
    return env


class VllmBench:
    """A ``vllm bench serve`` driver process with fixed base arguments; :meth:`run` adds per-run ones."""

    def __init__(self, python: Path, base_args: list[str], log: Path) -> None:
        self.python, self.base_args, self.log = python, base_args, log
        self.proc: subprocess.Popen[str] | None = None
        self.version: str | None = None
        self._tagged: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader: threading.Thread | None = None

    def start(self) -> VllmBench:
        self.proc = subprocess.Popen(
            [str(self.python), str(DRIVER), "--", *self.base_args],
            cwd=self.log.parent,
            env=offline_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, name="vllm-bench-reader", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with open(self.log, "a", encoding="utf-8") as fh:
            for line in self.proc.stdout:
                if line.startswith(TAG):
                    with contextlib.suppress(ValueError):
                        self._tagged.put(json.loads(line[len(TAG) :]))
                        continue
                fh.write(line)
                fh.flush()
        self._tagged.put(None)  # EOF: the driver exited

    def _next(self, what: str, timeout_s: float) -> dict[str, Any]:
        try:
            got = self._tagged.get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError(
                f"vllm bench serve driver: no answer within {timeout_s:.0f}s ({what}); log:\n{self.log_tail()}"
            ) from None
        if got is None:
            raise AssertionError(f"vllm bench serve driver exited ({what}); log:\n{self.log_tail()}")
        return got

    def wait_ready(self, timeout_s: float = 300.0) -> str:
        got = self._next("importing vllm.benchmarks.serve", timeout_s)
        self.version = got.get("vllm")
        return str(self.version)

    def run(self, extra_args: list[str], timeout_s: float = 600.0) -> dict[str, Any]:
        """One ``main(args)`` call; its result dict (scalars), or AssertionError with vLLM's error."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"args": extra_args}) + "\n")
        self.proc.stdin.flush()
        got = self._next(f"run {extra_args}", timeout_s)
        if not got.get("ok"):
            raise AssertionError(
                f"vllm bench serve failed: {got.get('error')}\n" + "\n".join(got.get("traceback") or ())
            )
        return got["result"]

    def log_tail(self, n: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        return ""

    def close(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def llmconsole_bench(
    target: str, args: list[str], output: Path, timeout_s: float = 600.0
) -> tuple[dict[str, Any], float]:
    """``llmconsole bench TARGET ARGS --output OUTPUT --quiet``; the result document and the command's
    wall time. AssertionError with its stderr when it exits non-zero or writes no result."""
    started = time.monotonic()
    got = subprocess.run(
        [sys.executable, "-m", "console.cli", "bench", target, *args, "--output", str(output), "--quiet"],
        cwd=ROOT,
        env=offline_env(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    took = time.monotonic() - started
    if got.returncode != 0 or not output.exists():
        raise AssertionError(
            f"llmconsole bench exited {got.returncode}:\n{got.stderr[-3000:]}\n{got.stdout[-2000:]}"
        )
    return json.loads(output.read_text()), took


__all__ = ["VllmBench", "llmconsole_bench", "offline_env"]
